"""Persistent subscriptions: their table in the journal database, with a cursor each.

A subscription has the COM+ Event System properties (docs/filters.md): ``name``, ``event_class``,
optional ``method`` (empty: every method of the class), optional ``criteria``, ``enabled``,
``per_user`` + ``owner``, ``parallel``, and a sink (``exec``, ``webhook``, ``jsonl``) with its
settings. Its cursor (``subscription:<id>`` in the journal's ``cursors`` table) is the ``seq`` it
has been delivered up to. A new subscription starts at the current end of the journal (only
what happens from now on), unless ``from_start`` asks for every journaled event.

Imported history is not delivered: ``sens import`` marks the seqs it adds as history in the
same transaction (unless ``--deliver``), and the delivery loop skips them.

The sink settings are stored as given: :func:`pysens.subscriptions.add_subscription` checks them
with the sink first (``sens subscriptions add`` goes through it).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..events import CLASS_METHODS, EventClass, format_time
from .events import Journal
from .rows import FLAG_HISTORY
from .schema import LAST_SEQ

__all__ = [
    "PersistentSubscription",
    "SubscriptionError",
    "SubscriptionStore",
    "cursor_name",
]


class SubscriptionError(ValueError):
    """A subscription cannot be added or changed; ``status`` is 2 for bad usage."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PersistentSubscription:
    """One stored subscription (a row of the ``subscriptions`` table); the in-process kind is
    :class:`pysens.eventsystem.Subscription`."""

    id: str
    name: str
    event_class: str
    sink: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    method: str | None = None
    criteria: str | None = None
    enabled: bool = True
    per_user: bool = False
    owner: str | None = None
    parallel: bool = False
    state: str = "ok"
    failures: int = 0
    last_error: str | None = None
    created: str = ""

    @property
    def cursor(self) -> str:
        """The name of its cursor in the journal."""
        return cursor_name(self.id)

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``sens subscriptions list --json`` (the secret is not shown)."""
        settings = dict(self.settings)
        if "secret" in settings:
            settings["secret"] = "***"  # noqa: S105 (hidden, not a password)
        return {
            "id": self.id, "name": self.name, "event_class": self.event_class,
            "method": self.method, "criteria": self.criteria, "enabled": self.enabled,
            "per_user": self.per_user, "owner": self.owner, "parallel": self.parallel,
            "sink": self.sink, "settings": settings, "state": self.state,
            "failures": self.failures, "last_error": self.last_error, "created": self.created,
        }


def cursor_name(subscription_id: str) -> str:
    """The journal cursor of the subscription with this id."""
    return f"subscription:{subscription_id}"


_COLUMNS = ("id, name, event_class, method, criteria, enabled, per_user, owner, parallel, sink, "
            "settings, state, failures, last_error, created")


def _row(r: tuple[Any, ...]) -> PersistentSubscription:
    return PersistentSubscription(
        id=r[0], name=r[1], event_class=r[2], method=r[3], criteria=r[4], enabled=bool(r[5]),
        per_user=bool(r[6]), owner=r[7], parallel=bool(r[8]), sink=r[9],
        settings=json.loads(r[10]), state=r[11], failures=r[12], last_error=r[13], created=r[14],
    )


def _event_class(name: str) -> EventClass:
    for c in EventClass:
        if c.value.lower() == name.lower():
            return c
    raise SubscriptionError(
        f"unknown event class {name!r}; known classes are: "
        + ", ".join(c.value for c in EventClass), 2)


class SubscriptionStore:
    """The subscriptions of one journal (its own connection to the same SQLite file)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._db = sqlite3.connect(
            str(journal.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # -- changes from the command line ------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        event_class: str,
        sink: str,
        settings: Mapping[str, Any],
        method: str | None = None,
        criteria: str | None = None,
        per_user: bool = False,
        owner: str | None = None,
        parallel: bool = False,
        enabled: bool = True,
        from_start: bool = False,
        timeout: float | None = None,
    ) -> PersistentSubscription:
        """Store a new subscription; it receives events journaled from now on (or every
        journaled event with ``from_start``). Bad values raise :class:`SubscriptionError`; the
        sink ``settings`` are stored as given (``add_subscription`` checks them first)."""
        if not name or not name.strip() or not name.isprintable():
            raise SubscriptionError("a subscription needs a printable name", 2)
        cls = _event_class(event_class)
        if method:
            known = {m.value.lower(): m.value for m in CLASS_METHODS[cls]}
            if method.replace("_", "").lower() not in {k.lower() for k in known}:
                raise SubscriptionError(
                    f"{cls.value} has no method {method!r}; its methods are: "
                    + ", ".join(known.values()), 2)
            method = known[method.replace("_", "").lower()]
        if criteria is not None and criteria.strip():
            from ..criteria import CriteriaError, compile_criteria

            try:
                compile_criteria(criteria)
            except CriteriaError as e:
                raise SubscriptionError(f"bad criteria: {e}", 2) from None
        else:
            criteria = None
        if per_user and not owner:
            raise SubscriptionError("a per-user subscription needs its owner's user name", 2)
        settings = dict(settings)
        if timeout is not None:
            settings["timeout"] = float(timeout)
        sub = PersistentSubscription(
            id=str(uuid.uuid4()), name=name, event_class=cls.value, method=method or None,
            criteria=criteria, enabled=enabled, per_user=per_user, owner=owner if per_user else
            None, parallel=parallel, sink=sink, settings=settings,
            created=format_time(datetime.now(UTC)),
        )
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM subscriptions WHERE name = ?", (name,)).fetchone():
                    raise SubscriptionError(f"a subscription named {name!r} exists already")
                db.execute(
                    f"INSERT INTO subscriptions({_COLUMNS}) VALUES "  # noqa: S608 - placeholders only; the SQL text is this module's own
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (sub.id, sub.name, sub.event_class, sub.method, sub.criteria, sub.enabled,
                     sub.per_user, sub.owner, sub.parallel, sub.sink, json.dumps(settings),
                     sub.state, 0, None, sub.created),
                )
                start = 0 if from_start else int(
                    db.execute(LAST_SEQ).fetchone()[0])
                db.execute("INSERT OR REPLACE INTO cursors(name, seq) VALUES (?, ?)",
                           (sub.cursor, start))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return sub

    def remove(self, name: str) -> PersistentSubscription:
        """Delete a subscription and its cursor."""
        sub = self.get(name)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM subscriptions WHERE id = ?", (sub.id,))
            self._db.execute("DELETE FROM cursors WHERE name = ?", (sub.cursor,))
            self._db.execute("COMMIT")
        return sub

    def set_enabled(self, name: str, enabled: bool) -> PersistentSubscription:
        """Enable (which also clears a ``failing`` state: delivery resumes from the cursor) or
        disable (delivery pauses; the cursor stays where it is)."""
        sub = self.get(name)
        if enabled:
            self._exec("UPDATE subscriptions SET enabled = 1, state = 'ok', failures = 0 "
                       "WHERE id = ?", (sub.id,))
        else:
            self._exec("UPDATE subscriptions SET enabled = 0 WHERE id = ?", (sub.id,))
        return self.get(sub.id)

    # -- reading ------------------------------------------------------------------------------

    def list(self) -> list[PersistentSubscription]:
        """Every subscription, by name."""
        return [_row(r) for r in self._exec(f"SELECT {_COLUMNS} FROM subscriptions ORDER BY name")]  # noqa: S608 - placeholders only; the SQL text is this module's own

    def get(self, name_or_id: str) -> PersistentSubscription:
        """The subscription with this name (or id); SubscriptionError when there is none."""
        rows = self._exec(f"SELECT {_COLUMNS} FROM subscriptions WHERE name = ? OR id = ?",  # noqa: S608 - placeholders only; the SQL text is this module's own
                          (name_or_id, name_or_id))
        if not rows:
            raise SubscriptionError(f"there is no subscription named {name_or_id!r}")
        return _row(rows[0])

    def signature(self) -> tuple[tuple[str, bool, str], ...]:
        """What the daemon compares to notice changes made by ``sens subscriptions``."""
        return tuple((r[0], bool(r[1]), r[2]) for r in self._exec(
            "SELECT id, enabled, state FROM subscriptions ORDER BY id"))

    # -- the delivery loop's bookkeeping ------------------------------------------------------

    def set_cursors(self, cursors: Mapping[str, int]) -> None:
        """Save several subscriptions' cursors in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO cursors(name, seq) VALUES (?, ?) ON CONFLICT(name) "
                    "DO UPDATE SET seq = excluded.seq", list(cursors.items()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def history_seqs(self, after: int, upto: int) -> set[int]:
        """The seqs in ``(after, upto]`` marked as history (not delivered)."""
        return {int(r[0]) for r in self._exec(
            f"SELECT seq FROM events WHERE seq > ? AND seq <= ? AND flags & {FLAG_HISTORY}",  # noqa: S608 - a constant; the SQL text is this module's own
            (after, upto))}

    def record_success(self, sub_id: str) -> None:
        """Deliveries work again: failures reset (the last error stays visible)."""
        self._exec("UPDATE subscriptions SET failures = 0, state = 'ok' WHERE id = ? AND "
                   "(failures != 0 OR state != 'ok')", (sub_id,))

    def record_failure(self, sub_id: str, error: str, *, failing: bool) -> int:
        """Count one failed attempt; ``failing`` pauses delivery until ``enable``."""
        self._exec(
            "UPDATE subscriptions SET failures = failures + 1, last_error = ?, state = ? "
            "WHERE id = ?", (error, "failing" if failing else "ok", sub_id))
        rows = self._exec("SELECT failures FROM subscriptions WHERE id = ?", (sub_id,))
        return int(rows[0][0]) if rows else 0
