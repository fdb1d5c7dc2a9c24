"""Run the network source (in whatever network namespace this process is in) and print JSON
lines: ``{"ready": [...]}`` (the observations at start), ``{"obs": ...}`` per observation and
``{"event": ...}`` per SENS event, observations fed through :class:`pysens.tracker.Tracker`.

Usage: ``python tests/_net_probe.py '{"destinations": [{"address": "10.9.0.2", "port": 80}],
"networkmanager": false, "recheck": 0.5}'`` (see tests/netns_fixtures.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from pysens.observations import ConnectionState, Observation
from pysens.sources.destinations import parse_destinations
from pysens.sources.network import NetworkSource
from pysens.tracker import Tracker


def summary(obs: Observation) -> dict[str, Any]:
    """An observation as a small JSON object."""
    if isinstance(obs, ConnectionState):
        return {"kind": "connection", "key": obs.key, "connection": obs.connection,
                "usable": obs.usable, "type": obs.connection_type, "qoc": obs.qoc,
                "existing": obs.existing}
    return {"kind": "destination", "destination": getattr(obs, "destination", None),
            "reachable": getattr(obs, "reachable", None),
            "connection": getattr(obs, "connection", None),
            "existing": getattr(obs, "existing", None)}


def emit(item: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
    sys.stdout.flush()


async def main(options: dict[str, Any]) -> None:
    source = NetworkSource(
        destinations=parse_destinations(options.get("destinations", [])),
        networkmanager=options.get("networkmanager", False),
        bus_address=options.get("bus_address"),
        rcvbuf=options.get("rcvbuf", 4 << 20),
        probe_timeout=options.get("timeout", 1.0),
        recheck=options.get("recheck", 60.0),
        backoff=tuple(options.get("backoff", (1.0, 60.0))),
    )
    tracker = Tracker(host="testhost", include_existing=options.get("include_existing", False))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def consume() -> None:
        async for obs in source.watch():
            emit({"obs": summary(obs)})
            for event in tracker.feed(obs):
                emit({"event": event.to_json()})

    task = asyncio.create_task(consume())
    ready = asyncio.create_task(source.ready.wait())
    await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    emit({"ready": [summary(o) for o in source.table.snapshot(datetime.now(UTC))]})
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({stopping, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # the source failed: its traceback goes to stderr
    await source.aclose()
    task.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
