"""Fixtures for the fleet tests: a private nats-server (JetStream, own port and store dir, so
it can be stopped and restarted) and a private PostgreSQL schema, plus small helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pysens.events import SensEvent

PG_BASE = os.environ.get("SENS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """A nats-server with JetStream on a private port and store directory."""

    def __init__(self, store_dir: Path, port: int | None = None,
                 extra: list[str] | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.extra = extra or []  # more nats-server options (TLS …)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        exe = shutil.which("nats-server")
        assert exe, "nats-server is not installed (scripts/apt-packages.txt lists it)"
        self.proc = subprocess.Popen(
            [exe, "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1", "-p", str(self.port),
             *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "nats-server exited at start"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nats-server did not start listening")

    def stop(self) -> None:
        """Stop it cleanly (SIGTERM: JetStream flushes its store, as on a service restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop, then start again on the same port and store."""
        self.stop()
        self.start()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A private JetStream server, stopped after the test."""
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def pg_schema(base: str = PG_BASE, prefix: str = "sens_test") -> Iterator[str]:
    """A store URL on the PostgreSQL server ``base`` with a schema of its own, dropped
    afterwards (the tests' and the benchmarks')."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as db:
            db.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A store URL on the test PostgreSQL with a schema of its own, dropped afterwards."""
    with pg_schema() as url:
        yield url


T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def storm(host: str, n: int, *, start: int = 0) -> list[SensEvent]:
    """``n`` events of ``host``: sessions logging on, shells starting, some logging off."""
    out: list[SensEvent] = []
    methods = ("Logon", "PostShell", "SessionDisconnect", "SessionReconnect", "Logoff")
    for i in range(start, start + n):
        session, step = divmod(i, len(methods))
        out.append(SensEvent(
            method=methods[step], user_name=f"user{session % 50}", session_id=str(session),
            host=host, source="test", time=T0 + timedelta(milliseconds=i),
            client_address="10.0.0.7" if step == 3 else None,
        ))
    return out


def spawn(*args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """``python -m ...`` as a child process (its own process: it can be killed -9)."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out: Any = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen([sys.executable, *args], env=env, stdout=out, stderr=out)
    finally:
        if log is not None:
            out.close()


def reap(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Signal a child and wait for it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def wait_for(check: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll ``check`` until true; a hang guard, not a timing assertion."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


async def await_for(check: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """:func:`wait_for` for async tests."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


async def stream_messages(url: str, stream: str = "SENS", subject: str = "sens.>") -> list[Any]:
    """Every message in the stream (subject, headers, data), read with an ephemeral consumer."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        total = info.state.messages
        out: list[Any] = []
        if total == 0:
            return out
        psub = await js.pull_subscribe(subject, stream=stream)
        while len(out) < total:
            for m in await psub.fetch(min(1000, total - len(out)), timeout=5):
                await m.ack()
                out.append(m)
        return out
    finally:
        await nc.close()
