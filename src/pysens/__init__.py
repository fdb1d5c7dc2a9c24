"""pysens: a System Event Notification Service for Python.

Know the moment a user logs on, logs off, disconnects from or reconnects to a session, on one
machine and across a fleet, and act on it. See SPEC §6 for the API::

    from pysens import EventSystem, SensEvent

    es = EventSystem()
    es.subscribe(print, event_class="ISensLogon2", criteria="bstrUserName = 'alice'")
    es.fire(SensEvent(method="SessionReconnect", user_name="alice", session_id="3"))
"""

from .criteria import Criteria, CriteriaError, compile_criteria
from .events import EventClass, EventError, Method, SensEvent
from .eventsystem import EventSystem, FireResult, Subscription
from .interfaces import SensLogon, SensLogon2, SensNetwork, SensOnNow
from .journal import Journal, JournalError
from .observations import (
    HostReset,
    SessionAppeared,
    SessionChanged,
    SessionInfo,
    SessionRecord,
    SessionVanished,
)
from .tracker import OpenSession, Tracker

__all__ = [
    "Criteria",
    "CriteriaError",
    "EventClass",
    "EventError",
    "EventSystem",
    "FireResult",
    "HostReset",
    "Journal",
    "JournalError",
    "Method",
    "OpenSession",
    "SensEvent",
    "SensLogon",
    "SensLogon2",
    "SensNetwork",
    "SensOnNow",
    "SessionAppeared",
    "SessionChanged",
    "SessionInfo",
    "SessionRecord",
    "SessionVanished",
    "Subscription",
    "Tracker",
    "compile_criteria",
]

__version__ = "0.1.0"
