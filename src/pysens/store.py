"""Moved to :mod:`pysens.fleet.store`; this path keeps working until the next release (a
DeprecationWarning says so)."""

from pysens._deprecated import moved

__getattr__ = moved(__name__, "pysens.fleet.store")
