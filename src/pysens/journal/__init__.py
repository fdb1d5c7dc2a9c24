"""The journal: every event of this host, once, in order, in one SQLite file (WAL).

This package is the only code that writes SQL against that file: the events and their ``seq``
(:mod:`.events`), group commit for asyncio producers (:mod:`.writer`), the schema and its
migrations (:mod:`.schema`), persistent subscriptions, their cursors and the history marks
(:mod:`.subscriptions`), and the queries a timeline window needs (:mod:`.window`).
:class:`EventReader` is what read commands need of it, and of the fleet's store alike.
"""

from .events import AppendResult, Journal
from .reader import EventReader, OnBad
from .schema import MIGRATIONS, JournalError, default_journal_path
from .subscriptions import PersistentSubscription, SubscriptionError, SubscriptionStore
from .writer import JournalWriter

__all__ = [
    "MIGRATIONS",
    "AppendResult",
    "EventReader",
    "Journal",
    "JournalError",
    "JournalWriter",
    "OnBad",
    "PersistentSubscription",
    "SubscriptionError",
    "SubscriptionStore",
    "default_journal_path",
]
