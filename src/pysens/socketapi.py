"""Moved to :mod:`pysens.daemon` (protocol, server, client); this path keeps working until the
next release (a DeprecationWarning says so)."""

from pysens._deprecated import moved

__getattr__ = moved(__name__, "pysens.daemon", {
    "SocketServer": "pysens.daemon.server:SocketServer",
    "peer_credentials": "pysens.daemon.server:peer_credentials",
})
