"""The fleet forwarder: this host's journal -> a NATS JetStream stream, nothing lost or doubled.

Each journaled event is published to ``<prefix>.<host>.<Method>`` (``sens.web01.Logon``) with
the header ``Nats-Msg-Id`` set to the event id, so the stream drops a re-publish inside its
duplicate window. The forwarder keeps its own journal cursor (``forward:<first server>``) and
moves it only over the contiguous prefix of events whose PubAck has come back: many publishes
are in flight at once, and whatever was not acknowledged (a connection lost, a stream leader
being elected, an error reply) is published again from the cursor. While no server can be
reached the events simply wait in the journal.

The connection is nats-py's (:mod:`pysens.fleet.connection`): a seed list, the servers the
cluster announces, reconnecting to any live one, every way NATS authenticates. The publishes are
core NATS publishes whose reply subjects are ``<inbox>.<journal seq>``, and one wildcard
subscription takes every PubAck: no future per message (nats-py's ``publish_async`` costs three
times as much per event; see BENCHMARKS.md).

The stream is created when absent, with the configured retention, duplicate window and replicas
(``replicas = 3`` on a cluster); an existing stream's settings are its administrator's and are
never changed: a difference is said once, as a warning.

An event larger than the server's ``max_payload`` (or the stream's ``max_msg_size``) would be
refused on every retry and stall everything behind it: it goes out with its ``raw`` source
fields left out (a note says so), or, still too large, is not forwarded. So is a journal row
that no longer reads as an event. One log line each names the event, which stays in this
host's journal.

Waking up: the journal's file is watched (inotify, :class:`~pysens.journal.notify.JournalWatch`)
and whoever appends can call :meth:`Forwarder.notify` (``sens serve`` does); where inotify is
not available the journal's highest ``seq`` is read every ``poll_interval`` seconds.

Run one on its own: ``sens forward nats://HOST:PORT[,nats://HOST:PORT…] [--drain]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._deprecated import renamed as _renamed
from ..aio import Retry, wait_event
from ..events import EventError, SensEvent
from ..journal import Journal, JournalError
from ..journal.notify import JournalWatch
from .acks import AckHistory, ack_error, ack_seq
from .connection import (
    NatsRefused,
    NatsTarget,
    connect,
    connected_server,
    describe_failure,
    nats_errors,
    nats_target,
)
from .stream import (
    DEFAULT_PREFIX,
    DEFAULT_STREAM,
    StreamSettings,
    describe_differences,
    ensure_stream,
    host_token,
)

__all__ = ["Forwarder", "ForwarderStats"]

log = logging.getLogger("pysens.forward")

#: How long a forwarder with its journal watched waits before looking anyway (a write inotify
#: could not tell it about: a journal replaced under it).
_WATCHED_POLL = 2.0
#: After a wake-up that found nothing, one more look this much later: SQLite makes a commit
#: visible in its -shm index after the -wal write inotify reported.
_SETTLE = 0.05
#: How long a look at the stream during an outage waits for its answer (every 2 s of it).
_CHECK_TIMEOUT = 1.5


@dataclass(slots=True)
class ForwarderStats:
    """What a forwarder has done since it started."""

    published: int = 0
    acked: int = 0
    duplicates: int = 0
    connects: int = 0
    failures: int = 0
    cursor: int = 0
    #: times the unacknowledged events were published again (an ack timeout, a reconnect, an
    #: error reply)
    rewinds: int = 0
    #: times the stream was found to have started over (see :mod:`pysens.fleet.acks`)
    stream_resets: int = 0
    #: events over the server's (or stream's) message size, sent with their ``raw`` left out
    trimmed: int = 0
    #: events over it even so, or rows that no longer read as events: not forwarded (they stay
    #: in this host's journal)
    refused: int = 0


class _Lost(Exception):
    """The connection is gone for good (closed): connect again from the cursor."""


class Forwarder:
    """Ships ``journal`` to the JetStream reached at ``url``; :meth:`run` until
    :meth:`aclose`.

    ``url``: one NATS URL, a comma-separated seed list, or a list of them; the credentials and
    TLS keywords are :func:`~pysens.fleet.connection.nats_target`'s (a
    :class:`~pysens.fleet.connection.NatsTarget` may be given instead). ``host``: publish every
    event under this host token instead of the event's own host (a fleet may name its machines
    by UUID); the stored event keeps its own ``host`` field. ``replicas`` and the retention are
    the stream's when this forwarder creates it. ``max_in_flight`` publishes await their acks
    at once; when none comes back for ``ack_timeout`` seconds, the unacknowledged ones are
    published again.
    """

    def __init__(
        self,
        journal: Journal | str | Path,
        url: str | Sequence[str] | NatsTarget,
        *,
        host: str | None = None,
        stream: str = DEFAULT_STREAM,
        prefix: str = DEFAULT_PREFIX,
        replicas: int = 1,
        max_age: float | None = 30 * 24 * 3600.0,
        max_msgs: int | None = None,
        max_bytes: int | None = None,
        duplicate_window: float = 120.0,
        cursor: str | None = None,
        max_in_flight: int = 4000,
        batch: int = 1000,
        poll_interval: float = 0.2,
        ack_timeout: float = 1.0,
        backoff: tuple[float, float] = (0.2, 15.0),
        **connection: Any,
    ) -> None:
        if replicas < 1 or replicas > 5:
            raise ValueError(f"replicas must be 1 to 5, not {replicas}")
        self.target = nats_target(url, **connection)
        self._own_journal = not isinstance(journal, Journal)
        self.journal = journal if isinstance(journal, Journal) else Journal(journal)
        self.url = self.target.display
        self.host = host
        self.settings = StreamSettings(stream, prefix, max_age, max_msgs, max_bytes,
                                       duplicate_window, replicas)
        self.cursor_name = cursor or f"forward:{self.target.first}"
        self.max_in_flight = max_in_flight
        self.batch = batch
        self.poll_interval = poll_interval
        self.ack_timeout = ack_timeout
        self.backoff = backoff
        self.stats = ForwarderStats(cursor=self.journal.cursor(self.cursor_name))
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._link = asyncio.Event()  # set on each disconnect and reconnect
        self._nc: Any = None
        self._running: asyncio.Future[None] | None = None
        self._told: dict[str, tuple[Any, Any]] | None = None
        self._history = AckHistory()
        self._check: asyncio.Task[None] | None = None  # a look at the stream in an outage

    # -- control -----------------------------------------------------------------------------

    def notify(self) -> None:
        """New events are in the journal: look now."""
        self._wake.set()

    @property
    def pending(self) -> int:
        """Journaled events not yet acknowledged by the server."""
        return max(self.journal.last_seq() - self.stats.cursor, 0)

    def stop(self) -> None:
        """Ask :meth:`run` to return (acks already back are recorded)."""
        self._stop.set()
        self._wake.set()

    async def close(self) -> None:
        """Deprecated name of :meth:`aclose`."""
        _renamed("Forwarder.close", "Forwarder.aclose")
        await self.aclose()

    async def aclose(self) -> None:
        """Stop :meth:`run` (acks already back are recorded) and release the connection."""
        self.stop()
        if self._running is not None:
            with contextlib.suppress(Exception):
                await self._running
        await self._disconnect()
        if self._own_journal:
            self.journal.close()

    async def run(self, *, drain: bool = False) -> None:
        """Forward until :meth:`aclose` (or, with ``drain``, until every journaled event is
        acknowledged). Outages are logged (one sentence each) and retried with backoff; they
        never end the run. A server that refuses this client (its credentials, its
        certificates) before it ever connected raises
        :class:`~pysens.fleet.connection.NatsRefused`: retrying would not help."""
        self._running = asyncio.get_running_loop().create_future()
        retry = Retry(*self.backoff, log)
        watch = JournalWatch(self.journal.path, self.notify)
        watching = watch.start()
        try:
            while not self._stop.is_set():
                try:
                    await self._session(drain, watching, retry)
                    if drain and self.pending == 0:
                        return
                    continue
                except NatsRefused as e:
                    if not self.stats.connects:
                        raise
                    self.stats.failures += 1
                    delay = retry.failed(f"{e}; events wait in the journal and the forwarder "
                                         "keeps retrying", loud=True)
                except _Lost as e:
                    self.stats.failures += 1
                    delay = retry.failed(f"forwarding to {self.url} paused: {e}; retrying")
                except nats_errors(JournalError) as e:  # the network, the server, the journal
                    self.stats.failures += 1
                    delay = retry.failed(f"{describe_failure(e, self.url)}; events wait in the "
                                         "journal and the forwarder keeps retrying")
                finally:
                    await self._disconnect()
                await wait_event(self._stop, delay)
        finally:
            watch.close()
            self._running.set_result(None)

    # -- one connection ----------------------------------------------------------------------

    async def _disconnect(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _disconnected(self) -> None:
        self._link.set()

    async def _reconnected(self) -> None:
        self.stats.connects += 1
        self._link.set()

    async def _session(self, drain: bool, watching: bool, retry: Retry) -> None:
        nc = self._nc = await connect(self.target, name="sens-forward",
                                      disconnected=self._disconnected,
                                      reconnected=self._reconnected)
        self.stats.connects += 1
        state = await ensure_stream(nc.jetstream(), self.settings)
        if state.created_now:
            log.info("created the JetStream stream %s (%d replica%s)", self.settings.name,
                     self.settings.replicas, "" if self.settings.replicas == 1 else "s")
        elif state.differs and state.differs != self._told:
            log.warning("%s", describe_differences(self.settings, state.differs))
        self._told = state.differs
        retry.succeeded()  # connected, and the stream answers: the next failure is news
        log.info("forwarding %s to %s (connected to %s) from seq %d", self.journal.path,
                 self.url, connected_server(nc), self.stats.cursor)
        limit = nc.max_payload
        if state.max_msg_size > 0:
            limit = min(limit, state.max_msg_size)
        try:
            await self._pump(nc, drain, limit, watching)
        finally:
            if self._check is not None:
                self._check.cancel()
                self._check = None

    async def _pump(self, nc: Any, drain: bool, limit: int, watching: bool) -> None:
        # Each publish's reply subject is <inbox>.<journal seq>: the ack names its event, and
        # one wildcard subscription takes them all, in whatever order they come.
        inbox = nc.new_inbox() + "."
        skip = len(inbox)
        done: set[int] = set()
        failed: list[str] = []
        acked_now = asyncio.Event()
        stats = self.stats

        history = self._history

        async def on_ack(msg: Any) -> None:
            data = msg.data
            if not data or b'"error"' in data:
                failed.append(ack_error(msg.headers, data))
            else:
                try:
                    seq = int(msg.subject[skip:])
                except ValueError:
                    return
                if b'"duplicate"' in data:
                    stats.duplicates += 1
                elif (stream_seq := ack_seq(data)) is not None:
                    history.saw(seq, stream_seq)
                done.add(seq)
            acked_now.set()

        await nc.subscribe(inbox + "*", cb=on_ack, pending_msgs_limit=-1,
                           pending_bytes_limit=-1)
        inflight: deque[int] = deque()
        sent = acked = self.journal.cursor(self.cursor_name)
        stats.cursor = saved = acked
        prefix = self.settings.prefix
        fixed = host_token(self.host) if self.host else None
        loop = asyncio.get_running_loop()
        last_progress = loop.time()
        outage: _Outage | None = None
        settle = False
        poll = _WATCHED_POLL if watching else self.poll_interval
        while True:
            if nc.is_closed:
                raise _Lost("the connection closed")
            if (reset := history.take_reset()) is not None:
                again, before, now = reset
                log.warning("the JetStream stream %s started over (a new message got sequence "
                            "%d after %d: the stream was lost with its disk, or made again); "
                            "publishing this host's events again from journal seq %d, so that "
                            "what it lost still reaches the store (which ignores events it "
                            "has)", self.settings.name, now, before, again + 1)
                stats.stream_resets += 1
                inflight.clear()
                done.clear()
                sent = acked = min(acked, again)
                await asyncio.to_thread(self.journal.set_cursor, self.cursor_name, acked)
                stats.cursor = saved = acked
            if failed or not nc.is_connected or (
                    inflight and loop.time() - last_progress > self.ack_timeout):
                # Whatever was not acknowledged is published again from the cursor (the
                # stream drops what it already has, by Nats-Msg-Id).
                why = (failed[0] if failed else "the connection was lost" if not
                       nc.is_connected else f"no ack within {self.ack_timeout:g} s")
                outage = outage or _Outage(self.url, self.settings.name, loop.time())
                outage.note(why, nc, acked)
                failed.clear()
                stats.rewinds += 1
                inflight.clear()
                sent = acked
                if outage.recheck(loop.time()) and (self._check is None or self._check.done()):
                    # Beside the republishing, not in its way: a stream without a leader
                    # answers nothing, and waiting for that would hold the retries back.
                    self._check = asyncio.create_task(self._recheck_stream(nc))
                await self._wait_link(nc, outage.delay())
                last_progress = loop.time()
                continue
            room = self.max_in_flight - len(inflight)
            rows: list[tuple[int, str, str, str, str]] = []
            if room > 0 and not self._stop.is_set():
                # The bodies go out as they are: no event objects built, and no blocking read
                # on the event loop.
                rows = await asyncio.to_thread(self.journal.rows_after, sent,
                                               min(room, self.batch))
                if rows:
                    out, aside = _messages(rows, prefix, fixed, limit)
                    for subject, seq, event_id, data in out:
                        await nc.publish(subject, data, reply=inbox + str(seq),
                                         headers={"Nats-Msg-Id": event_id})
                    inflight.extend(r[0] for r in rows)
                    sent = rows[-1][0]
                    stats.published += len(out)
                    for seq, event_id, what, trimmed in aside:
                        self._set_aside(seq, event_id, what, trimmed)
                        if not trimmed:
                            done.add(seq)  # nothing to wait for: the cursor may pass it
            if done:
                n = 0
                while inflight and inflight[0] in done:
                    done.discard(acked := inflight.popleft())
                    n += 1
                stats.acked += n
                if n:
                    last_progress = loop.time()
                    if outage is not None:
                        outage.over(nc, loop.time())
                        outage = None
            if acked != saved:
                await asyncio.to_thread(self.journal.set_cursor, self.cursor_name, acked)
                stats.cursor = saved = acked
            if rows and len(inflight) < self.max_in_flight:
                await asyncio.sleep(0)  # let the acks that arrived meanwhile be handled
                continue
            if inflight:
                acked_now.clear()
                self._link.clear()
                await _wait_any((acked_now, self._link), self.ack_timeout / 4)
                continue
            last_progress = loop.time()
            last = await asyncio.to_thread(self.journal.last_seq)
            if self._stop.is_set() or (drain and last <= acked):
                await nc.flush()
                return
            if last > sent:
                continue
            self._wake.clear()
            woke = await wait_event(self._wake, _SETTLE if settle else poll)
            settle = woke and watching

    async def _recheck_stream(self, nc: Any) -> None:
        # Still no ack after a while: the stream may be gone (deleted, or an R1 stream whose
        # node lost its disk). It is made again, so that what waits in the journal has
        # somewhere to go; the collectors say what the old one lost.
        try:
            state = await ensure_stream(nc.jetstream(timeout=_CHECK_TIMEOUT), self.settings)
        except NatsRefused as e:
            log.error("%s", e)
            return
        except nats_errors() as e:
            log.debug("stream check during an outage: %s", e)
            return
        if state.created_now:
            log.warning("the JetStream stream %s was gone and is created again (%d "
                        "replica%s)", self.settings.name, self.settings.replicas,
                        "" if self.settings.replicas == 1 else "s")

    async def _wait_link(self, nc: Any, delay: float) -> None:
        """After a rewind: wait ``delay`` (an error reply, a stream without a leader), or while
        the connection is down, until nats-py has reconnected (or stop)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        while not self._stop.is_set() and not nc.is_closed:
            left = end - loop.time()
            if nc.is_connected and left <= 0:
                return
            self._link.clear()
            await _wait_any((self._link, self._stop), max(left, 0.05) if nc.is_connected
                            else 1.0)

    def _set_aside(self, seq: int, event_id: str, what: str, trimmed: bool) -> None:
        # Such an event would be refused on every retry (the server dropping the connection, or
        # the stream saying no), and the fleet would stall behind it for ever.
        what = f"event {event_id!r} (seq {seq}) {what}"
        if trimmed:
            self.stats.trimmed += 1
            log.warning("%s: forwarded without its raw source fields (the whole event stays "
                        "in this host's journal)", what)
        else:
            self.stats.refused += 1
            log.error("%s: not forwarded (it stays in this host's journal)", what)


