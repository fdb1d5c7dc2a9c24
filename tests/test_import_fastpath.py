"""The bulk-import fast paths (issue 4) give exactly what the general paths give.

``SensEvent.trusted`` vs ``SensEvent(...)``, ``to_json_text`` / ``json_texts`` vs ``json.dumps``,
``Journal.append_count`` vs ``append_many``, ``decode_all`` vs ``decode_record``, and the wtmp
reader's stream (which leaves out lookups that cannot matter) vs ``observe`` record by record —
on real files written by ``utmpdump -r``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SHARED_DATA
from pysens.events import METHOD_CLASSES, Method, SensEvent, json_texts, make_event_id
from pysens.journal import Journal
from pysens.sources.utmprecord import LAYOUTS, decode_all, decode_record, encode_record
from pysens.sources.wtmp import observe_all, read_records, read_wtmp
from pysens.tracker import Tracker
from wtmp_fixtures import utmpdump_line, write_wtmp

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# Text the checking constructor takes: no NUL, no lone surrogate (it refuses both in a text
# field).
_text = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
texts = st.one_of(st.none(), st.text(_text, max_size=12))
times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC))
raws = st.dictionaries(st.text(max_size=6), st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=6),
    st.lists(st.integers(), max_size=3)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(list(METHOD_CLASSES)), time=times, observed=times,
       host=st.text(_text, min_size=1, max_size=8), source=st.text(_text, max_size=8),
       user=texts,
       sid=texts, tty=texts, logon_id=texts, domain=texts, reason=texts,
       remote=st.booleans(), synthesized=st.booleans(), raw=raws)
def test_trusted_is_the_checking_constructor(
    method: Method, time: datetime, observed: datetime, host: str, source: str,
    user: str | None, sid: str | None, tty: str | None, logon_id: str | None,
    domain: str | None, reason: str | None, remote: bool, synthesized: bool,
    raw: dict[str, object],
) -> None:
    fields = dict(user_name=user, session_id=sid, tty=tty, logon_id=logon_id, domain=domain,
                  reason=reason, remote=remote, synthesized=synthesized, raw=raw)
    fast = SensEvent.trusted(method, time, observed, host, source, **fields)  # type: ignore[arg-type]
    slow = SensEvent(method=method, time=time, observed=observed, host=host, source=source,
                     **fields)  # type: ignore[arg-type]
    assert fast == slow
    assert fast.id == make_event_id(time, host, source, method.value, slow.to_json()["time"],
                                    sid, user, tty, logon_id)
    # and the JSON text is json.dumps's, byte for byte, alone or in a batch sharing raw
    dumped = json.dumps(slow.to_json(), ensure_ascii=False, default=str)
    assert fast.to_json_text() == dumped
    twin = fast.evolve(method=Method.PostShell)
    assert json_texts([fast, twin, fast.with_seq(7)]) == [
        dumped, json.dumps(twin.to_json(), ensure_ascii=False, default=str),
        json.dumps(fast.with_seq(7).to_json(), ensure_ascii=False, default=str)]


def test_json_text_of_odd_values_falls_back_to_the_encoder() -> None:
    # Not what the types say, but SensEvent(...) does not check these: same text as before.
    odd = SensEvent(method="Logon", user_name=7, session_id="1", time=T0,  # type: ignore[arg-type]
                    host="h", remote=1, raw={"when": T0, "n": [1, None]})  # type: ignore[arg-type]
    assert odd.to_json_text() == json.dumps(odd.to_json(), ensure_ascii=False, default=str)
    assert json_texts([odd]) == [odd.to_json_text()]


def test_ids_are_the_ones_pysens_has_always_given() -> None:
    # Pinned from the implementation before the fast paths: ids are the idempotency key of
    # every journal and central store, so they must never change.
    t = datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    e = SensEvent(method="Logoff", user_name="alice", session_id="3", time=t, host="h",
                  source="wts")
    assert e.id == "01KJMDEB80PXY7J6SWA122DHEA"
    s = SensEvent.trusted(Method.PostShell, datetime(2020, 1, 1, tzinfo=UTC), T0, "web01",
                          "wtmp", user_name="bob", session_id="pts/1", tty="pts/1")
    assert s.id == "01DXF6DT00HHYQB1R51YN914CD"


def _ev(i: int, minutes: int) -> SensEvent:
    return SensEvent(method="Logon", user_name="alice", session_id=str(i), host="h",
                     source="test", time=T0 + timedelta(minutes=minutes), observed=T0)


def test_append_count_counts_like_append_many(tmp_path: Path) -> None:
    with Journal(tmp_path / "a.db") as a, Journal(tmp_path / "b.db") as b:
        batches = [
            [_ev(1, 10), _ev(2, 20)],
            [_ev(1, 10), _ev(3, 30), _ev(3, 30)],       # one known, one new twice
            [_ev(4, 5), _ev(2, 20), _ev(5, 40)],        # older than the newest id: looked up
            [_ev(2, 20)],                               # nothing new
        ]
        for batch in batches:
            results = a.append_many(batch, history=True)
            new = b.append_count(batch, history=True)
            assert new == sum(r.inserted for r in results)
        assert [e.to_json() for e in a.query()] == [e.to_json() for e in b.query()]
        assert [e.seq for e in b.query()] == [1, 2, 3, 4, 5]
    with sqlite3.connect(tmp_path / "b.db") as db:
        assert [r[0] for r in db.execute("SELECT seq FROM history ORDER BY seq")] == [1, 2, 3, 4, 5]


def test_decode_all_is_decode_record_with_the_same_complaints() -> None:
    good = [encode_record(type=7, user=f"u{i}", line=f"pts/{i}", host="h.example", pid=i,
                          time=T0 + timedelta(seconds=i), address="10.0.0.1" if i % 2 else None)
            for i in range(4)]
    bad_type = bytearray(good[1])
    bad_type[0] = 42
    bad_usec = bytearray(good[2])
    bad_usec[344:348] = (2_000_000).to_bytes(4, "little")
    data = good[0] + bytes(bad_type) + bytes(bad_usec) + good[3]
    complaints: list[tuple[int, str]] = []
    records = list(decode_all(data, LAYOUTS[0], 1000, lambda o, why: complaints.append((o, why))))
    assert records == [decode_record(data, 0, file_offset=1000),
                       decode_record(data, 1152, file_offset=2152)]
    assert complaints == [(1384, "ut_type 42 is not a utmp record type"),
                          (1768, "tv_usec 2000000 is out of range")]


def _events(observations: object) -> list[dict[str, object]]:
    tracker = Tracker(host="t")
    out = []
    for obs in observations:  # type: ignore[attr-defined]
        for e in tracker.feed(obs):
            d = e.to_json()
            d.pop("observed")
            out.append(d)
    return out


def test_wtmp_stream_makes_the_events_observe_makes(tmp_path: Path) -> None:
    t = T0
    lines = [
        utmpdump_line(7, "alice", "pts/1", t, pid=10, host="10.0.0.1"),
        utmpdump_line(7, "bob", "pts/2", t + timedelta(seconds=1), pid=11),
        # quick re-login on an open line by the same user: superseded, not a duplicate
        utmpdump_line(7, "alice", "pts/1", t + timedelta(seconds=2), pid=12),
        utmpdump_line(8, "", "pts/1", t + timedelta(seconds=3), pid=12),
        utmpdump_line(7, "alice", "pts/1", t + timedelta(seconds=4), pid=13),
        utmpdump_line(2, "reboot", "~", t + timedelta(seconds=5), host="6.1"),
        utmpdump_line(7, "carol", "pts/2", t + timedelta(seconds=6), pid=14),
        utmpdump_line(7, "carol", "pts/2", t + timedelta(seconds=7), pid=15),
        utmpdump_line(8, "", "pts/9", t + timedelta(seconds=8), pid=99),
    ]
    whole = write_wtmp(tmp_path / "wtmp", lines)
    # the same history cut in two files, a session open across the cut (rotated wtmp)
    first = write_wtmp(tmp_path / "wtmp.1", lines[:2])
    second = write_wtmp(tmp_path / "wtmp.2", lines[2:])

    def by_records(*paths: Path) -> list[dict[str, object]]:
        return _events(o for p in paths for o in observe_all(read_records(str(p), print)))

    def by_stream(*paths: Path) -> list[dict[str, object]]:
        return _events(o for p in paths for o in read_wtmp(str(p), print))

    assert by_stream(whole) == by_records(whole)
    assert by_stream(first, second) == by_records(first, second)
    assert [e["reason"] for e in by_stream(first, second) if e["method"] == "Logoff"] == [
        "superseded", None, "crash", "crash", "superseded"]


def test_real_files_same_events_either_way() -> None:
    for path in sorted((SHARED_DATA / "wtmp").iterdir()):
        if path.name.endswith((".txt", ".jsonl", ".md", ".aligned384")):
            continue
        errors: list[str] = []
        stream = _events(read_wtmp(str(path), errors.append))
        plain = _events(observe_all(read_records(str(path), errors.append)))
        assert stream == plain, path.name
