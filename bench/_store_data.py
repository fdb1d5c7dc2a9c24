"""A year of a fleet's events for bench_store.py (not a benchmark itself).

Each host is a small state machine: sessions one after another (Logon, PostShell, lock/unlock
pairs, disconnect/reconnect pairs for remote ones, Logoff; those still running at ``now`` stay
open), and beside them network and power events (a laptop's ConnectionLost / ConnectionMade,
DestinationReachable, OnBatteryPower / OnACPower / BatteryLow). Windows hosts reuse small
session ids (a console "1", RDP "2".."6") with a fresh logon id each time, Linux hosts count
their logind session ids up. Every event is a real :class:`~pysens.events.SensEvent` with its
journal ``seq``; its body is what a forwarder sends, and its :class:`StoredEvent` the columns
``check_message`` would take from that body (bench_store.py checks a sample).

Deterministic for a given seed, host count and ``now``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pysens.events import Method, SensEvent
from pysens.fleet.store import StoredEvent

M = Method
_SET_SEQ = getattr(SensEvent, "seq").__set__  # noqa: B009 - the slot descriptor, as events.py
HOUR = 3_600_000_000  # µs
DAY = 24 * HOUR
#: Session events per session, on average (see _session), and the share of other events.
PER_SESSION = 4.65
OTHER_SHARE = 0.12


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


@dataclass(slots=True)
class Host:
    """One host of the fleet and what its generator needs."""

    name: str
    windows: bool
    laptop: bool
    users: list[str]
    rng: random.Random
    seq: int = 0
    next_sid: int = 100
    events: int = 0
    first_us: int = -1
    last_us: int = -1
    open_users: list[str] = field(default_factory=list)


def make_hosts(n: int, seed: int) -> list[Host]:
    """``n`` hosts: 60 % Windows (a third of them laptops), 40 % Linux servers."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        windows = rng.random() < 0.6
        name = f"{'ws' if windows else 'srv'}{i:05d}"
        users = [f"u{rng.randrange(5000):04d}" for _ in range(rng.randint(1, 4))]
        out.append(Host(name, windows, windows and rng.random() < 0.33, users,
                        random.Random(f"{seed}:{name}")))
    return out


def _session(h: Host, start: int, now: int) -> list[tuple[int, Method, dict[str, object]]]:
    """One session's events from ``start`` (times in µs; those after ``now`` are not yet)."""
    r = h.rng
    kind = r.random()
    if kind < 0.5:
        length = r.uniform(1, 6) * HOUR
    elif kind < 0.95:
        length = r.uniform(5, 60) * 60_000_000
    else:
        length = r.uniform(10, 30) * HOUR
    user = r.choice(h.users)
    remote = r.random() < 0.3 if h.windows else r.random() < 0.8
    info: dict[str, object] = {"user_name": user, "remote": remote}
    if h.windows:
        info.update(session_id="1" if not remote else str(r.randint(2, 6)), domain="CORP",
                    logon_id=f"0x{r.getrandbits(32):x}",
                    session_type="rdp" if remote else "console")
        source = "wts"
    else:
        h.next_sid += 1
        info.update(session_id=str(h.next_sid),
                    session_type="tty" if remote else "wayland",
                    tty=f"pts/{r.randrange(8)}" if remote else None,
                    seat=None if remote else "seat0")
        source = "logind"
    if remote:
        info["client_address"] = f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        info["client_name"] = f"pc{r.randrange(2000):04d}" if h.windows else None
    info["source"] = source
    end = start + int(length)
    out = [(start, M.Logon, info), (start + r.randint(500_000, 5_000_000), M.PostShell, info)]
    t = out[-1][0]
    # Locks and unlocks on a console, disconnects and reconnects of a remote desktop.
    pairs = ((M.SessionDisconnect, M.SessionReconnect) if remote and h.windows
             else (M.DisplayLock, M.DisplayUnlock) if not remote else None)
    if pairs is not None:
        while True:
            t += int(r.expovariate(1 / (2 * HOUR)))
            back = t + int(r.expovariate(1 / (20 * 60_000_000)))
            if back >= end:
                break
            out += [(t, pairs[0], info), (back, pairs[1], info)]
            t = back
    out.append((end, M.Logoff, {**info, "reason": "user"}))
    return [e for e in out if e[0] < now]


