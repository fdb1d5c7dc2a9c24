"""The fleet forwarder: this host's journal -> a NATS JetStream stream, nothing lost or doubled.

Each journaled event is published to ``<prefix>.<host>.<Method>`` (``sens.web01.Logon``) with
the header ``Nats-Msg-Id`` set to the event id, so the server drops a re-publish inside the
stream's duplicate window. The forwarder keeps its own journal cursor (``forward:<url>``) and moves
it only over the contiguous prefix of events whose PubAck has come back: many publishes are in
flight at once, and after a crash, a lost connection or a missing ack it starts again from the
cursor. While the server is unreachable the events simply wait in the journal.

An event larger than the server's ``max_payload`` (or the stream's ``max_msg_size``) would be
refused on every retry and stall everything behind it: it goes out with its ``raw`` source
fields left out (a note says so), or, still too large, is not forwarded. So is a journal row
that no longer reads as an event. One log line each names the event, which stays in this
host's journal.

The subjects and the stream are :mod:`pysens.fleet.stream`'s.

Waking up: the journal has no notification of its own, so the forwarder polls the journal's
highest ``seq`` every ``poll_interval`` seconds (one indexed ``max()`` query, default 0.2 s), and
whoever appends can call :meth:`Forwarder.notify` to wake it at once (``sens serve`` does).

The publishes go over :mod:`pysens.fleet.natsproto` (the NATS client protocol on one asyncio
stream): a journal batch becomes one buffer of ``HPUB`` frames whose reply subjects are
``<inbox>.<journal seq>``, and one wildcard subscription takes every PubAck. nats-py is used only
to create or update the stream when a connection starts.

Run one on its own: ``sens forward nats://HOST:PORT [--drain]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._deprecated import renamed as _renamed
from ..aio import Retry, wait_event
from ..events import EventError, SensEvent
from ..journal import Journal, JournalError
from .connection import connect, describe_failure, nats_errors
from .stream import DEFAULT_PREFIX, DEFAULT_STREAM, StreamSettings, ensure_stream, host_token
from .urls import redact_url, strip_credentials

__all__ = ["Forwarder", "ForwarderStats"]

log = logging.getLogger("pysens.forward")


@dataclass(slots=True)
class ForwarderStats:
    """What a forwarder has done since it started."""

    published: int = 0
    acked: int = 0
    duplicates: int = 0
    connects: int = 0
    failures: int = 0
    cursor: int = 0
    #: events over the server's (or stream's) message size, sent with their ``raw`` left out
    trimmed: int = 0
    #: events over it even so, or rows that no longer read as events: not forwarded (they stay
    #: in this host's journal)
    refused: int = 0


class _Lost(Exception):
    """The connection (or an ack) was lost: start again from the cursor."""


class Forwarder:
    """Ships ``journal`` to the JetStream at ``url``; :meth:`run` until :meth:`close`.

    ``host``: publish every event under this host token instead of the event's own host (a fleet
    may name its machines by UUID); the stored event keeps its own ``host`` field.
    ``max_in_flight`` publishes await their acks at once; an ack not back within
    ``ack_timeout`` seconds counts as a lost connection.
    """

    def __init__(
        self,
        journal: Journal | str | Path,
        url: str,
        *,
        host: str | None = None,
        stream: str = DEFAULT_STREAM,
        prefix: str = DEFAULT_PREFIX,
        max_age: float | None = 30 * 24 * 3600.0,
        max_msgs: int | None = None,
        max_bytes: int | None = None,
        duplicate_window: float = 120.0,
        cursor: str | None = None,
        max_in_flight: int = 4000,
        batch: int = 1000,
        poll_interval: float = 0.2,
        ack_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.2, 15.0),
    ) -> None:
        self._own_journal = not isinstance(journal, Journal)
        self.journal = journal if isinstance(journal, Journal) else Journal(journal)
        self.url = url
        self.host = host
        self.settings = StreamSettings(stream, prefix, max_age, max_msgs, max_bytes,
                                       duplicate_window)
        self.cursor_name = cursor or f"forward:{strip_credentials(url)}"
        self.max_in_flight = max_in_flight
        self.batch = batch
        self.poll_interval = poll_interval
        self.ack_timeout = ack_timeout
        self.backoff = backoff
        self.stats = ForwarderStats(cursor=self.journal.cursor(self.cursor_name))
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._nc: Any = None
        self._running: asyncio.Future[None] | None = None

    # -- control -----------------------------------------------------------------------------

    def notify(self) -> None:
        """New events are in the journal: look now rather than at the next poll."""
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
        """Forward until :meth:`close` (or, with ``drain``, until every journaled event is
        acknowledged). Connection failures are logged (one sentence per outage) and retried with
        exponential backoff; they never end the run."""
        self._running = asyncio.get_running_loop().create_future()
        retry = Retry(*self.backoff, log)
        try:
            while not self._stop.is_set():
                try:
                    await self._session(drain)
                    if drain and self.pending == 0:
                        return
                    retry.succeeded()
                    continue
                except _Lost as e:
                    self.stats.failures += 1
                    delay = retry.failed(f"forwarding to {redact_url(self.url)} paused: {e}; "
                                         "retrying", loud=True)
                except nats_errors(JournalError) as e:  # the network, the server, the journal
                    self.stats.failures += 1
                    delay = retry.failed(f"{describe_failure(e, self.url)}; events wait in the "
                                         "journal and the forwarder keeps retrying")
                finally:
                    await self._disconnect()
                await wait_event(self._stop, delay)
        finally:
            self._running.set_result(None)

    # -- one connection ----------------------------------------------------------------------

    async def _disconnect(self) -> None:
        conn, self._nc = self._nc, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.aclose()

    async def _session(self, drain: bool) -> None:
        from .natsproto import NatsConnection

        # nats-py for the stream's creation (rare, many fields); the lean protocol connection
        # for the publishes themselves, where nats-py's per-message cost would dominate.
        nc = await connect(self.url)
        try:
            stream_limit = await ensure_stream(nc.jetstream(), self.settings)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
        self._nc = await NatsConnection.open(self.url, name="sens-forward")
        self.stats.connects += 1
        log.info("forwarding %s to %s from seq %d", self.journal.path, redact_url(self.url),
                 self.stats.cursor)
        limit = self._nc.max_payload
        if stream_limit > 0:
            limit = min(limit, stream_limit)
        await self._pump(self._nc, drain, limit)

    async def _pump(self, conn: Any, drain: bool, limit: int) -> None:
        # Each publish's reply subject is <inbox>.<journal seq>: the ack names its event, and
        # one wildcard subscription takes them all, in whatever order they come.
        inbox = conn.new_inbox()
        done: set[int] = set()
        failed: list[str] = []
        acked_now = asyncio.Event()
        skip = len(inbox) + 1
        stats = self.stats

        def on_ack(subject: bytes, reply: bytes, headers: bytes, data: bytes) -> None:
            if not data or b'"error"' in data:
                failed.append(_ack_error(headers, data))
            else:
                if b'"duplicate"' in data:
                    stats.duplicates += 1
                done.add(int(subject[skip:]))
            acked_now.set()

        conn.subscribe(inbox + ".*", on_ack)
        conn.closed.add_done_callback(lambda _: acked_now.set())
        reply_prefix = (inbox + ".").encode()
        inflight: deque[int] = deque()
        sent = acked = self.journal.cursor(self.cursor_name)
        stats.cursor = saved = acked
        prefix = self.settings.prefix
        fixed = host_token(self.host) if self.host else None
        loop = asyncio.get_running_loop()
        last_progress = loop.time()
        while True:
            if failed:
                raise _Lost(f"the server refused an event ({failed[0]})")
            if conn.closed.done():
                raise _Lost(conn.closed.result())
            room = self.max_in_flight - len(inflight)
            rows: list[tuple[int, str, str, str, str]] = []
            if room > 0 and not self._stop.is_set():
                # The bodies go out as they are: no event objects built, and no blocking read
                # on the event loop.
                rows = await asyncio.to_thread(self.journal.rows_after, sent,
                                               min(room, self.batch))
                if rows:
                    frames, over = _frames(rows, reply_prefix, prefix, fixed, limit)
                    conn.write(frames)
                    inflight.extend(r[0] for r in rows)
                    sent = rows[-1][0]
                    stats.published += len(rows)
                    for seq, event_id, what, trimmed in over:
                        self._set_aside(seq, event_id, what, trimmed)
                        if not trimmed:
                            stats.published -= 1
                            done.add(seq)  # nothing to wait for: the cursor may pass it
            if done:
                n = 0
                while inflight and inflight[0] in done:
                    done.discard(acked := inflight.popleft())
                    n += 1
                stats.acked += n
                if n:
                    last_progress = loop.time()
            if acked != saved:
                await asyncio.to_thread(self.journal.set_cursor, self.cursor_name, acked)
                stats.cursor = saved = acked
            if rows:
                await conn.drain()
                if len(inflight) < self.max_in_flight:
                    await asyncio.sleep(0)  # let the acks that arrived meanwhile be handled
                    continue
            if inflight:
                if loop.time() - last_progress > self.ack_timeout:
                    raise _Lost(f"no ack within {self.ack_timeout:g} s")
                acked_now.clear()
                await wait_event(acked_now, self.ack_timeout)
                continue
            last_progress = loop.time()
            last = await asyncio.to_thread(self.journal.last_seq)
            if self._stop.is_set() or (drain and last <= acked):
                return
            self._wake.clear()
            if last > sent:
                continue
            await wait_event(self._wake, self.poll_interval)

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


def _frames(rows: list[tuple[int, str, str, str, str]], reply_prefix: bytes, prefix: str,
            fixed: str | None, limit: int = 1 << 20) -> tuple[bytes, list[SetAside]]:
    """One HPUB frame per journal row, joined: subject, reply ``<inbox>.<seq>``, the
    ``Nats-Msg-Id`` header and the body with its seq (:func:`_payload`).

    A message over ``limit`` bytes (headers and body) goes out trimmed, or not at all, and a
    row that cannot be read as an event does not go out; those are listed beside the frames."""
    out: list[bytes] = []
    aside: list[SetAside] = []
    add = out.append
    for seq, event_id, host, method, body in rows:
        if not _HEADER_SAFE(event_id):
            aside.append((seq, event_id, "has an id that is not 1 to 128 printable ASCII "
                                         "characters", False))
            continue
        hdr = f"NATS/1.0\r\nNats-Msg-Id: {event_id}\r\n\r\n".encode()
        h = len(hdr)
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
        add(f"HPUB {prefix}.{fixed or host_token(host)}.{method} ".encode() + reply_prefix
            + f"{seq} {h} {h + len(data)}\r\n".encode() + hdr + data + b"\r\n")
    return b"".join(out), aside


def _ack_error(headers: bytes, data: bytes) -> str:
    """What a negative JetStream publish reply says, in one phrase."""
    from .natsproto import status_of

    code = status_of(headers)
    if code == 503:
        return "no JetStream stream takes this subject (no responders)"
    try:
        err = json.loads(data).get("error") or {}
        return str(err.get("description") or err)
    except (ValueError, AttributeError):
        return f"status {code}" if code else "an unreadable reply"
