"""Events -> sessions with their connected / disconnected intervals, and their drawings: the text
table (:mod:`.text`) and the HTML page (:mod:`.html`). Building is pure (:mod:`.build`)."""

from .build import (
    CONNECTED,
    DISCONNECTED,
    LANE_METHODS,
    SESSION_METHODS,
    Interval,
    LogonPair,
    SessionSpan,
    build_timeline,
    event_key,
    format_duration,
    overlaps,
    pair_sessions,
)
from .text import format_intervals, timeline_table

__all__ = [
    "CONNECTED",
    "DISCONNECTED",
    "LANE_METHODS",
    "SESSION_METHODS",
    "Interval",
    "LogonPair",
    "SessionSpan",
    "build_timeline",
    "event_key",
    "format_duration",
    "format_intervals",
    "overlaps",
    "pair_sessions",
    "timeline_table",
]
