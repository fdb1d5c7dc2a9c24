"""The one place :mod:`pysens.web` takes the daemon's socket, the central store and the
timeline from, so that moving those modules means changing the imports here only."""

from __future__ import annotations

from ..socketapi import DaemonError, default_socket_path
from ..store import Store, StoreError, open_store
from ..timeline import SESSION_METHODS, SessionSpan, build_timeline, session_key
from ..timeline_html import COLORS, lane_point, span_model, timeline_assets

__all__ = [
    "COLORS",
    "SESSION_METHODS",
    "DaemonError",
    "SessionSpan",
    "Store",
    "StoreError",
    "build_timeline",
    "default_socket_path",
    "lane_point",
    "open_store",
    "session_key",
    "span_model",
    "timeline_assets",
]