class _Outage:
    """One spell without acks: said once when it starts (what happened, where) and once when
    it ends (how long), however many times the events are published again meanwhile."""

    def __init__(self, url: str, stream: str, since: float) -> None:
        self.url = url
        self.stream = stream
        self.since = since
        self.count = 0
        self.checked = since

    def note(self, why: str, nc: Any, cursor: int) -> None:
        self.count += 1
        if self.count == 1:
            where = (f"connected to {connected_server(nc)}" if nc.is_connected else
                     "reconnecting")
            log.warning("forwarding to the stream %s paused (%s; %s): publishing again from "
                        "seq %d once it answers", self.stream, why, where, cursor)
        else:
            log.debug("stream %s still not acknowledging (%s)", self.stream, why)

    def delay(self) -> float:
        # At once the first time (a lost connection is back quickly), then every 0.25 s: a
        # stream leader is elected within seconds and the first publish after it is acked.
        return 0.0 if self.count <= 1 else 0.25

    def recheck(self, now: float) -> bool:
        """Whether to look at the stream itself now (every 2 s of the outage)."""
        if now - self.checked < 2.0:
            return False
        self.checked = now
        return True

    def over(self, nc: Any, now: float) -> None:
        log.warning("forwarding to the stream %s resumed after %.1f s (connected to %s)",
                    self.stream, now - self.since, connected_server(nc))


