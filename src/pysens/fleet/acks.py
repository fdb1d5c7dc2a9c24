"""What a forwarder learns from JetStream's publish acknowledgements.

A PubAck is ``{"stream":"SENS","seq":51}`` (``"duplicate":true`` when the stream already had
the message, with the original's sequence). For one stream, the sequences of new messages only
grow; a new message acknowledged at or below a sequence seen before means the stream started
over: an R1 stream whose node came back without its disk, a stream deleted and made again.
Whatever the old stream held and no collector had stored yet is gone from it, but a forwarder
still has those events in its journal: :class:`AckHistory` remembers which journal events the
recent acks were for, so that they can be published again (the store ignores the events it
already has).
"""

from __future__ import annotations

import json
from collections import deque

__all__ = ["AckHistory", "ack_error", "ack_seq"]


def ack_seq(data: bytes) -> int | None:
    """The stream sequence of a positive PubAck (None when it has none)."""
    at = data.find(b'"seq":')
    if at < 0:
        return None
    end = at + 6
    while end < len(data) and data[end:end + 1] in b" 0123456789":
        end += 1
    try:
        return int(data[at + 6:end])
    except ValueError:
        return None


def ack_error(headers: dict[str, str] | None, data: bytes) -> str:
    """What a negative JetStream publish reply says, in one phrase."""
    code = (headers or {}).get("Status", "")
    if code == "503":
        return "no JetStream stream takes this subject, or it has no leader now (no responders)"
    try:
        err = json.loads(data).get("error") or {}
        return str(err.get("description") or err)
    except (ValueError, AttributeError):
        return f"status {code}" if code else "an unreadable reply"


class AckHistory:
    """The last ``keep`` (journal seq, stream seq) pairs of new messages acknowledged, and the
    start-over they reveal."""

    def __init__(self, keep: int = 200_000) -> None:
        self._pairs: deque[tuple[int, int]] = deque(maxlen=keep)
        self.top = 0
        #: set when an ack showed the stream started over: (the journal seq to publish again
        #: after, the highest stream sequence seen before, the new one)
        self.reset: tuple[int, int, int] | None = None

    def saw(self, journal_seq: int, stream_seq: int) -> None:
        """A new message (not a duplicate) was acknowledged."""
        if stream_seq <= self.top and self.reset is None:
            earliest = min((j for j, s in self._pairs), default=journal_seq)
            self.reset = (earliest - 1, self.top, stream_seq)
            self._pairs.clear()
            self.top = 0
            return
        self.top = max(self.top, stream_seq)
        self._pairs.append((journal_seq, stream_seq))

    def take_reset(self) -> tuple[int, int, int] | None:
        """The start-over seen since the last call, once."""
        reset, self.reset = self.reset, None
        return reset
