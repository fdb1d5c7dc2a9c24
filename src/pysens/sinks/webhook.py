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
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not (
                urlsplit(url).hostname):
            raise ValueError(f"a webhook needs an http:// or https:// URL, not {url!r}")
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
