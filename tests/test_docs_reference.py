"""The reference pages keep up with the code, and the project documents itself.

docs/cli.md names every command and every option the parser has; docs/config.md every key the
configuration takes (the daemon's sections and every ``[[forward]]`` keyword the forwarder
accepts). Nothing the project ships points outside it (a research note, a contract kept
elsewhere, a path on the machine it was written on).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysens.cli import build_parser
from pysens.daemon.config import _KEYS
from pysens.daemon.service import forward_options
from pysens.fleet.forwarder import Forwarder

ROOT = Path(__file__).resolve().parents[1]
CLI = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
CONFIG = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")


def _commands(parser: argparse.ArgumentParser, prefix: str = "sens"
              ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


COMMANDS = list(_commands(build_parser()))


def test_every_command_is_in_the_cli_page() -> None:
    for name, _ in COMMANDS:
        words = name.split()[1:]
        # "sens journal vacuum" appears as `sens journal disk-usage | vacuum …`
        assert f"`sens {words[0]}" in CLI, name
        for word in words[1:]:
            assert re.search(rf"\b{re.escape(word)}\b", CLI), name


@pytest.mark.parametrize(("name", "parser"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_option_is_in_the_cli_page(name: str, parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        for option in action.option_strings:
            if option in ("-h", "--help") or not option.startswith("--"):
                continue
            assert option in CLI, f"{name} {option} is not in docs/cli.md"


def test_every_configuration_key_is_in_the_config_page() -> None:
    for section, keys in _KEYS.items():
        assert f"## `[{section}]`" in CONFIG
        for key in keys:
            assert f"`{key}`" in CONFIG, f"[{section}] {key}"
    for table in ("[[destination]]", "[[forward]]"):
        assert f"## `{table}`" in CONFIG
    for key in ("name", "address", "port"):
        assert f"`{key}`" in CONFIG
    for key in forward_options(Forwarder):
        assert f"`{key}`" in CONFIG, f"[[forward]] {key} is not in docs/config.md"


TEXT = (".md", ".py", ".toml", ".json", ".js", ".css", ".html", ".sh", ".service", ".c", ".txt",
        ".yml")


def _shipped() -> Iterator[Path]:
    yield ROOT / "README.md"
    yield ROOT / "BENCHMARKS.md"
    for top in ("docs", "src", "contrib", "bench", "scripts", "tests", "tests_windows"):
        for path in sorted((ROOT / top).rglob("*")):
            if (path.is_file() and path.suffix in TEXT
                    and not {"__pycache__", "pysens.egg-info"} & set(path.parts)):
                yield path


OUTSIDE = re.compile(r"\.\./shared|\bSPEC\b|§|/work/|shared/notes")


def test_nothing_points_outside_the_project() -> None:
    # these two name what they look for
    checkers = {Path(__file__).resolve(), (ROOT / "tests" / "test_docs_examples.py").resolve()}
    found = []
    for path in _shipped():
        if path.resolve() in checkers:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8",
                                                     errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
    assert not found, "\n".join(found)
