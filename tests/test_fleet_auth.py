"""Every way NATS users authenticate, end to end through ``sens forward`` and ``sens collect``:
one real nats-server per method (user/password, token, NKEY, TLS with a private CA, mutual
TLS, decentralized JWT with a ``.creds`` file; tests/nats_auth.py makes the secrets).

Right credentials: the events go through. Wrong ones: one clear line at start and exit 1, not
a retry loop (a loop would hang the test until its timeout). What can never work as written (a
missing file, credentials given twice) is a usage error before any connection.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest

from fleet_fixtures import storm
from nats_auth import PASSWORD, TOKEN, USER, AuthServer, auth_server_set
from pysens.cli import main
from pysens.fleet.store import open_store
from pysens.journal import Journal

__all__ = ["auth_server_set"]

METHODS = ("userpass", "token", "nkey", "tls", "mtls", "jwt")


def _pki(server: AuthServer) -> Path:
    return server.base / "pki"


def good_flags(server: AuthServer) -> list[str]:
    """The command-line options that authenticate to ``server``."""
    pki = _pki(server)
    return {
        "userpass": ["--nats-user", USER, "--nats-password", PASSWORD],
        "token": ["--nats-token", TOKEN],
        "nkey": ["--nats-nkey", str(server.base / "user.nk")],
        "tls": ["--nats-tls-ca", str(pki / "ca.pem"), "--nats-tls-hostname", "localhost"],
        "mtls": ["--nats-tls-ca", str(pki / "ca.pem"), "--nats-tls-cert",
                 str(pki / "client.pem"), "--nats-tls-key", str(pki / "client.key"),
                 "--nats-tls-hostname", "localhost"],
        "jwt": ["--nats-creds", str(server.base / "jwt" / "forwarder.creds")],
    }[server.method]


def bad_flags(server: AuthServer, tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Options the server must refuse, and what the one line says."""
    pki = _pki(server)
    import nkeys

    other = tmp_path / "other.nk"
    other.write_bytes(bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)))
    ca = ["--nats-tls-ca", str(pki / "ca.pem"), "--nats-tls-hostname", "localhost"]
    return {
        "userpass": {
            "wrong password": (["--nats-user", USER, "--nats-password", "nope"],
                               "does not accept the user and password"),
            "none": ([], "requires credentials; none were given")},
        "token": {"wrong token": (["--nats-token", "nope"], "does not accept the token")},
        "nkey": {"unknown nkey": (["--nats-nkey", str(other)], "does not accept the NKEY")},
        "tls": {
            "unknown CA": (["--nats-tls-ca", str(pki / "other-ca.pem"),
                            "--nats-tls-hostname", "localhost"], "certificate is not trusted"),
            "system CA store": (["--nats-tls-hostname", "localhost"],
                                "certificate is not trusted")},
        "mtls": {
            "no client certificate": (ca, "requires a client certificate"),
            "certificate of another CA": (
                [*ca, "--nats-tls-cert", str(pki / "stranger.pem"), "--nats-tls-key",
                 str(pki / "stranger.key")], "refused the TLS handshake")},
        "jwt": {"unknown account": (
            ["--nats-creds", str(server.base / "jwt" / "stranger.creds")],
            "does not accept the .creds file")},
    }[server.method]


def _journal_with(n: int, host: str) -> Journal:
    journal = Journal(os.environ["SENS_JOURNAL"])
    journal.append_many(storm(host, n))
    return journal


