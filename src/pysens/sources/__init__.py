"""Where events come from: live sources and history readers, one module per mechanism, all in
one registry.

Every module here imports on every OS (OS-only imports live inside functions), so its pure
mapping is tested everywhere. A source reports :mod:`pysens.observations` (or finished
:class:`~pysens.events.SensEvent` objects, for replay); the tracker turns them into SENS events.

Each module describes what it offers with a :class:`LiveKind` (how to open its live source, how
to tell whether it can run here) and/or a :class:`HistoryKind` (how to read its files), and
:data:`REGISTRY` names them. A new mechanism is a module here plus one line there.
"""

from __future__ import annotations

import asyncio
import pkgutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..events import EventClass, SensEvent
from ..observations import Observation

__all__ = [
    "AUTO_ORDER",
    "CLASS_SOURCES",
    "REGISTRY",
    "Chosen",
    "HistoryKind",
    "LiveKind",
    "ReadError",
    "Source",
    "SourceItem",
    "SourceUnavailable",
    "UnknownSource",
    "choose_source",
    "choose_sources",
    "detect",
    "history_kind",
    "history_names",
    "live_kind",
    "live_names",
    "open_source",
    "probe",
]

SourceItem = Observation | SensEvent


class SourceUnavailable(RuntimeError):
    """The source cannot run on this host; the message says why in one sentence."""


class UnknownSource(SourceUnavailable):
    """A source name that is neither a live source nor a file to replay (a typo); ``hint``
    says what to give instead."""

    def __init__(self, name: str, hint: str) -> None:
        super().__init__(f"unknown source {name!r}: {hint}")
        self.name = name
        self.hint = hint


class ReadError(ValueError):
    """A whole file cannot be read (missing, unreadable, not that kind of file); the message is
    one sentence naming the file."""


@runtime_checkable
class Source(Protocol):
    """What every live or replay source offers."""

    name: str

    async def snapshot(self) -> list[Observation]:
        """What is there now (sessions, connections, power), as ``existing`` observations."""
        ...

    def watch(self) -> AsyncIterator[SourceItem]:
        """The snapshot first (``existing=True``), then every change as it happens."""
        ...

    async def aclose(self) -> None:
        """Stop watching and release what the source holds (bus connection, inotify fd)."""
        ...


#: An async check: None when the mechanism works here, else why not, in one sentence.
Probe = Callable[..., Awaitable[str | None]]
#: ``read(path, on_error)`` (``on_position(done, total)`` too, for ``positioned`` kinds): the
#: file's observations (or finished events) in order, each bad piece told to ``on_error``.
Reader = Callable[..., Iterable[Observation | SensEvent]]


@dataclass(frozen=True, slots=True)
class LiveKind:
    """A live source: ``open(**options)`` returns the :class:`Source` (or raises
    :class:`SourceUnavailable`); ``probe(**options)`` tells whether it can run here;
    ``can_wait(**options)``, when given, describes how it would wait for its data to appear
    (utmp, before a login program creates the file)."""

    description: str
    open: Callable[..., Source]
    probe: Probe
    can_wait: Probe | None = None


@dataclass(frozen=True, slots=True)
class HistoryKind:
    """A kind of history file for ``sens import``.

    ``read(path, on_error)`` yields what one file says (``on_position(done, total)`` too when
    ``positioned``: its progress has a fraction); ``read_many(paths, on_error)``, when given,
    reads files that belong together as one stream (a host's Security and LSM logs, merged by
    time); ``first_time(path)`` puts rotated files in order.
    """

    read: Reader
    read_many: Reader | None = None
    first_time: Callable[[str], datetime | None] | None = None
    positioned: bool = False


@dataclass(frozen=True, slots=True)
class Registered:
    """Where a mechanism's :class:`LiveKind` and :class:`HistoryKind` are (``module:attr``)."""

    live: str | None = None
    history: str | None = None


