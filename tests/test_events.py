"""The event model: the SENS names and classes, the JSON shape, stable ids."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pysens.events import (
    CLASS_METHODS,
    METHOD_CLASSES,
    EventClass,
    EventError,
    Method,
    SensEvent,
    format_time,
    make_event_id,
    parse_method,
    snake_case,
)

EVENT_KEYS = [
    "id", "seq", "time", "observed", "host", "source", "method", "classes", "user_name",
    "domain", "session_id", "session_name", "session_type", "tty", "seat", "remote",
    "client_name", "client_address", "logon_id", "reason", "synthesized", "connection",
    "connection_type", "qoc", "destination", "battery_percent", "raw",
]

T = datetime(2026, 11, 23, 20, 44, 39, 123456, tzinfo=UTC)


def test_all_four_interfaces_with_their_methods() -> None:
    assert {c.value for c in EventClass} == {
        "ISensLogon2", "ISensLogon", "ISensNetwork", "ISensOnNow"}
    assert [m.value for m in CLASS_METHODS[EventClass.ISensLogon2]] == [
        "Logon", "Logoff", "SessionDisconnect", "SessionReconnect", "PostShell"]
    assert "DisplayLock" in CLASS_METHODS[EventClass.ISensLogon]
    assert "BatteryLow" in CLASS_METHODS[EventClass.ISensOnNow]
    assert "ConnectionMade" in CLASS_METHODS[EventClass.ISensNetwork]


def test_logon_belongs_to_both_logon_classes_and_shell_is_one_event() -> None:
    assert set(METHOD_CLASSES[Method.Logon]) == {EventClass.ISensLogon, EventClass.ISensLogon2}
    assert set(METHOD_CLASSES[Method.Logoff]) == {EventClass.ISensLogon, EventClass.ISensLogon2}
    assert METHOD_CLASSES[Method.SessionReconnect] == (EventClass.ISensLogon2,)
    e = SensEvent(method="StartShell", user_name="alice", session_id="1")
    assert e.method is Method.PostShell
    assert set(e.classes) == {EventClass.ISensLogon, EventClass.ISensLogon2}


def test_json_shape_is_exactly_spec_section_2() -> None:
    e = SensEvent(method="SessionReconnect", user_name="alice", session_id="3", time=T,
                  observed=T, host="web01", source="logind", seat="seat0", tty="tty2")
    obj = e.to_json()
    assert [k for k in EVENT_KEYS if k != "seq"] == list(obj)  # seq only once journaled
    assert obj["time"] == "2026-11-23T20:44:39.123456Z"
    assert obj["classes"] == ["ISensLogon2"]
    assert obj["remote"] is False and obj["raw"] == {}
    assert list(e.evolve(seq=42).to_json()) == EVENT_KEYS
    assert json.loads(e.to_json_text()) == obj


def test_round_trip_and_defaults() -> None:
    e = SensEvent(method=Method.Logoff, user_name="bob", session_id="c7", time=T, host="h",
                  domain="CORP", remote=True, client_address="10.0.0.5", reason="closing",
                  raw={"Id": "c7"})
    assert SensEvent.from_json(e.to_json()) == e
    assert SensEvent.from_json(e.to_json_text()) == e
    minimal = SensEvent.from_json({"method": "Logon", "user_name": "x"})
    assert minimal.id and minimal.host and minimal.session_id is None
    assert minimal.time.tzinfo is not None


def test_session_id_is_always_a_string() -> None:
    assert SensEvent(method="Logon", session_id=3).session_id == "3"  # type: ignore[arg-type]
    assert SensEvent.from_json({"method": "Logon", "session_id": 3}).session_id == "3"


def test_ids_are_stable_for_the_same_occurrence_and_differ_otherwise() -> None:
    a = SensEvent(method="Logon", user_name="alice", session_id="3", time=T, host="h",
                  source="wtmp")
    b = SensEvent(method="Logon", user_name="alice", session_id="3", time=T, host="h",
                  source="wtmp", observed=datetime.now(UTC))
    c = SensEvent(method="Logoff", user_name="alice", session_id="3", time=T, host="h",
                  source="wtmp")
    assert a.id == b.id != c.id
    assert len(a.id) == 26 and a.id.isalnum()
    # ids sort by time: the first 48 bits are milliseconds
    later = make_event_id(datetime(2030, 1, 1, tzinfo=UTC), "x")
    assert make_event_id(T, "x") < later


@pytest.mark.parametrize(("bad", "field"), [
    ({"method": "Logon", "remote": "yes"}, "remote"),
    ({"method": "Logon", "time": "yesterday-ish"}, "time"),
    ({"method": "Logon", "user_name": 5}, "user_name"),
    ({"method": "Logon", "raw": []}, "raw"),
    ({"user_name": "x"}, "method"),
])
def test_bad_json_names_the_field(bad: dict[str, object], field: str) -> None:
    with pytest.raises(EventError, match=field):
        SensEvent.from_json(bad)


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(EventError, match="SessionReconnect") as info:
        parse_method("Reconnect")
    assert "valid methods" in str(info.value)
    assert parse_method("session_reconnect") is Method.SessionReconnect
    assert parse_method("LOGON") is Method.Logon


def test_snake_case_names() -> None:
    assert snake_case("SessionReconnect") == "session_reconnect"
    assert snake_case("PostShell") == "post_shell"
    assert snake_case("ConnectionMadeNoQOCInfo") == "connection_made_no_qoc_info"
    assert snake_case("OnACPower") == "on_ac_power"


def test_times_are_utc_with_microseconds() -> None:
    from datetime import timedelta, timezone

    local = T.astimezone(timezone(timedelta(hours=2)))
    assert format_time(local) == "2026-11-23T20:44:39.123456Z"
    e = SensEvent.from_json({"method": "Logon", "time": "2026-11-23T22:44:39.5+02:00"})
    assert format_time(e.time) == "2026-11-23T20:44:39.500000Z"


@pytest.mark.parametrize(("line", "says"), [
    ('{"method": "Logon", "user_name": "a\\ud800b"}', "'user_name' is not Unicode text: a lone "
                                                      "surrogate U+D800 at 1"),
    ('{"method": "Logon", "user_name": "a\\u0000b"}', "'user_name' holds a NUL character"),
    ('{"method": "Logon", "host": "\\u0000"}', "'host' holds a NUL"),
    ('{"method": "Logon", "raw": {"k": ["x", "\\udfff"]}}', "'raw.k[1]' is not Unicode text"),
    ('{"method": "Logon", "raw": {"\\udfff": 1}}', "lone surrogate U+DFFF"),
])
def test_text_that_cannot_be_stored_is_refused_naming_the_field(line: str, says: str) -> None:
    with pytest.raises(EventError, match=re.escape(says)):
        SensEvent.from_json(line)


def test_text_that_can_be_stored_passes() -> None:
    e = SensEvent.from_json('{"method": "Logon", "user_name": "\\ud83d\\ude00", '
                            '"raw": {"nul": "a\\u0000b"}}')
    assert e.user_name == "\U0001f600" and e.raw == {"nul": "a\x00b"}
    assert json.loads(e.to_json_text())["raw"]["nul"] == "a\x00b"  # escaped in the body


def test_a_non_utf8_command_line_argument_is_one_line(tmp_path: Path) -> None:
    # argv bytes that are not UTF-8 reach Python as lone surrogates (os.fsdecode).
    done = subprocess.run(
        [sys.executable, "-m", "pysens.cli", "--journal", str(tmp_path / "j.db"), "publish",
         "Logon", "--user", b"a\xffb"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == "sens: field 'user_name' is not Unicode text: a lone surrogate " \
                          "U+DCFF at 1\n"


@pytest.mark.parametrize("bad_id", ["a\r\nNats-Msg-Id: b", "  ", "x" * 129, "caf\u00e9", "a b"])
def test_a_given_id_must_be_printable_ascii(bad_id: str) -> None:
    with pytest.raises(EventError, match="field 'id' must be 1 to 128 printable ASCII"):
        SensEvent.from_json({"method": "Logon", "id": bad_id})
    assert SensEvent.from_json({"method": "Logon", "id": "{6A1C-GUID}:7"}).id == "{6A1C-GUID}:7"
