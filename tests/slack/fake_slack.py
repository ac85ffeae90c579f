"""A fake Slack on loopback: the Web API methods the bot and notifier call, response_url, and a
webhook receiver. It records every call so a test can read what was said, and where."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from zdp.httpserve import listen

BOT_USER = "UZDPBOT01"
BOT_TEAM = "T0001"


@dataclass
class Call:
    """One request to the fake: the Web API method (or `response_url`, `webhook`), its
    parameters, its headers and raw body."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    answer: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeSlack:
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    # A Web API method name -> the error Slack answers it with ({"ok": false, "error": ...}).
    errors: dict[str, str] = field(default_factory=dict)
    webhook_status: int = 200
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.errors.clear()
            self.webhook_status = 200

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    async def wait_for(
        self, method: str, where: Callable[[Call], bool] = lambda c: True, timeout: float = 30.0
    ) -> Call:
        """The first recorded call of `method` that satisfies `where`, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.of(method) if where(c)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {method} call within {timeout} s; calls: "
                    + ", ".join(c.method for c in self.calls)
                )
            await asyncio.sleep(0.05)


async def _params(request: Request, body: bytes) -> dict[str, Any]:
    if not body:
        return dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/json"):
        value = json.loads(body)
        return value if isinstance(value, dict) else {"_": value}
    params: dict[str, Any] = dict(parse_qsl(body.decode()))
    for key in ("blocks", "attachments"):
        if isinstance(params.get(key), str):
            params[key] = json.loads(params[key])
    return params


def _answer(fake: FakeSlack, call: Call) -> dict[str, Any]:
    """What Slack would answer: an error if one is set, else ok with a ts for messages."""
    if call.method in fake.errors:
        return {"ok": False, "error": fake.errors[call.method]}
    if not call.headers.get("authorization", "").startswith("Bearer xoxb-"):
        return {"ok": False, "error": "not_authed"}
    if call.method == "auth.test":
        return {
            "ok": True,
            "url": "https://zdp-test.slack.com/",
            "team": "zdp test",
            "user": "zdp",
            "team_id": BOT_TEAM,
            "user_id": BOT_USER,
            "bot_id": "BZDPBOT01",
        }
    if call.method in ("chat.postMessage", "chat.update"):
        ts = call.params.get("ts") or fake.next_ts()
        message = {"type": "message", "ts": ts, "text": call.params.get("text")}
        if call.params.get("blocks") is not None:
            message["blocks"] = call.params["blocks"]
        return {"ok": True, "channel": call.params.get("channel"), "ts": ts, "message": message}
    return {"ok": True}


def build_app(fake: FakeSlack) -> FastAPI:
    app = FastAPI()

    @app.post("/api/{method}")
    async def web_api(method: str, request: Request) -> JSONResponse:
        body = await request.body()
        call = Call(method, await _params(request, body), dict(request.headers), body)
        call.answer = _answer(fake, call)
        fake.record(call)
        return JSONResponse(call.answer)

    @app.post("/response/{token}")
    async def response_url(token: str, request: Request) -> JSONResponse:
        body = await request.body()
        fake.record(Call("response_url", await _params(request, body), dict(request.headers), body))
        return JSONResponse({"ok": True})

    @app.post("/webhook")
    async def webhook(request: Request) -> Response:
        body = await request.body()
        fake.record(Call("webhook", await _params(request, body), dict(request.headers), body))
        return Response(status_code=fake.webhook_status, content=b"recorded")

    return app


class FakeSlackServer:
    """The fake served by uvicorn in a thread of its own, so it answers whatever the test's
    event loop is doing (and uvicorn installs no signal handlers off the main thread)."""

    def __init__(self) -> None:
        self.fake = FakeSlack()
        sock = listen("127.0.0.1", 0)
        host, port = sock.getsockname()[:2]
        self.fake.url = f"http://{host}:{port}"
        config = uvicorn.Config(build_app(self.fake), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])),
            name="fake-slack",
            daemon=True,
        )

    def start(self) -> FakeSlack:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake Slack API server did not start")
            time.sleep(0.02)
        return self.fake

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
