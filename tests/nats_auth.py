"""nats-servers that each require one way of authenticating, for tests of the fleet's
connection options: user/password, token, NKEY, TLS with a private CA, mutual TLS, and
decentralized JWT auth (an operator, an account preloaded into the server's memory resolver,
and a user ``.creds`` file).

Every secret is made here, per test directory: the certificates with the ``openssl`` CLI, the
NKEYs and JWTs with the ``nkeys`` package (nats-py's own dependency for NKEY and JWT auth; an
extra of the test dependencies). Each :class:`AuthServer` carries the :func:`nats.connect`
keyword arguments that should work (:attr:`AuthServer.good`) and named sets that must be
refused (:attr:`AuthServer.bad`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nats_cluster import NATS_SERVER, free_ports

#: A password that must be percent-encoded in a URL (``@``), as the issue's report had.
PASSWORD = "s3cr@t"
USER = "sens"
TOKEN = "t0ken-for-sens"


# -- certificates (openssl CLI) --------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A private CA with a server and a client certificate, and a second CA (with a client
    certificate of its own) that the server does not trust."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "3",
             "-subj", f"/CN=pysens test {name}", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


def _leaf(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "3",
             "-extfile", f"{name}.ext", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


def make_pki(d: Path) -> Pki:
    """Write the CAs, keys and certificates into ``d`` (a few openssl runs, well under 1 s)."""
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca(d, "ca")
    other = _ca(d, "other-ca")
    server = _leaf(d, "server", ca, "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                    "extendedKeyUsage=serverAuth\n")
    client = _leaf(d, "client", ca, "extendedKeyUsage=clientAuth\n")
    stranger = _leaf(d, "stranger", other, "extendedKeyUsage=clientAuth\n")
    return Pki(ca[0], *server, *client, other[0], *stranger)


def client_tls(cafile: Path, cert: Path | None = None, key: Path | None = None
               ) -> ssl.SSLContext:
    """An SSLContext trusting ``cafile`` (not the system store), with a client certificate."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


# -- NKEYs and JWTs (nkeys) ------------------------------------------------------------------


def new_nkey(prefix: str) -> Any:
    """A fresh NKEY pair; ``prefix`` is ``"operator"``, ``"account"`` or ``"user"``."""
    import nkeys

    byte = {"operator": nkeys.PREFIX_BYTE_OPERATOR, "account": nkeys.PREFIX_BYTE_ACCOUNT,
            "user": nkeys.PREFIX_BYTE_USER}[prefix]
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), byte)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(claims: dict[str, Any], signer: Any) -> str:
    """A NATS JWT (``ed25519-nkey``) of ``claims``, signed by the NKEY pair ``signer``.

    ``jti`` is the base32 SHA-256 of the claims, as the NATS JWT library makes it; ``iss`` is
    the signer's public key.
    """
    body = dict(claims, iat=int(time.time()), iss=signer.public_key.decode())
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    signing = f"{head}.{_b64(json.dumps(body).encode())}"
    return f"{signing}.{_b64(signer.sign(signing.encode()))}"


_NO_LIMIT = {"subs": -1, "data": -1, "payload": -1}


@dataclass(frozen=True)
class Operator:
    """An operator, one account (JetStream enabled) and one of its users, as files."""

    operator_jwt: Path
    account_public: str
    account_jwt: str
    #: the system account, which a server with JetStream needs in operator mode
    system_public: str
    system_jwt: str
    creds: Path
    #: a user of an account the server has never heard of (a refused .creds)
    stranger_creds: Path


def creds_text(user_jwt: str, seed: bytes) -> str:
    """The ``.creds`` file nsc writes: the user's JWT and its NKEY seed, in armour."""
    return ("-----BEGIN NATS USER JWT-----\n" + user_jwt + "\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            "-----BEGIN USER NKEY SEED-----\n" + seed.decode()
            + "\n------END USER NKEY SEED------\n")


