"""Shared test fixtures. Area-specific fixtures live in their own modules (imported by tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

#: The shared sample data (real wtmp files, .evtx logs), read in place, never copied.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``shared/data`` beside the checkout."""
    assert SHARED_DATA.is_dir(), f"{SHARED_DATA} is missing: shared/ must sit beside the checkout"
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own journal and socket path: nothing touches the host's state."""
    monkeypatch.setenv("SENS_JOURNAL", str(tmp_path / "journal.db"))
    monkeypatch.setenv("SENS_SOCKET", str(tmp_path / "sens.sock"))
    yield
