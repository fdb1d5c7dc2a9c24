"""At-least-once delivery of the journal to persistent subscriptions, one cursor each.

Each enabled subscription has a worker that reads the journal after its cursor, in ``seq``
order, picks the events it subscribed to, hands them to its sink and only then moves the cursor.
A crash between the two means a redelivery, never a loss. A failed delivery is retried with
exponential backoff (capped); after ``max_failures`` failures in a row the subscription is marked
``failing`` and paused until ``sens subscriptions enable``, which resumes from the cursor. One
subscription's trouble never holds up another: each worker runs on its own.

The manager learns of new events and of changes to the subscriptions when they happen, never by
a timer: the daemon wakes it for the events it journals itself, and a :class:`JournalWatch`
(inotify on the journal file) for every commit by another process — ``sens import --deliver``,
``sens publish`` while the daemon restarts, ``sens subscriptions`` — after which it asks the
journal what changed. Only where inotify is missing does it look once per ``poll`` seconds.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .aio import backoff_delay, wait_event
from .events import Method, SensEvent, fold_name
from .journal import Journal, PersistentSubscription, SubscriptionStore
from .journal.notify import JournalWatch
from .sinks import Sink, SinkError, make_sink
from .subscriptions import compile_subscription

__all__ = ["DeliveryManager", "DeliveryPolicy", "SubscriptionWorker"]

log = logging.getLogger(__name__)

#: (host, session_id) of each session a user has open; seeds per-user presence.
PresenceSeed = Callable[[str], set[tuple[str, str]]]

# After the journal file changed, how long its writes must pause before the last look.
_SETTLE = 0.05
# How many events a sink marked parallel may be handed at once, in separate slices.
_PARALLEL_SLICES = 8
# A worker hands its sink chunks sized to take about this long (seconds), and saves its cursor
# after each: a restart or crash repeats at most about this much work, not a whole batch of
# slow hook runs. Fast sinks (a file) soon get whole batches.
_CHUNK_TIME = 0.5


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard to try: time limit per delivery, retries, backoff and batch size."""

    max_failures: int = 5
    retry_initial: float = 1.0
    retry_max: float = 300.0
    timeout: float = 180.0
    batch: int = 500

    def backoff(self, failures: int) -> float:
        """The wait before retry number ``failures`` (1, 2, …): doubling, capped."""
        return backoff_delay(failures, self.retry_initial, self.retry_max)


class JournalTail:
    """The recent end of the journal, read and parsed once for every worker, and cursor saves
    gathered into one transaction. A worker further behind than the cache reads the journal
    itself.

    A cursor is saved behind the worker's back (:meth:`note_cursor`): the worker goes on with its
    next batch while the commit runs. That keeps at-least-once, since a cursor only ever names
    events already delivered; a crash before the commit means those are delivered again.
    """

    def __init__(self, journal: Journal, store: SubscriptionStore, keep: int = 20_000) -> None:
        self.journal = journal
        self.store = store
        self.keep = keep
        self.dirty = True
        self._events: list[SensEvent] = []
        self._seqs: list[int] = []
        self._history: set[int] = set()
        self._last = -1
        self._lock = asyncio.Lock()
        self._cursors: dict[str, int] = {}
        self._saving: asyncio.Task[None] | None = None
        self._save_failed = False

    def _fetch(self, after: int, limit: int | None) -> tuple[list[SensEvent], set[int]]:
        events = list(self.journal.query(after_seq=after, limit=limit))
        if not events:
            return [], set()
        return events, self.store.history_seqs(after, events[-1].seq or after)

    async def _refresh(self) -> None:
        async with self._lock:
            if not self.dirty:
                return
            self.dirty = False
            if self._last < 0:  # start at the end: workers behind it read the journal
                self._last = await asyncio.to_thread(self.journal.last_seq)
                return
            events, history = await asyncio.to_thread(self._fetch, self._last, self.keep)
            if not events:
                return
            self._events.extend(events)
            self._seqs.extend(e.seq or 0 for e in events)
            self._history |= history
            self._last = self._seqs[-1]
            if len(events) >= self.keep:
                self.dirty = True  # more than one read's worth came in
            self._trim()

    def push(self, events: Sequence[SensEvent]) -> bool:
        """Take ``events``, just journaled by this process, without reading them back: True when
        they follow on from what the tail holds (their seqs the next ones, none missing);
        otherwise the next read fetches them from the journal."""
        if not events or self._last < 0 or self._lock.locked():
            return False  # not started, or a read from the journal is on its way
        last = self._last
        seqs = [e.seq or 0 for e in events]
        if seqs[0] != last + 1 or seqs[-1] != last + len(seqs):
            return False  # another process's events came between (or some were known)
        self._events.extend(events)
        self._seqs.extend(seqs)
        self._last = last + len(seqs)
        self._trim()
        return True

    def _trim(self) -> None:
        if len(self._events) > self.keep:
            cut = len(self._events) - self.keep
            del self._events[:cut], self._seqs[:cut]
            low = self._seqs[0]
            self._history = {s for s in self._history if s >= low}

    async def read(self, cursor: int, limit: int) -> tuple[list[SensEvent], set[int]]:
        """Up to ``limit`` events after ``cursor``, and which of them are history."""
        await self._refresh()
        if (self._seqs and self._seqs[0] <= cursor + 1) or (not self._seqs and cursor >= self._last
                                                           >= 0):
            i = bisect.bisect_right(self._seqs, cursor)
            events = self._events[i : i + limit]
            return events, self._history
        return await asyncio.to_thread(self._fetch, cursor, limit)

    def note_cursor(self, name: str, seq: int) -> None:
        """Record ``name``'s progress; it is committed soon, with the others' (in order: a
        later note for a name replaces an earlier one not yet saved)."""
        self._cursors[name] = seq
        if self._saving is None or self._saving.done():
            self._saving = asyncio.create_task(self._save(), name="cursor saves")

    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a bound on a
        # shutdown, not a caller's deadline
        """Commit every cursor noted so far (waiting at most ``timeout`` seconds), then stop
        saving."""
        task = self._saving
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _save(self) -> None:
        while self._cursors:
            batch, self._cursors = self._cursors, {}
            try:
                await asyncio.to_thread(self.store.set_cursors, batch)
            except sqlite3.Error as e:
                # Kept for the next save: until one works, a restart delivers those again.
                self._cursors = {**batch, **self._cursors}
                if not self._save_failed:
                    log.warning("cannot save delivery cursors (%s); retrying", e)
                self._save_failed = True
                await asyncio.sleep(1.0)
                continue
            self._save_failed = False


