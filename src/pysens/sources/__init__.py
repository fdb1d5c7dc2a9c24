"""Event sources, one module per mechanism, chosen by name at one switch.

Every module here imports on every OS (OS-only imports live inside functions), so its pure
mapping is tested everywhere. A source reports :mod:`pysens.observations` (or finished
:class:`~pysens.events.SensEvent` objects, for replay); the tracker turns them into SENS events.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

from ..events import SensEvent
from ..observations import Observation

__all__ = ["SOURCES", "Source", "SourceItem", "SourceUnavailable", "detect", "open_source"]

SourceItem = Observation | SensEvent


class SourceUnavailable(RuntimeError):
    """The source cannot run on this host; the message says why in one sentence."""


@runtime_checkable
class Source(Protocol):
    """What every live or replay source offers."""

    name: str

    async def snapshot(self) -> list[Observation]:
        """The sessions open now, as ``SessionAppeared(existing=True)`` observations."""
        ...

    def watch(self) -> AsyncIterator[SourceItem]:
        """The snapshot first (``existing=True``), then every change as it happens."""
        ...

    async def aclose(self) -> None:
        """Stop watching and release what the source holds (bus connection, inotify fd)."""
        ...


#: name -> "module:factory". The factory takes keyword options and returns a Source; it raises
#: SourceUnavailable (never ImportError) when the host lacks what the source needs.
SOURCES: dict[str, str] = {
    "logind": "pysens.sources.logind:open_logind",
    "utmp": "pysens.sources.utmp:open_utmp",
    "wts": "pysens.sources.wts:open_wts",
    "replay": "pysens.sources.replay:open_replay",
}

# The order `--source auto` tries: the first whose probe says yes wins.
AUTO_ORDER = ("wts", "logind", "utmp")


def _factory(name: str) -> Callable[..., Any]:
    module, _, attr = SOURCES[name].partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def open_source(name: str, **options: Any) -> Source:
    """The source called ``name`` (a file path or ``-`` means replay of that JSONL file)."""
    if name not in SOURCES:
        return _factory("replay")(path=name, **options)  # type: ignore[no-any-return]
    return _factory(name)(**options)  # type: ignore[no-any-return]


async def detect(**options: Any) -> tuple[str, str]:
    """``(name, why)`` of the live source ``auto`` picks on this host.

    Each source module may define ``async def probe(**options) -> str | None`` returning None
    when it can run here, else the reason it cannot, and ``async def can_wait(**options)``
    describing how it would wait for its data to appear. Raises SourceUnavailable with every
    reason when no source can run or wait.
    """
    reasons = []
    for name in AUTO_ORDER:
        module_name = SOURCES[name].partition(":")[0]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            reasons.append(f"{name}: not part of this installation")
            continue
        probe = getattr(module, "probe", None)
        if probe is None:
            continue
        why_not = await probe(**options)
        if why_not is None:
            return name, getattr(module, "DESCRIPTION", name)
        reasons.append(f"{name}: {why_not}")
    # Nothing runs here now. A source that can wait for its data to appear (utmp, once a login
    # program creates /run/utmp) is better than refusing to watch at all.
    for name in AUTO_ORDER:
        module = importlib.import_module(SOURCES[name].partition(":")[0])
        can_wait = getattr(module, "can_wait", None)
        waiting = await can_wait(**options) if can_wait is not None else None
        if waiting is not None:
            return name, f"{waiting}; " + "; ".join(r for r in reasons
                                                   if not r.startswith(name))
    raise SourceUnavailable("no live source is available here (" + "; ".join(reasons) + ")")
