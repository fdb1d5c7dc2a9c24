"""Windows event logs (.evtx) -> observations, for ``sens import evtx`` (docs/sources.md).

Reads with the ``evtx`` package (pyevtx-rs, the ``evtx`` extra), imported inside the functions so
this module imports without it. The mapping itself is :mod:`pysens.sources.evtx_map` (pure).

:func:`read_evtx` is the import reader for one file; :func:`read_evtx_files` reads several logs
of one machine (Security, LocalSessionManager/Operational, System) as one time-ordered stream, which
is what lets a reconnect logged in two channels become one event. Times are each record's
``System/TimeCreated/@SystemTime`` (the record header's own time can be centuries off), the host
is the record's ``Computer`` (its first label), the source ``evtx``.

Damage never stops a read: a record or chunk the parser rejects is reported through ``on_error``
with the file, the record number and the chunk and its file offset, and the rest is read; a file
cut short is reported once and the records of its last, partial chunk are still read.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..observations import Observation
from . import HistoryKind, ReadError
from .evtx_map import RELEVANT_EVENT_IDS, Record, RecordError, correlate, parse_record

__all__ = ["CHUNK_SIZE", "HEADER_SIZE", "Chunk", "iter_records", "read_evtx", "read_evtx_files"]

HEADER_SIZE = 4096
CHUNK_SIZE = 65536
_FILE_MAGIC = b"ElfFile\x00"
_CHUNK_MAGIC = b"ElfChnk\x00"
_EVENT_ID = re.compile(r'"EventID":(?:\{[^{}]*"#text":)?(\d+)')
_RECORD_NO = re.compile(r"record number (\d+)")
_RECORD_IDS = re.compile(r"record IDs (\d+)\.\.(\d+)")
_CHUNK_NO = re.compile(r"chunk number (\d+)")
_OFFSET = re.compile(r"Offset (0x[0-9a-fA-F]+)")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of the file as its header describes it."""

    index: int
    offset: int
    first: int
    last: int


def _chunks(data: BinaryIO, size: int) -> list[Chunk]:
    out = []
    index = 0
    offset = HEADER_SIZE
    while offset + 40 <= size:
        data.seek(offset)
        head = data.read(40)
        if head[:8] == _CHUNK_MAGIC:
            first, last = struct.unpack_from("<QQ", head, 24)
            out.append(Chunk(index, offset, first, last))
        index += 1
        offset += CHUNK_SIZE
    return out


def _where(
    chunks: list[Chunk], message: str, previous: int | None, current: Chunk | None
) -> str:
    """Where the parser's error happened, in words: record, chunk, file offset. ``current`` is
    the chunk of the last good record (chunk headers of recovered logs can be stale)."""
    chunk: Chunk | None = None
    record: str
    if (m := _RECORD_NO.search(message)) is not None:
        n = int(m.group(1))
        chunk = next((c for c in chunks if c.first <= n <= c.last), current)
        record = f"record {n}"
    elif (m := _RECORD_IDS.search(message)) is not None:
        a, b = int(m.group(1)), int(m.group(2))
        chunk = next((c for c in chunks if c.first == a), None)
        record = f"records {a} to {b}"
    elif (m := _CHUNK_NO.search(message)) is not None:
        k = int(m.group(1))
        chunk = next((c for c in chunks if c.index == k), None)
        offset = HEADER_SIZE + k * CHUNK_SIZE
        return f"chunk {k} at offset {offset}"
    else:
        after = (previous or 0) + 1
        chunk = next((c for c in chunks if c.first <= after <= c.last), current)
        record = f"the records after record {previous}" if previous else "the first records"
    if chunk is None:
        return record
    where = f"{record} (chunk {chunk.index} at offset {chunk.offset}"
    if (m := _OFFSET.search(message)) is not None:
        where += f", damage at offset {chunk.offset + int(m.group(1), 16)}"
    return where + ")"


def _detail(message: str) -> str:
    text = message.split(": ", 1)[-1] if message.startswith("Failed to parse") else message
    return text.replace("An error occurred while trying to deserialize evtx stream.: ", "").strip()


