/* The session timeline drawing: one file for the static `sens timeline --html` page (inlined
   there) and the live `sens web` page (served). Sessions are bars on a UTC time axis, grouped
   by host, each host's network / power lane above its sessions, a density strip per host to
   jump from; drag to zoom, double-click to zoom out, ctrl+wheel to zoom, shift+wheel to pan.
   Every piece of data reaches the page as text (textContent), never as markup. */
(function (root) {
  'use strict';
  var STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
    43200, 86400, 172800, 604800, 1209600, 2592000, 7862400, 15724800, 31536000];
  var HEIGHT = {host: 26, lane: 20, row: 22};
  var VIRTUAL = 1500;     // more entries than this: only those in sight are in the page
  var BUCKETS = 120;      // density strip resolution

  function p2(n) { return (n < 10 ? '0' : '') + n; }
  function parseT(s) {
    if (s === null || s === undefined) { return null; }
    if (typeof s === 'number') { return s; }
    var m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?/.exec(s);
    if (!m) { return Date.parse(s) / 1000; }
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000 +
      (m[7] ? parseFloat('0' + m[7]) : 0);
  }
  function fmt(t) {
    var d = new Date(Math.floor(t) * 1000);
    return d.getUTCFullYear() + '-' + p2(d.getUTCMonth() + 1) + '-' + p2(d.getUTCDate()) + ' ' +
      p2(d.getUTCHours()) + ':' + p2(d.getUTCMinutes()) + ':' + p2(d.getUTCSeconds());
  }
  function duration(sec) {
    var s = Math.max(0, Math.floor(sec)), m, h, d;
    if (s < 60) { return s + 's'; }
    m = Math.floor(s / 60);
    if (m < 60) { return m + 'm'; }
    h = Math.floor(m / 60); m = m % 60;
    if (h < 24) { return h + 'h' + p2(m) + 'm'; }
    d = Math.floor(h / 24); h = h % 24;
    return d + 'd' + p2(h) + 'h';
  }
  function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }

  function ticks(lo, hi) {
    var span = Math.max(hi - lo, 1), step = STEPS[STEPS.length - 1], i, out = [], prev = null;
    for (i = 0; i < STEPS.length; i++) { if (span / STEPS[i] <= 12) { step = STEPS[i]; break; } }
    for (var t = (Math.floor(lo / step) + 1) * step; t <= hi; t += step) {
      var d = new Date(t * 1000),
        day = d.getUTCFullYear() + '-' + p2(d.getUTCMonth() + 1) + '-' + p2(d.getUTCDate()),
        hm = p2(d.getUTCHours()) + ':' + p2(d.getUTCMinutes()), label;
      if (step < 60) { hm += ':' + p2(d.getUTCSeconds()); }
      if (step >= 86400) { label = day; } else if (prev !== day) { label = day.slice(5) + ' ' + hm; }
      else { label = hm; }
      prev = day; out.push([t, label]);
    }
    return out;
  }

  /* A span as the page keeps it: numbers for times, the JSON kept for the tooltips. */
  function prepare(j) {
    var s = {id: j.id, j: j, host: j.host, start: parseT(j.start), logon: parseT(j.logon),
      logoff: parseT(j.logoff), ivs: []};
    (j.intervals || []).forEach(function (iv) {
      s.ivs.push({a: parseT(iv.start), b: parseT(iv.end), state: iv.state,
        cn: iv.client_name, ca: iv.client_address});
    });
    s.who = who(j, false);
    s.sid = sid(j);
    s.search = [j.host, who(j, true), s.sid, j.tty || ''].concat(j.clients || []).join(' ')
      .toLowerCase();
    return s;
  }
  function who(j, full) {
    var user = j.user_name || '?';
    if (j.domain && (full || j.domain.toLowerCase() !== String(j.host).toLowerCase())) {
      return j.domain + '\\' + user;
    }
    return user;
  }
  function sid(j) {
    if (j.session_id) { return j.session_id; }
    if (j.tty) { return j.tty; }
    return j.logon_id ? 'logon ' + j.logon_id : '-';
  }

  function Timeline(box, opts) {
    this.box = box;
    this.opts = opts || {};
    this.live = !!this.opts.live;
    this.spans = {};          // id -> span
    this.byHost = {};         // host -> [span] sorted by (start, sid)
    this.lanes = {};          // host -> [lane event] by time
    this.host = null;         // only this host (live page), or all
    this.query = '';          // row text filter (static page box)
    this.now = this.opts.now || Date.now() / 1000;
    this.openEnd = this.opts.openEnd || this.now;
    this.userView = false;
    this.entries = [];
    this.rendered = [0, 0];
    this.build();
  }
  var T = Timeline.prototype;

  T.build = function () {
    var self = this, box = this.box;
    box.textContent = '';
    this.axisRow = el('div', 'axis');
    this.axisRow.appendChild(el('div', 'label', this.opts.axisLabel || 'user \u00b7 session'));
    this.axis = el('div', 'track'); this.axis.id = 'axis';
    this.axisRow.appendChild(this.axis);
    (this.opts.axisHolder || box).appendChild(this.axisRow);
    this.chart = el('div', 'chart');
    this.grid = el('div', 'grid'); this.grid.id = 'grid';
    this.chart.appendChild(this.grid);
    this.top = el('div', 'spacer'); this.list = el('div', 'entries'); this.bottom = el('div', 'spacer');
    this.chart.appendChild(this.top); this.chart.appendChild(this.list);
    this.chart.appendChild(this.bottom);
    this.empty = el('div', 'empty', this.opts.emptyText || 'No sessions.');
    this.chart.appendChild(this.empty);
    box.appendChild(this.chart);
    this.tip = document.getElementById('tip') || document.body.appendChild(el('div'));
    this.tip.id = 'tip';
    this.sel = document.getElementById('sel') || document.body.appendChild(el('div'));
    this.sel.id = 'sel';
    this.reset = document.getElementById('reset');
    if (this.reset) { this.reset.addEventListener('click', function () { self.zoomOut(); }); }
    this.listen();
  };

  /* -- data ---------------------------------------------------------------------------- */

  T.setData = function (spans, lanes) {
    var self = this;
    this.spans = {}; this.byHost = {}; this.lanes = {};
    (spans || []).forEach(function (j) { self.spans[j.id] = prepare(j); });
    Object.keys(this.spans).forEach(function (id) {
      var s = self.spans[id];
      (self.byHost[s.host] = self.byHost[s.host] || []).push(s);
    });
    Object.keys(this.byHost).forEach(function (h) { self.byHost[h].sort(order); });
    (lanes || []).forEach(function (p) { self.addLane(p, true); });
    this.extent();
    this.focus();
    this.relayout();
  };
  function order(a, b) { return a.start - b.start || cmp(a.sid, b.sid); }

  T.upsert = function (list) {
    var self = this, fresh = false;
    list.forEach(function (j) {
      var s = prepare(j), old = self.spans[s.id], arr = self.byHost[s.host];
      self.spans[s.id] = s;
      if (!arr) { arr = self.byHost[s.host] = []; fresh = true; }
      if (old) { arr[arr.indexOf(old)] = s; } else { arr.push(s); arr.sort(order); fresh = true; }
      if (!fresh && self.rowEls && self.rowEls[s.id]) {
        var now = self.drawRow(s), prev = self.rowEls[s.id];
        prev.parentNode.replaceChild(now, prev);
        self.rowEls[s.id] = now;
      }
    });
    this.extent();
    if (fresh) { this.relayout(); } else { this.place(); }
  };

  T.addLane = function (p, quiet) {
    var arr = this.lanes[p.host] = this.lanes[p.host] || [], fresh = !arr.length;
    p.t = parseT(p.time);
    arr.push(p);
    if (arr.length > 1 && arr[arr.length - 2].t > p.t) { arr.sort(function (a, b) { return a.t - b.t; }); }
    if (quiet) { return; }
    this.extent();
    if (fresh || !this.laneEls || !this.laneEls[p.host]) { this.relayout(); return; }
    var now = this.drawLane(p.host), prev = this.laneEls[p.host];
    prev.parentNode.replaceChild(now, prev);
    this.laneEls[p.host] = now;
    this.place();
  };

  T.setHost = function (host) { this.host = host || null; this.relayout(); };
  T.setQuery = function (q) { this.query = (q || '').toLowerCase(); this.relayout(); };

  /* The whole extent: first start to the last end (or now, live). */
  T.extent = function () {
    var lo = Infinity, hi = -Infinity, self = this;
    this.eachSpan(function (s) {
      lo = Math.min(lo, s.start);
      hi = Math.max(hi, s.logoff !== null ? s.logoff : self.openEnd);
    });
    Object.keys(this.lanes).forEach(function (h) {
      if (self.host && h !== self.host) { return; }
      self.lanes[h].forEach(function (p) { lo = Math.min(lo, p.t); hi = Math.max(hi, p.t); });
    });
    if (this.live) { hi = Math.max(hi, this.now); }
    if (this.opts.lo !== undefined && !this.live) { lo = this.opts.lo; hi = this.opts.hi; }
    else {
      if (lo === Infinity) { lo = this.now - 60; hi = this.now; }
      var pad = Math.max((hi - lo) * 0.02, this.live ? 2 : 30);
      lo -= pad; hi += pad;
    }
    var follow = !this.userView || (this.live && this.hi >= this.HI - 0.5);
    var width = this.hi - this.lo;
    this.LO = lo; this.HI = hi;
    if (!this.userView) { this.lo = lo; this.hi = hi; }
    else if (follow && this.live) { this.hi = hi; this.lo = hi - width; }
  };
  T.eachSpan = function (fn) {
    var self = this;
    Object.keys(this.byHost).forEach(function (h) {
      if (self.host && h !== self.host) { return; }
      self.byHost[h].forEach(fn);
    });
  };

  /* Over a long extent, open where the sessions are: of the windows some forty typical
     sessions wide, the one holding the most session starts (the latest such), fitted to
     those sessions -- not a sliver per session across months. */
  T.focus = function () {
    var self = this, items = [], span = this.HI - this.LO;
    this.eachSpan(function (s) { items.push([s.start, s.logoff !== null ? s.logoff : self.openEnd]); });
    if (!items.length || span < 6 * 3600) { return; }
    var lens = items.map(function (x) { return x[1] - x[0]; }).sort(function (a, b) { return a - b; });
    var med = Math.max(lens[Math.floor(lens.length / 2)], 60);
    if (med * 200 > span) { return; }
    var w = Math.min(Math.max(med * 40, 3600), span), best = -1, from = 0, to = 0, j = 0, i;
    items.sort(function (a, b) { return a[0] - b[0]; });
    for (i = 0; i < items.length; i++) {
      while (items[i][0] - items[j][0] > w) { j++; }
      if (i - j + 1 >= best) { best = i - j + 1; from = j; to = i; }
    }
    var a = items[from][0], b = a;
    for (i = from; i <= to; i++) { b = Math.max(b, items[i][1]); }
    var pad = Math.max((b - a) * 0.05, med / 2);
    this.lo = a - pad; this.hi = b + pad;
    this.focused = true;
  };

  /* -- layout: which entries, then which of them are in the page ------------------------ */

  T.relayout = function () {
    var self = this, out = [], q = this.query, hosts = Object.keys(this.byHost);
    Object.keys(this.lanes).forEach(function (h) { if (!self.byHost[h]) { hosts.push(h); } });
    hosts.sort(cmp);
    hosts.forEach(function (h) {
      if (self.host && h !== self.host) { return; }
      var rows = (self.byHost[h] || []).filter(function (s) { return !q || s.search.indexOf(q) >= 0; });
      if (q && !rows.length) { return; }
      out.push({kind: 'host', host: h, n: rows.length});
      if (self.lanes[h] && self.lanes[h].length) { out.push({kind: 'lane', host: h}); }
      rows.forEach(function (s) { out.push({kind: 'row', host: h, span: s}); });
    });
    this.entries = out;
    var y = 0;
    out.forEach(function (e) { e.y = y; y += HEIGHT[e.kind]; });
    this.total = y;
    this.empty.style.display = out.length ? 'none' : '';
    this.rendered = [-1, -1];
    this.render(true);
    if (this.opts.onCount) { this.opts.onCount(out.filter(function (e) { return e.kind === 'row'; }).length); }
  };

  T.visible = function () {
    var n = this.entries.length;
    if (n <= VIRTUAL) { return [0, n]; }
    var r = this.chart.getBoundingClientRect(), top = Math.max(0, -r.top - 400),
      bottom = -r.top + window.innerHeight + 400, lo = 0, hi = n;
    var sc = this.opts.scroller;
    if (sc) {
      var sr = sc.getBoundingClientRect();
      top = Math.max(0, sr.top - r.top - 400); bottom = sr.bottom - r.top + 400;
    }
    while (lo < hi) { var mid = (lo + hi) >> 1; if (this.entries[mid].y + 30 < top) { lo = mid + 1; } else { hi = mid; } }
    var a = lo;
    hi = n;
    while (lo < hi) { var m2 = (lo + hi) >> 1; if (this.entries[m2].y < bottom) { lo = m2 + 1; } else { hi = m2; } }
    return [a, lo];
  };

  T.render = function (force) {
    var v = this.visible(), self = this;
    if (!force && v[0] === this.rendered[0] && v[1] === this.rendered[1]) { return; }
    this.rendered = v;
    var frag = document.createDocumentFragment();
    this.rowEls = {}; this.laneEls = {};
    this.entries.slice(v[0], v[1]).forEach(function (e) {
      var node;
      if (e.kind === 'host') { node = self.drawHost(e); }
      else if (e.kind === 'lane') { node = self.laneEls[e.host] = self.drawLane(e.host); }
      else { node = self.rowEls[e.span.id] = self.drawRow(e.span); }
      frag.appendChild(node);
    });
    this.list.textContent = '';
    this.list.appendChild(frag);
    var first = v[0] < this.entries.length ? this.entries[v[0]].y : this.total;
    var last = v[1] > 0 && v[1] <= this.entries.length ? this.entries[v[1] - 1].y +
      HEIGHT[this.entries[v[1] - 1].kind] : 0;
    this.top.style.height = first + 'px';
    this.bottom.style.height = Math.max(this.total - last, 0) + 'px';
    this.place();
  };

  /* -- drawing one entry --------------------------------------------------------------- */

  function at(node, s, e) {
    node.setAttribute('data-s', s.toFixed(3));
    node._s = s;
    if (e !== undefined) { node.setAttribute('data-e', e.toFixed(3)); node._e = e; }
    return node;
  }

  T.drawHost = function (e) {
    var self = this, row = el('div', 'hostrow'), label = el('div', 'label');
    label.appendChild(el('span', 'hname', e.host));
    label.appendChild(document.createTextNode(' '));
    label.appendChild(el('span', 'sid', e.n + ' session(s)'));
    label._tip = e.host;
    row.appendChild(label);
    var track = el('div', 'track'), strip = el('div', 'density');
    var counts = new Array(BUCKETS), most = 0, w = (this.HI - this.LO) / BUCKETS, i;
    for (i = 0; i < BUCKETS; i++) { counts[i] = 0; }
    (this.byHost[e.host] || []).forEach(function (s) {
      var a = Math.max(0, Math.floor((s.start - self.LO) / w)),
        b = Math.min(BUCKETS - 1, Math.floor(((s.logoff !== null ? s.logoff : self.openEnd) - self.LO) / w));
      for (i = a; i <= b; i++) { counts[i]++; }
    });
    counts.forEach(function (c) { most = Math.max(most, c); });
    counts.forEach(function (c, k) {
      if (!c) { return; }
      var b = el('i');
      b.style.left = (k / BUCKETS * 100) + '%'; b.style.width = (100 / BUCKETS) + '%';
      b.style.opacity = (0.25 + 0.75 * c / most).toFixed(2);
      strip.appendChild(b);
    });
    var vp = el('b', 'vp');
    strip.appendChild(vp);
    strip._vp = vp;
    strip._tip = 'where the sessions of ' + e.host + ' are: click to go there';
    strip.addEventListener('click', function (ev) {
      var r = strip.getBoundingClientRect(), k = Math.floor((ev.clientX - r.left) / r.width * BUCKETS),
        best = -1, d;
      // to the nearest stretch with sessions, not into an empty one next to it
      for (d = 0; d < BUCKETS && best < 0; d++) {
        if (counts[k - d]) { best = k - d; } else if (counts[k + d]) { best = k + d; }
      }
      if (best < 0) { best = k; }
      // the view keeps its width and opens on the first session active in that stretch
      var a = self.LO + best * w, b = a + w, t = a, width = self.hi - self.lo;
      (self.byHost[e.host] || []).some(function (s) {
        var end = s.logoff !== null ? s.logoff : self.openEnd;
        if (end >= a && s.start < b) { t = Math.max(s.start, a); return true; }
        return false;
      });
      self.setView(t - width * 0.05, t + width * 0.95, true);
    });
    track.appendChild(strip);
    row.appendChild(track);
    return row;
  };

  T.drawLane = function (host) {
    var self = this, row = el('div', 'lane'), label = el('div', 'label', 'network \u00b7 power');
    row.appendChild(label);
    var track = el('div', 'track'), clip = el('div', 'clip'), up = {}, battery = null;
    function seg(cls, a, b, tip) {
      var d = at(el('div', cls), a, b === null ? self.openEnd : b);
      if (b === null) { d.classList.add('open'); }
      d._tip = tip;
      clip.appendChild(d);
    }
    function mark(cls, p, tip) { var d = at(el('div', cls), p.t); d._tip = tip; clip.appendChild(d); }
    (this.lanes[host] || []).forEach(function (p) {
      var name = p.connection || '?', kind = p.connection_type === 1 ? 'WAN' : 'LAN';
      if (p.method === 'ConnectionMade' || p.method === 'ConnectionMadeNoQOCInfo') {
        if (!(name in up)) { up[name] = p; }
      } else if (p.method === 'ConnectionLost') {
        var from = up[name];
        delete up[name];
        seg('seg net' + (kind === 'WAN' ? ' wan' : ''), from ? from.t : self.LO, p.t,
          netTip(host, name, kind, from, p));
      } else if (p.method === 'OnBatteryPower') {
        if (!battery) { battery = p; }
      } else if (p.method === 'OnACPower') {
        seg('seg battery', battery ? battery.t : self.LO, p.t, powerTip(host, battery, p));
        battery = null;
      } else if (p.method === 'BatteryLow') {
        mark('mark low', p, 'battery low on ' + host + ': ' + p.battery_percent + '%\nat ' + fmt(p.t));
      } else {
        mark('mark dest', p, 'reachable from ' + host + ': ' + (p.destination || '?') +
          (p.connection ? ' via ' + p.connection : '') + '\nat ' + fmt(p.t));
      }
    });
    Object.keys(up).forEach(function (name) {
      var p = up[name], kind = p.connection_type === 1 ? 'WAN' : 'LAN';
      seg('seg net' + (kind === 'WAN' ? ' wan' : ''), p.t, null, netTip(host, name, kind, p, null));
    });
    if (battery) { seg('seg battery', battery.t, null, powerTip(host, battery, null)); }
    track.appendChild(clip);
    row.appendChild(track);
    return row;
  };
  function netTip(host, name, kind, from, to) {
    return 'network: ' + name + ' (' + kind + ') on ' + host + '\nup from ' +
      (from ? fmt(from.t) : '(before the record)') + '\nto      ' + (to ? fmt(to.t) : '(still)');
  }
  function powerTip(host, from, to) {
    return 'on battery: ' + host + (from && from.battery_percent !== null ? ' (' + from.battery_percent + '%)' : '') +
      '\nfrom ' + (from ? fmt(from.t) : '(before the record)') + '\nto   ' + (to ? fmt(to.t) + ' (AC)' : '(still)');
  }

  T.drawRow = function (s) {
    var self = this, row = el('div', 'row'), label = el('div', 'label');
    label.appendChild(el('span', 'user', s.who));
    label.appendChild(document.createTextNode(' '));
    label.appendChild(el('span', 'sid', s.sid));
    label._tip = function () { return self.sessionTip(s); };
    row.appendChild(label);
    var track = el('div', 'track'), clip = el('div', 'clip');
    s.ivs.forEach(function (iv, n) {
      var cls = 'bar ' + iv.state;
      if (iv.b === null) { cls += ' open'; }
      if (n === 0 && s.logon === null) { cls += ' unknown'; }
      var bar = at(el('div', cls), iv.a, iv.b === null ? Math.max(self.openEnd, iv.a) : iv.b);
      bar._open = iv.b === null;
      bar._tip = function () { return self.intervalTip(s, n); };
      clip.appendChild(bar);
    });
    track.appendChild(clip);
    if (s.logoff !== null) {
      var why = s.j.logoff_reason || (s.j.synthesized ? '' : 'logoff');
      if (s.j.synthesized) { why = why ? why + '*' : 'synthesized'; }
      clip.appendChild(at(el('div', 'end'), s.logoff));
      track.appendChild(at(el('span', 'why' + (s.j.synthesized ? ' syn' : ''), why), s.logoff));
    } else {
      var still = at(el('span', 'why still', this.live || this.opts.liveEnd ? 'still open' :
        'open at the last record'), this.openEnd);
      still._open = true;
      track.appendChild(still);
    }
    row.appendChild(track);
    return row;
  };

  T.sessionTip = function (s) {
    var j = s.j, end = s.logoff !== null ? s.logoff : this.openEnd, live = this.live || this.opts.liveEnd;
    var tty = j.tty && j.tty !== j.session_id ? ' (' + j.tty + ')' : '';
    var lines = [who(j, true) + ' on ' + j.host + ', session ' + s.sid + tty];
    lines.push('logon:  ' + (s.logon !== null ? fmt(s.logon) : 'before ' + fmt(s.start) + ' (not seen)'));
    if (s.logoff === null) { lines.push('logoff: ' + (live ? 'still open' : 'none recorded')); }
    else {
      var why = [j.logoff_reason, j.synthesized ? 'synthesized' : ''].filter(Boolean).join(', ');
      lines.push('logoff: ' + fmt(s.logoff) + (why ? ' (' + why + ')' : ''));
    }
    lines.push('length: ' + duration(end - s.start) + (s.logoff === null ? ' so far' : ''));
    if (j.clients && j.clients.length) { lines.push('from:   ' + j.clients.join(', ')); }
    return lines.join('\n');
  };

  T.intervalTip = function (s, n) {
    var iv = s.ivs[n], end = iv.b !== null ? iv.b : Math.max(this.openEnd, iv.a),
      live = this.live || this.opts.liveEnd;
    var lines = [iv.state + ': ' + who(s.j, true) + ' on ' + s.host + ', session ' + s.sid,
      'from   ' + fmt(iv.a) + (n || s.logon !== null ? '' : ' (first seen)'),
      'to     ' + fmt(end) + (iv.b !== null ? '' : live ? ' (still)' : ' (last record)'),
      'length ' + duration(end - iv.a)];
    if (iv.state === 'connected') {
      var client = [iv.cn, iv.ca ? '(' + iv.ca + ')' : ''].filter(Boolean).join(' ');
      lines.push('client ' + (client || 'local'));
    }
    return lines.join('\n');
  };

  /* -- placing: times -> percent of the track ------------------------------------------ */

  T.pct = function (t) { return (t - this.lo) / (this.hi - this.lo) * 100; };

  T.place = function () {
    var self = this, nodes = this.list.querySelectorAll('[data-s]');
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      if (node._open) {
        var e = Math.max(this.openEnd, node._s);
        if (node.hasAttribute('data-e')) { node._e = e; node.setAttribute('data-e', e.toFixed(3)); }
        else { node._s = this.openEnd; node.setAttribute('data-s', this.openEnd.toFixed(3)); }
      }
      var x = this.pct(node._s);
      node.style.left = x + '%';
      if (node._e !== undefined) { node.style.width = Math.max(this.pct(node._e) - x, 0) + '%'; }
      if (node.tagName === 'SPAN') { node.style.display = (x < 0 || x > 100) ? 'none' : ''; }
    }
    var strips = this.list.querySelectorAll('.density');
    for (i = 0; i < strips.length; i++) {
      var vp = strips[i]._vp, W = this.HI - this.LO;
      vp.style.left = Math.max((this.lo - this.LO) / W * 100, 0) + '%';
      vp.style.width = Math.max(Math.min((this.hi - this.lo) / W * 100, 100), 0.5) + '%';
      vp.style.display = this.lo > this.LO + 1e-6 || this.hi < this.HI - 1e-6 ? '' : 'none';
    }
    this.axis.textContent = ''; this.grid.textContent = '';
    ticks(this.lo, this.hi).forEach(function (tk) {
      var x = self.pct(tk[0]) + '%', a = el('span', 'tick', tk[1]);
      a.style.left = x; self.axis.appendChild(a);
      var g = el('i'); g.style.left = x; self.grid.appendChild(g);
    });
    if (this.reset) { this.reset.style.display = this.zoomed() ? '' : 'none'; }
  };

  T.zoomed = function () { return this.userView || !!this.focused; };

  T.setView = function (lo, hi, byUser) {
    if (!(hi > lo)) { return; }
    this.lo = lo; this.hi = hi;
    if (byUser) { this.userView = true; }
    this.place();
    if (byUser && this.opts.onView) { this.opts.onView(lo, hi, true); }
  };
  T.zoomOut = function () {
    this.userView = false; this.focused = false;
    this.lo = this.LO; this.hi = this.HI;
    this.place();
    if (this.opts.onView) { this.opts.onView(this.lo, this.hi, false); }
  };
  T.zoomBy = function (factor, center) {
    var c = center === undefined ? (this.lo + this.hi) / 2 : center;
    this.setView(c - (c - this.lo) * factor, c + (this.hi - c) * factor, true);
  };
  T.panBy = function (frac) {
    var w = this.hi - this.lo;
    this.setView(this.lo + w * frac, this.hi + w * frac, true);
  };

  /* Live: the clock moves; open bars grow to it. */
  T.setNow = function (t) {
    this.now = t;
    if (this.live) { this.openEnd = t; }
    this.extent();
    var tenth = Math.floor(t / 10);
    if (this.live && tenth !== this.redrawn) {
      this.redrawn = tenth;
      this.render(true);  // the density strips follow the extent as it grows
    } else {
      this.place();
    }
  };

  /* -- the mouse: tooltips, drag to zoom, wheel -------------------------------------- */

  T.listen = function () {
    var self = this, drag = null, tip = this.tip, sel = this.sel;
    function frac(x) { var r = self.axis.getBoundingClientRect(); return Math.min(Math.max((x - r.left) / r.width, 0), 1); }
    this.chart.addEventListener('mousedown', function (ev) {
      if (ev.button !== 0 || !ev.target.closest('.track') || ev.target.closest('.density')) { return; }
      drag = {x: ev.clientX}; ev.preventDefault();
    });
    document.addEventListener('mousemove', function (ev) {
      if (drag) {
        var r = self.axis.getBoundingClientRect(),
          a = Math.max(Math.min(drag.x, ev.clientX), r.left), b = Math.min(Math.max(drag.x, ev.clientX), r.right);
        sel.style.display = 'block'; sel.style.left = a + 'px'; sel.style.width = Math.max(b - a, 0) + 'px';
        tip.style.display = 'none'; return;
      }
      var node = ev.target;
      while (node && node !== document && !node._tip) { node = node.parentNode; }
      if (!node || node === document) { tip.style.display = 'none'; return; }
      tip.textContent = typeof node._tip === 'function' ? node._tip() : node._tip;
      tip.style.display = 'block';
      var x = ev.clientX + 14, y = ev.clientY + 14, w = tip.offsetWidth, h = tip.offsetHeight;
      if (x + w > innerWidth - 4) { x = Math.max(4, ev.clientX - w - 14); }
      if (y + h > innerHeight - 4) { y = Math.max(4, ev.clientY - h - 14); }
      tip.style.left = x + 'px'; tip.style.top = y + 'px';
    });
    document.addEventListener('mouseup', function (ev) {
      if (!drag) { return; }
      var a = frac(Math.min(drag.x, ev.clientX)), b = frac(Math.max(drag.x, ev.clientX)), w = self.hi - self.lo;
      drag = null; sel.style.display = 'none';
      if (b - a > 0.005) { self.setView(self.lo + a * w, self.lo + b * w, true); }
    });
    this.chart.addEventListener('dblclick', function () { self.zoomOut(); });
    this.axisRow.addEventListener('dblclick', function () { self.zoomOut(); });
    this.chart.addEventListener('wheel', function (ev) {
      if (!(ev.ctrlKey || ev.shiftKey || ev.altKey)) { return; }
      ev.preventDefault();
      if (ev.shiftKey) { self.panBy((ev.deltaY || ev.deltaX) > 0 ? 0.1 : -0.1); return; }
      var r = self.axis.getBoundingClientRect(), c = self.lo + frac(ev.clientX) * (self.hi - self.lo);
      if (ev.clientX >= r.left) { self.zoomBy(ev.deltaY > 0 ? 1.25 : 0.8, c); }
    }, {passive: false});
    var pending = false;
    function onScroll() {
      if (pending || self.entries.length <= VIRTUAL) { return; }
      pending = true;
      requestAnimationFrame(function () { pending = false; self.render(false); });
    }
    window.addEventListener('scroll', onScroll, {passive: true});
    window.addEventListener('resize', onScroll);
    if (this.opts.scroller) { this.opts.scroller.addEventListener('scroll', onScroll, {passive: true}); }
  };

  /* The static page: its model is in #tl's data-model (HTML-escaped JSON). */
  function fromPage() {
    var box = document.getElementById('tl'), m = JSON.parse(box.getAttribute('data-model'));
    box.removeAttribute('data-model');  // read once; the page need not carry it twice
    var tl = new Timeline(box, {lo: m.lo, hi: m.hi, now: m.now, openEnd: m.open_end, liveEnd: m.live,
      axisHolder: document.getElementById('axishold'),
      onView: function (lo, hi, zoomed) {
        try { history.replaceState(null, '', zoomed ? '#zoom=' + lo.toFixed(0) + ',' + hi.toFixed(0) : '#'); }
        catch (e) { /* a file: page may refuse */ }
      },
      onCount: function (n) {
        var shown = document.getElementById('shown');
        if (shown) { shown.textContent = tl && tl.query ? n + ' shown' : ''; }
      }});
    tl.setData(m.spans, m.lanes);
    var z = /zoom=(\d+(?:\.\d*)?),(\d+(?:\.\d*)?)/.exec(location.hash);
    if (z && +z[2] > +z[1]) { tl.setView(+z[1], +z[2], false); tl.userView = true; tl.place(); }
    var q = document.getElementById('q');
    if (q) { q.addEventListener('input', function () { tl.setQuery(q.value); }); }
    return tl;
  }

  root.SensTimeline = {Timeline: Timeline, fromPage: fromPage, ticks: ticks, parseT: parseT,
    fmt: fmt, duration: duration};
})(window);
