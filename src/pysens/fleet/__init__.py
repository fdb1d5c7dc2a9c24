"""The fleet: every host's journal shipped over NATS JetStream into one central store.

:mod:`.stream` (the stream, its subjects and settings), :mod:`.connection` and :mod:`.natsproto`
(talking to NATS), :mod:`.forwarder` (a host's journal -> the stream), :mod:`.collector` (the
stream -> the store), :mod:`.store` (the central store: SQLite or PostgreSQL, read like a
journal) and :mod:`.urls` (server URLs without their secrets). Importing this package needs no
third-party module; nats-py and psycopg are imported by the code that uses them.
"""

from .stream import DEFAULT_PREFIX, DEFAULT_STREAM, StreamSettings

__all__ = ["DEFAULT_PREFIX", "DEFAULT_STREAM", "StreamSettings"]
