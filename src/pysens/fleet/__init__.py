"""The fleet: every host's journal shipped over NATS JetStream into one central store.

:mod:`.stream` (the stream, its subjects and settings), :mod:`.connection` (seed lists,
credentials and TLS, on nats-py's connection), :mod:`.forwarder` (a host's journal -> the
stream), :mod:`.collector` (the stream -> the store), :mod:`.gaps` (loss that could not be
prevented, said), :mod:`.store` (the central store: SQLite or PostgreSQL, read like a journal),
:mod:`.projection` (each session's state beside the events) and :mod:`.urls` (server URLs
without their secrets). Importing this package needs no
third-party module; nats-py and psycopg are imported by the code that uses them.
"""

from .stream import DEFAULT_PREFIX, DEFAULT_STREAM, StreamSettings

__all__ = ["DEFAULT_PREFIX", "DEFAULT_STREAM", "StreamSettings"]
