"""What observations mean in SENS terms: the one place for every rule (docs/events.md). Pure.

:class:`Tracker` applies the session rules (:mod:`.sessions`) and holds the network
(:mod:`.network`) and power (:mod:`.power`) rules beside them, so one ``feed()`` takes every
kind of observation a source reports.
"""

from .network import Connection, Destination, NetworkTracker
from .power import Power, PowerTracker
from .sessions import OpenSession, Tracker, is_user_session, session_key

__all__ = [
    "Connection",
    "Destination",
    "NetworkTracker",
    "OpenSession",
    "Power",
    "PowerTracker",
    "Tracker",
    "is_user_session",
    "session_key",
]