def _open(path: str, on_error: Callable[[str], None]) -> tuple[Any, list[Chunk]]:
    """The parser's input (the path, or the padded bytes of a cut file) and its chunk table."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(HEADER_SIZE)
            size = f.seek(0, io.SEEK_END)
            if len(head) < 128 or head[:8] != _FILE_MAGIC:
                what = "too short" if len(head) < 128 else "not an .evtx file"
                raise ReadError(f"{path} is {what} (no ElfFile header), so it was not read")
            chunks = _chunks(f, size)
            cut = (size - HEADER_SIZE) % CHUNK_SIZE if size > HEADER_SIZE else 0
            (declared,) = struct.unpack_from("<H", head, 42)
            if not cut:
                full = HEADER_SIZE + declared * CHUNK_SIZE
                if declared and len(chunks) < declared and size < full:
                    on_error(f"{path}: the file ends at offset {size}, but its header declares "
                             f"{declared} chunks ({full} bytes); "
                             f"the missing chunks were not read")
                return path, chunks
            start = size - cut
            on_error(f"{path}: the file is cut short at offset {size}, inside chunk "
                     f"{(start - HEADER_SIZE) // CHUNK_SIZE} (offset {start}, {cut} of "
                     f"{CHUNK_SIZE} bytes); the records in that part were read, the rest is lost")
            f.seek(0)
            # The parser silently drops a partial chunk; padded to full size, its whole
            # records are still read.
            data = f.read() + bytes(CHUNK_SIZE - cut)
            buf = io.BytesIO(data)
            chunks = _chunks(buf, len(data))
            buf.seek(0)
            return buf, chunks
    except OSError as e:
        raise ReadError(f"cannot read {path}: {e.strerror or e}") from None


def iter_records(path: str, on_error: Callable[[str], None]) -> Iterator[Record]:
    """The relevant records of one file, in file order (not time order)."""
    try:
        from evtx import PyEvtxParser
    except ImportError:
        raise ReadError("reading .evtx files needs the evtx package: pip install "
                        "'pysens[evtx]'") from None

    source, chunks = _open(path, on_error)
    try:
        records = PyEvtxParser(source).records_json()
    except (OSError, RuntimeError) as e:
        raise ReadError(f"{path} is not a readable .evtx file ({_detail(str(e))})") from None
    previous: int | None = None
    starts = {c.first: c for c in chunks}
    current: Chunk | None = None
    while True:
        try:
            item = next(records)
        except StopIteration:
            break
        except (RuntimeError, OSError) as e:
            msg = str(e)
            on_error(f"{path}: {_where(chunks, msg, previous, current)} could not be parsed "
                     f"({_detail(msg)}); skipped")
            continue
        if item is None:
            continue
        number: int = item["event_record_id"]
        previous = number
        current = starts.get(number, current)
        text: str = item["data"]
        m = _EVENT_ID.search(text)
        if m is not None and int(m.group(1)) not in RELEVANT_EVENT_IDS:
            continue
        try:
            rec = parse_record(json.loads(text), number, path)
        except (RecordError, ValueError) as e:
            on_error(f"{path}: record {number}: {e}; skipped")
            continue
        if rec is not None:
            yield rec


def read_evtx_files(paths: Iterable[str], on_error: Callable[[str], None]) -> Iterator[Observation]:
    """The observations of several logs read as one stream (all records merged by time).

    A file that cannot be read at all raises :class:`~pysens.sources.ReadError`.
    """
    records: list[Record] = []
    for order, path in enumerate(paths):
        for rec in iter_records(path, on_error):
            rec.order = order
            records.append(rec)
    yield from correlate(records)


def read_evtx(path: str, on_error: Callable[[str], None]) -> Iterator[Observation]:
    """The import reader (``sens import evtx``): the observations of one .evtx file."""
    return read_evtx_files([path], on_error)


#: The registry's entry (``sens import evtx``): the files of one host are read together.
HISTORY = HistoryKind(read_evtx, read_many=read_evtx_files)
