"""`sens watch --source auto` on a host with no live source yet: it waits on utmp, not exits.

Runs in a private mount namespace with an empty tmpfs on /run (no system bus, no /run/utmp),
like a container or a Debian 13 host without logind; then a login program creates /run/utmp.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from utmp_fixtures import Namespace, rec

pytestmark = pytest.mark.root


@pytest.fixture
def bare_run(tmp_path: Path) -> Iterator[Namespace]:
    ns = Namespace(tmp_path)
    try:
        assert ns.run("rm", "/run/utmp").returncode == 0
        ns.env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        yield ns
    finally:
        ns.close()


def test_auto_waits_for_utmp_to_appear_and_reports_the_login(bare_run: Namespace) -> None:
    ns = bare_run
    # --include-existing: whether the source's first read comes before or after the file is
    # created, the login is reported (as new, or as found open).
    watch = ns.sens("watch", "--json", "--include-existing")
    out, err = ns.lines(watch)
    said = err.expect(lambda line: "watching" in line)
    assert "utmp" in said and "waiting" in said and "logind" in said
    # A login program creates /run/utmp with the first login in it.
    login = rec(7, 4242, "ts/0", "alice", "pts/0", host="10.1.2.3", addr="10.1.2.3")
    r = ns.run("sh", "-c", f"printf '%s' '{login}' | utmpdump -r -o /run/utmp")
    assert r.returncode == 0, r.stderr
    event = json.loads(out.expect(lambda line: '"Logon"' in line))
    assert event["user_name"] == "alice" and event["session_id"] == "pts/0"
    assert event["client_address"] == "10.1.2.3" and event["source"] == "utmp"
