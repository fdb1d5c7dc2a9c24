"""The daemon (``sens serve``): :mod:`.service` wires sources -> tracker -> journal ->
subscribers, sinks and forwarders; :mod:`.config` reads its file; the local socket is
:mod:`.protocol` (the requests), :mod:`.server` (the daemon's side) and :mod:`.client` (the
``sens`` commands' side)."""

from .client import AsyncDaemonClient, DaemonClient
from .protocol import DaemonError, SocketBackend, default_socket_path

__all__ = [
    "AsyncDaemonClient",
    "DaemonClient",
    "DaemonError",
    "SocketBackend",
    "default_socket_path",
]
