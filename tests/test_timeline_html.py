"""The ``sens timeline --html`` page: escaping, self-containment, and what a real browser
(headless Chromium) draws from it: screenshot pixels and the live DOM."""

from __future__ import annotations

import contextlib
import html
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pysens.cli import main
from pysens.events import SensEvent
from pysens.journal import Journal
from pysens.timeline import SessionSpan, build_timeline
from pysens.timeline.html import COLORS, render_html, time_ticks

T0 = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
EVIL_USER = "<script>alert('x')</script>"
EVIL_HOST = '"><img src=x onerror=alert(1)>'


def fleet_day(n: int, seed: int = 7) -> list[SensEvent]:
    """``n`` RDP sessions over a day on three hosts: disconnects, reconnects from new
    addresses, logoffs with reasons, some still open; some names are hostile."""
    rnd = random.Random(seed)
    events = []
    for k in range(n):
        host = EVIL_HOST if k == 1 else f"web{k % 3 + 1:02d}"
        user = (EVIL_USER if k % 7 == 0 else 'o"neil' if k % 7 == 3
                else rnd.choice(["alice", "bob", "carol", "erin"]))
        kw: dict[str, Any] = {"user_name": user, "session_id": str(k + 2), "host": host,
                              "source": "test", "remote": True}
        t = T0 + timedelta(minutes=rnd.randint(0, 500))
        events.append(SensEvent(method="Logon", time=t, client_name="LAPTOP",
                                client_address=f"10.0.0.{k % 250 + 1}", **kw))
        for _ in range(1 + k % 3):
            t += timedelta(minutes=rnd.randint(10, 60))
            events.append(SensEvent(method="SessionDisconnect", time=t, **kw))
            t += timedelta(minutes=rnd.randint(10, 40))
            events.append(SensEvent(method="SessionReconnect", time=t, client_name="HOME",
                                    client_address=f"192.0.2.{k % 250 + 1}", **kw))
        if k % 4:
            t += timedelta(minutes=rnd.randint(5, 60))
            events.append(SensEvent(method="Logoff", time=t, reason=rnd.choice(
                ["logoff", "reboot", None]), synthesized=k % 5 == 0, **kw))
    return events


def page_model(page: str) -> dict[str, Any]:
    """The JSON model a page hands its drawing script (the ``data-model`` attribute)."""
    m = re.search(r'<div id="tl" data-model="([^"]*)"', page)
    assert m, "the page carries its model"
    return json.loads(html.unescape(m.group(1)))  # type: ignore[no-any-return]


# -- without a browser -------------------------------------------------------------------------

def test_every_piece_of_data_is_escaped() -> None:
    spans = build_timeline(fleet_day(12))
    assert any(s.user_name == EVIL_USER for s in spans) and any(s.host == EVIL_HOST
                                                                 for s in spans)
    page = render_html(spans, now=NOW, title="<b>t</b>")
    assert page.count("<script") == 1, "only the page's own script"
    assert "<img" not in page and "<b>t</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "o\\&quot;neil" in page  # inside the JSON model, escaped for the attribute
    assert any(s["user_name"] == EVIL_USER for s in page_model(page)["spans"])  # and intact


def test_the_page_is_self_contained() -> None:
    page = render_html(build_timeline(fleet_day(12)), now=NOW)
    for needle in ("http:", "https:", "//cdn", "src=\"", "url(", "@import", "<link"):
        assert needle not in page, needle
    assert "default-src 'none'" in page  # and the browser is told so


def test_no_sessions_is_a_page_too() -> None:
    page = render_html([], now=NOW)
    assert "No sessions." in page and page.rstrip().endswith("</html>")


def test_time_ticks() -> None:
    labels = [label for _, label in time_ticks(T0, T0 + timedelta(hours=10))]
    assert labels[0] == "11-23 08:00" and labels[1] == "09:00" and len(labels) <= 12
    days = [label for _, label in time_ticks(T0, T0 + timedelta(days=30))]
    assert days[0] == "2026-11-26" and all(re.fullmatch(r"\d{4}-\d\d-\d\d", d) for d in days)


