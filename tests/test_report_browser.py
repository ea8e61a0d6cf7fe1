"""The report pages in headless Chromium: they load from disk with no console error, every image decodes
(naturalWidth > 0), nothing scrolls sideways at a laptop width (1366 px), the member picker and the sortable
table work, and a screenshot of each section is written (to $TAMENET_REPORT_SCREENSHOTS, else under tmp_path).

Chromium is driven over the DevTools protocol through a minimal websocket client (RFC 6455, standard library
only). Without a Chromium binary the module is skipped with the reason (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from report_cases import cli_dirs

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
if CHROMIUM is None:
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("one_thread")
WIDTH = 1366
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--remote-debugging-port=0", f"--window-size={WIDTH},900"]


class WebSocket:
    """Just enough of a websocket client for the DevTools protocol: text frames, masked on send."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools websocket closed")
            data += chunk
        return data

    def send(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                                if n < 1 << 16 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> str:
        message = b""
        while True:
            first, second = self._exact(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            message += self._exact(n)
            if first & 0x80:  # FIN: the message is complete
                return message.decode()


class DevTools:
    """One page of a headless Chromium, its console errors collected."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url, deadline = None, time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            if "DevTools listening on " in line:
                url = line.split("DevTools listening on ", 1)[1].strip()
        assert url, "chromium did not print its DevTools address"
        self.ws, self.next_id, self.events = WebSocket(url), 0, []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": 800, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def call(self, method: str, params: dict | None = None, *, session: bool = False) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            assert time.monotonic() < deadline, f"no {event} within {timeout} s"
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params["exceptionDetails"])[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(json.dumps(params.get("args"))[:300])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(params["entry"].get("text", "")[:300])
        return out

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    tools = DevTools(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    yield tools
    tools.close()


LAYOUT = """JSON.stringify({
  images: Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]),
  scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth,
  sections: Array.from(document.querySelectorAll('section')).map(s => {const r = s.getBoundingClientRect();
    return [s.id, r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];})})"""


def _open(browser: DevTools, page: Path) -> dict:
    browser.events.clear()
    browser.call("Page.navigate", {"url": page.resolve().as_uri()}, session=True)
    browser.wait_for("Page.loadEventFired")
    return json.loads(browser.evaluate(LAYOUT))


def _screenshots(browser: DevTools, layout: dict, folder: Path, prefix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, x, y, w, h in layout["sections"]:
        shot = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                       "clip": {"x": x, "y": y, "width": w, "height": h, "scale": 1}},
                            session=True)
        path = folder / f"{prefix}-{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        written.append(path)
    return written


@pytest.mark.parametrize("kind, sections", [
    ("search", {"path", "next", "halving", "candidates", "refit-overview", "refit-curves", "refit-weights",
                "refit-uncertainty"}),
    ("run", {"overview", "next", "curves", "weights", "uncertainty"}),
    ("cv", {"overview", "next", "curves"}),
])
def test_report_page_renders_every_figure_without_errors_or_sideways_scrolling(browser, tmp_path_factory, tmp_path,
                                                                               kind, sections):
    page = cli_dirs(tmp_path_factory)[kind] / "report.html"
    layout = _open(browser, page)
    assert browser.errors() == []
    assert {s[0] for s in layout["sections"]} == sections
    assert layout["images"] and all(done and width > 0 for _, done, width in layout["images"]), layout["images"]
    assert layout["scrollWidth"] <= layout["clientWidth"] == WIDTH  # no horizontal scroll at 1366 px
    folder = Path(os.environ.get("TAMENET_REPORT_SCREENSHOTS") or tmp_path / "screenshots")
    for path in _screenshots(browser, layout, folder, kind):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">I", data[16:20])[0] > WIDTH // 2  # the image is a section's full width


def test_member_picker_and_sortable_table_work_in_the_browser(browser, tmp_path_factory):
    _open(browser, cli_dirs(tmp_path_factory)["run"] / "report.html")
    shown = browser.evaluate("""(() => {const p = document.getElementById('member-picker'); p.value = '1';
        p.dispatchEvent(new Event('change'));
        return Array.from(document.querySelectorAll('#curves figure')).map(f => f.style.display !== 'none');})()""")
    assert shown == [False, True]
    order = browser.evaluate("""(() => {const t = document.querySelector('table.sortable');
        const col = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent === 'val loss');
        t.tHead.rows[0].cells[col].click();
        return Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[col].dataset.v));})()""")
    assert order == sorted(order) and len(order) == 2
    assert browser.errors() == []
