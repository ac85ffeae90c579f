"""Test data shared by the finance-trading tests: API keys, accounts and orders; waiting for
readiness to change.

A plain module (not conftest) so that tests can import it; its name is unique in the suite.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any

import httpx

DEMO_KEY = "ft-demo-local-key"  # the documented key of config/local.yaml, account "demo"
DRILL_KEY = "ft-demo-drill-key"  # the documented drill key of config/local.yaml, "demo-drill"
ALICE_KEY = "alice-test-key"
BOB_KEY = "bob-test-key"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# Two accounts instead of the demo one: APP_API_KEYS replaces the file's keys.
TWO_ACCOUNTS = {"APP_API_KEYS": f"{digest(ALICE_KEY)}=alice,{digest(BOB_KEY)}=bob"}


def key(value: str = DEMO_KEY) -> dict[str, str]:
    return {"X-API-Key": value}


def drill_key(value: str = DRILL_KEY) -> dict[str, str]:
    """Headers for POST /drill/faults: a drill key (local.yaml's demo one by default)."""
    return {"X-API-Key": value}


def order(client_order_id: str = "c-1", **fields: Any) -> dict[str, Any]:
    """A valid limit order for the local limits (AAPL, reference price 190.00)."""
    return {
        "client_order_id": client_order_id,
        "symbol": "AAPL",
        "side": "buy",
        "qty": 10,
        "limit_price": "190.50",
        **fields,
    }


async def readiness_until(
    client: httpx.AsyncClient, accept: Callable[[httpx.Response], bool], timeout_s: float = 15.0
) -> httpx.Response:
    """Probe `/healthz/ready` until `accept(answer)` or `timeout_s` passes; the last answer.

    The ledger verdict is refreshed in the background about every 0.5 s, so a change shows
    within about a second; the long deadline is for a machine whose cores are all busy.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await client.get("/healthz/ready")
        if accept(answer) or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)


def is_not_ready(answer: httpx.Response) -> bool:
    return answer.status_code == 503 and answer.json().get("status") == "not_ready"
