"""Who may look at ``sens web``: the listen address, the token and the browser's cookie. Pure.

* On a loopback address the page is served to this machine only, without a token; the
  ``Host`` header must then name a loopback host too, so that a web site that re-points its
  own name at 127.0.0.1 (DNS rebinding) cannot read the page from a visitor's browser.
* On any other address a token is required (one is generated when none is given): the URL
  printed at start carries it once (``?token=…``); the server answers with a cookie and a
  redirect to the same URL without it, so the token does not stay in the address bar. With
  ``--cert/--key`` the server speaks TLS and the cookie is ``Secure``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

__all__ = [
    "Access",
    "ListenError",
    "is_loopback",
    "new_token",
    "parse_listen",
]


class ListenError(ValueError):
    """A ``--listen`` value that is not ``HOST:PORT``."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port)."""
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ListenError(f"cannot read --listen {text!r}: write [ADDRESS]:PORT for IPv6")
        port_text = rest[1:]
    else:
        host, sep, port_text = t.rpartition(":")
        if not sep or ":" in host:
            raise ListenError(f"cannot read --listen {text!r}: write HOST:PORT "
                              "(e.g. 127.0.0.1:8765)")
    if not host:
        raise ListenError(f"--listen {text!r} names no address: write HOST:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ListenError(f"--listen {text!r}: the port must be a number 0-65535")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh token (192 random bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def _host_of(header: str) -> str:
    h = header.strip()
    if h.startswith("["):
        return h[1:].partition("]")[0]
    return h.rpartition(":")[0] if h.count(":") == 1 else h


class Access:
    """The rules for one server: ``token`` (None: loopback without one), ``port`` (names the
    cookie, so two servers on one machine keep theirs apart), ``tls``."""

    def __init__(self, token: str | None, port: int, tls: bool) -> None:
        self.token = token
        self.tls = tls
        self.cookie_name = f"sens_web_{port}"
        self._cookie = None if token is None else hmac.new(
            token.encode(), b"sens web cookie", hashlib.sha256).hexdigest()

    def host_allowed(self, host_header: str | None) -> bool:
        """Without a token, only requests addressed to a loopback name are answered."""
        if self.token is not None:
            return True
        return host_header is not None and is_loopback(_host_of(host_header))

    def token_ok(self, given: str | None) -> bool:
        """The ``?token=`` of a request is the server's."""
        return (self.token is not None and given is not None
                and hmac.compare_digest(given.encode(), self.token.encode()))

    def cookie_ok(self, given: str | None) -> bool:
        """The request carries the cookie a good token was answered with."""
        if self.token is None:
            return True
        return given is not None and self._cookie is not None and hmac.compare_digest(
            given.encode(), self._cookie.encode())

    @property
    def cookie_value(self) -> str:
        """What the cookie holds (a digest of the token, not the token)."""
        assert self._cookie is not None  # noqa: S101 - set whenever a token is
        return self._cookie
