"""The ``sens timeline --html`` page: sessions as bars on a time axis, in one self-contained file.

Inline CSS and a few lines of inline JavaScript (tooltips, a row filter); no network, no external
file, so the page can be mailed or archived. Every piece of data is HTML-escaped and reaches the
script only through ``data-`` attributes it reads as text: a user name like ``<script>`` or
``"`` shows as itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape

from .build import CONNECTED, SessionSpan, format_duration

__all__ = ["COLORS", "render_html", "time_ticks"]

#: The colours of the bars (the rendering test looks for them in a screenshot).
COLORS = {
    "connected": "#2f6db5",
    "disconnected": "#f2b36f",
    "disconnected_pale": "#fdebd5",
}

# Tick steps the axis chooses from (seconds), smallest first.
_STEPS = (
    60, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
    7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 182 * 86400, 365 * 86400,
)


def _t(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def time_ticks(lo: datetime, hi: datetime, most: int = 12) -> list[tuple[datetime, str]]:
    """Round times between ``lo`` and ``hi`` (at most ``most``), each with its axis label."""
    span = max((hi - lo).total_seconds(), 1.0)
    step = next((s for s in _STEPS if span / s <= most), _STEPS[-1])
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = int((lo - epoch).total_seconds() // step + 1) * step
    ticks = []
    t = epoch + timedelta(seconds=first)
    previous_day = None
    while t <= hi:
        if step >= 86400:
            label = t.strftime("%Y-%m-%d")
        elif previous_day != t.date():
            label = t.strftime("%m-%d %H:%M")
        else:
            label = t.strftime("%H:%M")
        previous_day = t.date()
        ticks.append((t, label))
        t += timedelta(seconds=step)
    return ticks


def _who(s: SessionSpan, full: bool = True) -> str:
    user = s.user_name or "?"
    if s.domain and (full or s.domain.lower() != s.host.lower()):
        return f"{s.domain}\\{user}"
    return user


def _sid(s: SessionSpan) -> str:
    if s.session_id:
        return s.session_id
    if s.tty:
        return s.tty
    return f"logon {s.logon_id}" if s.logon_id else "-"


def _session_tip(s: SessionSpan, open_end: datetime, live: bool) -> str:
    tty = f" ({s.tty})" if s.tty and s.tty != s.session_id else ""
    lines = [f"{_who(s)} on {s.host}, session {_sid(s)}{tty}"]
    lines.append("logon:  " + (_t(s.logon) if s.logon else f"before {_t(s.start)} (not seen)"))
    if s.logoff is None:
        lines.append("logoff: " + ("still open" if live else "none recorded"))
    else:
        why = ", ".join(x for x in (s.logoff_reason, "synthesized" if s.synthesized else "") if x)
        lines.append(f"logoff: {_t(s.logoff)}" + (f" ({why})" if why else ""))
    duration = s.duration(open_end)
    if duration is not None:
        lines.append(f"length: {format_duration(duration)}"
                     + (" so far" if s.logoff is None else ""))
    if s.clients:
        lines.append("from:   " + ", ".join(s.clients))
    return "\n".join(lines)


def _interval_tip(s: SessionSpan, n: int, open_end: datetime, live: bool) -> str:
    iv = s.intervals[n]
    end = iv.end or max(open_end, iv.start)
    lines = [f"{iv.state}: {_who(s)} on {s.host}, session {_sid(s)}",
             f"from   {_t(iv.start)}" + ("" if n or s.logon else " (first seen)"),
             f"to     {_t(end)}" + ("" if iv.end else " (still)" if live else " (last record)"),
             f"length {format_duration(end - iv.start)}"]
    if iv.state == CONNECTED:
        client = " ".join(x for x in (iv.client_name, f"({iv.client_address})"
                                      if iv.client_address else "") if x)
        lines.append(f"client {client or 'local'}")
    return "\n".join(lines)


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2433;
background:#fff}
header{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid #d8dde6}
.top{display:flex;flex-wrap:wrap;gap:8px 24px;align-items:center;padding:10px 16px 6px}
h1{font-size:17px;margin:0;font-weight:600}
.summary{color:#5a6477}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;align-items:center;color:#3b4458}
.legend span{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;width:28px;height:12px;border-radius:2px}
input{font:inherit;padding:3px 8px;border:1px solid #c3cad6;border-radius:4px;width:220px}
.axis{display:flex;height:24px}
.axis .label{font-weight:600;color:#5a6477;padding-top:4px}
.label{flex:0 0 var(--lw);width:var(--lw);padding:0 10px 0 16px;white-space:nowrap;
overflow:hidden;text-overflow:ellipsis}
.track{position:relative;flex:1 1 auto;margin-right:var(--rm)}
.tick{position:absolute;top:5px;transform:translateX(-50%);font-size:11px;color:#5a6477;
white-space:nowrap}
.chart{position:relative}
.grid{position:absolute;top:0;bottom:0;left:var(--lw);right:var(--rm);pointer-events:none}
.grid i{position:absolute;top:0;bottom:0;border-left:1px solid #eef0f4}
.hostrow{position:relative;padding:6px 16px 2px;font-weight:600;background:#f6f7fa;
border-top:1px solid #e3e7ee;color:#3b4458}
.row{position:relative;display:flex;height:22px;align-items:center}
.row:hover{background:#f3f6fb}
.row .label{cursor:default}
.user{font-weight:500}
.sid{color:#7a8396}
.bar{position:absolute;top:4px;height:14px;min-width:2px}
.bar.connected{background:VAR_C}
.bar.disconnected{background:repeating-linear-gradient(135deg,VAR_D 0 4px,VAR_P 4px 8px);
box-shadow:inset 0 0 0 1px VAR_D}
.bar.open{border-right:0;-webkit-mask-image:linear-gradient(90deg,#000 calc(100% - 14px),
rgba(0,0,0,.25));mask-image:linear-gradient(90deg,#000 calc(100% - 14px),rgba(0,0,0,.25))}
.bar.unknown{-webkit-mask-image:linear-gradient(90deg,rgba(0,0,0,.25),#000 14px);
mask-image:linear-gradient(90deg,rgba(0,0,0,.25),#000 14px)}
.end{position:absolute;top:2px;height:18px;width:2px;background:#1d2433}
.why{position:absolute;top:3px;font-size:11px;color:#5a6477;white-space:nowrap;padding:0 5px}
.why.syn{font-style:italic}
.why.still{color:VAR_C}
.row .track{height:22px}
.clip{position:absolute;top:0;bottom:0;left:0;right:0;overflow:hidden}
#sel{position:fixed;top:0;bottom:0;display:none;background:rgba(47,109,181,.12);
border:1px solid rgba(47,109,181,.5);pointer-events:none;z-index:6}
button{font:inherit;padding:2px 8px;border:1px solid #c3cad6;border-radius:4px;background:#f6f7fa}
#tip{position:fixed;z-index:10;display:none;white-space:pre;font:12px/1.4 ui-monospace,
"DejaVu Sans Mono",monospace;background:#1d2433;color:#fff;padding:6px 9px;border-radius:4px;
box-shadow:0 2px 8px rgba(0,0,0,.25);pointer-events:none;max-width:90vw;overflow:hidden}
.empty{padding:24px 16px;color:#5a6477}
footer{padding:10px 16px;color:#7a8396;font-size:11px}
"""

