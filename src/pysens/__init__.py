"""pysens: a System Event Notification Service for Python.

Know the moment a user logs on, logs off, disconnects or reconnects, the display locks, the
network comes or goes, a server becomes reachable or the machine goes to battery -- on one
machine and across a fleet -- and act on it::

    import pysens

    for event in pysens.watch():                    # this host, from what it has
        print(event.method, event.user_name)

    es = pysens.EventSystem()                       # COM+-style subscriptions with filters
    es.subscribe(print, event_class="ISensLogon2", criteria="bstrUserName = 'alice'")
    for event in pysens.watch():
        es.fire(event)

The reference is in the project's ``docs/`` folder (events, filters, the CLI, the API).
"""

from typing import Any

from ._deprecated import moved
from .criteria import Criteria, CriteriaError, compile_criteria
from .events import EventClass, EventError, Method, SensEvent
from .eventsystem import EventSystem, FireResult, Subscription
from .interfaces import SensLogon, SensLogon2, SensNetwork, SensOnNow
from .journal import Journal, JournalError
from .live import awatch, watch
from .sources import Source, SourceUnavailable, detect, open_source
from .tracker import Tracker

__all__ = [
    "Criteria",
    "CriteriaError",
    "EventClass",
    "EventError",
    "EventSystem",
    "FireResult",
    "Journal",
    "JournalError",
    "Method",
    "SensEvent",
    "SensLogon",
    "SensLogon2",
    "SensNetwork",
    "SensOnNow",
    "Source",
    "SourceUnavailable",
    "Subscription",
    "Tracker",
    "awatch",
    "compile_criteria",
    "detect",
    "open_source",
    "watch",
]

__version__ = "0.2.0"

# pysens 0.1 exported the observation types and the tracker's table here: they live in
# pysens.observations and pysens.tracker (a source author's plumbing, not every user's).
_OLD = {name: f"pysens.observations:{name}" for name in (
    "HostReset", "SessionAppeared", "SessionChanged", "SessionInfo", "SessionRecord",
    "SessionVanished")}
_OLD["OpenSession"] = "pysens.tracker:OpenSession"
_old = moved(__name__, "pysens", _OLD)


def __getattr__(name: str) -> Any:
    if name in _OLD:
        return _old(name)
    raise AttributeError(f"module 'pysens' has no attribute {name!r}")