class SubscriptionWorker:
    """Delivers the journal to one subscription until stopped or failing."""

    def __init__(
        self,
        sub: PersistentSubscription,
        journal: Journal,
        store: SubscriptionStore,
        policy: DeliveryPolicy,
        presence: PresenceSeed | None = None,
        tail: JournalTail | None = None,
    ) -> None:
        self.sub = sub
        self.tail = tail or JournalTail(journal, store)
        self.journal = journal
        self.store = store
        self.policy = policy
        self._wake = asyncio.Event()
        self._predicate = compile_subscription(sub)
        self._owner = fold_name(sub.owner)
        self._present: set[tuple[str, str]] = (
            presence(self._owner) if sub.per_user and presence is not None else set())
        self._pending_presence = self._present
        self.failures = sub.failures
        self.delivered = 0
        timeout = float(sub.settings.get("timeout") or policy.timeout)
        # Made here, so that stored settings this pysens cannot use stop the worker before it
        # starts (the manager marks it failing, naming why), not inside its loop.
        self.sink = make_sink(sub.sink, sub.settings, timeout=timeout)
        # A sink whose batch costs what one event does (a file: one write, one fsync) gets
        # whole batches; the others start with one event and grow to what takes _CHUNK_TIME.
        self._whole = bool(getattr(self.sink, "whole_batches", False))
        self._chunk = policy.batch if self._whole else 1

    def wake(self) -> None:
        """New events are in the journal."""
        self._wake.set()

    def _wanted(self, event: SensEvent, present: set[tuple[str, str]]) -> bool:
        # Per-user: delivered only while the owner has a session on this host (COM+). The
        # owner's own Logon counts as present, and so does their last Logoff.
        key = (event.host, event.session_id or "")
        mine = fold_name(event.user_name) == self._owner
        if mine and event.method is Method.Logon:
            present.add(key)
        wanted = bool(present)
        if mine and event.method is Method.Logoff:
            present.discard(key)
        return wanted and self._predicate(event)

    def _pick(
        self, events: list[SensEvent], history: set[int], cursor: int
    ) -> tuple[list[SensEvent], int, list[set[tuple[str, str]]]]:
        """The events to deliver after ``cursor``, the seq read up to, and (per-user only)
        the owner's presence after each of them."""
        if not events:
            return [], cursor, []
        todo: list[SensEvent] = []
        states: list[set[tuple[str, str]]] = []
        present = set(self._present)
        for e in events:
            if e.seq in history:
                continue
            if self.sub.per_user:
                if self._wanted(e, present):
                    todo.append(e)
                    states.append(set(present))
            elif self._predicate(e):
                todo.append(e)
        if self.sub.per_user:
            self._pending_presence = present
        return todo, events[-1].seq or cursor, states

    async def _deliver(self, sink: Sink, events: Sequence[SensEvent]) -> None:
        if not self.sub.parallel or len(events) < 2:
            await sink.deliver(events)
            return
        size = math.ceil(len(events) / _PARALLEL_SLICES)
        results = await asyncio.gather(
            *(sink.deliver(events[i : i + size]) for i in range(0, len(events), size)),
            return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                # Slices ran side by side: which came through is unknown, so all go again.
                raise SinkError(str(r), 0)

    async def run(self) -> None:
        """Deliver until cancelled, or until the subscription is marked failing."""
        sub = self.sub
        cursor = await asyncio.to_thread(self.journal.cursor, sub.cursor)
        try:
            while True:
                self._wake.clear()
                events, history = await self.tail.read(cursor, self.policy.batch)
                todo, upto, states = self._pick(events, history, cursor)
                if upto == cursor:
                    await self._wake.wait()
                    continue
                done = 0
                try:
                    while done < len(todo):
                        n = len(todo) - done
                        if not sub.parallel:
                            n = min(n, self._chunk)
                        began = time.monotonic()
                        await self._deliver(self.sink, todo[done : done + n])
                        self._resize(n, time.monotonic() - began)
                        done += n
                        self.delivered += n
                        if done < len(todo):
                            cursor = await self._advance(todo, states, done)
                except SinkError as e:
                    done += e.done
                    self.delivered += e.done
                    if sub.per_user:
                        # The owner's presence is known after each delivered event: the
                        # cursor goes to the last one, not past the events between it and the
                        # failed one (they may change the presence).
                        if done and todo[done - 1].seq != cursor:
                            cursor = await self._advance(todo, states, done)
                    else:
                        # Skip past what went through; the failed event is retried.
                        skip = (todo[done].seq or cursor + 1) - 1
                        if skip > cursor:
                            cursor = skip
                            self.tail.note_cursor(sub.cursor, cursor)
                    if await self._failed(str(e)):
                        return
                    continue
                cursor = upto
                self._present = self._pending_presence
                self.tail.note_cursor(sub.cursor, cursor)
                await self._succeeded()
        finally:
            await self.sink.aclose()

    async def _advance(self, todo: list[SensEvent], states: list[set[tuple[str, str]]],
                       done: int) -> int:
        """The first ``done`` events of ``todo`` went through: save the cursor at the last of
        them (with the owner's presence after it); the new cursor."""
        cursor = todo[done - 1].seq or 0
        if states:
            self._present = states[done - 1]
        self.tail.note_cursor(self.sub.cursor, cursor)
        await self._succeeded()
        return cursor

    def _resize(self, n: int, took: float) -> None:
        """Size the next chunk from how long ``n`` events took."""
        if self._whole:
            return
        if took < _CHUNK_TIME / 2 and n >= self._chunk:
            self._chunk = min(self.policy.batch, self._chunk * 2)
        elif took > _CHUNK_TIME:
            self._chunk = max(1, int(n * _CHUNK_TIME / took))

    async def _succeeded(self) -> None:
        if self.failures:
            self.failures = 0
            await asyncio.to_thread(self.store.record_success, self.sub.id)

    async def _failed(self, error: str) -> bool:
        self.failures += 1
        failing = self.failures >= self.policy.max_failures
        await asyncio.to_thread(self.store.record_failure, self.sub.id, error, failing=failing)
        if failing:
            log.warning("subscription %r is failing after %d attempts (%s); delivery paused "
                        "until 'sens subscriptions enable %s'", self.sub.name, self.failures,
                        error, self.sub.name)
            return True
        delay = self.policy.backoff(self.failures)
        log.info("subscription %r: %s; retry %d in %.3g s", self.sub.name, error,
                 self.failures, delay)
        await asyncio.sleep(delay)
        return False


class DeliveryManager:
    """Runs one worker per enabled, healthy subscription and follows changes to the table."""

    def __init__(
        self,
        journal: Journal,
        store: SubscriptionStore,
        policy: DeliveryPolicy | None = None,
        presence: PresenceSeed | None = None,
        poll: float = 1.0,
    ) -> None:
        self.journal = journal
        self.store = store
        self.policy = policy or DeliveryPolicy()
        self.presence = presence
        self.poll = poll
        self.workers: dict[str, tuple[SubscriptionWorker, asyncio.Task[None]]] = {}
        self._signature: object = None
        self._stir = asyncio.Event()  # something to do: one of the two flags below is up
        self._reload = False  # re-read the subscriptions
        self._look = False  # the journal file changed: ask what changed
        self._seen = -1  # the last seq the workers were woken for
        self._syncing = asyncio.Lock()
        self.tail = JournalTail(journal, store)
        #: True while the journal file is watched (False: no inotify here, polling instead).
        self.watching = False

    def wake(self, events: Sequence[SensEvent] = ()) -> None:
        """New events were journaled: ``events``, when this process journaled them (with their
        seqs, in order), are handed to the workers as they are, not read back."""
        if events:
            self._seen = max(self._seen, events[-1].seq or 0)
        if not self.tail.push(events):
            self.tail.dirty = True
        for worker, _ in self.workers.values():
            worker.wake()

    def reload(self) -> None:
        """Re-read the subscriptions now (``sens subscriptions`` changed them)."""
        self._reload = True
        self._stir.set()

    def _noticed(self) -> None:
        self._look = True
        self._stir.set()

    async def sync(self) -> None:
        """Start and stop workers to match the stored subscriptions."""
        # One at a time: the poll loop and a client's reload may both ask, and two passes
        # side by side would start two workers for one subscription.
        async with self._syncing:
            await self._sync()

    async def _sync(self) -> None:
        subs = await asyncio.to_thread(self.store.list)
        self._signature = await asyncio.to_thread(self.store.signature)
        wanted = {s.id: s for s in subs if s.enabled and s.state == "ok"}
        ended = set()
        for sub_id in list(self.workers):
            worker, task = self.workers[sub_id]
            if sub_id not in wanted or task.done():
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                else:
                    ended.add(sub_id)
                del self.workers[sub_id]
        for sub_id, sub in wanted.items():
            if sub_id in self.workers or sub_id in ended:
                # A worker that ended (marked failing) may have done so after the table was
                # read: restarting it from that stale row would try once more than allowed.
                # Its end asked for another pass, which reads the table afresh.
                continue
            try:
                worker = SubscriptionWorker(sub, self.journal, self.store, self.policy,
                                            self.presence, self.tail)
            except (ValueError, TypeError, ImportError) as e:  # stored criteria, a class or a
                # sink this pysens cannot read
                await asyncio.to_thread(
                    self.store.record_failure, sub.id, f"cannot start: {e}", failing=True)
                continue
            task = asyncio.create_task(self._guard(worker), name=f"subscription {sub.name}")
            self.workers[sub_id] = (worker, task)

    async def _guard(self, worker: SubscriptionWorker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not stop the other subscriptions
            log.exception("subscription %r stopped", worker.sub.name)
            await asyncio.to_thread(self.store.record_failure, worker.sub.id,
                                    f"internal error: {e}", failing=True)
        self.reload()

    def _state(self) -> tuple[int, object]:
        return self.journal.last_seq(), self.store.signature()

    async def run(self) -> None:
        """Follow the journal and the subscriptions table until cancelled."""
        watch = JournalWatch(self.journal.path, self._noticed)
        self.watching = watch.start()
        if not self.watching:
            log.info("no inotify here: looking for other processes' changes to the journal "
                     "every %g s", self.poll)
        try:
            await self.sync()
            seq = await asyncio.to_thread(self.journal.last_seq)
            self._seen = max(self._seen, seq)
            settle = False
            while True:
                if not self.watching:
                    if not await wait_event(self._stir, self.poll):
                        self._look = True
                elif settle:
                    # SQLite writes a commit's frames to the -wal, then makes them visible in
                    # its -shm index, which inotify does not see: a look at the last write may
                    # come too soon. So once the writes stop for a moment, one look more.
                    settle = await wait_event(self._stir, _SETTLE)
                    self._look = True
                else:
                    await self._stir.wait()
                    settle = self._look
                self._stir.clear()
                if self._look:
                    # Events journaled by another process (`sens import --deliver`, a publish
                    # while the daemon was restarting) wake the workers; a commit that was our
                    # own (a cursor, an event we woke them for already) changes nothing here.
                    self._look = False
                    seq, signature = await asyncio.to_thread(self._state)
                    if seq > self._seen:
                        self._seen = seq
                        self.wake()
                    if signature != self._signature:
                        self._reload = True
                if self._reload:
                    self._reload = False
                    await self.sync()
        finally:
            watch.close()
            self.watching = False

    async def aclose(self) -> None:
        """Stop every worker, and save the cursors of what they delivered."""
        tasks = [t for _, t in self.workers.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.workers.clear()
        await self.tail.flush()
