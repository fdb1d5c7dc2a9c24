"""The jsonl sink: append each event as one SPEC §2 JSON line, then fsync.

A batch is written with one ``write`` and one ``fsync``, then the cursor moves: after a crash the
tail may be delivered again (at least once), never lost. A torn last line left by a crash in the
middle of a write is cut off when the sink opens, since that delivery is repeated anyway.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..aio import within
from ..events import SensEvent
from . import DEFAULT_TIMEOUT, SinkError

__all__ = ["JsonlSink"]


# Many subscriptions usually get the same events: encode each once (bounded, newest kept).
_LINES: OrderedDict[str, bytes] = OrderedDict()
_LINES_KEPT = 20_000


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
        size = os.fstat(fd).st_size
        if size:
            with self.path.open("rb") as f:
                f.seek(max(0, size - 65536))
                tail = f.read()
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                os.truncate(self.path, size - len(tail) + cut + 1 if cut >= 0 else 0)
        return fd

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = self._open()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    async def deliver(self, events: Sequence[SensEvent]) -> None:
        """Append the batch and fsync it."""
        data = b"".join(map(_line, events))
        try:
            await within(self.timeout, asyncio.to_thread(self._write, data))
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
