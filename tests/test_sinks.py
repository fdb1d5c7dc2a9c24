"""The exec, webhook and jsonl sinks against real programs, a real HTTP server and real files."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pysens.events import SensEvent
from pysens.sinks import SinkError, make_sink, validate_settings
from pysens.sinks.exec import event_environment

EV = SensEvent(method="SessionReconnect", user_name="alice", session_id="3", host="web01",
               client_address="10.0.0.7", remote=True, time="2026-11-23T10:00:00Z")  # type: ignore[arg-type]


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_exec_gets_json_on_stdin_and_sens_variables(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    code = ("import json, os, sys; json.dump({'stdin': sys.stdin.read(), 'env': "
            "{k: v for k, v in os.environ.items() if k.startswith('SENS_')}}, "
            f"open({str(out)!r}, 'w'))")
    sink = make_sink("exec", {"argv": py(code)}, timeout=10)
    await sink.deliver([EV])
    got = json.loads(out.read_text())
    assert json.loads(got["stdin"]) == EV.to_json()
    env = got["env"]
    assert env["SENS_METHOD"] == "SessionReconnect" and env["SENS_USER_NAME"] == "alice"
    assert env["SENS_SESSION_ID"] == "3" and env["SENS_EVENT_ID"] == EV.id
    assert env["SENS_REMOTE"] == "true" and env["SENS_DOMAIN"] == ""
    assert env["SENS_CLASSES"] == "ISensLogon2"
    assert event_environment(EV) == env


async def test_exec_non_zero_exit_is_a_failure_naming_the_status(tmp_path: Path) -> None:
    sink = make_sink("exec", {"argv": py("import sys; sys.stderr.write('boom\\n'); "
                                         "sys.exit(3)")}, timeout=10)
    with pytest.raises(SinkError, match=r"exited with status 3: 'boom'") as info:
        await sink.deliver([EV, EV])
    assert info.value.done == 0


async def test_exec_counts_what_went_through_before_a_failure(tmp_path: Path) -> None:
    # The program fails on the second event only: one was delivered.
    code = "import sys, json; sys.exit(json.load(sys.stdin)['session_id'] == '2')"
    sink = make_sink("exec", {"argv": py(code)}, timeout=10)
    evs = [EV.evolve(session_id=str(i), id=f"E{i}") for i in (1, 2, 3)]
    with pytest.raises(SinkError) as info:
        await sink.deliver(evs)
    assert info.value.done == 1


async def test_exec_that_hangs_is_killed_at_its_time_limit(tmp_path: Path) -> None:
    # The hung program starts a child that would outlive it: the whole group goes.
    pidfile = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; p = subprocess.Popen(['sleep', '60']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    sink = make_sink("exec", {"argv": py(code)}, timeout=1.0)
    with pytest.raises(SinkError, match="time limit of 1 s"):
        await sink.deliver([EV])
    status = Path(f"/proc/{int(pidfile.read_text())}/status")
    for _ in range(500):  # SIGKILL is sent; the kernel finishes it off in its own time
        if not status.exists() or "State:\tZ" in status.read_text():  # noqa: ASYNC240 - the loop is held on purpose here
            break
        time.sleep(0.01)  # noqa: ASYNC251 - the loop is held on purpose here
    assert not status.exists() or "State:\tZ" in status.read_text()  # noqa: ASYNC240 - the loop is held on purpose here


async def test_exec_missing_program_is_a_failure() -> None:
    sink = make_sink("exec", {"argv": ["/nonexistent/program"]}, timeout=5)
    with pytest.raises(SinkError, match="cannot run /nonexistent/program"):
        await sink.deliver([EV])


def test_bad_sink_settings_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="program"):
        validate_settings("exec", {"argv": []})
    with pytest.raises(ValueError, match="http:// or https://"):
        validate_settings("webhook", {"url": "file:///etc/passwd"})
    with pytest.raises(ValueError, match="unknown sink kind"):
        validate_settings("carrier-pigeon", {})
    assert validate_settings("jsonl", {"path": "rel.jsonl"})["path"].startswith("/")


# -- webhook --------------------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    """Records each POST; answers as the test's ``mode`` says."""

    log: list[dict[str, Any]]
    mode: str = "ok"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.log.append({"body": body, "headers": dict(self.headers)})
        if self.mode == "hang":
            threading.Event().wait(5)
            return
        if self.mode == "garbage":
            self.wfile.write(b"this is not HTTP\r\n\r\n")
            return
        self.send_response(500 if self.mode == "fail" else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("R", (Receiver,), {"log": [], "mode": "ok"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()


async def test_webhook_posts_signed_json_with_idempotency_key(
    receiver: tuple[str, type[Receiver]],
) -> None:
    url, handler = receiver
    sink = make_sink("webhook", {"url": url, "secret": "s3cret"}, timeout=5)
    await sink.deliver([EV])
    (req,) = handler.log
    assert json.loads(req["body"]) == EV.to_json()
    mac = hmac.new(b"s3cret", req["body"], hashlib.sha256).hexdigest()
    assert req["headers"]["X-Sens-Signature"] == f"sha256={mac}"
    assert req["headers"]["Idempotency-Key"] == EV.id
    assert req["headers"]["Content-Type"] == "application/json"


async def test_webhook_error_status_hang_and_garbage_are_failures(
    receiver: tuple[str, type[Receiver]],
) -> None:
    url, handler = receiver
    sink = make_sink("webhook", {"url": url}, timeout=1)
    handler.mode = "fail"
    with pytest.raises(SinkError, match="HTTP 500"):
        await sink.deliver([EV])
    handler.mode = "garbage"
    with pytest.raises(SinkError, match=url):
        await sink.deliver([EV])
    handler.mode = "hang"
    with pytest.raises(SinkError, match=url):
        await sink.deliver([EV])
    assert "X-Sens-Signature" not in handler.log[0]["headers"]


async def test_webhook_nobody_listening_is_a_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = make_sink("webhook", {"url": f"http://127.0.0.1:{port}/"}, timeout=2)
    with pytest.raises(SinkError, match="cannot POST"):
        await sink.deliver([EV])


# -- jsonl ----------------------------------------------------------------------------------


async def test_jsonl_appends_one_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = make_sink("jsonl", {"path": str(path)})
    await sink.deliver([EV, EV.evolve(id="X2", session_id="4")])
    await sink.deliver([EV.evolve(id="X3")])
    await sink.aclose()
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["id"] for r in rows] == [EV.id, "X2", "X3"]


async def test_jsonl_cuts_a_torn_last_line_left_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(EV.to_json()) + "\n" + '{"id": "half', encoding="utf-8")
    sink = make_sink("jsonl", {"path": str(path)})
    await sink.deliver([EV.evolve(id="NEXT")])
    await sink.aclose()
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["id"] for r in rows] == [EV.id, "NEXT"]


async def test_jsonl_unwritable_path_is_a_failure(tmp_path: Path) -> None:
    sink = make_sink("jsonl", {"path": str(tmp_path / "no" / "such" / "dir.jsonl")})
    with pytest.raises(SinkError, match="cannot append"):
        await sink.deliver([EV])
