"""The journal: every event of this host, once, in order, in one SQLite file (WAL).

This package is the only code that writes SQL against that file: the events and their ``seq``
(:mod:`.events`), group commit for asyncio producers (:mod:`.writer`), the schema and its
migrations (:mod:`.schema`), persistent subscriptions, their cursors and the history marks
(:mod:`.subscriptions`), the queries a timeline window needs (:mod:`.window`), how an event is
stored (:mod:`.rows`, :mod:`.rowtext`), retention (:mod:`.retention`, :mod:`.limits`) and the
file's upkeep (:mod:`.maintenance`).
:class:`EventReader` is what read commands need of it, and of the fleet's store alike.
"""

from .events import AppendResult, Journal
from .reader import EventReader, OnBad
from .schema import MIGRATIONS, JournalError, JournalFull, default_journal_path
from .subscriptions import PersistentSubscription, SubscriptionError, SubscriptionStore
from .writer import JournalWriter

__all__ = [
    "MIGRATIONS",
    "AppendResult",
    "EventReader",
    "Journal",
    "JournalError",
    "JournalFull",
    "JournalWriter",
    "OnBad",
    "PersistentSubscription",
    "SubscriptionError",
    "SubscriptionStore",
    "default_journal_path",
]
