"""The NATS test fixtures do what they claim: a three-node JetStream cluster that forms, keeps
an R3 stream through a kill -9 of its leader and a lost disk, and one server per auth method
that takes the right credentials and refuses wrong ones (with the errors nats-py raises)."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from typing import Any
from urllib.parse import quote

import pytest

from nats_auth import PASSWORD, USER, AuthServer, auth_server_set
from nats_cluster import NatsCluster, js_request, nats_cluster, server_version

__all__ = ["auth_server_set", "nats_cluster"]  # fixtures, used by name

# Every connection fails at once instead of nats-py retrying the server (what pysens needs
# to tell "can never work" from "not reachable now").
ONCE: dict[str, Any] = {"allow_reconnect": False, "connect_timeout": 2, "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.05}


async def _quiet(exc: Exception) -> None:
    """nats-py's error callback; the default one logs every failed attempt."""


def test_server_is_a_jetstream_cluster_build() -> None:
    # Clustered JetStream with the features the fleet relies on needs 2.9 or newer.
    assert server_version() >= (2, 9, 0)


def test_cluster_forms(nats_cluster: NatsCluster) -> None:
    names = {node.name for node in nats_cluster.nodes}
    assert nats_cluster.meta_leader() in names
    for i, node in enumerate(nats_cluster.nodes):
        assert nats_cluster.routes(i) >= 2
        assert node.port != 4222
        assert "error" not in nats_cluster.js_info(i)
    # What a client learns on connecting: the other nodes' client URLs (cluster discovery).
    with socket.create_connection(("127.0.0.1", nats_cluster.nodes[0].port)) as sock:
        info = json.loads(sock.recv(8192).split(b"\r\n")[0][5:])
    assert {f"127.0.0.1:{n.port}" for n in nats_cluster.nodes} <= set(info["connect_urls"])


async def _publish(urls: list[str], subject: str, ids: range) -> None:
    import nats

    nc = await nats.connect(urls, error_cb=_quiet, reconnect_time_wait=0.1,
                            max_reconnect_attempts=-1)
    try:
        js = nc.jetstream()
        for i in ids:
            # Retried while the stream elects a new leader (no quorum, no answer).
            for _ in range(100):
                try:
                    await js.publish(subject, f'{{"n": {i}}}'.encode(), timeout=1,
                                     headers={"Nats-Msg-Id": f"m{i}"})
                    break
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                        nats.js.errors.APIError):
                    continue
            else:
                raise AssertionError(f"message {i} was never acknowledged")
    finally:
        await nc.close()


@pytest.mark.slow  # a JetStream election after a SIGKILL takes the server 4-9 s
async def test_r3_stream_survives_its_leader_kill9(nats_cluster: NatsCluster) -> None:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(nats_cluster.urls, error_cb=_quiet)
    try:
        await nc.jetstream().add_stream(StreamConfig(name="FIX", subjects=["fix.>"],
                                                     num_replicas=3))
    finally:
        await nc.close()
    await _publish(nats_cluster.urls, "fix.a", range(50))
    leader = nats_cluster.wait_stream_leader("FIX")
    nats_cluster.kill(leader)
    assert not nats_cluster.nodes[leader].running
    new = nats_cluster.wait_stream_leader("FIX", not_on=leader)
    assert new != leader
    await _publish(nats_cluster.urls, "fix.a", range(50, 100))
    info = nats_cluster.stream_info("FIX")
    assert info["state"]["messages"] == 100
    assert info["cluster"]["leader"] == nats_cluster.nodes[new].name
    nats_cluster.restart(leader)
    nats_cluster.wait_ready()
    assert nats_cluster.stream_info("FIX")["config"]["num_replicas"] == 3


def _stream_messages_on(cluster: NatsCluster, i: int, stream: str) -> int:
    """The message count node ``i`` itself holds for ``stream`` (its monitoring /jsz)."""
    url = f"http://127.0.0.1:{cluster.nodes[i].monitor_port}/jsz?streams=true"
    with urllib.request.urlopen(url, timeout=2) as r:
        for account in json.load(r).get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail["name"] == stream:
                    return int(detail["state"]["messages"])
    return -1


