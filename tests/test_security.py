"""Hostile input stays data: user names through every sink, filters from the socket, other
users' clients refused (SO_PEERCRED)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pysens.cli import main
from pysens.events import SensEvent
from pysens.journal import Journal
from service_fixtures import daemon, read_jsonl, request, wait_cursor

HOSTILE = ["$(touch {marker})", "a; rm -rf ~; touch {marker}", "`touch {marker}`",
           "x' OR '1'='1", "new\nline && touch {marker}", "-rf"]


@pytest.fixture
def hook() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_hostile_user_names_reach_every_sink_as_data(
    tmp_path: Path, hook: tuple[str, list[bytes]]
) -> None:
    marker = tmp_path / "pwned"
    names = [h.format(marker=marker) for h in HOSTILE]
    exec_out = tmp_path / "exec.jsonl"
    # The exec sink's program records what it got: its argv, SENS_USER_NAME and stdin.
    code = ("import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'env': "
            "os.environ['SENS_USER_NAME'], 'stdin': json.loads(sys.stdin.read())['user_name']}),"
            f" file=open({str(exec_out)!r}, 'a'))")
    url, bodies = hook
    for args in (["--exec", sys.executable, "-c", code, "$SENS_USER_NAME"],
                 ["--jsonl", str(tmp_path / "sink.jsonl")], ["--webhook", url]):
        assert main(["subscriptions", "add", args[0][2:], "--class", "ISensLogon2", *args]) == 0
    evs = [SensEvent(method="Logon", user_name=n, session_id=str(i), host="h",
                     time=f"2026-11-23T10:00:0{i}Z")  # type: ignore[arg-type]
           for i, n in enumerate(names)]
    with daemon(tmp_path):
        reply = request(Path(os.environ["SENS_SOCKET"]),
                        {"op": "publish", "events": [e.to_json() for e in evs]})
        assert reply["published"] == len(names)
        wait_cursor(["exec", "jsonl", "webhook"], len(names))
    got = [json.loads(x) for x in exec_out.read_text().splitlines()]
    assert [g["env"] for g in got] == names and [g["stdin"] for g in got] == names
    assert all(g["argv"] == ["$SENS_USER_NAME"] for g in got)  # no shell expanded it
    assert [r["user_name"] for r in read_jsonl(tmp_path / "sink.jsonl")[0]] == names
    assert [json.loads(b)["user_name"] for b in bodies] == names
    assert not marker.exists()


def test_a_client_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test switches to uid 65534 and needs root (CI has it)")
    # A world-reachable socket (as a careless admin might make it): only the peer check stands
    # between another user and the daemon.
    shared = Path(tempfile.mkdtemp(prefix="pysens-sec-", dir="/tmp"))
    try:
        shared.chmod(0o777)
        path = shared / "sens.sock"
        with daemon(tmp_path, env={"SENS_SOCKET": str(path)}):
            path.chmod(0o666)
            client = ("import socket, sys; s = socket.socket(socket.AF_UNIX); "
                      "s.connect(sys.argv[1]); f = s.makefile('rb')\n"
                      "try: s.sendall(b'{\"op\": \"publish\", \"events\": "
                      "[{\"method\": \"Logon\", \"user_name\": \"mallory\"}]}\\n')\n"
                      "except OSError: pass\n"
                      "print(f.readline().decode())")
            result = subprocess.run(
                ["/usr/bin/python3", "-c", client, str(path)], capture_output=True, text=True,
                timeout=30, preexec_fn=_become_nobody,
                cwd="/",
            )
            assert result.returncode == 0, result.stderr
            reply = json.loads(result.stdout)
            assert reply["ok"] is False and "uid 65534 may not use this daemon" in reply["error"]
            # root (this process) is served on the same socket, and nothing was journaled
            assert request(path, {"op": "hello"})["ok"] is True
        with Journal() as j:
            assert j.count() == 0
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_filters_from_the_socket_are_parsed_never_evaluated(tmp_path: Path) -> None:
    import socket

    marker = tmp_path / "pwned"
    hostile = [f"__import__('os').system('touch {marker}')",
               f"bstrUserName = '' or __import__('os').system('touch {marker}') or ''",
               f"method = 'Logon'); import os; os.system('touch {marker}'); ('"]
    with daemon(tmp_path):
        for text in hostile:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(os.environ["SENS_SOCKET"])
                s.sendall((json.dumps({"op": "watch", "filter": text}) + "\n").encode())
                with s.makefile("rb") as f:
                    reply = json.loads(f.readline())
            assert reply["ok"] is False and reply["status"] == 2
            assert reply["error"].startswith("bad filter:") and "position" in reply["error"]
        result = subprocess.run([sys.executable, "-m", "pysens.cli", "watch", "--filter",
                                 hostile[0]], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and "bad filter" in result.stderr
    assert not marker.exists()


def _become_nobody() -> None:
    os.setgid(65534)
    os.setuid(65534)
