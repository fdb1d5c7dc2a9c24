"""The daemon (``sens serve``): sources -> tracker -> journal -> subscribers, sinks, forwarders.

Every event is journaled (group commit) before anyone is told, so what a client was told, or
what a publisher got an acknowledgement for, survives a crash. The persistent subscriptions
(each a cursor-driven worker, :mod:`pysens.delivery`) are handed the new events at the commit
itself; then, in this order, the transient subscribers (socket watchers, in-process
:class:`~pysens.eventsystem.EventSystem` subscribers) and the NATS forwarders (their own cursors)
are woken.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..criteria import Criteria
from ..delivery import DeliveryManager, DeliveryPolicy
from ..events import SensEvent, fold_name
from ..eventsystem import EventSystem
from ..fleet.urls import redact_url
from ..journal import (
    AppendResult,
    Journal,
    JournalError,
    JournalFull,
    JournalWriter,
    SubscriptionStore,
)
from ..journal.maintenance import recover_hint
from ..journal.retention import Retention
from ..live import tracked_events
from ..observations import SessionRecord
from ..sources import Source, SourceUnavailable, UnknownSource, choose_source, open_source, probe
from ..tracker import Tracker
from .config import ConfigError, ForwardConfig, ServiceConfig
from .protocol import DaemonError, default_socket_path
from .server import SocketServer

__all__ = ["Service", "ServiceError"]

log = logging.getLogger("pysens.daemon")


class ServiceError(RuntimeError):
    """The daemon cannot start; the message says why in one sentence."""


class Service:
    """One daemon: build it from a :class:`ServiceConfig`, then ``await run()``."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.socket_path = Path(config.socket) if config.socket else default_socket_path()
        self.journal: Journal | None = None
        self.writer: JournalWriter | None = None
        self.store: SubscriptionStore | None = None
        self.tracker = Tracker(include_existing=config.include_existing)
        self.manager: DeliveryManager | None = None
        #: The transient subscribers: socket watchers and in-process ones, told of every event
        #: once it is journaled.
        self.events = EventSystem(session_provider=lambda user: bool(self._presence(user)))
        self.sources: list[Source] = []
        self.source_names: list[str] = []
        #: The network / power sources this host cannot run, and why (``sens doctor`` says).
        self.unavailable: dict[str, str] = {}
        self.forwarders: list[Any] = []
        #: forwarder URL -> why it stopped for good (a server refused its credentials)
        self.forward_errors: dict[str, str] = {}
        self._stop = asyncio.Event()
        self.server: SocketServer | None = None
        self.published = 0
        #: Seconds between two passes of retention ([journal] max_age / max_size).
        self.retention_interval = 300.0
        self._full = False  # the journal's disk is full: said once, until it has room again

    # -- the socket's backend ---------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        """Who is serving."""
        assert self.journal is not None  # noqa: S101 - an invariant of this code, not a check of input
        return {"pid": os.getpid(), "journal": str(self.journal.path.absolute()),
                "sources": self.source_names, "unavailable": self.unavailable,
                "watchers": sum(s.name == "watcher" for s in self.events.subscriptions),
                "forwarders": [f.url for f in self.forwarders],
                "forward_errors": self.forward_errors,
                "subscriptions": len(self.manager.workers) if self.manager else 0}

    async def publish(self, events: Sequence[SensEvent]) -> tuple[int, int]:
        """Journal ``events`` (one group commit), then tell everyone about the new ones."""
        assert self.writer is not None  # noqa: S101 - an invariant of this code, not a check of input
        if not events:
            return 0, 0
        try:
            results = await self.writer.append_many(events)
        except JournalFull as full:
            self._journal_full(full)
            raise
        self._journal_has_room()
        new = [r.event for r in results if r.inserted]
        for e in new:
            # Published events are live events: they open and close sessions in the table
            # `sens sessions` shows. What the tracker would emit is already journaled.
            self.tracker.feed(SessionRecord.of_event(e))
        self.published += len(new)
        await self._announce(new)
        return len(new), len(results) - len(new)

    def sessions(self) -> list[dict[str, Any]]:
        """The session table."""
        return [s.to_json() for s in self.tracker.sessions]

    def network(self) -> dict[str, Any]:
        """The usable connections and the destinations' reachability, as the daemon knows
        them (``sens network``)."""
        net = self.tracker.network
        return {"watching": "network" in self.source_names,
                "why_not": self.unavailable.get("network"),
                "connections": [c.to_json() for c in net.connections],
                "destinations": [d.to_json() for d in net.destinations],
                "configured": [str(d) for d in self.config.destinations]}

    def power(self) -> dict[str, Any]:
        """The power state as the daemon knows it (``sens power``)."""
        state = self.tracker.power.state()
        return {"watching": "power" in self.source_names,
                "why_not": self.unavailable.get("power"),
                "power": None if state is None else state.to_json()}

    def watch(
        self, criteria: Criteria | None, push: Callable[[SensEvent], None]
    ) -> Callable[[], None]:
        """Register a transient watcher of every event (matching ``criteria``); returns its
        unsubscriber."""
        sub = self.events.subscribe(push, event_class=None, criteria=criteria, name="watcher")

        def unsubscribe() -> None:
            self.events.unsubscribe(sub)

        return unsubscribe

    async def reload(self) -> None:
        """Re-read persistent subscriptions now (returns once the changes run)."""
        if self.manager is not None:
            await self.manager.sync()

    # -- the flow -----------------------------------------------------------------------------

    def _committed(self, results: Sequence[AppendResult]) -> None:
        # At the commit, before the publisher hears back: the workers take the events as they
        # are (no read back), and the journal watch's look at the same commit finds them known.
        new = [r.event for r in results if r.inserted]
        if new and self.manager is not None:
            self.manager.wake(new)

    async def _announce(self, events: Sequence[SensEvent]) -> None:
        if not events:
            return
        for e in events:
            # One subscriber's trouble is never the publisher's: the event system contains it.
            await self.events.afire(e)
        for f in self.forwarders:
            f.notify()

    async def _pump(self, name: str, source: Source) -> None:
        assert self.writer is not None  # noqa: S101 - an invariant of this code, not a check of input
        try:
            async for event in tracked_events(source, self.tracker):
                await self._append_live(event)
        except (SourceUnavailable, OSError, JournalError) as e:
            log.error("the %s source stopped: %s", name, e)
        except Exception:  # a bug: its traceback goes to the log, the other sources go on
            log.exception("the %s source stopped", name)

    def _journal_full(self, e: JournalFull) -> None:
        if not self._full:
            self._full = True
            log.error("%s: refusing new events until there is room (what was acknowledged "
                      "is kept; writes resume by themselves)", e)

    def _journal_has_room(self) -> None:
        if self._full:
            self._full = False
            assert self.journal is not None  # noqa: S101 - an invariant of this code, not a check of input
            log.warning("the journal %s has room again: accepting events", self.journal.path)

    async def _append_live(self, event: SensEvent) -> None:
        """Journal a source's event and tell everyone; on a full disk, wait and try again
        (the source's next events wait meanwhile: none is dropped)."""
        assert self.writer is not None  # noqa: S101 - an invariant of this code, not a check of input
        while True:
            try:
                result = await self.writer.append(event)
            except JournalFull as e:
                self._journal_full(e)
                await asyncio.sleep(1)
                continue
            self._journal_has_room()
            if result.inserted:
                await self._announce([result.event])
            return

    def _presence(self, owner: str) -> set[tuple[str, str]]:
        owner = fold_name(owner)
        return {(s.host, s.info.session_id or "") for s in self.tracker.sessions
                if fold_name(s.info.user_name) == owner}

    # -- start and stop -----------------------------------------------------------------------

    async def _open_sources(self) -> None:
        for name in self.config.sources:
            if name == "none":
                continue
            try:
                source, chosen, why = await choose_source(name)
            except SourceUnavailable as e:
                if name == "auto":
                    log.warning("%s; serving published events only", e)
                    continue
                if isinstance(e, UnknownSource):
                    # A typo ('logindd') must not start a daemon that watches nothing.
                    where = (f" ([serve] sources in {self.config.path})" if self.config.path
                             else "")
                    hint = e.hint.replace(" or the", ", none or the")
                    raise ServiceError(f"unknown source {e.name!r}{where}: {hint}") from None
                raise ServiceError(f"the {name} source cannot run here: {e}") from None
            if why is not None:
                log.info("watching %s (%s)", chosen, why)
            self.sources.append(source)
            self.source_names.append(chosen)
        for kind in ("network", "power"):
            await self._open_beside(kind)

    async def _open_beside(self, kind: str) -> None:
        """The network or power source, as ``[serve] network`` / ``power`` ask: a host without
        it (no netlink permission, no UPower nor battery class) is said once, and the logon
        sources run on; ``= true`` makes it required."""
        want = self.config.wants(kind)
        if want is False:
            return
        why = await probe(kind)
        if why is None:
            options = {"destinations": self.config.destinations} if kind == "network" else {}
            try:
                self.sources.append(open_source(kind, **options))
                self.source_names.append(kind)
                return
            except SourceUnavailable as e:
                why = str(e)
        if want:
            raise ServiceError(f"the {kind} source cannot run here: {why}")
        self.unavailable[kind] = why
        log.info("no %s events here: %s", kind, why)

    def _make_forwarders(self) -> None:
        if not self.config.forward:
            return
        assert self.journal is not None  # noqa: S101 - an invariant of this code, not a check of input
        try:
            from ..fleet.forwarder import Forwarder
        except ImportError as e:
            raise ServiceError(f"forwarding needs nats-py ({e.name} is missing); "
                               "install pysens[nats]") from None
        for f in self.config.forward:
            _check_forward_options(Forwarder, f)
            try:
                self.forwarders.append(Forwarder(self.journal, f.url, **dict(f.options)))
            except (TypeError, ValueError) as e:
                # "creds: cannot read …" names its key: say the file and line that set it
                key = str(e).partition(":")[0]
                where = f.where.get(key, f"[[forward]] {redact_url(f.url)}")
                raise ServiceError(f"{where}: {e}") from None

    async def start(self) -> None:
        """Open everything; nothing runs unless all of it could be opened."""
        cfg = self.config
        try:
            self.journal = Journal(cfg.journal, durable=cfg.durable)
        except JournalError as e:
            raise ServiceError(str(e)) from None
        damage = await asyncio.to_thread(self.journal.quick_check)
        if damage:
            path = self.journal.path
            self.journal.close()
            self.journal = None
            raise ServiceError(f"the journal {path} is damaged ({'; '.join(damage)}); not "
                               f"serving on it: {recover_hint(path)}, or start with a new "
                               "journal")
        try:
            self.writer = JournalWriter(self.journal, on_commit=self._committed)
            self.store = SubscriptionStore(self.journal)
            self._make_forwarders()
            await self._open_sources()
            policy = DeliveryPolicy(max_failures=cfg.max_failures,
                                    retry_initial=cfg.retry_initial, retry_max=cfg.retry_max,
                                    timeout=cfg.timeout)
            self.manager = DeliveryManager(self.journal, self.store, policy, self._presence)
            # Workers exist before the socket answers: a client's hello sees them all.
            await self.manager.sync()
            self.server = SocketServer(self.socket_path, self, cfg.socket_group)
            await self.server.start()
        except (DaemonError, ConfigError) as e:
            await self.aclose()
            raise ServiceError(str(e)) from None
        except BaseException:
            await self.aclose()
            raise

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stop.set()

    async def run(self) -> None:
        """Start, serve until :meth:`stop` (SIGTERM, SIGINT), then shut down cleanly."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        assert self.manager is not None  # noqa: S101 - an invariant of this code, not a check of input
        loop.add_signal_handler(signal.SIGHUP, self.manager.reload)
        tasks = [asyncio.create_task(self.manager.run(), name="subscriptions")]
        for name, source in zip(self.source_names, self.sources, strict=True):
            tasks.append(asyncio.create_task(self._pump(name, source), name=f"source {name}"))
        for f in self.forwarders:
            tasks.append(asyncio.create_task(self._forward(f), name=f"forward {f.url}"))
        if self.config.max_age is not None or self.config.max_size is not None:
            assert self.journal is not None  # noqa: S101 - an invariant of this code, not a check of input
            retention = Retention(self.journal, max_age=self.config.max_age,
                                  max_size=self.config.max_size)
            tasks.append(asyncio.create_task(retention.serve(self.retention_interval),
                                             name="retention"))
        _sd_notify("READY=1")
        print(f"sens: serving on {self.socket_path} (journal {self.hello()['journal']}; "
              f"sources: {', '.join(self.source_names) or 'none'}; "
              f"subscriptions: {len(self.manager.workers)})", file=sys.stderr, flush=True)
        try:
            await self._stop.wait()
        finally:
            _sd_notify("STOPPING=1")
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.aclose()

    async def _forward(self, forwarder: Any) -> None:
        from ..fleet.connection import NatsRefused

        try:
            await forwarder.run()
        except NatsRefused as e:
            # Never worth retrying as configured: said once, and the rest of the daemon (the
            # journal, the subscriptions) goes on; the events wait in the journal.
            self.forward_errors[forwarder.url] = str(e)
            log.error("forwarding stopped: %s; the events wait in the journal (fix the "
                      "[[forward]] configuration and restart sens serve)", e)

    async def aclose(self) -> None:
        """Release everything (idempotent)."""
        if self.server is not None:
            await self.server.aclose()
            self.server = None
        for source in self.sources:
            with contextlib.suppress(Exception):
                await source.aclose()
        self.sources.clear()
        for f in self.forwarders:
            with contextlib.suppress(Exception):
                await f.aclose()
        self.forwarders.clear()
        if self.manager is not None:
            await self.manager.aclose()
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None


def forward_options(forwarder: Any) -> dict[str, Any]:
    """Every ``[[forward]]`` key but ``url`` and its annotation (None where it cannot be
    resolved): the forwarder's own keywords and the connection's
    (:func:`~pysens.fleet.connection.nats_target`), which its ``**connection`` takes."""
    from ..fleet.connection import nats_target

    out: dict[str, Any] = {}
    for function in (forwarder, nats_target):
        init = typing.cast(Any, function).__init__ if isinstance(function, type) else function
        try:
            hints = typing.get_type_hints(init)
        except (NameError, TypeError, AttributeError):  # an annotation this Python cannot
            # resolve: the names are still checked
            hints = {}
        for name, param in inspect.signature(function).parameters.items():
            if name not in ("self", "journal", "url") and param.kind is not param.VAR_KEYWORD:
                out[name] = hints.get(name)
    return out


def _check_forward_options(forwarder: Any, f: ForwardConfig) -> None:
    """ServiceError naming the file and line of a ``[[forward]]`` option the forwarder does not
    take, or of a value of the wrong type (the forwarder's own signature is the list)."""
    hints = forward_options(forwarder)
    known = list(hints)
    for key, value in f.options.items():
        where = f.where.get(key, f"[[forward]] {f.url}")
        if key not in known:
            raise ServiceError(f"{where}: unknown key {key!r} in [[forward]]; known keys are: "
                               + ", ".join(["url", *known]))
        hint = hints.get(key)
        if hint is not None and not _fits(value, hint):
            raise ServiceError(f"{where}: [[forward]] {key} must be {_describe(hint)}, "
                               f"not {value!r}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a TOML value suits a simple annotation (str, int, float, bool, X | None, tuple);
    True for what this does not know how to check."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(
            _fits(v, a) for v, a in zip(value, args, strict=True))
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint in (int, str):
        return isinstance(value, hint) and not isinstance(value, bool)
    if hint is Path:  # a file name, in TOML a string
        return isinstance(value, str)
    return True


def _describe(hint: Any) -> str:
    names = {str: "text", int: "an integer", float: "a number", bool: "true or false"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint) if h is not type(None))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return "a list" if Ellipsis in args else f"a list of {len(args)} values"
    return names.get(hint, str(hint))


def _sd_notify(state: str) -> None:
    # systemd Type=notify: one datagram to $NOTIFY_SOCKET ('@' means the abstract namespace).
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), address)
