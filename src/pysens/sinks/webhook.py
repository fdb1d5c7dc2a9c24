"""The webhook sink: POST each event's JSON to a URL (standard library ``http.client``).

Headers: ``Content-Type: application/json``, ``Idempotency-Key: <event id>`` (the receiver can
drop redeliveries), ``X-Sens-Event: <method>`` and, when a secret is set,
``X-Sens-Signature: sha256=<hex HMAC-SHA256 of the body>``. A 2xx answer is success; any other
status, a redirect, a garbled answer or no answer within the time limit is a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..aio import within
from ..events import SensEvent
from . import DEFAULT_TIMEOUT, SinkError

__all__ = ["WebhookSink", "sign"]


def sign(secret: str, body: bytes) -> str:
    """The ``X-Sens-Signature`` value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _check_url(url: str) -> None:
    """ValueError saying what is wrong with ``url`` as a webhook address (what ``http.client``
    would otherwise only find out at the first delivery, or take for another host)."""
    def bad(why: str) -> ValueError:
        return ValueError(f"a webhook needs an http:// or https:// URL, not {url!r} ({why})")

    if any(c.isspace() or not c.isprintable() for c in url):
        raise bad("spaces and control characters must be %-encoded")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise bad(str(e)) from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"a webhook needs an http:// or https:// URL, not {url!r}")
    if not parts.hostname:
        raise bad("no host")
    if "@" in parts.netloc:
        raise bad("a user name or password in the URL is not sent; use --secret to sign")
    if port == 0:
        raise bad("port 0")


class WebhookSink:
    """POSTs to ``settings["url"]``, signed with ``settings["secret"]`` when given."""

    kind = "webhook"

    def __init__(self, settings: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        s = self.validate(settings)
        self.url: str = s["url"]
        self.secret: str | None = s.get("secret")
        self.timeout = timeout

    @staticmethod
    def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
        """``{"url": "http(s)://…", "secret": "…" (optional)}``."""
        url = settings.get("url")
        if not isinstance(url, str):
            raise ValueError(f"a webhook needs an http:// or https:// URL, not {url!r}")
        _check_url(url)
        out: dict[str, Any] = {"url": url}
        secret = settings.get("secret")
        if secret is not None:
            if not isinstance(secret, str) or not secret:
                raise ValueError("a webhook secret must be a non-empty string")
            out["secret"] = secret
        return out

    def _post(self, event: SensEvent) -> None:
        body = json.dumps(event.to_json(), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": event.id,
                   "X-Sens-Event": str(event.method), "User-Agent": "pysens"}
        if self.secret:
            headers["X-Sens-Signature"] = sign(self.secret, body)
        parts = urlsplit(self.url)
        conn_class = (http.client.HTTPSConnection if parts.scheme == "https"
                      else http.client.HTTPConnection)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = conn_class(parts.netloc, timeout=self.timeout)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            status = response.status
            response.read(65536)
        except http.client.HTTPException as e:
            raise SinkError(f"{self.url} gave a garbled answer ({type(e).__name__})") from None
        except OSError as e:
            raise SinkError(f"cannot POST to {self.url}: {e.strerror or e}") from None
        finally:
            conn.close()
        if not 200 <= status < 300:
            raise SinkError(f"{self.url} answered HTTP {status}")

    async def deliver(self, events: Sequence[SensEvent]) -> None:
        """POST each event in order."""
        for done, event in enumerate(events):
            try:
                await within(self.timeout + 1, asyncio.to_thread(self._post, event))
            except TimeoutError:
                raise SinkError(
                    f"{self.url} did not answer within {self.timeout:g} s", done) from None
            except SinkError as e:
                raise SinkError(str(e), done) from None

    async def aclose(self) -> None:
        """Nothing held between events."""
