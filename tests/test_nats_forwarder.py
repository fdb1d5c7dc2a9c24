"""The forwarder against a real nats-server with JetStream (private port, own store dir)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet_fixtures import NatsServer, await_for, free_port, nats_server, storm, stream_messages
from pysens.cli.forward import main
from pysens.events import SensEvent
from pysens.fleet.forwarder import Forwarder
from pysens.fleet.stream import host_from_token, host_token, subject_for
from pysens.journal import Journal

__all__ = ["nats_server"]


@given(st.text(max_size=40))
def test_host_token_is_one_valid_subject_token_and_reversible(host: str) -> None:
    token = host_token(host)
    assert token
    assert not any(c in token for c in ".*>") and not any(c.isspace() for c in token)
    assert host_from_token(token) == host


def test_host_token_examples() -> None:
    assert host_token("web01") == "web01"
    assert host_token("web01.example.com") == "web01%2Eexample%2Ecom"
    assert host_token("a b*>") == "a%20b%2A%3E"
    assert host_token("a%2E") != host_token("a.")  # '%' itself is escaped
    assert subject_for("db.lan", "Logon") == "sens.db%2Elan.Logon"


async def test_forwards_every_event_once_with_its_id_and_seq(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "j.db")
    events = storm("web01.example.com", 30) + storm("db2", 20)
    journal.append_many(events)
    fwd = Forwarder(journal, nats_server.url, max_msgs=100_000, max_bytes=50_000_000,
                    max_age=3600)
    await fwd.run(drain=True)
    assert fwd.stats.acked == 50 and fwd.stats.duplicates == 0
    assert journal.cursor(f"forward:{nats_server.url}") == journal.last_seq() == 50
    msgs = await stream_messages(nats_server.url)
    assert len(msgs) == 50
    by_id = {m.headers["Nats-Msg-Id"]: m for m in msgs}
    for e in journal.query():
        m = by_id[e.id]
        assert m.subject == subject_for(e.host, str(e.method))
        body = json.loads(m.data)
        assert body["id"] == e.id and body["seq"] == e.seq and body["host"] == e.host
    import nats

    nc = await nats.connect(nats_server.url)
    cfg = (await nc.jetstream().stream_info("SENS")).config
    await nc.close()
    assert (cfg.subjects, cfg.max_msgs, cfg.max_bytes, cfg.max_age) == (
        ["sens.>"], 100_000, 50_000_000, 3600)
    await fwd.aclose()
    journal.close()


async def test_republishing_from_an_old_cursor_adds_nothing(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.append_many(storm("h1", 40))
    fwd = Forwarder(journal, nats_server.url)
    await fwd.run(drain=True)
    await fwd.aclose()
    # A crash before the cursor was saved looks like this: everything goes out again.
    journal.set_cursor(fwd.cursor_name, 0)
    again = Forwarder(journal, nats_server.url)
    await again.run(drain=True)
    assert again.stats.acked == 40 and again.stats.duplicates == 40
    assert len(await stream_messages(nats_server.url)) == 40
    await again.aclose()


async def test_host_override_names_the_subject_but_not_the_event(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.append_many(storm("web01", 5))
    fwd = Forwarder(journal, nats_server.url, host="4f1c-uuid")
    await fwd.run(drain=True)
    await fwd.aclose()
    msgs = await stream_messages(nats_server.url)
    assert {m.subject.split(".")[1] for m in msgs} == {"4f1c-uuid"}
    assert {json.loads(m.data)["host"] for m in msgs} == {"web01"}


async def test_unreachable_server_logs_one_sentence_and_events_flow_when_it_comes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = NatsServer(tmp_path / "js", port=free_port())
    journal = Journal(tmp_path / "j.db")
    journal.append_many(storm("h1", 10))
    fwd = Forwarder(journal, server.url, backoff=(0.05, 0.2), poll_interval=0.05)
    caplog.set_level(logging.DEBUG, "pysens.forward")
    task = asyncio.create_task(fwd.run())
    try:
        await await_for(lambda: fwd.stats.failures >= 3, "several failed attempts")
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings  # one sentence per outage, not one per retry
        text = warnings[0].getMessage()
        assert server.url in text and "cannot reach" in text and "\n" not in text
        journal.append_many(storm("h1", 10, start=10))  # journaling goes on meanwhile
        assert fwd.pending == 20
        server.start()
        await await_for(lambda: fwd.stats.cursor == 20, "the backlog to be forwarded")
        assert len(await stream_messages(server.url)) == 20
    finally:
        await fwd.aclose()
        await task
        server.stop()
        journal.close()


async def test_not_a_nats_url_is_one_sentence_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "j.db")
    fwd = Forwarder(journal, "nats://no-such-host.invalid:4222", backoff=(0.05, 0.1))
    task = asyncio.create_task(fwd.run())
    await await_for(lambda: fwd.stats.failures >= 2, "retries")
    await fwd.aclose()
    await task
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "no-such-host.invalid" in warnings[0]
    journal.close()


async def test_server_restart_in_the_middle_loses_and_doubles_nothing(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "j.db")
    fwd = Forwarder(journal, nats_server.url, backoff=(0.05, 0.5), poll_interval=0.05,
                    ack_timeout=2)
    task = asyncio.create_task(fwd.run())
    total = 0
    try:
        for round_ in range(6):
            journal.append_many(storm("h1", 500, start=total))
            total += 500
            fwd.notify()
            if round_ == 2:
                await await_for(lambda: fwd.stats.cursor > 0, "some events forwarded")
                await asyncio.to_thread(nats_server.restart)
        await await_for(lambda: fwd.stats.cursor == total, "every event to be acknowledged")
        assert fwd.stats.connects >= 2
    finally:
        await fwd.aclose()
        await task
    msgs = await stream_messages(nats_server.url)
    ids = [m.headers["Nats-Msg-Id"] for m in msgs]
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == {e.id for e in journal.query()}
    journal.close()


def test_standalone_forwarder_drains(nats_server: NatsServer, tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        journal.append_many(storm("h9", 25))
    assert main([nats_server.url, "--journal", str(path), "--drain"]) == 0
    with Journal(path) as journal:
        assert journal.cursor(f"forward:{nats_server.url}") == 25


def test_published_body_is_the_event_with_its_seq_whatever_the_stored_shape() -> None:
    from pysens.events import SensEvent
    from pysens.fleet.forwarder import _payload

    e = SensEvent(method="Logon", user_name="alice", session_id="3", raw={"seq": "x"})
    want = e.evolve(seq=42).to_json_text()
    # Today's journal body (no seq key): patched as text, the very text to_json_text gives.
    assert _payload(e.to_json_text(), 42, e.id).decode() == want
    # An older journal's body ending in "seq": null, and a body in no known shape.
    obj = e.to_json()
    obj.pop("seq", None)
    old = json.dumps({**obj, "seq": None})
    assert json.loads(_payload(old, 42, e.id)) == json.loads(want)
    odd = json.dumps(dict(reversed(list(obj.items()))), indent=1)
    assert json.loads(_payload(odd, 42, e.id)) == json.loads(want)


def _with_giants(host: str) -> list[SensEvent]:
    """Small events around one with a 20 kB ``raw`` and one with a 20 kB user name."""
    events = storm(host, 3)
    events.append(events[0].evolve(id="", session_id="big-raw", raw={"blob": "x" * 20_000}))
    events += storm(host, 3, start=3)
    events.append(events[0].evolve(id="", session_id="big-user", user_name="u" * 20_000))
    events += storm(host, 3, start=6)
    return events


@pytest.mark.parametrize("where", ["server max_payload", "stream max_msg_size"])
async def test_an_event_over_the_message_limit_does_not_stall_the_fleet(
    where: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: the server dropped the connection (or the stream refused the message) on every
    # retry and nothing after the big event was ever forwarded.
    extra: list[str] = []
    if where == "server max_payload":
        conf = tmp_path / "nats.conf"
        conf.write_text("max_payload: 8192\n")
        extra = ["-c", str(conf)]
    server = NatsServer(tmp_path / "js", extra=extra)
    server.start()
    journal = Journal(tmp_path / "j.db")
    try:
        if where == "stream max_msg_size":
            import nats
            from nats.js.api import StreamConfig

            nc = await nats.connect(server.url)
            await nc.jetstream().add_stream(StreamConfig(
                name="SENS", subjects=["sens.>"], max_msg_size=8192, max_age=30 * 24 * 3600.0))
            await nc.close()
        events = _with_giants("web01")
        journal.append_many(events)
        fwd = Forwarder(journal, server.url, backoff=(0.05, 0.2), ack_timeout=2)
        await asyncio.wait_for(fwd.run(drain=True), 60)
        await fwd.aclose()
        assert (fwd.stats.trimmed, fwd.stats.refused, fwd.stats.failures) == (1, 1, 0)
        assert journal.cursor(f"forward:{server.url}") == journal.last_seq() == len(events)
        msgs = {m.headers["Nats-Msg-Id"]: json.loads(m.data)
                for m in await stream_messages(server.url)}
        by_session = {e.session_id: e for e in journal.query()}
        assert by_session["big-user"].id not in msgs  # too big even trimmed: not sent
        trimmed = msgs.pop(by_session["big-raw"].id)
        assert trimmed["session_id"] == "big-raw" and "blob" not in trimmed["raw"]
        assert "journal" in trimmed["raw"]["pysens_trimmed"]
        assert set(msgs) == {e.id for e in journal.query()} - {
            by_session["big-user"].id, by_session["big-raw"].id}
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(said) == 2 and all(by_session[s].id in t for s, t in
                                      zip(("big-raw", "big-user"), said, strict=True))
        assert "not forwarded" in said[1] and "\n" not in said[0] + said[1]
    finally:
        journal.close()
        server.stop()


async def test_a_journal_row_that_no_longer_reads_is_set_aside_not_retried(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    path = tmp_path / "j.db"
    journal = Journal(path)
    journal.append_many(storm("h1", 3))
    # Rows that SensEvent would refuse today: a damaged body, an id that would break the
    # Nats-Msg-Id header line (an older journal, a hand edit, a bad disk).
    with sqlite3.connect(path) as db:
        code = "(SELECT code FROM names WHERE text = '{}')".format
        columns = (f"id, time_us, observed, host, method, source, flags, raw) SELECT ?, 1, 0, "
                   f"{code('h1')}, {code('Logon')}, source, 0, ? FROM events LIMIT 1")
        db.execute(f"INSERT INTO events({columns}", ("01DAMAGED", "garbage"))
        db.execute(f"INSERT INTO events({columns}", ("a\r\nPUB x 1", None))
    journal.append_many(storm("h1", 3, start=3))
    fwd = Forwarder(journal, nats_server.url, backoff=(0.05, 0.2), ack_timeout=2)
    await asyncio.wait_for(fwd.run(drain=True), 60)
    await fwd.aclose()
    assert (fwd.stats.refused, fwd.stats.failures, fwd.stats.acked) == (2, 0, 8)
    assert fwd.stats.cursor == journal.last_seq() == 8
    msgs = await stream_messages(nats_server.url)
    assert len(msgs) == 6
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 2 and all("not forwarded" in s and "\n" not in s for s in said)
    assert "'01DAMAGED' (seq 4) cannot be read from the journal" in said[0]
    assert "(seq 5) has an id that is not 1 to 128 printable ASCII" in said[1]
    journal.close()