#: Every mechanism, by the name the command line uses. Modules are imported when first used, so
#: an optional dependency (dbus-fast, evtx) is needed only for its own source.
REGISTRY: dict[str, Registered] = {
    "logind": Registered(live="pysens.sources.logind:LIVE"),
    "utmp": Registered(live="pysens.sources.utmp:LIVE", history="pysens.sources.wtmp:UTMP"),
    "wtmp": Registered(history="pysens.sources.wtmp:WTMP"),
    "wtmpdb": Registered(history="pysens.sources.wtmpdb:HISTORY"),
    "evtx": Registered(history="pysens.sources.evtx:HISTORY"),
    "wts": Registered(live="pysens.sources.wts:LIVE"),
    "network": Registered(live="pysens.sources.network:LIVE"),
    "power": Registered(live="pysens.sources.power:LIVE"),
    "replay": Registered(live="pysens.sources.replay:LIVE"),
    "jsonl": Registered(history="pysens.sources.replay:HISTORY"),
}

#: The order `--source auto` tries for the logon events: the first whose probe says yes wins.
AUTO_ORDER = ("wts", "logind", "utmp")

#: The live sources that report each event class beside the logon one (``auto``: each where
#: the host has it).
CLASS_SOURCES: dict[EventClass, str] = {
    EventClass.ISensNetwork: "network",
    EventClass.ISensOnNow: "power",
}
LOGON_CLASSES = frozenset({EventClass.ISensLogon2, EventClass.ISensLogon})


@dataclass(frozen=True, slots=True)
class Chosen:
    """A source picked for watching: the source, its name, and why (``auto``), else None."""

    source: Source
    name: str
    why: str | None = None


def live_names() -> list[str]:
    """The names of the live sources (``sens watch --source NAME``)."""
    return [n for n, r in REGISTRY.items() if r.live]


def history_names() -> list[str]:
    """The kinds of history files (``sens import KIND``)."""
    return [n for n, r in REGISTRY.items() if r.history]


def live_kind(name: str) -> LiveKind:
    """The live source called ``name``; KeyError for an unknown name, ImportError when its
    module cannot be loaded here."""
    where = REGISTRY[name].live
    if where is None:
        raise KeyError(name)
    kind: LiveKind = pkgutil.resolve_name(where)
    return kind


def history_kind(name: str) -> HistoryKind:
    """The history reader for ``name``; :class:`ReadError` when it is unknown or cannot be
    loaded here."""
    entry = REGISTRY.get(name)
    if entry is None or entry.history is None:
        raise ReadError(f"unknown kind {name!r}; known kinds: {', '.join(history_names())}")
    try:
        kind: HistoryKind = pkgutil.resolve_name(entry.history)
    except ImportError as e:
        raise ReadError(f"the {name} reader is not available here ({e})") from None
    return kind


def open_source(name: str, **options: Any) -> Source:
    """The live source called ``name`` (a file path or ``-`` means replay of that JSONL file)."""
    if name not in REGISTRY or REGISTRY[name].live is None:
        return live_kind("replay").open(path=name, **options)
    return live_kind(name).open(**options)


async def probe(name: str, **options: Any) -> str | None:
    """None when the live source ``name`` can run here, else why not (one sentence); a probe's
    own failure is an answer too, never an exception."""
    try:
        kind = live_kind(name)
    except ImportError as e:
        return f"its module cannot be imported ({e})"
    try:
        return await kind.probe(**options)
    except Exception as e:  # noqa: BLE001 - a probe's own bug must not hide the other answers
        return f"its probe failed: {e}"


