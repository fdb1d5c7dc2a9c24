"""The shape of the house: floors (no module imports one above it), no import cycles, the old
import paths still working for one release with a warning, and the public API's two entry
points (watch / awatch) on a real replay file."""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
import warnings
from pathlib import Path

import pytest

import pysens
from pysens import EventSystem, SensEvent

SRC = Path(pysens.__file__).parent

#: The floors of the flow, lowest first: a module may import its own floor and the ones below.
FLOORS: dict[str, int] = {
    "_deprecated": 0, "_slots": 0, "aio": 0, "events": 0, "inotify": 0,
    "observations": 1, "criteria": 1, "interfaces": 1, "text": 1,
    "tracker": 2, "sources": 2,
    "timeline": 3, "journal": 3, "eventsystem": 3,
    "live": 4, "importer": 4, "sinks": 4,
    "subscriptions": 5, "fleet": 5,
    "delivery": 6,
    "daemon": 7,
    "web": 8,
    "cli": 9,
}
# Old paths kept for one release: they only point at the new ones.
SHIMS = {"store", "collector", "service", "socketapi", "config", "timeline_html"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                target = node.module or ""
            if target.startswith("pysens"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pysens"))
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_module_imports_a_higher_floor() -> None:
    wrong = []
    for name, path in _modules().items():
        room = _room(name)
        if not room or room in SHIMS or name == "pysens.sinks.nats":
            continue
        assert room in FLOORS, f"{name}: which floor is {room!r}? (add it to FLOORS)"
        for target in _imports(name, path, top_level_only=False):
            other = _room(target)
            if other in FLOORS and FLOORS[other] > FLOORS[room]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: {t for t in _imports(name, path, top_level_only=True) if t in modules}
             for name, path in modules.items()}
    for name, targets in graph.items():
        targets.discard(name)
    # A package importing its own submodules (its __init__ re-exporting) is not a cycle by
    # itself; a submodule importing the package's __init__ back would be.
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> None:
        if node in path:
            cycle = [*path[path.index(node):], node]
            if not all(m == cycle[0] or m.startswith(cycle[0] + ".") for m in cycle[1:-1]):
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            return
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


@pytest.mark.parametrize(("old", "name", "new"), [
    ("pysens.store", "open_store", "pysens.fleet.store"),
    ("pysens.collector", "Collector", "pysens.fleet.collector"),
    ("pysens.service", "Service", "pysens.daemon.service"),
    ("pysens.config", "load_config", "pysens.daemon.config"),
    ("pysens.socketapi", "DaemonClient", "pysens.daemon"),
    ("pysens.socketapi", "SocketServer", "pysens.daemon.server"),
    ("pysens.timeline_html", "render_html", "pysens.timeline.html"),
    ("pysens.sinks.nats", "Forwarder", "pysens.fleet.forwarder"),
    ("pysens.sinks.nats", "host_token", "pysens.fleet.stream"),
    ("pysens", "SessionInfo", "pysens.observations"),
])
def test_old_import_paths_still_work_with_a_deprecation_warning(
    old: str, name: str, new: str
) -> None:
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"{old}.{name} moved to {new}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)


def test_names_the_old_modules_still_hold() -> None:
    from pysens.importer import ReadError  # type: ignore[attr-defined]
    from pysens.subscriptions import SubscriptionStore  # type: ignore[attr-defined]

    assert ReadError is pysens.sources.ReadError
    assert SubscriptionStore is pysens.journal.SubscriptionStore


def test_renamed_old_names_still_work() -> None:
    import pysens.subscriptions as old
    from pysens.journal import PersistentSubscription

    with pytest.warns(DeprecationWarning, match="Subscription moved"):
        assert old.Subscription is PersistentSubscription
    from pysens import sources

    with pytest.warns(DeprecationWarning, match="REGISTRY"):
        assert sources.SOURCES["logind"] == "pysens.sources.logind:LIVE"
    with pytest.raises(AttributeError):
        getattr(pysens, "NoSuchThing")  # noqa: B009


def test_the_new_names_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from pysens.fleet.store import open_store  # noqa: F401
        from pysens.journal import SubscriptionStore  # noqa: F401


def _replay_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    events = [SensEvent(method=m, user_name=u, session_id="3", host="web01", source="test")
              for m, u in [("Logon", "alice"), ("SessionDisconnect", "alice"),
                           ("Logon", "bob")]]
    path.write_text("".join(json.dumps(e.to_json()) + "\n" for e in events), encoding="utf-8")
    return path


def test_watch_yields_a_hosts_events_and_stops_when_the_loop_breaks(tmp_path: Path) -> None:
    path = _replay_file(tmp_path)
    seen = []
    for event in pysens.watch(str(path), criteria="bstrUserName = 'alice'"):
        seen.append((str(event.method), event.user_name))
    # bob's Logon on the same session id ends alice's (a synthesized, superseded Logoff).
    assert seen == [("Logon", "alice"), ("SessionDisconnect", "alice"), ("Logoff", "alice")]
    it = iter(pysens.watch(str(path)))
    first = next(it)
    it.close()  # a break out of the loop: the thread stops
    assert first.user_name == "alice"


def test_awatch_and_an_event_system_in_two_lines(tmp_path: Path) -> None:
    path = _replay_file(tmp_path)
    es = EventSystem()
    got: list[str] = []
    es.subscribe(lambda e: got.append(f"{e.method}:{e.user_name}"), event_class="ISensLogon2",
                 method="Logon")
    started: list[str] = []

    async def main() -> None:
        async for event in pysens.awatch(str(path), on_start=lambda n, why: started.append(n)):
            await es.afire(event)

    asyncio.run(main())
    assert got == ["Logon:alice", "Logon:bob"] and started == [str(path)]


def test_watch_raises_what_stops_it_before_the_first_event(tmp_path: Path) -> None:
    with pytest.raises(pysens.SourceUnavailable, match="unknown source 'logindd'"):
        next(pysens.watch("logindd"))
    with pytest.raises(pysens.CriteriaError):
        next(pysens.watch(str(_replay_file(tmp_path)), criteria="bstrUserName = "))


def test_a_subscription_to_every_class_gets_each_event_once() -> None:
    es = EventSystem()
    got: list[str] = []
    es.subscribe(lambda e: got.append(str(e.method)), event_class=None)
    es.fire(SensEvent(method="Logon", user_name="a", session_id="1"))  # ISensLogon and -2
    es.fire(SensEvent(method="OnBatteryPower", battery_percent=50))
    assert got == ["Logon", "OnBatteryPower"]
    with pytest.raises(ValueError, match="plain callable"):
        es.subscribe(print, event_class=None, method="Logon")