_JS = """
(function(){
var B=document.body,LO=+B.dataset.lo,HI=+B.dataset.hi,lo=LO,hi=HI;
var STEPS=[60,300,600,900,1800,3600,7200,10800,21600,43200,86400,172800,604800,1209600,
  2592000,7862400,15724800,31536000];
function p2(n){return (n<10?'0':'')+n;}
function ticks(){
  var span=Math.max(hi-lo,1),step=STEPS[STEPS.length-1],i,out=[],prev=null;
  for(i=0;i<STEPS.length;i++){if(span/STEPS[i]<=12){step=STEPS[i];break;}}
  for(var t=(Math.floor(lo/step)+1)*step;t<=hi;t+=step){
    var d=new Date(t*1000),day=d.getUTCFullYear()+'-'+p2(d.getUTCMonth()+1)+'-'+p2(d.getUTCDate()),
      hm=p2(d.getUTCHours())+':'+p2(d.getUTCMinutes()),label;
    if(step>=86400)label=day;else if(prev!==day)label=day.slice(5)+' '+hm;else label=hm;
    prev=day;out.push([t,label]);}
  return out;}
function pct(t){return (t-lo)/(hi-lo)*100;}
function place(){
  document.querySelectorAll('.chart [data-s]').forEach(function(el){
    var s=+el.dataset.s,x=pct(s);el.style.left=x+'%';
    if(el.dataset.e!==undefined)el.style.width=Math.max(pct(+el.dataset.e)-x,0)+'%';
    if(el.classList.contains('why'))el.style.display=(x<0||x>100)?'none':'';});
  var axis=document.getElementById('axis'),grid=document.getElementById('grid');
  axis.textContent='';grid.textContent='';
  ticks().forEach(function(tk){var x=pct(tk[0])+'%',a=document.createElement('span');
    a.className='tick';a.style.left=x;a.textContent=tk[1];axis.appendChild(a);
    var g=document.createElement('i');g.style.left=x;grid.appendChild(g);});
  var zoomed=!(lo===LO&&hi===HI);
  document.getElementById('reset').style.display=zoomed?'':'none';
  try{history.replaceState(null,'',zoomed?'#zoom='+lo.toFixed(0)+','+hi.toFixed(0):'#');}
  catch(e){}}
var tip=document.getElementById('tip'),sel=document.getElementById('sel'),drag=null;
function frac(x){var r=document.getElementById('axis').getBoundingClientRect();
  return Math.min(Math.max((x-r.left)/r.width,0),1);}
document.addEventListener('mousedown',function(ev){
  if(ev.button!==0||!ev.target.closest('.track'))return;
  drag={x:ev.clientX};ev.preventDefault();});
document.addEventListener('mousemove',function(ev){
  if(drag){var r=document.getElementById('axis').getBoundingClientRect(),
    a=Math.max(Math.min(drag.x,ev.clientX),r.left),b=Math.min(Math.max(drag.x,ev.clientX),r.right);
    sel.style.display='block';sel.style.left=a+'px';sel.style.width=Math.max(b-a,0)+'px';
    tip.style.display='none';return;}
  var el=ev.target.closest&&ev.target.closest('[data-tip]');
  if(!el){tip.style.display='none';return;}
  tip.textContent=el.getAttribute('data-tip');
  tip.style.display='block';
  var x=ev.clientX+14,y=ev.clientY+14,w=tip.offsetWidth,h=tip.offsetHeight;
  if(x+w>innerWidth-4)x=Math.max(4,ev.clientX-w-14);
  if(y+h>innerHeight-4)y=Math.max(4,ev.clientY-h-14);
  tip.style.left=x+'px';tip.style.top=y+'px';});
document.addEventListener('mouseup',function(ev){
  if(!drag)return;var a=frac(Math.min(drag.x,ev.clientX)),b=frac(Math.max(drag.x,ev.clientX));
  drag=null;sel.style.display='none';
  if(b-a>0.005){var w=hi-lo;hi=lo+b*w;lo=lo+a*w;place();}});
function reset(){lo=LO;hi=HI;place();}
document.addEventListener('dblclick',function(ev){if(ev.target.closest('.chart,.axis'))reset();});
document.getElementById('reset').addEventListener('click',reset);
var m=/zoom=(\\d+(?:\\.\\d*)?),(\\d+(?:\\.\\d*)?)/.exec(location.hash);
if(m&&+m[2]>+m[1]){lo=+m[1];hi=+m[2];place();}
var box=document.getElementById('q');
box.addEventListener('input',function(){
  var q=box.value.toLowerCase(),n=0;
  document.querySelectorAll('.row').forEach(function(r){
    var hit=r.getAttribute('data-search').indexOf(q)>=0;
    r.style.display=hit?'':'none';if(hit)n++;});
  document.querySelectorAll('.hostrow').forEach(function(h){
    var any=false,e=h.nextElementSibling;
    while(e&&e.classList.contains('row')){if(e.style.display!=='none')any=true;
      e=e.nextElementSibling;}
    h.style.display=any?'':'none';});
  document.getElementById('shown').textContent=q?(n+' shown'):'';});
})();
"""


