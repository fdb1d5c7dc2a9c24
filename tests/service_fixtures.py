"""Helpers for the daemon's tests: a real `sens serve` process on a private socket and journal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pysens.events import SensEvent
from pysens.journal import Journal


def sens_argv(*args: str) -> list[str]:
    """The argv running ``sens ARGS`` with this interpreter."""
    return [sys.executable, "-m", "pysens.cli", *args]


def request(path: str | Path, req: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """One request on the daemon's socket and its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall((json.dumps(req) + "\n").encode())
        with s.makefile("rb") as f:
            return json.loads(f.readline())  # type: ignore[no-any-return]


def wait_ready(proc: subprocess.Popen[bytes], sock: Path, deadline: float = 20) -> None:
    """Wait until the daemon answers ``hello`` (or fail with its stderr if it died)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"sens serve exited with {proc.returncode}: {err}")
        try:
            if request(sock, {"op": "hello"}, timeout=2).get("ok"):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("sens serve did not come up")


def start_daemon(
    tmp: Path, *args: str, config: str | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``sens serve --source none`` (plus ``args``) for the test's journal and socket."""
    argv = sens_argv("-v", "serve", "--source", "none", *args)
    if config is not None:
        cfg = tmp / "sens.toml"
        cfg.write_text(config, encoding="utf-8")
        argv += ["--config", str(cfg)]
    full_env = dict(os.environ) | (env or {})
    proc = subprocess.Popen(argv, env=full_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(proc, Path(full_env["SENS_SOCKET"]))
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Stop the daemon (and reap it); its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()
    return proc.returncode


@contextmanager
def daemon(tmp: Path, *args: str, config: str | None = None,
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A running daemon for the block; stopped (SIGTERM) afterwards."""
    proc = start_daemon(tmp, *args, config=config, env=env)
    try:
        yield proc
    finally:
        stop(proc)


def wait_cursor(names: Sequence[str], seq: int, deadline: float = 30) -> None:
    """Wait until every subscription in ``names`` has been delivered up to ``seq``."""
    end = time.monotonic() + deadline
    with Journal() as j:
        from pysens.journal import SubscriptionStore

        store = SubscriptionStore(j)
        try:
            ids = {s.name: s.cursor for s in store.list()}
            while time.monotonic() < end:
                if all(j.cursor(ids[n]) >= seq for n in names):
                    return
                time.sleep(0.05)
        finally:
            store.close()
    raise AssertionError(f"subscriptions {names} did not reach seq {seq}")


def events(n: int, *, user: str = "alice", start: int = 0) -> list[SensEvent]:
    """``n`` distinct events (Logon, and every tenth a Logoff), one session each."""
    return [
        SensEvent(method="Logoff" if i % 10 == 9 else "Logon", user_name=user,
                  session_id=str(i), host="web01", source="test",
                  time=f"2026-11-23T10:00:00.{i:06d}Z")  # type: ignore[arg-type]
        for i in range(start, start + n)
    ]


def write_events(path: Path, evs: Sequence[SensEvent]) -> Path:
    """``evs`` as a JSON-lines file."""
    path.write_text("".join(json.dumps(e.to_json()) + "\n" for e in evs), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a file, and how many lines were not JSON (torn by a kill)."""
    good, torn = [], 0
    if not path.exists():
        return [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            good.append(json.loads(line))
        except ValueError:
            torn += 1
    return good, torn
