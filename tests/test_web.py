"""``sens web`` in a real browser (Debian's chromium, driven by Playwright): a real ``sens
serve`` (or a real nats-server, forwarder, collector and SQLite store) feeds it; the page must
follow every event, keep hostile names as text, show filter errors where they are, say when its
source is gone and recover. Screenshots go to $SENS_TEST_ARTIFACTS (default tests/artifacts/)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleet_fixtures import NatsServer, nats_server, reap, spawn
from pysens.criteria import CriteriaError, compile_criteria
from pysens.events import SensEvent
from pysens.timeline import build_timeline
from pysens.timeline.html import COLORS, render_html
from service_fixtures import daemon, start_daemon, stop
from test_timeline_html import colour_counts, read_png
from web_fixtures import WebServer, artifact, browser, page, publish, ready, wait_until

__all__ = ["browser", "nats_server", "page"]  # fixtures, imported for pytest

EVIL = "<img src=x onerror=alert(1)>"
#: How long (ms) the page may take to show an event. The latency itself (p50 25 ms, p99 under
#: 100 ms at rest) is bench/bench_web.py's to measure; a test on a loaded CI box only asks that
#: every event gets there.
LIMIT = 5000
STATE_OF = """([user, host]) => {
  for (const tr of document.querySelectorAll('#sessions tbody tr')) {
    if (tr.querySelector('.user').textContent === user &&
        (!host || tr.querySelector('.host').textContent === host)) {
      return tr.getAttribute('data-state');
    }
  }
  return null;
}"""


def state_is(pg: Any, user: str, state: str | None, host: str | None = None,
             timeout: float = LIMIT) -> None:
    """Wait (``timeout`` ms) until the sessions table shows ``user`` in ``state`` (None: gone)."""
    pg.wait_for_function(f"(a) => ({STATE_OF})([a[0], a[1]]) === a[2]",
                         arg=[user, host, state], timeout=timeout)


# -- one host: the daemon ---------------------------------------------------------------------

def test_every_session_event_changes_the_page(tmp_path: Path, page: Any) -> None:
    with daemon(tmp_path), WebServer() as web:
        ready(page, web.url)
        assert page.locator("#status").is_hidden()
        publish("Logon", "--user", "alice", "--session", "7", "--remote",
                "--client-name", "LAPTOP", "--client-address", "10.1.2.3")
        state_is(page, "alice", "active")
        row = page.locator("#sessions tbody tr", has_text="alice")
        assert row.locator(".addr").text_content() == "10.1.2.3"
        page.wait_for_selector("#tl .row .bar.connected.open", timeout=LIMIT)
        publish("SessionDisconnect", "--user", "alice", "--session", "7")
        state_is(page, "alice", "disconnected")
        page.wait_for_selector("#tl .row .bar.disconnected.open", timeout=LIMIT)
        publish("SessionReconnect", "--user", "alice", "--session", "7", "--remote",
                "--client-name", "HOME", "--client-address", "192.0.2.9")
        state_is(page, "alice", "active")
        assert row.locator(".addr").text_content() == "192.0.2.9"
        publish("Logoff", "--user", "alice", "--session", "7")
        state_is(page, "alice", None)
        page.wait_for_selector("#tl .row .end", timeout=LIMIT)  # the bar ends with a logoff
        methods = page.eval_on_selector_all("#events li", "ls => ls.map(l => l.dataset.method)")
        assert methods == ["Logoff", "SessionReconnect", "SessionDisconnect", "Logon"]
        bars = page.eval_on_selector_all("#tl .row .bar", "bs => bs.map(b => b.className)")
        assert bars == ["bar connected", "bar disconnected", "bar connected"]


def test_a_hostile_user_name_stays_text(tmp_path: Path, page: Any) -> None:
    with daemon(tmp_path), WebServer() as web:
        ready(page, web.url)
        publish("Logon", "--user", EVIL, "--session", "9", "--client-name", EVIL, "--remote")
        state_is(page, EVIL, "active")
        page.wait_for_selector("#tl .row", timeout=LIMIT)
        assert page.locator("#events li .x").first.text_content().startswith(EVIL)
        assert page.locator("#tl .row .user").text_content() == EVIL
        assert page.locator("img").count() == 0  # nothing was parsed as markup
        assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
        # (and the page fixture fails the test if an alert() had opened)


def test_a_bad_filter_shows_its_position_and_a_good_one_filters(tmp_path: Path,
                                                               page: Any) -> None:
    bad = "bstrUserName = 'alice' AND"
    with pytest.raises(CriteriaError) as err:
        compile_criteria(bad)
    with daemon(tmp_path), WebServer() as web:
        ready(page, web.url)
        page.fill("#filter", bad)
        page.press("#filter", "Enter")
        page.wait_for_selector("#filter-error:not([hidden])", timeout=5000)
        box = page.locator("#filter-error")
        assert box.get_attribute("data-position") == str(err.value.position)
        text_line, caret_line = box.text_content().split("\n")
        assert text_line == bad
        assert caret_line.index("^") == err.value.position and str(err.value) in caret_line
        # a good filter: only matching events are listed; the table still shows everyone
        page.fill("#filter", "bstrUserName = 'ALICE'")
        page.press("#filter", "Enter")
        page.wait_for_selector("#filter-error[hidden]", state="attached", timeout=5000)
        page.wait_for_function("location.hash.includes('filter=')", timeout=5000)
        publish("Logon", "--user", "bob", "--session", "1")
        publish("Logon", "--user", "alice", "--session", "2")
        state_is(page, "alice", "active")
        state_is(page, "bob", "active")
        page.wait_for_function("document.querySelectorAll('#events li').length === 1",
                               timeout=LIMIT)
        assert "alice" in page.locator("#events li").text_content()
        # the address keeps the filter: a new page opens with it
        page.goto(page.url)
        page.wait_for_selector("body[data-ready='1']")
        assert page.input_value("#filter") == "bstrUserName = 'ALICE'"


def test_the_daemon_going_away_is_shown_and_the_page_recovers(tmp_path: Path,
                                                             page: Any) -> None:
    proc = start_daemon(tmp_path)
    try:
        with WebServer() as web:
            ready(page, web.url)
            publish("Logon", "--user", "carol", "--session", "5")
            state_is(page, "carol", "active")
            stop(proc)
            page.wait_for_selector("#status:not([hidden])", timeout=5000)
            assert "sens serve" in page.locator("#status").text_content()
            proc = start_daemon(tmp_path)
            page.wait_for_selector("#status[hidden]", state="attached", timeout=10_000)
            # The table is the new daemon's (one without sources starts empty); the timeline
            # still has carol's session, from the journal.
            state_is(page, "carol", None)
            assert page.locator("#tl .row .user", has_text="carol").count() == 1
            publish("SessionDisconnect", "--user", "carol", "--session", "5")
            state_is(page, "carol", "disconnected")
    finally:
        stop(proc)


def test_network_and_power_lanes(tmp_path: Path, page: Any) -> None:
    now = datetime.now(UTC)
    host = socket.gethostname().split(".")[0]

    def ev(method: str, dt: float, **kw: Any) -> dict[str, Any]:
        return SensEvent(method=method, host=host, source="test",
                         time=now + timedelta(seconds=dt), **kw).to_json()

    with daemon(tmp_path), WebServer() as web:
        ready(page, web.url)
        publish("Logon", "--user", "dave", "--session", "4")
        publish(events=[
            ev("ConnectionMade", 0.1, connection="eth0", connection_type=0,
               qoc={"flags": 1, "in_speed": 10**9, "out_speed": 10**9}),
            ev("OnBatteryPower", 0.2, battery_percent=81),
            ev("ConnectionLost", 0.4, connection="eth0", connection_type=0),
            ev("OnACPower", 0.5),
        ])
        page.wait_for_selector("#tl .lane .seg.net", timeout=LIMIT)
        page.wait_for_selector("#tl .lane .seg.battery", timeout=LIMIT)
        order = page.eval_on_selector_all("#tl .entries > div", "ds => ds.map(d => d.className)")
        assert order[:3] == ["hostrow", "lane", "row"]  # the lane sits above the sessions
        assert page.locator("#events li[data-method='OnBatteryPower']").text_content() \
            .endswith("81%")


def test_screenshots_of_the_live_page_and_its_timeline(tmp_path: Path, page: Any) -> None:
    with daemon(tmp_path), WebServer() as web:
        ready(page, web.url)
        users = ["alice", "bob", "carol", "dave", EVIL]
        for n, user in enumerate(users):
            publish("Logon", "--user", user, "--session", str(n + 2), "--remote",
                    "--client-address", f"10.0.0.{n + 1}")
        for n in (0, 2):
            publish("SessionDisconnect", "--user", users[n], "--session", str(n + 2))
        state_is(page, "carol", "disconnected")
        page.wait_for_timeout(1500)  # the bars grow for a moment
        shot = artifact("web-live.png")
        page.screenshot(path=str(shot))
        timeline = artifact("web-timeline.png")
        page.locator("#timeline-panel").screenshot(path=str(timeline))
    for path, least in ((shot, 2000), (timeline, 2000)):
        _, _, rows = read_png(path)
        counts = colour_counts(rows[::2], {"connected": COLORS["connected"],
                                           "hatch": COLORS["disconnected"],
                                           "pale": COLORS["disconnected_pale"]})
        assert counts["connected"] > least, (path, counts)
        assert counts["hatch"] > 50 and counts["pale"] > 50, (path, counts)


# -- the fleet: forwarder -> NATS -> collector -> SQLite store --------------------------------

def _fleet_events() -> list[dict[str, Any]]:
    t = datetime.now(UTC) - timedelta(minutes=30)
    out = []
    for host, users in (("web01", ["alice", "bob"]), ("web02", ["carol", EVIL])):
        for n, user in enumerate(users):
            kw: dict[str, Any] = {"host": host, "user_name": user, "session_id": str(n + 1),
                                  "source": "test", "remote": True}
            out.append(SensEvent(method="Logon", time=t + timedelta(minutes=n), **kw)
                       .to_json())
            if n:
                out.append(SensEvent(method="SessionDisconnect",
                                     time=t + timedelta(minutes=n + 5), **kw).to_json())
    return out


@pytest.mark.parametrize("live", ["nats", "store"])
def test_the_fleet_view_shows_every_host_of_the_store(
        tmp_path: Path, page: Any, nats_server: NatsServer, live: str) -> None:
    store = f"sqlite:///{tmp_path / 'fleet.db'}"
    collector = spawn("-m", "pysens.cli", "collect", nats_server.url, "--store", store,
                      log=tmp_path / "collect.log")
    try:
        with daemon(tmp_path, "--forward", nats_server.url):
            publish(events=_fleet_events())
            from pysens.fleet.store import open_store

            with open_store(store) as s:
                wait_until(lambda: s.count() == 6, "the collector storing the events")
            extra = ("--nats", nats_server.url) if live == "nats" else ()
            with WebServer("--store", store, *extra) as web:
                ready(page, web.url)
                assert page.locator("#overview-panel").is_visible()
                hosts = page.eval_on_selector_all(
                    "#overview tbody tr", "rs => rs.map(r => [r.dataset.host,"
                    " r.querySelector('.open').textContent, r.querySelector('.disc')"
                    ".textContent])")
                assert hosts == [["web01", "2", "1"], ["web02", "2", "1"]]
                state_is(page, EVIL, "disconnected", host="web02")
                # live: a new event on web02 reaches the page (through NATS, or the store)
                publish(events=[SensEvent(method="SessionReconnect", host="web02",
                                          user_name=EVIL, session_id="2", source="test",
                                          remote=True).to_json()])
                state_is(page, EVIL, "active", host="web02", timeout=5000)
                page.wait_for_function(
                    "document.querySelector('#overview tr[data-host=\"web02\"] .disc')"
                    ".textContent === '0'", timeout=5000)
                # a host is a click away: the page then shows only it, and says so in its URL
                page.click("#overview tr[data-host='web01']")
                page.wait_for_function("location.hash.includes('host=web01')")
                assert page.locator("#sessions tbody tr:not([hidden])").count() == 2
                assert page.locator("#tl .hostrow").count() == 1
                page.screenshot(path=str(artifact(f"web-fleet-{live}.png")))
    finally:
        reap(collector)


# -- the static page shares the drawing -------------------------------------------------------

def test_the_static_timeline_over_months_opens_where_the_sessions_are(
        tmp_path: Path, page: Any) -> None:
    t0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    events = []
    for day in (0, 1, 2, 40, 41, 90, 91, 92, 93):  # three busy stretches over three months
        for k in range(3):
            kw: dict[str, Any] = {"host": "vm", "user_name": f"u{k}",
                                  "session_id": f"{day}-{k}", "source": "t"}
            start = t0 + timedelta(days=day, minutes=20 * k)
            events += [SensEvent(method="Logon", time=start, **kw),
                       SensEvent(method="Logoff", time=start + timedelta(minutes=25), **kw)]
    path = tmp_path / "months.html"
    path.write_text(render_html(build_timeline(events), now=t0 + timedelta(days=94)))
    page.goto(path.as_uri())
    page.wait_for_selector(".row")
    widths = page.eval_on_selector_all(".row .bar", "bs => bs.map(b => parseFloat(b.style.width))")
    visible = [w for w in widths if w > 0]
    assert visible and max(visible) > 2, "the view opens on sessions wide enough to see"
    assert page.locator("#reset").is_visible()  # zoomed in: the whole range is a click away
    strip = page.locator(".hostrow .density")
    assert strip.locator("i").count() >= 3  # the three busy stretches
    page.screenshot(path=str(artifact("static-timeline-months.png")))
    # a click on the strip's first stretch goes there: the first sessions come into view
    first = page.locator(".row .bar").first
    assert float(first.evaluate("b => parseFloat(b.style.left)")) < 0  # out of view now
    box = strip.locator("i").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert 0 <= float(first.evaluate("b => parseFloat(b.style.left)")) <= 100


def test_short_intervals_get_seconds_on_the_axis(tmp_path: Path, page: Any) -> None:
    t0 = datetime(2026, 6, 1, 9, 0, 5, tzinfo=UTC)
    kw: dict[str, Any] = {"host": "vm", "user_name": "quick", "session_id": "1", "source": "t"}
    events = [SensEvent(method="Logon", time=t0, **kw),
              SensEvent(method="SessionDisconnect", time=t0 + timedelta(seconds=4), **kw),
              SensEvent(method="SessionReconnect", time=t0 + timedelta(seconds=9), **kw),
              SensEvent(method="Logoff", time=t0 + timedelta(seconds=20), **kw)]
    path = tmp_path / "short.html"
    path.write_text(render_html(build_timeline(events), now=t0 + timedelta(minutes=5)))
    page.goto(path.as_uri() + f"#zoom={t0.timestamp() - 5:.0f},{t0.timestamp() + 25:.0f}")
    page.wait_for_selector(".row")
    labels = page.eval_on_selector_all("#axis .tick", "ts => ts.map(t => t.textContent)")
    assert labels and all(len(label.split(" ")[-1]) == 8 for label in labels), labels
