"""Open a page in headless Chromium and see it as a person would: a screenshot, the console, the requests.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: the
browser reads commands from fd 3 and writes replies and events to fd 4, each a JSON text
ended by a NUL byte), so no WebSocket library and no debugging port are needed. The page's
session has the Runtime, Log, Network and Page domains enabled before it navigates, so
every ``console.error``, uncaught exception, browser-logged error (a failed load, a blocked
resource) and every request the page makes (``data:`` URLs included) is recorded.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The Chromium (or Chrome) executable on PATH, if any."""
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class PageView:
    """What a page did while it loaded: its screenshot and text, its console errors and its requests."""

    url: str
    screenshot: np.ndarray  # BGR uint8, the whole page (height capped)
    png: bytes
    text: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)  # every <img>: rect, natural size, complete

    def external_requests(self, allowed_prefixes: tuple[str, ...] = ()) -> list[str]:
        """Requests other than ``data:`` URLs, the page itself and ``allowed_prefixes``."""
        return sorted({u for u in self.requests if not u.startswith(("data:", "about:", *allowed_prefixes))
                       and u.split("#")[0] != self.url.split("#")[0]})


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        want = self.next_id
        deadline = time.monotonic() + timeout
        while True:
            for msg in self._read(deadline):
                if msg.get("id") == want:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return dict(msg.get("result", {}))
                self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while True:
            for msg in self._read(deadline):
                self.events.append(msg)
                if msg.get("method") == method:
                    return

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events += self._read(deadline)
        except TimeoutError:
            pass

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
                self.buffer += chunk
        *messages, self.buffer = self.buffer.split(b"\0")
        return [json.loads(m) for m in messages if m]


def _high(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


def open_page(url: str, *, width: int = 1200, height: int = 900, max_height: int = 6000,
              settle: float = 0.5, timeout: float = 60.0) -> PageView:
    """Load ``url`` in a fresh headless Chromium and record what it shows and does.

    Args:
        url: A ``file://`` or ``http://`` URL.
        width: Viewport width in CSS pixels.
        height: Viewport height before the page is measured.
        max_height: The screenshot's height is the page's, capped here.
        settle: Seconds to keep collecting events after the load event.
        timeout: Seconds for each step.

    Returns:
        The :class:`PageView`.
    """
    exe = chromium_path()
    if exe is None:
        raise RuntimeError("Chromium is not installed")
    cmd_r, cmd_w = os.pipe()
    res_r, res_w = os.pipe()
    cmd_r, res_w = _high(cmd_r), _high(res_w)

    def _child() -> None:  # runs in the child before exec: the protocol's fds 3 and 4
        os.dup2(cmd_r, 3)
        os.dup2(res_w, 4)

    profile = tempfile.mkdtemp(prefix="pairgen-chromium-")
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", f"--user-data-dir={profile}",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
            "--hide-scrollbars", "--disable-dev-shm-usage", "--force-device-scale-factor=1", "about:blank"]
    proc = subprocess.Popen(args, preexec_fn=_child, close_fds=False, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(cmd_r)
    os.close(res_w)
    pipe = _Pipe(proc, cmd_w, res_r)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        pipe.send("Page.navigate", {"url": url}, session=session, timeout=timeout)
        pipe.wait_for("Page.loadEventFired", timeout=timeout)
        pipe.drain(settle)
        full = pipe.send("Runtime.evaluate", {"expression": "document.documentElement.scrollHeight",
                                              "returnByValue": True}, session=session)["result"]["value"]
        shot_h = int(min(max(int(full), height), max_height))
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": shot_h, "deviceScaleFactor": 1, "mobile": False}, session=session)
        pipe.drain(0.2)
        probe = ("JSON.stringify({text: document.body ? document.body.innerText : '', images: Array.from("
                 "document.images).map(i => {const r = i.getBoundingClientRect(); return {src: i.src.slice(0, 200), "
                 "complete: i.complete, naturalWidth: i.naturalWidth, x: r.x + scrollX, y: r.y + scrollY, "
                 "width: r.width, height: r.height};})})")
        found = json.loads(pipe.send("Runtime.evaluate", {"expression": probe, "returnByValue": True},
                                     session=session)["result"]["value"])
        shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session, timeout=timeout)
        import base64

        png = base64.b64decode(shot["data"])
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        pipe.drain(0.1)
    finally:
        try:
            pipe.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(cmd_w)
        os.close(res_r)
        shutil.rmtree(profile, ignore_errors=True)
    view = PageView(url=url, screenshot=image, png=png, text=found["text"], images=found["images"])
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            view.errors.append("console." + params["type"] + ": " +
                               " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            view.errors.append("exception: " + str(details.get("exception", {}).get("description", details.get("text"))))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            view.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            view.requests.append(params["request"]["url"])
    return view


def region_is_blank(image: np.ndarray, rect: dict[str, Any]) -> bool:
    """Whether the screenshot area of an element (``x, y, width, height``) holds a single color."""
    x, y = int(rect["x"]), int(rect["y"])
    w, h = int(rect["width"]), int(rect["height"])
    crop = image[max(0, y):y + h, max(0, x):x + w]
    return crop.size == 0 or int(crop.max()) - int(crop.min()) == 0