async def _wait_any(events: Sequence[asyncio.Event], timeout: float) -> None:  # noqa: ASYNC109 - a time limit is what it is for
    """Until one of ``events`` is set or ``timeout`` seconds pass."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


_SEQ_NULL = '"seq": null}'


def _payload(body: str, seq: int, event_id: str) -> bytes:
    """The published text of a journal body: the event with its seq.

    The journal stores ``{"id": "<id>", "time": …}`` without a seq (SensEvent.to_json_text
    puts a set seq right after the id), older journals ``…, "seq": null}``; either is patched
    as text, and anything else is rebuilt through SensEvent.
    """
    if body.endswith(_SEQ_NULL):  # first: such a body also starts like today's
        return f'{body[: -len(_SEQ_NULL)]}"seq": {seq}}}'.encode()
    head = f'{{"id": "{event_id}", '
    if body.startswith(head) and body[len(head):len(head) + 6] != '"seq":':
        return f'{head}"seq": {seq}, {body[len(head):]}'.encode()
    return SensEvent.from_json(body).evolve(seq=seq).to_json_text().encode()


def _trim(data: bytes, room: int) -> bytes | None:
    """The published event with ``raw`` replaced by a note of what was left out, if that fits
    in ``room`` bytes; else None."""
    event = SensEvent.from_json(data)
    note = {"pysens_trimmed": f"{len(data):,}-byte event over the fleet's message limit; "
                              "raw left out (the whole event is in its host's journal)"}
    small = event.evolve(raw=note).to_json_text().encode()
    return small if len(small) <= room else None


#: A journal row that cannot go out as it is: seq, id, what is wrong (a phrase), and whether
#: a trimmed copy went out instead (:func:`_trim`) or nothing.
SetAside = tuple[int, str, str, bool]

# What a Nats-Msg-Id header can carry: SensEvent checks new ids so, older journals may not.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,128}").fullmatch


def _messages(rows: list[tuple[int, str, str, str, str]], prefix: str, fixed: str | None,
              limit: int = 1 << 20) -> tuple[list[tuple[str, int, str, bytes]], list[SetAside]]:
    """(subject, journal seq, event id, body with its seq) per journal row (:func:`_payload`).

    A message over ``limit`` bytes (headers and body) goes out trimmed, or not at all, and a
    row that cannot be read as an event does not go out; those are listed beside the messages."""
    out: list[tuple[str, int, str, bytes]] = []
    aside: list[SetAside] = []
    add = out.append
    for seq, event_id, host, method, body in rows:
        if not _HEADER_SAFE(event_id):
            aside.append((seq, event_id, "has an id that is not 1 to 128 printable ASCII "
                                         "characters", False))
            continue
        h = _HEADER_BYTES + len(event_id)  # what the Nats-Msg-Id header adds on the wire
        try:
            data = _payload(body, seq, event_id)
            if h + len(data) > limit:
                small = _trim(data, limit - h)
                what = (f"is {h + len(data):,} bytes, over the {limit:,}-byte message limit of "
                        "the NATS server or stream")
                aside.append((seq, event_id, what + ("" if small else " even trimmed"),
                              small is not None))
                if small is None:
                    continue
                data = small
        except (EventError, ValueError) as e:
            aside.append((seq, event_id, f"cannot be read from the journal ({e})", False))
            continue
        add((f"{prefix}.{fixed or host_token(host)}.{method}", seq, event_id, data))
    return out, aside


#: ``NATS/1.0\r\nNats-Msg-Id: \r\n\r\n``: the header block around an event id.
_HEADER_BYTES = len("NATS/1.0\r\nNats-Msg-Id: \r\n\r\n")
