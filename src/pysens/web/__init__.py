"""``sens web``: a live view of sessions, network and power, for one host or the whole fleet.

* :mod:`.feeds` -- where live data comes from: this host's ``sens serve`` (its socket) or the
  fleet's central store plus NATS;
* :mod:`.view_map` -- the picture the page draws, kept up to date one event at a time (pure);
* :mod:`.hub` -- the fan-out to open pages, each with a bounded queue;
* :mod:`.app` -- the HTTP server: the page, its static files, the event stream, the filter check;
* :mod:`.access` -- who may look: loopback by default, a token otherwise;
* ``static/`` -- the page (vanilla JS, no build step), and ``timeline.js``, the drawing the
  static ``sens timeline --html`` page inlines too.

The server is aiohttp (the ``web`` extra), imported only by :mod:`.app`; everything else here
imports without it.
"""
