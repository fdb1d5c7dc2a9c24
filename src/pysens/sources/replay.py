"""Replay: events as JSON lines from a file (or ``-`` for standard input), live (``sens watch
--source FILE``) or as history (``sens import jsonl``).

A malformed line is reported with its line number and skipped; every other line is processed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from ..events import EventError, SensEvent
from ..observations import Observation
from . import HistoryKind, LiveKind, ReadError

__all__ = ["LineError", "Replay", "open_replay", "read_events", "read_jsonl"]

DESCRIPTION = "replay of a JSONL file"


class LineError(EventError):
    """One line of a JSONL file is not an event: ``where`` is ``FILE:LINE``."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


def read_events(
    lines: Iterable[str], name: str, on_error: Callable[[LineError], None]
) -> Iterator[SensEvent]:
    """The events of JSONL ``lines``; each bad line goes to ``on_error`` and is skipped."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield SensEvent.from_json(line)
        except EventError as e:
            on_error(LineError(f"{name}:{number}", str(e)))


class Replay:
    """A :class:`~pysens.sources.Source` that yields the events of a JSONL file in order."""

    name = "replay"

    def __init__(self, path: str, on_error: Callable[[LineError], None] | None = None) -> None:
        self.path = path
        self.errors: list[LineError] = []
        self._on_error = on_error

    def _error(self, e: LineError) -> None:
        self.errors.append(e)
        if self._on_error is not None:
            self._on_error(e)

    async def snapshot(self) -> list[Observation]:
        """A replay has no sessions before its first line."""
        return []

    async def watch(self) -> AsyncIterator[SensEvent]:
        """Every valid event of the file, in file order."""
        stream: IO[str]
        if self.path == "-":
            stream = sys.stdin
            name = "<stdin>"
        else:
            try:
                stream = await asyncio.to_thread(
                    Path(self.path).open, encoding="utf-8", errors="replace")
            except OSError as e:
                raise EventError(f"cannot read {self.path}: {e.strerror}") from None
            name = self.path
        try:
            number = 0
            while True:
                # Standard input may block (a pipe, a terminal): read it off the event loop.
                line = await asyncio.to_thread(stream.readline) if stream is sys.stdin else (
                    stream.readline())
                if not line:
                    break
                number += 1
                if not line.strip():
                    continue
                try:
                    yield SensEvent.from_json(line)
                except EventError as e:
                    self._error(LineError(f"{name}:{number}", str(e)))
        finally:
            if stream is not sys.stdin:
                stream.close()

    async def aclose(self) -> None:
        """Nothing to release."""


def open_replay(path: str, on_error: Callable[[LineError], None] | None = None) -> Replay:
    """The replay source for ``path`` (``-`` is standard input)."""
    return Replay(path, on_error)


def read_jsonl(path: str, on_error: Callable[[str], None]) -> Iterator[SensEvent]:
    """The history reader of ``sens import jsonl``: the events of a JSON-lines file (what
    ``sens history --json`` writes); ``-`` is standard input."""
    if path == "-":
        yield from read_events(sys.stdin, "<stdin>", lambda err: on_error(f"{err}; line skipped"))
        return
    try:
        stream = Path(path).open(encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as e:
        raise ReadError(f"cannot read {path}: {e.strerror or e}") from None
    with stream:
        yield from read_events(stream, path, lambda err: on_error(f"{err}; line skipped"))


async def _always(**_options: object) -> str | None:
    return None  # a file to replay needs nothing of the host


#: The registry's entries: replay as a live source, and the same files as history.
LIVE = LiveKind(DESCRIPTION, open_replay, _always)
HISTORY = HistoryKind(read_jsonl)
