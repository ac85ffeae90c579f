"""A real browser for tests: headless Chromium driven over the DevTools protocol on a pipe.

No driver or extra package: Chromium reads protocol messages (JSON, each ended by a NUL byte)
from its fd 3 and writes answers and events to its fd 4 (`--remote-debugging-pipe`). A page is
opened, its console errors and uncaught exceptions are collected, and expressions are
evaluated in it. Every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zdp.forensics.pdf import chromium_args, find_chromium

TIMEOUT_S = 60.0
# Runs in a small Python process that puts the two pipe ends on fds 3 and 4, then becomes
# Chromium (exec keeps the pid, so killing the Popen kills the browser).
_LAUNCH = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); " \
    "os.execv(sys.argv[3], sys.argv[3:])"  # fmt: skip


@dataclass
class Page:
    """What a loaded page reported: console errors and uncaught exceptions, in order."""

    errors: list[str] = field(default_factory=list)
    value: Any = None


class Browser:
    def __init__(self) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="zdp-browser-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        args = [
            *chromium_args(find_chromium(), Path(self._profile.name)),
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, str(to_chrome_r), str(from_chrome_w), *args],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def close(self) -> None:
        try:
            self._send("Browser.close")
        except OSError:
            pass
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------ protocol

    def _send(self, method: str, session: str | None = None, **params: Any) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 65536)
                if not chunk:
                    raise RuntimeError("Chromium closed the protocol pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer; events that arrive meanwhile are kept."""
        wanted = self._send(method, session, **params)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            message = self._read(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self._events.append(message)

    def _wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for event in self._events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return
            self._events.append(self._read(deadline))

    # ------------------------------------------------------------------ pages

    def open(
        self,
        url: str,
        expression: str,
        width: int | None = None,
        screenshot: Path | None = None,
        media: str | None = None,
    ) -> Page:
        """Load `url`, wait for its load event, evaluate `expression` (its JSON-able value is
        returned), and report every console error and uncaught exception of the page.

        `width`: lay the page out in a window that many CSS pixels wide (scale 1);
        `screenshot`: save the whole page there as PNG, after the expression ran;
        `media`: the CSS media type to emulate ("print": the page as it prints)."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session)
        if width is not None:
            self.call(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=width,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
        if media is not None:
            self.call("Emulation.setEmulatedMedia", session, media=media)
        self._events.clear()
        self.call("Page.navigate", session, url=url)
        self._wait_event("Page.loadEventFired", session)
        evaluated = self.call(
            "Runtime.evaluate", session, expression=expression, returnByValue=True
        )
        page = Page(value=evaluated.get("result", {}).get("value"))
        for event in self._events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                page.errors.append(f"exception: {details.get('text')} {details.get('exception')}")
            elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
            ):
                page.errors.append(f"console.{params['type']}: {params.get('args')}")
            elif event.get("method") == "Log.entryAdded":
                entry = params.get("entry", {})
                if entry.get("level") == "error":
                    page.errors.append(f"log: {entry.get('text')} ({entry.get('url')})")
        if "exceptionDetails" in evaluated:
            page.errors.append(f"evaluate: {evaluated['exceptionDetails'].get('text')}")
        if screenshot is not None:
            shot = self.call(
                "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
            )
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        self.call("Target.closeTarget", targetId=target)
        return page