@pytest.mark.parametrize("method", METHODS)
def test_right_credentials_carry_the_events_through(
    auth_server_set: dict[str, AuthServer], method: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = auth_server_set[method]
    host = f"auth-{method}"
    _journal_with(5, host).close()
    flags = good_flags(server)
    assert main(["forward", server.url, "--drain", *flags]) == 0
    store = f"sqlite:///{tmp_path}/fleet.db"
    assert main(["collect", server.url, "--store", store, "--durable", f"d-{method}",
                 "--subject", f"sens.{host}.>", "--exit-idle", "0.5", *flags]) == 0
    with open_store(store) as s:
        assert s.count(host) == 5
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("method", METHODS)
def test_wrong_credentials_are_one_line_at_start_not_a_retry_loop(
    auth_server_set: dict[str, AuthServer], method: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = auth_server_set[method]
    _journal_with(1, "refused").close()
    for case, (flags, says) in bad_flags(server, tmp_path).items():
        for command in (["forward", server.url, "--drain"],
                        ["collect", server.url, "--store", f"sqlite:///{tmp_path}/f.db"]):
            assert main([*command, *flags]) == 1, (case, command[0])
            err = capsys.readouterr().err
            lines = [line for line in err.splitlines() if "refused pysens" in line]
            assert len(lines) == 1, (case, err)
            assert server.url in lines[0] and says in lines[0], (case, lines[0])
            assert "Traceback" not in err


def test_a_percent_encoded_password_in_the_url_is_decoded(
    auth_server_set: dict[str, AuthServer], tmp_path: Path
) -> None:
    server = auth_server_set["userpass"]
    _journal_with(3, "encoded").close()
    url = f"nats://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}"
    assert "%40" in url
    assert main(["forward", url, "--drain"]) == 0
    with Journal(os.environ["SENS_JOURNAL"]) as journal:
        # the cursor is named by the server alone: never a credential in the journal
        assert journal.cursor(f"forward:nats://127.0.0.1:{server.port}") == 3
        assert not any(PASSWORD in name or "%40" in name for name in journal.cursors())


def test_a_token_from_the_environment(
    auth_server_set: dict[str, AuthServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = auth_server_set["token"]
    _journal_with(2, "env-token").close()
    monkeypatch.setenv("SENS_NATS_TOKEN", TOKEN)
    assert main(["forward", server.url, "--drain"]) == 0


@pytest.mark.parametrize(("flags", "says"), [
    (["--nats-creds", "/nonexistent/user.creds"], "creds: cannot read the credentials file"),
    (["--nats-nkey", "/nonexistent/user.nk"], "nkey_seed: cannot read the NKEY seed file"),
    (["--nats-tls-ca", "/nonexistent/ca.pem"], "tls_ca: cannot read the CA file"),
    (["--nats-tls-key", "/etc/hostname"], "tls_key"),
    (["--nats-token", "t", "--nats-user", "u"], "a token or a user and password, not both"),
])
def test_options_that_can_never_work_are_usage_errors(
    flags: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["forward", "nats://127.0.0.1:1", "--drain", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]


def test_tls_asked_of_a_server_without_it_is_refused(
    auth_server_set: dict[str, AuthServer], capsys: pytest.CaptureFixture[str]
) -> None:
    plain = auth_server_set["token"]
    tls_ca = str(_pki(auth_server_set["tls"]) / "ca.pem")
    _journal_with(1, "no-tls").close()
    status = main(["forward", plain.url, "--drain", "--nats-token", TOKEN,
                   "--nats-tls-ca", tls_ca])
    assert status == 1
    assert "does not offer TLS" in capsys.readouterr().err


@pytest.mark.parametrize(("line", "says"), [
    ('creds = "/nonexistent/x.creds"', "cannot read the credentials file"),
    ("creds = 5", "[[forward]] creds must be text"),
    ('replicas = "three"', "[[forward]] replicas must be an integer"),
    ('tls_cert = "/etc/hostname"', "cannot load the client certificate"),
])
def test_a_config_file_names_the_line_of_a_bad_connection_key(
    tmp_path: Path, line: str, says: str
) -> None:
    import subprocess

    from service_fixtures import sens_argv

    cfg = tmp_path / "sens.toml"
    cfg.write_text('[serve]\nsources = ["none"]\n\n[[forward]]\nurl = "nats://127.0.0.1:1"\n'
                   f"{line}\n", encoding="utf-8")
    result = subprocess.run(sens_argv("serve", "--config", str(cfg)), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    assert f"{cfg}:6:" in result.stderr and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
