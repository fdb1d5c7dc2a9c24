"""Text for terminals: escaping what events carry, one line per event, aligned tables.

Every string an event carries (a user name, a client name, an interface name) may hold control
characters; they are shown as escapes here, never interpreted by the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence

from .events import CONNECTION_WAN, EventClass, SensEvent, format_time

__all__ = ["align", "escape", "event_line", "format_speed"]


def escape(value: object) -> str:
    """Printable text for a terminal: control characters shown as escapes, never interpreted."""
    s = "-" if value is None else str(value)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def format_speed(bits: int | None) -> str:
    """``10 Gb/s``, ``100 Mb/s``, ``56 kb/s`` (``-`` when unknown)."""
    if bits is None:
        return "-"
    for unit, size in (("Gb/s", 10**9), ("Mb/s", 10**6), ("kb/s", 10**3)):
        if bits >= size:
            value = bits / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{bits} b/s"


def event_line(e: SensEvent) -> str:
    """One human-readable line for an event (like ``journalctl``'s short output)."""
    parts = [format_time(e.time)[:-8] + "Z", escape(e.host), f"{e.method!s:<17}"]
    if EventClass.ISensNetwork in e.classes:
        if e.destination is not None:
            parts.append(escape(e.destination))
            parts.append(f"via={escape(e.connection)}")
        else:
            parts.append(escape(e.connection))
        if e.connection_type is not None:
            parts.append("type=" + ("WAN" if e.connection_type == CONNECTION_WAN else "LAN"))
        if e.qoc:
            parts.append(f"speed={format_speed(e.qoc.get('in_speed'))}".replace(" ", ""))
    elif EventClass.ISensOnNow in e.classes:
        if e.battery_percent is not None:
            parts.append(f"battery={e.battery_percent}%")
    else:
        who = escape(e.user_name)
        if e.domain:
            who = f"{escape(e.domain)}\\{who}"
        parts.append(who)
        parts.append(f"session={escape(e.session_id)}")
        for label, value in (("tty", e.tty), ("seat", e.seat), ("from", e.client_address or (
                e.client_name if e.remote else None))):
            if value:
                parts.append(f"{label}={escape(value)}")
    if e.reason:
        parts.append(f"reason={escape(e.reason)}")
    if e.synthesized:
        parts.append("(synthesized)")
    return " ".join(parts)


def align(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` (the header first, every cell already escaped) as lines of aligned columns."""
    if not rows:
        return []
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
