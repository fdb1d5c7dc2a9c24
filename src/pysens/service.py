"""Moved to :mod:`pysens.daemon.service`; this path keeps working until the next release (a
DeprecationWarning says so)."""

from pysens._deprecated import moved

__getattr__ = moved(__name__, "pysens.daemon.service")
