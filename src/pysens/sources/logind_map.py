"""Pure mapping from systemd-logind session properties to :mod:`pysens.observations`.

No I/O and no D-Bus import: the live source (:mod:`pysens.sources.logind`) unwraps the D-Bus
values into plain Python (:func:`plain`) and these functions turn them into
:class:`~pysens.observations.SessionInfo` fields. Any property may be missing (older logind,
elogind, a session that went away half-read): a missing property gives ``None``, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ..observations import SessionInfo
from .dbus import plain

__all__ = [
    "TRACKED_FIELDS",
    "changes_from_properties",
    "diff_info",
    "info_from_properties",
    "plain",
    "since_from_timestamp",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: SessionInfo fields a re-read compares (after a gap) to report what changed meanwhile.
TRACKED_FIELDS = (
    "user_name", "session_type", "session_class", "tty", "seat", "remote", "client_address",
    "active", "locked", "state",
)


def _text(props: Mapping[str, Any], name: str) -> str | None:
    v = props.get(name)
    return v if isinstance(v, str) and v else None


def _flag(props: Mapping[str, Any], name: str) -> bool | None:
    v = props.get(name)
    return v if isinstance(v, bool) else None


def _seat(value: Any) -> str | None:
    # Seat is (so): ("seat0", "/org/freedesktop/login1/seat/seat0"), or ("", "/") when seatless.
    if isinstance(value, list | tuple) and value and isinstance(value[0], str) and value[0]:
        return value[0]
    return None


def since_from_timestamp(value: Any) -> datetime | None:
    """logind's ``Timestamp`` (µs since the epoch) as a UTC datetime; None when absent or 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        try:
            return _EPOCH + timedelta(microseconds=value)
        except OverflowError:
            return None
    return None


def info_from_properties(
    props: Mapping[str, Any], *, session_id: str | None = None, user_name: str | None = None
) -> SessionInfo:
    """The :class:`SessionInfo` for one session's ``GetAll`` answer (plain values).

    ``session_id`` and ``user_name`` are what the signal or ``ListSessions`` said; the
    properties win when they have them. User names are kept exactly as logind has them
    (control characters included: they are data, escaped only when printed).
    """
    seat = _seat(props.get("Seat"))
    remote_host = _text(props, "RemoteHost")
    remote = _flag(props, "Remote")
    return SessionInfo(
        session_id=_text(props, "Id") or session_id,
        user_name=_text(props, "Name") or user_name,
        # A seat names the console the session sits at; a seatless session is named after the
        # PAM service that opened it (sshd, su-l, xrdp-sesman), as Windows names RDP-Tcp#N.
        session_name=seat or _text(props, "Service"),
        session_type=_text(props, "Type"),
        session_class=_text(props, "Class"),
        tty=_text(props, "TTY"),
        seat=seat,
        remote=remote if remote is not None else remote_host is not None,
        client_address=remote_host,
        active=_flag(props, "Active"),
        locked=_flag(props, "LockedHint"),
        state=_text(props, "State"),
        since=since_from_timestamp(props.get("Timestamp")),
        raw=dict(props),
    )


def changes_from_properties(changed: Mapping[str, Any]) -> dict[str, Any]:
    """The SessionInfo fields a PropertiesChanged payload (plain values) sets.

    Only properties present in ``changed`` appear, so a VT switch (logind sends ``Active``
    alone) changes ``active`` and nothing else.
    """
    out: dict[str, Any] = {}
    for prop, value in changed.items():
        if prop == "Active" and isinstance(value, bool):
            out["active"] = value
        elif prop == "LockedHint" and isinstance(value, bool):
            out["locked"] = value
        elif prop == "Remote" and isinstance(value, bool):
            out["remote"] = value
        elif prop in _TEXT_FIELDS:
            out[_TEXT_FIELDS[prop]] = value if isinstance(value, str) and value else None
        elif prop == "Seat":
            out["seat"] = _seat(value)
    return out


_TEXT_FIELDS = {
    "State": "state", "Type": "session_type", "Class": "session_class", "TTY": "tty",
    "Name": "user_name", "RemoteHost": "client_address",
}


def diff_info(old: SessionInfo, new: SessionInfo) -> dict[str, Any]:
    """The tracked fields that differ between two reads of one session (new values)."""
    return {f: getattr(new, f) for f in TRACKED_FIELDS if getattr(old, f) != getattr(new, f)}