def _others(h: Host, start: int, now: int, rate: float
            ) -> Iterator[tuple[int, Method, dict[str, object]]]:
    """Network and power events of ``h`` from ``start`` to ``now`` (``rate``: per µs)."""
    r = h.rng
    t = start
    iface = "wlan0" if h.laptop else ("Ethernet" if h.windows else "eth0")
    while True:
        t += int(r.expovariate(rate)) + 1
        if t >= now:
            return
        x = r.random()
        net: dict[str, object] = {"connection": iface, "connection_type": 0}
        if h.laptop and x < 0.3:
            yield t, M.OnBatteryPower, {"battery_percent": r.randint(20, 100)}
            if r.random() < 0.2:
                yield t + 1000, M.BatteryLow, {"battery_percent": r.randint(3, 10)}
            yield t + 2000, M.OnACPower, {}
        elif x < 0.7:
            yield t, M.ConnectionLost, net
            yield t + r.randint(1_000_000, 60_000_000), M.ConnectionMade, {
                **net, "qoc": {"flags": 1, "in_speed": 1_000_000_000,
                               "out_speed": 1_000_000_000}}
        else:
            yield t, M.DestinationReachable, {**net, "destination": "fileserver.corp",
                                              "qoc": {"flags": 1, "in_speed": 100_000_000,
                                                      "out_speed": 100_000_000}}


def host_events(h: Host, start: int, now: int, per_host: float
                ) -> Iterator[tuple[int, Method, dict[str, object]]]:
    """Everything ``h`` says from ``start`` to ``now``, in time order (~``per_host`` events)."""
    span = now - start
    sessions = per_host * (1 - OTHER_SHARE) / PER_SESSION
    gap = max(span / max(sessions, 1e-9) - 3 * HOUR, HOUR)  # sessions last ~3 h on average

    def session_stream() -> Iterator[tuple[int, Method, dict[str, object]]]:
        t = start + int(h.rng.uniform(0, gap))
        while t < now:
            events = _session(h, t, now)
            yield from events
            t = max(e[0] for e in events) + int(h.rng.expovariate(1 / gap)) + 1
            if events[-1][1] != M.Logoff:
                return  # still open now

    rate = per_host * OTHER_SHARE / span / 1.6  # _others yields ~1.6 events per draw
    return heapq.merge(session_stream(), _others(h, start, now, rate), key=lambda e: e[0])


def stored(h: Host, t_us: int, method: Method, info: dict[str, object]) -> StoredEvent:
    """The event ``h`` journals at ``t_us``, as the store keeps it (its body has its seq)."""
    h.seq += 1
    t = _dt(t_us)
    source = str(info.pop("source", None) or ("wts" if h.windows else "networkmanager"))
    try:
        e = SensEvent.trusted(method, t, t, h.name, source, **info)  # type: ignore[arg-type]
    finally:
        info["source"] = source
    _SET_SEQ(e, h.seq)  # what with_seq gives, without the copy
    h.events += 1
    if h.first_us < 0:
        h.first_us = t_us
    h.last_us = t_us
    g = info.get
    return StoredEvent(
        e.id, h.name, t_us, str(method), e.user_name, e.session_id, h.seq,
        f"sens.{h.name}.{method}", e.to_json_text(), t_us + 40_000, source, e.domain,
        e.logon_id, e.session_type, e.tty, e.seat, e.remote, e.client_name, e.client_address,
        g("connection"), g("connection_type"), g("destination"),  # type: ignore[arg-type]
        g("battery_percent"))  # type: ignore[arg-type]


def fleet_days(hosts: list[Host], events: int, now: int, days: int = 365
               ) -> Iterator[list[StoredEvent]]:
    """The fleet's events a day at a time, each day's in time order (what a collector would
    have stored that day)."""
    start = now - days * DAY
    per_host = events / len(hosts)
    streams = [host_events(h, start, now, per_host) for h in hosts]
    pending: list[tuple[int, Method, dict[str, object]] | None] = [next(s, None) for s in streams]
    day_end = start + DAY
    while day_end < now + DAY:
        batch: list[StoredEvent] = []
        for i, h in enumerate(hosts):
            item = pending[i]
            while item is not None and item[0] < day_end:
                batch.append(stored(h, *item))
                item = next(streams[i], None)
            pending[i] = item
        batch.sort(key=lambda e: e.time_us)
        yield batch
        day_end += DAY


def now_floor() -> int:
    """Now, to the second, in µs."""
    return int(datetime.now(UTC).replace(microsecond=0).timestamp()) * 1_000_000


__all__ = ["DAY", "HOUR", "Host", "fleet_days", "make_hosts", "now_floor", "stored"]
