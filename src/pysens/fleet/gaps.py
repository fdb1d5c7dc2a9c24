"""Loss the fleet could not prevent, never silent: stream messages gone before any collector
stored them.

Two ways it happens. The stream's first sequence moves past what the collectors have stored
(its retention ran while they were down or behind, an admin purged it). Or the stream is made
anew (an R1 stream whose node lost its disk, a stream deleted and re-created): what the old one
held after the last stored sequence is gone.

The collectors keep, in the store beside the events, a :class:`~pysens.fleet.store.CollectorMark`
per durable consumer: the stream's creation time, the highest sequence stored and the stream's
highest sequence seen. :func:`find_gaps` compares it with the stream as it is; each gap is one
log line (how many, which range, why) and one row of the store's ``gaps`` table.

Only a consumer of the whole stream can tell: with a narrower subject filter, the sequences
between two of its messages belong to other subjects.
"""

from __future__ import annotations

from .store import CollectorMark, Gap, now_us
from .stream import StreamState

__all__ = ["describe_gap", "find_gaps"]


def find_gaps(stream: str, mark: CollectorMark, state: StreamState) -> list[Gap]:
    """The gaps between what ``mark`` says was stored and the stream as ``state`` shows it."""
    if mark.created is None:
        return []  # a consumer's first look: what expired before it existed is no loss
    now = now_us()
    if state.created and mark.created != state.created:
        if mark.last_seq <= mark.floor_seq:
            return []
        lost = mark.last_seq - mark.floor_seq
        return [Gap(stream, mark.floor_seq + 1, mark.last_seq, lost,
                    f"the stream was made anew (created {state.created}, before "
                    f"{mark.created}); up to {lost:,} of its messages were never stored",
                    now)]
    first_missing = mark.floor_seq + 1
    if state.first_seq > first_missing:
        last = state.first_seq - 1
        lost = last - mark.floor_seq
        return [Gap(stream, first_missing, last, lost,
                    "no longer in the stream when a collector came for them (its retention, "
                    "a purge or a lost replica removed them first)", now)]
    return []


def describe_gap(gap: Gap) -> str:
    """The one log line of a gap."""
    return (f"the stream {gap.stream} lost {gap.lost:,} message(s) before they were stored, "
            f"sequences {gap.first_seq}-{gap.last_seq}: {gap.reason}; kept in the store's gaps "
            "table")