async def test_wiped_node_catches_up(nats_cluster: NatsCluster) -> None:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(nats_cluster.urls, error_cb=_quiet)
    try:
        await nc.jetstream().add_stream(StreamConfig(name="WIPE", subjects=["wipe.>"],
                                                     num_replicas=3))
    finally:
        await nc.close()
    await _publish(nats_cluster.urls, "wipe.a", range(20))
    follower = (nats_cluster.wait_stream_leader("WIPE") + 1) % 3
    nats_cluster.wipe(follower)
    assert not nats_cluster.nodes[follower].store_dir.exists()
    nats_cluster.restart(follower)
    nats_cluster.wait_ready()
    from fleet_fixtures import wait_for

    wait_for(lambda: _stream_messages_on(nats_cluster, follower, "WIPE") == 20,
             "the wiped node to catch up")


def test_js_request_reports_a_missing_stream(nats_cluster: NatsCluster) -> None:
    answer = js_request(nats_cluster.nodes[1].port, "$JS.API.STREAM.INFO.NOPE")
    assert answer["error"]["code"] == 404
    assert nats_cluster.stream_leader("NOPE") is None


# -- auth ------------------------------------------------------------------------------------

METHODS = ("userpass", "token", "nkey", "tls", "mtls", "jwt")


async def _connect(server: AuthServer, options: dict[str, Any], url: str | None = None) -> None:
    import nats

    nc = nats.NATS()  # type: ignore[attr-defined]  # nats-py exports it untyped
    try:
        await nc.connect(url or server.url, error_cb=_quiet, **ONCE, **options)
    except BaseException:
        # nats-py 2.16 leaves the socket of a refused first connect open (a ResourceWarning
        # later); its client is already "closed", so close() would not release it.
        if nc._transport is not None:
            nc._transport.close()  # type: ignore[no-untyped-call]
        raise
    try:
        info = await nc.jetstream().account_info()  # JetStream works for that identity too
        assert info.limits is not None
    finally:
        await nc.close()


@pytest.mark.parametrize("method", METHODS)
async def test_auth_accepts_the_right_credentials(auth_server_set: dict[str, AuthServer],
                                                  method: str) -> None:
    server = auth_server_set[method]
    await _connect(server, server.good)


def _expected(method: str, case: str) -> tuple[type[BaseException], str]:
    """The error nats-py (2.16) raises at connect for each refusal, and a text it contains."""
    import nats.errors

    if method == "tls":
        return ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED"
    if method == "mtls":
        # A refused client certificate: with TLS 1.3 the client has finished its handshake
        # when the server checks it, so nats-py sees either the server's alert (ssl.SSLError
        # "SSLV3_ALERT_BAD_CERTIFICATE" / "TLSV13_ALERT_CERTIFICATE_REQUIRED") or only the
        # connection dropped (ConnectionResetError "Connection lost" or "[Errno 104]
        # Connection reset by peer", or BrokenPipeError "[Errno 32] Broken pipe" when the
        # client was writing), whichever comes first.
        return OSError, "ALERT|Connection lost|Connection reset|Broken pipe"
    # Not nats.errors.AuthorizationError: nats-py raises that only for a -ERR after connect.
    return nats.errors.Error, "Authorization Violation"


@pytest.mark.parametrize("method", METHODS)
async def test_auth_refuses_wrong_credentials(auth_server_set: dict[str, AuthServer],
                                              method: str) -> None:
    server = auth_server_set[method]
    assert server.bad
    for case, options in server.bad.items():
        kind, text = _expected(method, case)
        with pytest.raises(kind, match=text):
            await _connect(server, options)


async def test_password_in_the_url(auth_server_set: dict[str, AuthServer]) -> None:
    import nats.errors

    server = auth_server_set["userpass"]
    # nats-py sends the URL's userinfo as written: percent-encoding is not undone...
    encoded = f"nats://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}"
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await _connect(server, {}, encoded)
    # ... while the raw "@" happens to work (the host is after the last "@").
    await _connect(server, {}, f"nats://{USER}:{PASSWORD}@127.0.0.1:{server.port}")


def test_mtls_server_says_so_in_info(auth_server_set: dict[str, AuthServer]) -> None:
    # The only way to tell a refused (missing) client certificate from a network reset before
    # trying: the plain-text INFO announces that the server verifies clients.
    with socket.create_connection(("127.0.0.1", auth_server_set["mtls"].port)) as sock:
        info = json.loads(sock.recv(8192).split(b"\r\n")[0][5:])
    assert info["tls_required"] and info["tls_verify"]
