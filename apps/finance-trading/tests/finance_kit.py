"""Test data shared by the finance-trading tests: API keys, accounts and orders (waiting for
readiness to change is ops_kit.testing's).

A plain module (not conftest) so that tests can import it; its name is unique in the suite.
"""

from __future__ import annotations

import hashlib
from typing import Any

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
