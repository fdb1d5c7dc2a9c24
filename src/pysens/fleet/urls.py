"""URLs of NATS servers and stores in what pysens says and stores: never their secrets."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["redact_url", "strip_credentials"]


def strip_credentials(url: str) -> str:
    """``url`` without its user information (``nats://a:b@hub:4222`` -> ``nats://hub:4222``):
    what names a server whatever credentials reach it (a forwarder's cursor)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def redact_url(url: str) -> str:
    """``url`` as messages show it: a password or token masked, a user name kept
    (``postgresql://app:s3cret@db/x`` -> ``postgresql://app:***@db/x``,
    ``nats://TOKEN@hub:4222`` -> ``nats://***@hub:4222``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    user_info, _, host = parts.netloc.rpartition("@")
    user, colon, _ = user_info.partition(":")
    if colon:
        masked = f"{user}:***"
    elif parts.scheme in ("postgresql", "postgres"):
        masked = user  # a user name alone is no secret there
    else:
        masked = "***"  # nats://TOKEN@host: the user part is the secret
    return parts._replace(netloc=f"{masked}@{host}").geturl()
