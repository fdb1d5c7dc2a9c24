"""The jsonl sink: append each event as one JSON line (docs/events.md), then fsync.

A batch is written with one ``write`` and one ``fsync``, then the cursor moves: after a crash the
tail may be delivered again (at least once), never lost. A torn last line left by a crash in the
middle of a write is cut off when the sink opens, since that delivery is repeated anyway; a file
ending in anything else (not written by this sink) is never cut: a line break is added instead.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter
from pathlib import Path
from typing import Any

from ..aio import within
from ..events import SensEvent
from . import DEFAULT_TIMEOUT, SinkError

__all__ = ["JsonlSink"]


# What every line this sink writes starts with (``to_json`` puts the id first), and the longest
# torn line looked for: a file ending otherwise was not torn by us and is never cut.
_OUR_LINE = b'{"id": '
_TORN_MAX = 1 << 20

# Many subscriptions usually get the same events: encode each once (bounded, newest kept).
_LINES: OrderedDict[str, bytes] = OrderedDict()
_LINES_KEPT = 20_000


# The appends and fsyncs run on threads of their own: a burst to a hundred files must not queue
# the journal's commits (on asyncio's default threads) behind its fsyncs. Several at once, since
# the file system commits concurrent fsyncs together.
_WRITERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pysens-jsonl")


# ... and each batch once: a hundred subscriptions of one class are handed the same batches.
_BATCHES: OrderedDict[tuple[tuple[str, ...], tuple[int | None, ...]], bytes] = OrderedDict()
_BATCHES_KEPT = 16
_ID = attrgetter("id")
_SEQ = attrgetter("seq")


def _encode(events: Sequence[SensEvent]) -> bytes:
    """The batch's lines, joined."""
    key = (tuple(map(_ID, events)), tuple(map(_SEQ, events)))
    data = _BATCHES.get(key)
    if data is None:
        data = _BATCHES[key] = b"".join(map(_line, events))
        if len(_BATCHES) > _BATCHES_KEPT:
            _BATCHES.popitem(last=False)
    return data


def _line(event: SensEvent) -> bytes:
    key = f"{event.id}:{event.seq}"
    line = _LINES.get(key)
    if line is None:
        line = (json.dumps(event.to_json(), ensure_ascii=False) + "\n").encode()
        _LINES[key] = line
        if len(_LINES) > _LINES_KEPT:
            _LINES.popitem(last=False)
    return line


class JsonlSink:
    """Appends to ``settings["path"]`` (an absolute path)."""

    kind = "jsonl"
    #: A batch costs about what one event costs (one write, one fsync): the delivery loop hands
    #: this sink whole batches instead of sizing chunks by time.
    whole_batches = True

    def __init__(self, settings: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(self.validate(settings)["path"])
        self.timeout = timeout
        self._fd: int | None = None

    @staticmethod
    def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
        """``{"path": "/absolute/file.jsonl"}``."""
        path = settings.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("a jsonl sink needs a file path")
        return {"path": str(Path(path).expanduser().absolute())}

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            self._mend(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _mend(self, fd: int) -> None:
        """Make the file end with a whole line before appending to it.

        A torn line of ours (a crash cut the write short; that delivery is repeated) is cut
        off. Anything else without a final newline is someone else's text (the path named a
        file this sink does not own): it is kept, and our lines start on a line of their own.
        """
        size = os.fstat(fd).st_size
        if not size:
            return
        start = max(0, size - _TORN_MAX)
        with self.path.open("rb") as f:
            f.seek(start)
            tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        # With no line break in the last _TORN_MAX bytes of a longer file, it is not ours.
        if (cut >= 0 or start == 0) and tail[cut + 1:].startswith(_OUR_LINE):
            os.ftruncate(fd, start + cut + 1)
        else:
            view = memoryview(b"\n")
            while view:
                view = view[os.write(fd, view):]

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = self._open()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    async def deliver(self, events: Sequence[SensEvent]) -> None:
        """Append the batch and fsync it."""
        data = _encode(events)
        try:
            loop = asyncio.get_running_loop()
            await within(self.timeout, loop.run_in_executor(_WRITERS, self._write, data))
        except TimeoutError:
            raise SinkError(f"writing {self.path} took longer than {self.timeout:g} s") from None
        except OSError as e:
            self._reset()
            raise SinkError(f"cannot append to {self.path}: {e.strerror}") from None

    def _reset(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None

    async def aclose(self) -> None:
        """Close the file."""
        self._reset()
