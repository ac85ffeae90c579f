"""Connecting to Temporal and the names the engine shares with it (search attributes, converter).

Connection settings are Temporal's standard ones (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, and profiles in temporal.toml), loaded by `temporalio.envconfig`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from zdp.errors import ZdpError
from zdp.fsutil import proc_cmdline

SA_APP = SearchAttributeKey.for_keyword("ZdpApp")
SA_ENVIRONMENT = SearchAttributeKey.for_keyword("ZdpEnvironment")
SA_VERSION = SearchAttributeKey.for_keyword("ZdpVersion")
SA_STRATEGY = SearchAttributeKey.for_keyword("ZdpStrategy")
SA_PHASE = SearchAttributeKey.for_keyword("ZdpPhase")
SA_OUTCOME = SearchAttributeKey.for_keyword("ZdpOutcome")
SA_RISK_SCORE = SearchAttributeKey.for_int("ZdpRiskScore")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (
    SA_APP,
    SA_ENVIRONMENT,
    SA_VERSION,
    SA_STRATEGY,
    SA_PHASE,
    SA_OUTCOME,
    SA_RISK_SCORE,
)

DEFAULT_ADDRESS = "localhost:7233"


class TemporalUnavailable(ZdpError):
    """The Temporal server cannot be reached with the configured settings."""


def connect_config() -> dict[str, Any]:
    """Client.connect keyword arguments from the standard TEMPORAL_* environment and profiles;
    without an address there, the embedded stack's server in $ZDP_HOME while it runs (so the
    CLI follows `zdp up` on moved ports), else localhost:7233."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", stack_address() or DEFAULT_ADDRESS)
    return config


def stack_address() -> str | None:
    """The Temporal address `zdp up` recorded in $ZDP_HOME/stack.json, if that server runs."""
    home = Path(os.environ.get("ZDP_HOME") or ".zdp")
    try:
        record = json.loads((home / "stack.json").read_text())
        temporal = record["temporal"]
        pid, address = int(temporal["pid"]), str(temporal["address"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return address if "start-dev" in proc_cmdline(pid) else None


async def connect(**overrides: Any) -> Client:
    """Connect with the pydantic data converter; one clear error if the server is unreachable."""
    config = connect_config()
    config.update(overrides)
    target = config.pop("target_host")
    try:
        return await Client.connect(target, data_converter=pydantic_data_converter, **config)
    except RuntimeError as err:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {target} (namespace {config.get('namespace', 'default')}): "
            f"{_short_reason(str(err))}; start a server or set TEMPORAL_ADDRESS"
        ) from None


def _short_reason(message: str) -> str:
    """The useful part of the SDK's nested transport error."""
    for known in ("Connection refused", "timed out", "dns error", "certificate", "Unauthenticated"):
        if known.lower() in message.lower():
            return known.lower()
    first = message.splitlines()[0] if message else "unknown error"
    return first[:160]