async def detect(**options: Any) -> tuple[str, str]:
    """``(name, why)`` of the live source ``auto`` picks on this host; SourceUnavailable with
    every reason when none can run or wait for its data."""
    reasons = []
    for name in AUTO_ORDER:
        why_not = await probe(name, **options)
        if why_not is None:
            return name, live_kind(name).description
        reasons.append(f"{name}: {why_not}")
    # Nothing runs here now. A source that can wait for its data to appear (utmp, once a login
    # program creates /run/utmp) is better than refusing to watch at all.
    for name in AUTO_ORDER:
        try:
            can_wait = live_kind(name).can_wait
        except ImportError:
            continue
        waiting = await can_wait(**options) if can_wait is not None else None
        if waiting is not None:
            return name, f"{waiting}; " + "; ".join(r for r in reasons
                                                   if not r.startswith(name))
    raise SourceUnavailable("no live source is available here (" + "; ".join(reasons) + ")")


def _is_file(name: str) -> bool:
    return Path(name).is_file()


async def choose_sources(
    source: str = "auto", classes: Iterable[EventClass] | None = None, *,
    options: dict[str, Any] | None = None, network: dict[str, Any] | None = None,
    power: dict[str, Any] | None = None,
) -> tuple[list[Chosen], list[tuple[str, str]]]:
    """The sources to watch for ``classes`` (None: all four), and the ones left out with why.

    ``source`` names the logon source (``auto``: what this host has; or a name, or a file to
    replay, which then is the only source); with ``auto``, the network and power sources come
    beside it for their classes wherever they can run (``network`` / ``power``: their
    options). ``options`` go to the logon source. Raises :class:`SourceUnavailable` when the
    named source, or (for ``auto``) no source at all, can run here.
    """
    wanted = set(EventClass) if classes is None else set(classes)
    if source != "auto":
        src, name, why = await choose_source(source, **(options or {}))
        return [Chosen(src, name, why)], []
    chosen: list[Chosen] = []
    skipped: list[tuple[str, str]] = []
    if wanted & LOGON_CLASSES:
        try:
            src, name, why = await choose_source("auto", **(options or {}))
            chosen.append(Chosen(src, name, why))
        except SourceUnavailable as e:
            skipped.append(("logon", str(e)))
    for cls, name in CLASS_SOURCES.items():
        if cls not in wanted:
            continue
        extra = (network if name == "network" else power) or {}
        why_not = await probe(name)
        if why_not is not None:
            skipped.append((name, why_not))
            continue
        try:
            chosen.append(Chosen(open_source(name, **extra), name, live_kind(name).description))
        except SourceUnavailable as e:
            skipped.append((name, str(e)))
    if not chosen:
        raise SourceUnavailable("no live source is available here ("
                                + "; ".join(f"{n}: {w}" for n, w in skipped) + ")")
    return chosen, skipped


async def choose_source(name: str, **options: Any) -> tuple[Source, str, str | None]:
    """The one place a source is chosen by name: ``(source, its name, why)``.

    ``auto`` detects what this host has (``why`` says what was picked and why); a live name
    opens that source; any other name must be a JSON-lines file to replay (or ``-``), so a typo
    (``logindd``) is an error rather than a source that watches nothing. Raises
    :class:`SourceUnavailable` (one sentence) when the source cannot run here."""
    why = None
    if name == "auto":
        name, why = await detect(**options)
    elif name == "replay" or ((name not in REGISTRY or REGISTRY[name].live is None)
                              and name != "-" and not await asyncio.to_thread(_is_file, name)):
        names = ", ".join(n for n in live_names() if n != "replay")
        raise UnknownSource(name, f"give auto, {names} or the path of a JSON-lines file "
                                  "(there is no such file)")
    return open_source(name, **options), name, why


def __getattr__(name: str) -> Any:
    # pysens 0.1's separate tables (SOURCES: live factories; the importer's READERS).
    if name == "SOURCES":
        import warnings

        warnings.warn("pysens.sources.SOURCES is now pysens.sources.REGISTRY; the old name goes "
                      "in the next release", DeprecationWarning, stacklevel=2)
        return {n: r.live for n, r in REGISTRY.items() if r.live}
    raise AttributeError(name)
