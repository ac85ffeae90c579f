"""Connecting to Temporal and the names the engine shares with it (search attributes, converter).

Which server and namespace a client talks to, first found wins: the CLI's --address and
--namespace; Temporal's standard settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, and profiles in temporal.toml, loaded by
`temporalio.envconfig`); the stack `zdp up` recorded in $ZDP_HOME/stack.json (so the CLI
follows it on moved ports); 127.0.0.1:$ZDP_TEMPORAL_PORT; localhost:7233. Every error says
which address was tried and where it came from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from zdp.errors import ZdpError
from zdp.fsutil import proc_cmdline
from zdp.settings import settings
from zdp.tracing import client_interceptors

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
DEFAULT_NAMESPACE = "default"
STACK_RECORD = "stack.json"

# Set by the CLI's --address / --namespace: they win over everything else.
_flags: dict[str, str] = {}


class TemporalUnavailable(ZdpError):
    """The Temporal server cannot be reached with the configured settings."""


@dataclass(frozen=True)
class StackServer:
    """The Temporal dev server `zdp up` recorded in a $ZDP_HOME."""

    home: Path
    address: str
    namespace: str
    pid: int
    running: bool

    @property
    def record(self) -> Path:
        return self.home / STACK_RECORD


@dataclass(frozen=True)
class Target:
    """The Temporal server and namespace a client talks to, and where each came from."""

    address: str
    namespace: str
    source: str  # where the address came from, in words
    namespace_source: str
    # The stack `zdp up` started in $ZDP_HOME, when `address` is its server (whatever said so).
    stack: StackServer | None = None
    # Client.connect's other keyword arguments (TLS, API key, …) from the standard settings.
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_stack(self) -> bool:
        return self.stack is not None

    def describe(self) -> str:
        """`127.0.0.1:7833 (namespace default; from the stack `zdp up` started in …)`."""
        namespace = f"namespace {self.namespace}"
        if self.namespace_source not in ("the default", self.source):
            namespace += f" from {self.namespace_source}"
        return f"{self.address} ({namespace}; {self.source})"

    def hint(self) -> str:
        """What to do when this server does not answer."""
        if self.stack is not None and not self.stack.running:
            return (
                f"the stack's dev server (pid {self.stack.pid}) is not running: `zdp up` "
                "starts it, or set TEMPORAL_ADDRESS"
            )
        if self.source.startswith("from --address"):
            return "check --address"
        if self.source.startswith("from TEMPORAL_ADDRESS"):
            return "check TEMPORAL_ADDRESS (unset it to use the stack `zdp up` starts)"
        if self.source.startswith("from profile"):
            return "check the profile, or set TEMPORAL_ADDRESS"
        return "start a stack with `zdp up`, or set TEMPORAL_ADDRESS"


def use_flags(address: str | None = None, namespace: str | None = None) -> None:
    """The CLI's --address and --namespace: they win over the environment and the stack."""
    _flags.clear()
    if address:
        _flags["address"] = address
    if namespace:
        _flags["namespace"] = namespace


def stack_server(home: Path | None = None) -> StackServer | None:
    """The Temporal server recorded in $ZDP_HOME/stack.json, running or not; None without one."""
    home = home or settings().home
    try:
        record = json.loads((home / STACK_RECORD).read_text())
        temporal = record["temporal"]
        pid, address = int(temporal["pid"]), str(temporal["address"])
        namespace = str(temporal.get("namespace") or DEFAULT_NAMESPACE)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    running = "start-dev" in proc_cmdline(pid)
    return StackServer(home, address, namespace, pid, running)


def stack_address() -> str | None:
    """The Temporal address `zdp up` recorded in $ZDP_HOME/stack.json, if that server runs."""
    server = stack_server()
    return server.address if server is not None and server.running else None


def _profile_source() -> str:
    profile = os.environ.get("TEMPORAL_PROFILE") or "default"
    where = os.environ.get("TEMPORAL_CONFIG_FILE") or "temporal.toml"
    return f"profile '{profile}' in {where}"


def resolve() -> Target:
    """Which server and namespace to talk to, and why (see the module's docstring)."""
    options: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    loaded_address = options.pop("target_host", None)
    loaded_namespace = options.pop("namespace", None)
    home = settings().home
    server = stack_server(home)
    if "address" in _flags:
        address, source = _flags["address"], "from --address"
    elif loaded_address:
        address = str(loaded_address)
        source = (
            "from TEMPORAL_ADDRESS"
            if os.environ.get("TEMPORAL_ADDRESS")
            else f"from {_profile_source()}"
        )
    elif server is not None:
        address = server.address
        source = f"from the stack `zdp up` started, {server.record}"
    elif (port := settings().TEMPORAL_PORT) is not None:
        address = f"127.0.0.1:{port}"
        source = f"from ZDP_TEMPORAL_PORT; no stack recorded in {home}"
    else:
        address = DEFAULT_ADDRESS
        source = f"the default: no TEMPORAL_ADDRESS, no stack recorded in {home}"
    stack = server if server is not None and server.address == address else None
    if "namespace" in _flags:
        namespace, namespace_source = _flags["namespace"], "--namespace"
    elif loaded_namespace:
        namespace = str(loaded_namespace)
        namespace_source = (
            "TEMPORAL_NAMESPACE" if os.environ.get("TEMPORAL_NAMESPACE") else _profile_source()
        )
    elif stack is not None:
        namespace, namespace_source = stack.namespace, source
    else:
        namespace, namespace_source = DEFAULT_NAMESPACE, "the default"
    return Target(address, namespace, source, namespace_source, stack, options)


def connect_config() -> dict[str, Any]:
    """Client.connect keyword arguments (target_host, namespace and the rest) for `resolve()`."""
    target = resolve()
    return {**target.options, "target_host": target.address, "namespace": target.namespace}


async def connect(**overrides: Any) -> Client:
    """Connect with the pydantic data converter; one clear error if the server is unreachable,
    naming the address tried and where it came from."""
    target = resolve()
    config = {**target.options, "namespace": target.namespace, **overrides}
    address = config.pop("target_host", target.address)
    # Traces: the client's calls carry the current span (`zdp deploy`'s) in their headers.
    config["interceptors"] = client_interceptors(config.get("interceptors") or ())
    try:
        return await Client.connect(address, data_converter=pydantic_data_converter, **config)
    except RuntimeError as err:
        where = (
            target.describe()
            if address == target.address and "namespace" not in overrides
            else f"{address} (namespace {config.get('namespace')}; given by the caller)"
        )
        hint = target.hint() if address == target.address else "check the address"
        raise TemporalUnavailable(
            f"cannot reach Temporal at {where}: {_short_reason(str(err))}; {hint}"
        ) from None


def _short_reason(message: str) -> str:
    """The useful part of the SDK's nested transport error."""
    for known in ("Connection refused", "timed out", "dns error", "certificate", "Unauthenticated"):
        if known.lower() in message.lower():
            return known.lower()
    first = message.splitlines()[0] if message else "unknown error"
    return first[:160]
