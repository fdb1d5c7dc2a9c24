"""The ``sens timeline --html`` page: sessions as bars on a time axis, in one self-contained file.

The drawing is the same script the live page (``sens web``) runs: ``static/timeline.js`` and
``static/timeline.css`` beside this module (package data), inlined here, so the two pages
cannot drift apart. The sessions reach it as one JSON model in a ``data-`` attribute
(HTML-escaped; the script reads it as text and puts every name in the page with
``textContent``): a user name like ``<script>`` or ``"`` shows as itself. No network, no
external file, so the page can be mailed or archived.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from ..events import SensEvent, format_time
from .build import SessionSpan

__all__ = ["COLORS", "lane_point", "render_html", "span_model", "time_ticks",
           "timeline_assets"]

#: The colours of the bars (the rendering test looks for them in a screenshot).
COLORS = {
    "connected": "#2f6db5",
    "disconnected": "#f2b36f",
    "disconnected_pale": "#fdebd5",
}

# Tick steps the axis chooses from (seconds), smallest first; timeline.js has the same list.
_STEPS = (
    1, 2, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600,
    12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 182 * 86400,
    365 * 86400,
)


def _t(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def time_ticks(lo: datetime, hi: datetime, most: int = 12) -> list[tuple[datetime, str]]:
    """Round times between ``lo`` and ``hi`` (at most ``most``), each with its axis label
    (with seconds when the ticks are less than a minute apart)."""
    span = max((hi - lo).total_seconds(), 1.0)
    step = next((s for s in _STEPS if span / s <= most), _STEPS[-1])
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = int((lo - epoch).total_seconds() // step + 1) * step
    ticks = []
    t = epoch + timedelta(seconds=first)
    previous_day = None
    clock = "%H:%M:%S" if step < 60 else "%H:%M"
    while t <= hi:
        if step >= 86400:
            label = t.strftime("%Y-%m-%d")
        elif previous_day != t.date():
            label = t.strftime(f"%m-%d {clock}")
        else:
            label = t.strftime(clock)
        previous_day = t.date()
        ticks.append((t, label))
        t += timedelta(seconds=step)
    return ticks


@cache
def timeline_assets() -> tuple[str, str]:
    """The shared drawing: ``timeline.css`` (its colours filled in from :data:`COLORS`) and
    ``timeline.js``, as the live page serves them and this page inlines them."""
    static = resources.files("pysens.timeline").joinpath("static")
    css = static.joinpath("timeline.css").read_text(encoding="utf-8")
    css = (css.replace("VAR_C", COLORS["connected"]).replace("VAR_D", COLORS["disconnected"])
           .replace("VAR_P", COLORS["disconnected_pale"]))
    return css, static.joinpath("timeline.js").read_text(encoding="utf-8")


def span_model(span: SessionSpan) -> dict[str, Any]:
    """A span as the drawing takes it: its JSON plus an ``id`` (host, session key, start)."""
    obj = span.to_json()
    host, key = span.key
    obj["id"] = f"{host}\x1f{key}\x1f{obj['start']}"
    return obj


def lane_point(e: SensEvent) -> dict[str, Any]:
    """A network or power event as a host's lane draws it."""
    return {"id": e.id, "host": e.host, "time": format_time(e.time), "method": str(e.method),
            "connection": e.connection, "connection_type": e.connection_type,
            "destination": e.destination, "battery_percent": e.battery_percent}


def _who(s: SessionSpan) -> str:
    user = s.user_name or "?"
    if s.domain and s.domain.lower() != s.host.lower():
        return f"{s.domain}\\{user}"
    return user


def _sid(s: SessionSpan) -> str:
    return s.session_id or s.tty or (f"logon {s.logon_id}" if s.logon_id else "-")


def _open_end(spans: Sequence[SessionSpan], now: datetime) -> tuple[datetime, bool]:
    """Where open sessions' bars end: ``now``, unless the newest record is long before it (an
    import of old logs must not stretch the axis to today); then that record. And whether it
    is ``now``."""
    if not spans:
        return now, True
    first = min(s.start for s in spans)
    horizon = max(max(s.logoff or s.start, *(i.end or i.start for i in s.intervals))
                  if s.intervals else (s.logoff or s.start) for s in spans)
    if now - horizon <= max(timedelta(days=1), (horizon - first) / 10):
        return max(now, horizon), True
    return horizon, False


