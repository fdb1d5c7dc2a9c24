"""`sens serve` starts the NATS forwarders named by the config or by --forward."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from fleet_fixtures import NatsServer, nats_server, stream_messages, wait_for
from pysens.journal import Journal
from service_fixtures import daemon, events, request

__all__ = ["nats_server"]  # the fixture, imported for pytest


@pytest.mark.parametrize("how", ["command line", "config"])
def test_forwarders_ship_what_the_daemon_journals(
    tmp_path: Path, nats_server: NatsServer, how: str
) -> None:
    evs = events(20)
    args: tuple[str, ...] = ("--forward", nats_server.url) if how == "command line" else ()
    config = f'[[forward]]\nurl = "{nats_server.url}"\nstream = "OURS"\n' if (
        how == "config") else None
    stream = "OURS" if how == "config" else "SENS"
    sock = Path(os.environ["SENS_SOCKET"])
    with daemon(tmp_path, *args, config=config):
        assert request(sock, {"op": "hello"})["forwarders"] == [nats_server.url]
        request(sock, {"op": "publish", "events": [e.to_json() for e in evs]})
        with Journal() as j:
            wait_for(lambda: j.cursor(f"forward:{nats_server.url}") == 20, "the forwarder")
    got = asyncio.run(stream_messages(nats_server.url, stream=stream))
    assert sorted(m.headers["Nats-Msg-Id"] for m in got) == sorted(e.id for e in evs)


def test_a_forwarder_option_it_does_not_know_stops_the_start(tmp_path: Path) -> None:
    import subprocess

    from service_fixtures import sens_argv

    cfg = tmp_path / "sens.toml"
    cfg.write_text('[[forward]]\nurl = "nats://127.0.0.1:4222"\nspeed = "ludicrous"\n')
    result = subprocess.run(sens_argv("serve", "--source", "none", "--config", str(cfg)),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "speed" in result.stderr
    assert "Traceback" not in result.stderr and not Path(os.environ["SENS_SOCKET"]).exists()