def test_old_records_do_not_stretch_the_axis_to_today() -> None:
    old = [SensEvent(method="Logon", user_name="moxilo", session_id="pts/0", host="vm",
                     time=datetime(2013, 12, 13, 14, 46, tzinfo=UTC)),
           SensEvent(method="Logon", user_name="moxilo", session_id="pts/1", host="vm",
                     time=datetime(2013, 12, 14, 11, 22, tzinfo=UTC))]
    page = render_html(build_timeline(old), now=NOW)
    assert "2013-12-13 14:46:00 to 2013-12-14 11:22:00 UTC" in page
    assert page_model(page)["live"] is False  # the drawing says "open at the last record"


def test_cli_writes_the_page(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with Journal(os.environ["SENS_JOURNAL"]) as j:
        j.append_many(fleet_day(10))
    target = tmp_path / "t.html"
    assert main(["timeline", "--html", str(target)]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == f"sens: wrote 10 session(s) to {target}\n"
    assert len(page_model(target.read_text())["spans"]) == 10
    assert main(["timeline", "--html", "-"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


# -- in a real browser -------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"


def chromium(tmp_path: Path, url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` (its own profile, no network) and return its stdout.
    Its whole process group is ended if it overstays."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,900", *args, url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True, text=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        # the group: helpers (crashpad, zygote) it may leave behind, or all of it if stuck
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB/RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
        rgb = bytes(line) if bpp == 3 else bytes(
            v for j in range(0, stride, 4) for v in line[j:j + 3])
        rows.append(rgb)
    return width, height, rows


def colour_counts(rows: list[bytes], colours: dict[str, str]) -> dict[str, int]:
    """How many pixels are (within a small tolerance) each of ``colours``."""
    wanted = {name: bytes.fromhex(hexa[1:]) for name, hexa in colours.items()}
    counts = dict.fromkeys(colours, 0)
    for row in rows:
        for x in range(0, len(row), 3):
            px = row[x:x + 3]
            for name, c in wanted.items():
                if all(abs(px[i] - c[i]) <= 6 for i in range(3)):
                    counts[name] += 1
    return counts


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[SessionSpan]]]:
    spans = build_timeline(fleet_day(40))
    path = tmp_path_factory.mktemp("page") / "timeline.html"
    path.write_text(render_html(spans, now=NOW), encoding="utf-8")
    yield path, spans


def test_chromium_draws_connected_and_disconnected_bars(
        page: tuple[Path, list[SessionSpan]], tmp_path: Path) -> None:
    path, _ = page
    shot = tmp_path / "shot.png"
    chromium(tmp_path, path.as_uri(), f"--screenshot={shot}")
    width, height, rows = read_png(shot)
    assert (width, height) == (1400, 900)
    counts = colour_counts(rows[::2], {"connected": COLORS["connected"],
                                       "hatch": COLORS["disconnected"],
                                       "pale": COLORS["disconnected_pale"],
                                       "white": "#ffffff"})
    assert counts["connected"] > 5000, counts  # solid bars
    assert counts["hatch"] > 300 and counts["pale"] > 300, counts  # both stripes of the hatch
    assert counts["white"] > 100_000, counts  # and it is a page, not a painted-over canvas


def test_chromium_dom_has_one_bar_per_interval_and_no_injected_markup(
        page: tuple[Path, list[SessionSpan]], tmp_path: Path) -> None:
    path, spans = page
    dom = chromium(tmp_path, path.as_uri(), "--dump-dom")
    assert dom.count('class="row"') == len(spans) == 40
    bars = re.findall(r'class="bar (connected|disconnected)[^"]*"', dom)
    assert len(bars) == sum(len(s.intervals) for s in spans)
    assert bars.count("disconnected") == sum(
        1 for s in spans for i in s.intervals if i.state == "disconnected") > 0
    assert len(re.findall(r"<script", dom)) == 1
    assert "<img" not in dom
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in dom  # shown as text


def test_zoom_from_the_address_repositions_bars_and_ticks(
        page: tuple[Path, list[SessionSpan]], tmp_path: Path) -> None:
    path, spans = page
    lo = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    hi = lo + timedelta(hours=3)
    url = f"{path.as_uri()}#zoom={lo.timestamp():.0f},{hi.timestamp():.0f}"
    dom = chromium(tmp_path, url, "--dump-dom")
    axis = dom.split('id="axis"')[1].split("</div>")[0]
    labels = re.findall(r'class="tick"[^>]*>([^<]*)<', axis)
    assert labels[0] == "11-23 09:15" and "10:00" in labels, labels  # quarter hours now
    assert 'id="reset" style=""' in dom  # the zoom-out button shows
    # a bar that began at lo + 1h sits a third of the way along
    target = lo + timedelta(hours=1)
    starts = [i.start for s in spans for i in s.intervals if lo < i.start < hi]
    assert starts
    first = min(starts, key=lambda t: abs(t - target))
    m = re.search(rf'data-s="{first.timestamp():.3f}"[^>]*style="left: ([\d.]+)%', dom)
    assert m, "the bar is still there"
    assert abs(float(m.group(1)) - (first - lo) / (hi - lo) * 100) < 0.01


def test_hundreds_of_sessions(tmp_path: Path) -> None:
    spans = build_timeline(fleet_day(300, seed=3))
    path = tmp_path / "big.html"
    path.write_text(render_html(spans, now=NOW), encoding="utf-8")
    dom = chromium(tmp_path, path.as_uri(), "--dump-dom")
    assert dom.count('class="row"') == 300
    assert dom.count('class="hostrow"') == 4  # three hosts and the hostile one


def test_hovering_a_bar_shows_its_times_and_client(
        page: tuple[Path, list[SessionSpan]], tmp_path: Path) -> None:
    path, spans = page
    # the page as served, plus a script that moves the mouse onto the first reconnected bar
    hover = ("<script>(function(){var b=document.querySelectorAll('.chart .bar.connected')"
             "[__N__];var r=b.getBoundingClientRect();b.dispatchEvent(new MouseEvent("
             "'mousemove',{clientX:r.left+1,clientY:r.top+2,bubbles:true}));})();</script>")
    bars = [(s, i) for s in sorted(spans, key=lambda s: (s.host, s.start, s.session_id or ""))
            for i in s.intervals if i.state == "connected"]
    n, (_, interval) = next((n, b) for n, b in enumerate(bars) if b[1].client_name == "HOME")
    copy = tmp_path / "hover.html"
    copy.write_text(path.read_text().replace("</body>", hover.replace("__N__", str(n))
                                             + "</body>"))
    dom = chromium(tmp_path, copy.as_uri(), "--dump-dom")
    m = re.search(r'<div id="tip" style="([^"]*)">([^<]*)</div>', dom)
    assert m and "display: block" in m.group(1), "the tooltip shows"
    assert m.group(2).startswith("connected: ")
    assert f"client HOME ({interval.client_address})" in m.group(2)
    assert interval.start.strftime("%Y-%m-%d %H:%M:%S") in m.group(2)


def test_the_static_page_draws_a_network_lane_above_the_sessions(tmp_path: Path) -> None:
    # An RDP disconnect that matches a network loss shows at a glance: the lane's offline
    # stretch lies above the session's disconnected one.
    t0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    kw: dict[str, Any] = {"host": "ts01", "source": "test"}
    net: dict[str, Any] = {"connection": "eth0", "connection_type": 0, **kw}
    journal = Journal(tmp_path / "j.db")
    journal.append_many([
        SensEvent(method="Logon", user_name="alice", session_id="3", time=t0, **kw),
        SensEvent(method="ConnectionLost", time=t0 + timedelta(minutes=10), **net),
        SensEvent(method="SessionDisconnect", user_name="alice", session_id="3",
                  time=t0 + timedelta(minutes=10, seconds=2), **kw),
        SensEvent(method="ConnectionMadeNoQOCInfo", time=t0 + timedelta(minutes=20), **net),
        SensEvent(method="SessionReconnect", user_name="alice", session_id="3",
                  time=t0 + timedelta(minutes=21), **kw),
    ])
    journal.close()
    out = tmp_path / "lanes.html"
    for window in ([], ["--since", "2026-11-30T09:05"]):
        assert main(["--journal", str(tmp_path / "j.db"), "timeline", *window,
                     "--html", str(out)]) == 0
        model = page_model(out.read_text(encoding="utf-8"))
        assert [p["method"] for p in model["lanes"]] == [
            "ConnectionLost", "ConnectionMadeNoQOCInfo"], window
        dom = chromium(tmp_path, out.as_uri(), "--dump-dom")
        entries = re.findall(r'<div class="(hostrow|lane|row)[" ]', dom)
        assert entries[:3] == ["hostrow", "lane", "row"], entries  # the lane above the sessions
        assert 'class="seg net' in dom or "seg net" in dom
