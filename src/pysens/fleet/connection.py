"""Connections to NATS for the fleet: where (a seed list), as whom (every way NATS users
authenticate), and what to say when it fails.

A :class:`NatsTarget` is checked when it is made (:func:`nats_target`), so that what can never
work is one clear error at start: a URL that is not one, credentials given twice or two ways, a
seed, ``.creds``, certificate or key file that is missing or unreadable. The connection itself
is nats-py's (:func:`connect`): it learns the cluster's other servers from the server's INFO
(``connect_urls``) and reconnects to any live one on its own.

:func:`connect` makes the first connection without nats-py's retries, so that a refusal can be
told from an outage: an authorization violation, a certificate the client does not trust, a
client certificate the server refuses, or a server that does not offer the TLS asked for raise
:class:`NatsRefused` (never worth retrying as it is); servers that cannot be reached now raise
:class:`ConnectionError`. Once connected, reconnecting is on, for ever, to any server of the
pool.

Credentials in a URL (``nats://user:pass@host``, ``nats://TOKEN@host``) are percent-decoded
(``s3cr%40t`` is ``s3cr@t``) and never passed on in the URL; they never appear in what pysens
says or stores (:mod:`pysens.fleet.urls`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .urls import redact_url

__all__ = [
    "NatsConfigError",
    "NatsRefused",
    "NatsTarget",
    "connect",
    "describe_failure",
    "nats_errors",
    "nats_target",
    "split_servers",
]

log = logging.getLogger("pysens.fleet")

SCHEMES = ("nats", "tls", "ws", "wss")
DEFAULT_PORT = 4222


class NatsConfigError(ValueError):
    """A NATS URL or connection option that can never work; the message says which and why."""


class NatsRefused(ConnectionError):
    """A server refused this client for a reason retrying will not change (its credentials,
    its certificates, TLS); the message says which server and why."""


def split_servers(url: str | Sequence[str]) -> list[str]:
    """The servers of a seed list: one URL, a comma-separated list of them, or a sequence of
    either (``"nats://a:4222, nats://b:4222"`` -> two)."""
    parts = [url] if isinstance(url, str) else list(url)
    out: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise NatsConfigError(f"a NATS URL must be text, not {part!r}")
        out.extend(p.strip() for p in part.split(","))
    if not out or any(not p for p in out):
        raise NatsConfigError(f"{url!r} has an empty server in its list; write "
                              "nats://HOST:PORT[,nats://HOST:PORT…]")
    return out


@dataclass(frozen=True, slots=True)
class NatsTarget:
    """Where and as whom to connect (use :func:`nats_target`, which checks it).

    ``servers`` are URLs without credentials; the credentials are the fields. ``tls`` is the
    SSL context built from the CA, certificate and key files (None: plain, unless the scheme is
    ``tls://``/``wss://`` or the server requires TLS, then the system's CA store).
    """

    servers: tuple[str, ...]
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    nkey_seed: str | None = None
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_hostname: str | None = None
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @property
    def display(self) -> str:
        """The seed list as pysens writes it in messages (never a credential)."""
        return ",".join(self.servers)

    @property
    def first(self) -> str:
        """The first server of the seed list: what names the target (a forwarder's cursor)."""
        return self.servers[0]

    @property
    def wants_tls(self) -> bool:
        """Whether this client insists on TLS (a ``tls://``/``wss://`` URL or a TLS file)."""
        return self.tls is not None or any(
            s.startswith(("tls://", "wss://")) for s in self.servers)

    def options(self) -> dict[str, Any]:
        """nats-py :func:`nats.connect` keyword arguments for the credentials and TLS."""
        out: dict[str, Any] = {}
        if self.user is not None:
            out["user"], out["password"] = self.user, self.password or ""
        if self.token is not None:
            out["token"] = self.token
        if self.nkey_seed is not None:
            out["nkeys_seed"] = self.nkey_seed
        if self.creds is not None:
            out["user_credentials"] = self.creds
        if self.tls is not None:
            out["tls"] = self.tls
        elif self.wants_tls:
            out["tls"] = ssl.create_default_context()
        if self.tls_hostname is not None:
            out["tls_hostname"] = self.tls_hostname
        return out


def _one_server(url: str) -> tuple[str, str | None, str | None]:
    """(the URL without credentials, the user or token, the password) of one seed."""
    text = url if "://" in url else f"nats://{url}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise NatsConfigError(f"{redact_url(url)!r} is not a NATS URL ({e})") from None
    if parts.scheme not in SCHEMES:
        raise NatsConfigError(f"{redact_url(url)!r} is not a NATS URL: write nats://HOST:PORT "
                              "(or tls://, ws://, wss://)")
    host = parts.hostname
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise NatsConfigError(f"{redact_url(url)!r} is not a NATS URL: write nats://HOST:PORT")
    if port is None and parts.scheme in ("nats", "tls"):
        port = DEFAULT_PORT
    netloc = parts.netloc.rpartition("@")[2]
    if port is not None and parts.port is None:
        netloc = f"{netloc}:{port}"
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return f"{parts.scheme}://{netloc}", user or None, password


def _readable(path: str | Path, what: str, option: str) -> str:
    p = Path(path).expanduser()
    try:
        with p.open("rb") as f:
            head = f.read(65536)
    except OSError as e:
        raise NatsConfigError(f"{option}: cannot read the {what} {p} "
                              f"({e.strerror or e})") from None
    if not head.strip():
        raise NatsConfigError(f"{option}: the {what} {p} is empty")
    if option == "creds" and b"NATS USER JWT" not in head:
        raise NatsConfigError(f"creds: {p} is not a NATS .creds file (no USER JWT block)")
    if option == "nkey_seed" and not head.lstrip().startswith(b"SU"):
        raise NatsConfigError(f"nkey_seed: {p} does not hold a user NKEY seed (SU…)")
    return str(p)


def _tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if ca is None and cert is None and key is None:
        return None
    if key is not None and cert is None:
        raise NatsConfigError("tls_key: a client key needs its certificate (tls_cert)")
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise NatsConfigError(f"tls_ca: cannot load the CA file {ca} ({_ssl_text(e)})") from None
    if cert is not None:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise NatsConfigError(f"tls_cert: cannot load the client certificate {cert}"
                                  f"{' and key ' + key if key else ''} ({_ssl_text(e)})") from None
    return ctx


def _ssl_text(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return " ".join(str(e).split()) or type(e).__name__


def nats_target(
    url: str | Sequence[str] | NatsTarget,
    *,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    nkey_seed: str | Path | None = None,
    creds: str | Path | None = None,
    tls_ca: str | Path | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    tls_hostname: str | None = None,
) -> NatsTarget:
    """A checked :class:`NatsTarget`: ``url`` is one URL, a comma-separated seed list or a
    sequence of them; the keywords are the credentials and TLS files (see the module
    docstring). Raises :class:`NatsConfigError` for what can never work."""
    if isinstance(url, NatsTarget):
        return url
    servers: list[str] = []
    in_url: set[tuple[str | None, str | None]] = set()
    for one in split_servers(url):
        plain, u, p = _one_server(one)
        servers.append(plain)
        if u is not None or p is not None:
            in_url.add((u, p))
    kinds = {"ws" if s.startswith(("ws://", "wss://")) else "nats" for s in servers}
    if len(kinds) > 1:
        raise NatsConfigError("a seed list cannot mix ws:// and nats:// servers")
    if len(in_url) > 1:
        raise NatsConfigError("the seed list's URLs carry different credentials; give them "
                              "once (user/password or token options)")
    if in_url:
        u, p = next(iter(in_url))
        if user is not None or password is not None or token is not None:
            raise NatsConfigError("credentials are given both in the URL and as options; "
                                  "give them once")
        if p is None:
            token = u
        else:
            user, password = u, p
    if password is not None and user is None:
        raise NatsConfigError("a password needs its user")
    if token is not None and user is not None:
        raise NatsConfigError("give a token or a user and password, not both")
    if nkey_seed is not None and creds is not None:
        raise NatsConfigError("give an NKEY seed or a .creds file, not both (a .creds file "
                              "holds its own seed)")
    seed = _readable(nkey_seed, "NKEY seed file", "nkey_seed") if nkey_seed else None
    cred = _readable(creds, "credentials file", "creds") if creds else None
    ca = _readable(tls_ca, "CA file", "tls_ca") if tls_ca else None
    cert = _readable(tls_cert, "client certificate", "tls_cert") if tls_cert else None
    key = _readable(tls_key, "client key", "tls_key") if tls_key else None
    return NatsTarget(tuple(servers), user, password, token, seed, cred, ca, cert, key,
                      tls_hostname, _tls_context(ca, cert, key))


def nats_errors(*more: type[BaseException]) -> tuple[type[BaseException], ...]:
    """What talking to NATS can fail with: the network (OSError, timeouts, EOF), nats-py's own
    errors (JetStream API errors among them), and ``more``."""
    import nats.errors

    return (OSError, EOFError, TimeoutError, ConnectionError, nats.errors.Error, *more)


Callback = Callable[[], Awaitable[None]]


class _QuietTlsEof(logging.Filter):
    """Drops asyncio's "returning true from eof_received() has no effect when using ssl": said
    whenever a TLS server closes a nats-py connection (nats-py's stream protocol asks to keep
    the transport open, which TLS cannot), it is noise, not a fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


_TLS_EOF = _QuietTlsEof()


def refusal(exc: BaseException, server_info: dict[str, Any], target: NatsTarget) -> str | None:
    """Why ``exc`` (from a first connect) means this target can never work as it is, or None
    when it may be a passing fault."""
    text = " ".join(str(exc).split())
    if "Authorization Violation" in text or type(exc).__name__ == "AuthorizationError":
        how = ("the .creds file" if target.creds else "the NKEY" if target.nkey_seed else
               "the token" if target.token else "the user and password" if target.user else
               None)
        if how is None:
            return "authorization violation (the server requires credentials; none were given)"
        return f"authorization violation (the server does not accept {how})"
    if "Authentication Expired" in text or "Account Authentication Expired" in text:
        return "the credentials have expired"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or text
        return (f"its TLS certificate is not trusted ({why}); give the CA that signed it "
                "(tls_ca)")
    if isinstance(exc, ssl.SSLError) and "ALERT" in text.upper():
        if server_info.get("tls_verify") and target.tls_cert is None:
            return "the server requires a client certificate (tls_cert, tls_key)"
        return f"the server refused the TLS handshake ({exc.reason or text})"
    if server_info.get("tls_verify") and target.tls_cert is None:
        # The server closes the connection after its own check of the (missing) client
        # certificate: with TLS 1.3 the client sees only the connection dropped.
        return "the server requires a client certificate (tls_cert, tls_key)"
    if type(exc).__name__ in ("ErrInvalidSeed", "ErrInvalidKey", "ErrInvalidPrefixByte"):
        return f"the NKEY seed is not valid ({type(exc).__name__})"
    return None


async def connect(
    target: NatsTarget,
    *,
    name: str,
    disconnected: Callback | None = None,
    reconnected: Callback | None = None,
    reconnect_wait: float = 0.25,
    connect_timeout: float = 2.0,
    ping_interval: float = 5.0,
) -> Any:
    """A nats-py client connected to one server of ``target`` (tried in a random order, so a
    fleet spreads over the cluster), then reconnecting on its own to any server it knows, for
    ever. ``disconnected`` and ``reconnected`` are called as nats-py notices.

    Raises :class:`NatsRefused` when a server refuses this client (see the module docstring)
    and :class:`ConnectionError` when no server can be reached now.
    """
    import nats
    import nats.errors

    if target.wants_tls:
        logging.getLogger("asyncio").addFilter(_TLS_EOF)  # once: a filter is kept once
    order = list(target.servers)
    random.shuffle(order)  # spreading a fleet over the cluster
    last = "no server answered"
    for i in range(len(order)):
        servers = order[i:] + order[:i]
        seen: list[BaseException] = []

        async def _error(exc: Exception, seen: list[BaseException] = seen) -> None:
            seen.append(exc)
            log.debug("nats %s: %s", target.display, exc)

        nc = nats.NATS()  # type: ignore[attr-defined]  # exported untyped
        try:
            # Without nats-py's own retries (it would retry a refusal for ever); its server
            # loop still skips the servers whose TCP connect fails.
            # (nats-py annotates its times as int; it takes seconds as floats.)
            times: dict[str, Any] = {"reconnect_time_wait": 0.05,
                                     "connect_timeout": connect_timeout,
                                     "ping_interval": ping_interval}
            await nc.connect(
                servers=servers, name=name, allow_reconnect=False, max_reconnect_attempts=1,
                dont_randomize=True, max_outstanding_pings=2, error_cb=_error,
                disconnected_cb=disconnected, reconnected_cb=reconnected,
                **times, **target.options())
        except (nats.errors.Error, OSError, TimeoutError, ValueError) as e:
            _release(nc)
            where = _server_of(nc) or servers[0]
            why = refusal(e, getattr(nc, "_server_info", {}) or {}, target)
            if why is not None:
                raise NatsRefused(f"the NATS server at {where} refused pysens: {why}") from None
            if isinstance(e, nats.errors.NoServersError):
                cause = seen[-1] if seen else e
                raise ConnectionError(f"cannot reach {_which(target)} ({_text(cause)})") from None
            last = f"{where}: {_text(e)}"
            continue
        info = getattr(nc, "_server_info", {}) or {}
        if target.wants_tls and not info.get("tls_required") and not any(
                s.startswith("wss://") for s in target.servers):
            with contextlib.suppress(Exception):
                await nc.close()
            raise NatsRefused(f"the NATS server at {_server_of(nc) or servers[0]} does not "
                              "offer TLS, which this configuration asks for")
        # From now on nats-py keeps the connection: any server of the pool (the seeds and the
        # ones the cluster announced), for ever, without blocking the caller.
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = reconnect_wait
        nc.options["dont_randomize"] = False
        return nc
    raise ConnectionError(f"cannot reach {_which(target)} ({last})")


def _which(target: NatsTarget) -> str:
    if len(target.servers) == 1:
        return f"the NATS server at {target.first}"
    return f"any NATS server of {target.display}"


def _release(nc: Any) -> None:
    # nats-py 2.16 leaves the socket of a refused first connect open (its client already
    # counts as closed, so close() would not release it).
    transport = getattr(nc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()


def _server_of(nc: Any) -> str | None:
    server = getattr(nc, "_current_server", None)
    uri = getattr(server, "uri", None)
    if uri is None:
        return None
    return f"{uri.scheme}://{uri.hostname}:{uri.port}" if uri.port else str(uri.hostname)


def connected_server(nc: Any) -> str:
    """The server a nats-py client is connected to now (``nats://host:port``), or ``?``."""
    return _server_of(nc) or "?"


def _text(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def describe_failure(exc: BaseException | None, where: str) -> str:
    """One sentence for a connection or server failure (``where``: the server or seed list)."""
    name = type(exc).__name__
    text = _text(exc) if exc is not None else ""
    if isinstance(exc, ConnectionError) and name in ("ConnectionError", "NatsRefused"):
        return text
    if name == "TimeoutError" and text == "nats: timeout":
        return (f"a JetStream request to {where} had no answer in time (a leader being "
                "elected, or the server overloaded)")
    if name in ("NoServersError", "ConnectionRefusedError", "OSError", "TimeoutError",
                "ConnectionClosedError"):
        return f"cannot reach the NATS server at {where} ({text or name})"
    if name in {"NoRespondersError", "ServiceUnavailableError"}:
        return f"the NATS server at {where} does not answer JetStream requests (is -js on?)"
    if name == "NoStreamResponseError":
        return f"no JetStream stream at {where} takes these subjects"
    return f"NATS at {where}: {text or name}"