class _Scale:
    """Times -> percent of the track, and the epoch seconds the page's script zooms with."""

    def __init__(self, lo: datetime, hi: datetime) -> None:
        self.lo, self.hi = lo, hi
        self.width = max((hi - lo).total_seconds(), 1.0)

    def pct(self, t: datetime) -> float:
        return (t - self.lo).total_seconds() / self.width * 100

    def at(self, t: datetime, end: datetime | None = None) -> str:
        """``data-s``/``data-e`` and the initial ``style`` of an element from ``t`` (to ``end``)."""
        x = self.pct(t)
        if end is None:
            return f'data-s="{t.timestamp():.3f}" style="left:{x:.3f}%"'
        w = max(self.pct(end) - x, 0.0)
        return (f'data-s="{t.timestamp():.3f}" data-e="{end.timestamp():.3f}" '
                f'style="left:{x:.3f}%;width:{w:.3f}%"')


def _row(s: SessionSpan, scale: _Scale, open_end: datetime, live: bool) -> str:
    a = escape
    who, sid = _who(s, full=False), _sid(s)
    search = " ".join([s.host, _who(s), sid, s.tty or "", *s.clients]).lower()
    parts = [f'<div class="row" data-search="{a(search)}">'
             f'<div class="label" data-tip="{a(_session_tip(s, open_end, live))}">'
             f'<span class="user">{a(who)}</span> <span class="sid">{a(sid)}</span></div>'
             '<div class="track"><div class="clip">']
    for n, iv in enumerate(s.intervals):
        cls: str = iv.state
        if iv.end is None:
            cls += " open"
        if n == 0 and s.logon is None:
            cls += " unknown"
        end = iv.end or max(open_end, iv.start)
        parts.append(f'<div class="bar {cls}" {scale.at(iv.start, end)}'
                     f' data-tip="{a(_interval_tip(s, n, open_end, live))}"></div>')
    label = ""
    if s.logoff is not None:
        why = s.logoff_reason or ("" if s.synthesized else "logoff")
        if s.synthesized:
            why = f"{why}*" if why else "synthesized"
        syn = " syn" if s.synthesized else ""
        parts.append(f'<div class="end" {scale.at(s.logoff)}></div>')
        label = f'<span class="why{syn}" {scale.at(s.logoff)}>{a(why)}</span>'
    else:
        text = "still open" if live else "open at the last record"
        label = f'<span class="why still" {scale.at(open_end)}>{text}</span>'
    parts.append("</div>" + label)
    parts.append("</div></div>")
    return "".join(parts)


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