def make_operator(d: Path) -> Operator:
    """Operator, account and user JWTs (and a user of an unknown account) written to ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    op = new_nkey("operator")
    op_pub = op.public_key.decode()
    op_jwt = encode_jwt({"name": "pysens-test", "sub": op_pub,
                         "nats": {"type": "operator", "version": 2}}, op)
    (d / "operator.jwt").write_text(op_jwt)

    def account(name: str, jetstream: bool = True) -> tuple[Any, str]:
        acc = new_nkey("account")
        limits: dict[str, Any] = dict(_NO_LIMIT, imports=-1, exports=-1, wildcards=True,
                                      conn=-1, leaf=-1)
        if jetstream:  # JetStream limits present = JetStream on (never on the system account)
            limits.update(mem_storage=-1, disk_storage=-1, streams=-1, consumer=-1)
        return acc, encode_jwt({"name": name, "sub": acc.public_key.decode(),
                                "nats": {"type": "account", "version": 2, "limits": limits,
                                         "default_permissions": {"pub": {}, "sub": {}}}}, op)

    def user(acc: Any, name: str, path: Path) -> None:
        u = new_nkey("user")
        user_jwt = encode_jwt({"name": name, "sub": u.public_key.decode(),
                               "nats": dict(_NO_LIMIT, type="user", version=2,
                                            pub={}, sub={})}, acc)
        path.write_text(creds_text(user_jwt, u.seed))
        path.chmod(0o600)

    acc, acc_jwt = account("fleet")
    user(acc, "forwarder", d / "forwarder.creds")
    unknown, _ = account("unknown")
    user(unknown, "stranger", d / "stranger.creds")
    system, sys_jwt = account("SYS", jetstream=False)
    return Operator(d / "operator.jwt", acc.public_key.decode(), acc_jwt,
                    system.public_key.decode(), sys_jwt, d / "forwarder.creds",
                    d / "stranger.creds")


# -- servers ---------------------------------------------------------------------------------


@dataclass
class AuthServer:
    """One nats-server (JetStream on) requiring ``method``; see the module docstring."""

    method: str
    config: str
    base: Path
    #: set by :func:`auth_servers` (all the ports chosen at once, so they differ)
    port: int = 0
    #: nats.connect keyword arguments (besides ``servers``) that authenticate
    good: dict[str, Any] = field(default_factory=dict)
    #: name -> keyword arguments that the server (or the client's TLS check) must refuse
    bad: dict[str, dict[str, Any]] = field(default_factory=dict)
    scheme: str = "nats"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL, no credentials in it."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Write the config, start the server and wait until it listens."""
        conf = self.base / f"{self.method}.conf"
        store = self.base / f"{self.method}-js"
        conf.write_text(f'listen: "127.0.0.1:{self.port}"\n'
                        f'jetstream {{ store_dir: "{store}" }}\n{self.config}\n')
        log = self.base / f"{self.method}.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([NATS_SERVER, "-c", str(conf)], stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"nats-server ({self.method}) exited at start:\n"
                                     + log.read_text(errors="replace")[-800:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"nats-server ({self.method}) did not listen") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Kill the server and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def _q(path: Path) -> str:
    return json.dumps(str(path))


def auth_servers(base: Path) -> dict[str, AuthServer]:
    """One not yet started :class:`AuthServer` per method, secrets written under ``base``."""
    import nkeys

    base.mkdir(parents=True, exist_ok=True)
    pki = make_pki(base / "pki")
    op = make_operator(base / "jwt")
    user_key = new_nkey("user")
    seed_file = base / "user.nk"
    seed_file.write_bytes(user_key.seed)
    other_seed = bytearray(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
    tls_block = (f"tls {{ cert_file: {_q(pki.server_cert)}, key_file: {_q(pki.server_key)}, "
                 f"ca_file: {_q(pki.ca)}, timeout: 2")
    servers = [
        AuthServer(
            "userpass", f'authorization {{ user: "{USER}", password: "{PASSWORD}" }}', base,
            good={"user": USER, "password": PASSWORD},
            bad={"wrong password": {"user": USER, "password": "nope"},
                 "no credentials": {}}),
        AuthServer(
            "token", f'authorization {{ token: "{TOKEN}" }}', base,
            good={"token": TOKEN},
            bad={"wrong token": {"token": "nope"}, "no credentials": {}}),
        AuthServer(
            "nkey", f'authorization {{ users: [ {{ nkey: "{user_key.public_key.decode()}" }} ] }}',
            base,
            good={"nkeys_seed": str(seed_file)},
            bad={"unknown nkey": {"nkeys_seed_str": other_seed.decode()},
                 "no credentials": {}}),
        AuthServer(
            "tls", tls_block + " }", base, scheme="tls",
            good={"tls": client_tls(pki.ca), "tls_hostname": "localhost"},
            bad={"unknown CA": {"tls": client_tls(pki.other_ca), "tls_hostname": "localhost"},
                 "system CA store": {"tls": ssl.create_default_context(),
                                     "tls_hostname": "localhost"}}),
        AuthServer(
            "mtls", tls_block + ", verify: true }", base, scheme="tls",
            good={"tls": client_tls(pki.ca, pki.client_cert, pki.client_key),
                  "tls_hostname": "localhost"},
            bad={"no client cert": {"tls": client_tls(pki.ca), "tls_hostname": "localhost"},
                 "client cert of another CA": {
                     "tls": client_tls(pki.ca, pki.other_client_cert, pki.other_client_key),
                     "tls_hostname": "localhost"}}),
        AuthServer(
            "jwt",
            f"operator: {_q(op.operator_jwt)}\nsystem_account: {op.system_public}\n"
            "resolver: MEMORY\n"
            f'resolver_preload: {{ {op.account_public}: "{op.account_jwt}", '
            f'{op.system_public}: "{op.system_jwt}" }}', base,
            good={"user_credentials": str(op.creds)},
            bad={"user of an unknown account": {"user_credentials": str(op.stranger_creds)},
                 "no credentials": {}}),
    ]
    for server, port in zip(servers, free_ports(len(servers)), strict=True):
        server.port = port
    return {s.method: s for s in servers}


@pytest.fixture(scope="module")
def auth_server_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AuthServer]]:
    """Every :class:`AuthServer`, started (one process each), killed after the module."""
    servers = auth_servers(tmp_path_factory.mktemp("nats-auth"))
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()