_PAGE_CSS = """
*{box-sizing:border-box}
body{margin:0;font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2433;
background:#fff}
header{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid #d8dde6}
.top{display:flex;flex-wrap:wrap;gap:8px 24px;align-items:center;padding:10px 16px 6px}
h1{font-size:17px;margin:0;font-weight:600}
.summary{color:#5a6477}
input{font:inherit;padding:3px 8px;border:1px solid #c3cad6;border-radius:4px;width:220px}
button{font:inherit;padding:2px 8px;border:1px solid #c3cad6;border-radius:4px;background:#f6f7fa}
footer{padding:10px 16px;color:#7a8396;font-size:11px}
"""


def _legend(lanes: bool) -> str:
    items = [
        '<span><i class="sw bar connected" style="position:static"></i>connected</span>',
        '<span><i class="sw bar disconnected" style="position:static"></i>disconnected</span>',
        '<span><i class="sw bar connected open" style="position:static"></i>still open</span>',
        '<span><i class="sw bar connected unknown" style="position:static"></i>'
        "logon before the journal</span>",
        '<span><i class="sw" style="width:2px;height:16px;background:#1d2433"></i>'
        "logoff (reason; * = synthesized)</span>",
    ]
    if lanes:
        items += ['<span><i class="sw" style="height:6px;background:#3a9a5b"></i>network up'
                  "</span>",
                  '<span><i class="sw" style="height:6px;background:#d9822b"></i>on battery'
                  "</span>"]
    return '<div class="legend">' + "".join(items) + "</div>"


def render_html(
    spans: Sequence[SessionSpan], *, now: datetime | None = None,
    title: str = "pysens session timeline", lanes: Iterable[SensEvent] = (),
) -> str:
    """The whole page for ``spans`` (and the network / power events ``lanes``, drawn in a lane
    per host): one row per session, grouped by host, on a UTC time axis.

    Open sessions' bars run to ``now`` (default: the current time), or to the newest record
    when that is long before ``now`` (old logs). Over a long span of short sessions the page
    opens on where most of them are; each host's density strip jumps to the rest. Drag across
    the chart to zoom, double-click to zoom out; type in the box to keep the matching rows.
    """
    now = now or datetime.now(UTC)
    a = escape
    points = [lane_point(e) for e in lanes]
    open_end, live = _open_end(spans, now)
    lo = min((s.start for s in spans), default=open_end)
    hi = max((s.logoff or open_end for s in spans), default=open_end)
    pad = max((hi - lo) * 0.01, timedelta(seconds=30))
    widest = max((len(_who(s)) + len(_sid(s)) for s in spans), default=20)
    label_width = min(max(widest * 7 + 40, 150), 360)  # room for a host name too
    summary = (f"{len(spans)} session(s) on {len({s.host for s in spans})} host(s), "
               f"{_t(lo)} to {_t(hi)} UTC")
    model = {"lo": (lo - pad).timestamp(), "hi": (hi + pad).timestamp(),
             "now": now.timestamp(), "open_end": open_end.timestamp(), "live": live,
             "spans": [span_model(s) for s in spans], "lanes": points}
    css, js = timeline_assets()
    # The script holds no data; this only keeps a "</" in its own text from ending it early.
    script = (js + "\nSensTimeline.fromPage();\n").replace("</", "<\\/")
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{a(title)}</title><style>{_PAGE_CSS}{css}</style></head>",
        f'<body style="--lw:{label_width}px;--rm:110px"><header><div class="top">',
        f'<h1>{a(title)}</h1><span class="summary">{a(summary)}</span>',
        _legend(bool(points)),
        '<span><input id="q" type="search" placeholder="filter: user, host, session, client">'
        ' <span id="shown" class="summary"></span> '
        '<button id="reset" style="display:none">zoom out</button></span></div>',
        '<div id="axishold"></div></header>',
        f'<div id="tl" data-model="{a(json.dumps(model, ensure_ascii=False))}"></div>',
        '<div id="sel"></div>',
        f"<footer>Generated by pysens at {a(_t(now))} UTC. Hover a bar for its times and "
        "client; drag across the chart to zoom in, double-click to zoom out, ctrl+wheel to "
        "zoom, shift+wheel to pan; a host's strip shows where its sessions are (click to go "
        "there).</footer>",
        f'<div id="tip"></div><script>{script}</script></body></html>\n',
    ])