def _legend() -> str:
    return (
        '<div class="legend">'
        '<span><i class="sw bar connected" style="position:static"></i>connected</span>'
        '<span><i class="sw bar disconnected" style="position:static"></i>disconnected</span>'
        '<span><i class="sw bar connected open" style="position:static"></i>still open</span>'
        '<span><i class="sw bar connected unknown" style="position:static"></i>'
        "logon before the journal</span>"
        '<span><i class="sw" style="width:2px;height:16px;background:#1d2433"></i>'
        "logoff (reason; * = synthesized)</span>"
        "</div>"
    )


def render_html(
    spans: Sequence[SessionSpan], *, now: datetime | None = None,
    title: str = "pysens session timeline",
) -> str:
    """The whole page for ``spans``: one row per session, grouped by host, on a UTC time axis.

    Open sessions' bars run to ``now`` (default: the current time), or to the newest record
    when that is long before ``now`` (old logs). Drag across the chart to zoom, double-click to
    zoom out; type in the box to keep the matching rows.
    """
    now = now or datetime.now(UTC)
    a = escape
    open_end, live = _open_end(spans, now)
    lo = min((s.start for s in spans), default=open_end)
    hi = max((s.logoff or open_end for s in spans), default=open_end)
    pad = max((hi - lo) * 0.01, timedelta(seconds=30))
    scale = _Scale(lo - pad, hi + pad)
    by_host: dict[str, list[SessionSpan]] = {}
    for s in spans:
        by_host.setdefault(s.host, []).append(s)
    widest = max((len(_who(s, full=False)) + len(_sid(s)) for s in spans), default=20)
    label_width = min(widest * 7 + 40, 360)
    summary = (f"{len(spans)} session(s) on {len(by_host)} host(s), "
               f"{_t(lo)} to {_t(hi)} UTC")
    css = (_CSS.replace("VAR_C", COLORS["connected"]).replace("VAR_D", COLORS["disconnected"])
           .replace("VAR_P", COLORS["disconnected_pale"]))
    ticks = time_ticks(scale.lo, scale.hi)
    out = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{a(title)}</title><style>{css}</style></head>",
        f'<body style="--lw:{label_width}px;--rm:110px" data-lo="{scale.lo.timestamp():.3f}"'
        f' data-hi="{scale.hi.timestamp():.3f}"><header><div class="top">',
        f'<h1>{a(title)}</h1><span class="summary">{a(summary)}</span>',
        _legend(),
        '<span><input id="q" type="search" placeholder="filter: user, host, session, client">'
        ' <span id="shown" class="summary"></span> '
        '<button id="reset" style="display:none">zoom out</button></span></div>',
        '<div class="axis"><div class="label">user · session</div><div class="track" id="axis">',
    ]
    out += [f'<span class="tick" style="left:{scale.pct(t):.3f}%">{a(label)}</span>'
            for t, label in ticks]
    out.append('</div></div></header><div class="chart"><div class="grid" id="grid">')
    out += [f'<i style="left:{scale.pct(t):.3f}%"></i>' for t, _ in ticks]
    out.append("</div>")
    if not spans:
        out.append('<div class="empty">No sessions.</div>')
    for host in sorted(by_host):
        rows = sorted(by_host[host], key=lambda s: (s.start, s.session_id or ""))
        out.append(f'<div class="hostrow">{a(host)} <span class="sid">'
                   f"{len(rows)} session(s)</span></div>")
        out += [_row(s, scale, open_end, live) for s in rows]
    out.append(f'</div><div id="sel"></div><footer>Generated by pysens at {a(_t(now))} UTC. '
               "Hover a bar for its times and client; drag across the chart to zoom in, "
               "double-click to zoom out.</footer>")
    out.append(f'<div id="tip"></div><script>{_JS}</script></body></html>\n')
    return "".join(out)
