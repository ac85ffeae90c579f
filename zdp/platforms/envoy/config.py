"""Envoy's configuration for the embedded stack: the bootstrap and one route file per local app.

Everything static lives in the bootstrap; only the route files change at run time.

- Admin on 127.0.0.1:`envoy_admin_port(base)`.
- One listener per app in LOCAL_APPS and environment block (`local_instances()`) on
  127.0.0.1:`app.listener_port(base)`. Its HTTP
  connection manager reads its routes from a file (RDS `path_config_source`) that Envoy
  reloads when a new file is renamed into the app's folder:
  `<envoy_dir>/routes/<app>/routes.yaml` (the content is JSON, which is also YAML).
- One STATIC cluster per (app, slot), named `<app>|<slot>` (as Istio names clusters), whose
  priority-0 endpoint is the slot's fixed port. A new version must never reach users when it
  fails, so the clusters of the slots that take new versions carry the serving version's
  endpoint at priority 1: `canary` falls back to `stable`, `green` to `blue` and `blue` to
  `green` (blue-green alternates which colour is new). Those three also eject a host after 5
  consecutive 5xx. Every cluster raises the circuit breaker's `max_retries` (the default of 3
  overflows under load).
- The route file has one virtual host `*` with three routes, all with the same
  `weighted_clusters` (only slots with a non-zero weight are listed):
  1. `idempotent`: methods GET, HEAD, OPTIONS, retried on 5xx, reset and connect failure
     to a host of another priority (that is, the fallback); an attempt with no answer within
     PER_TRY_TIMEOUT is hedged: a second attempt goes to the fallback while the first may still
     answer (whichever answers first is the answer), so a hung canary costs users a second,
     not a failure, and a slow but healthy answer is never thrown away;
  2. `idempotency-key`: any method carrying an `Idempotency-Key` header, same retries, but
     neither hedged nor cut short (two copies of an order in flight at once would race in the
     app);
  3. `default`: everything else (an order submit), never retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zdp.fsutil import write_file_atomic
from zdp.platforms.base import validate_weights
from zdp.platforms.layout import (
    SLOTS,
    LocalApp,
    envoy_admin_port,
    envoy_dir,
    local_instances,
)

ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
# The slot whose version serves when the slot's own version fails or is absent.
FALLBACK: dict[str, str] = {"canary": "stable", "green": "blue", "blue": "green"}
CONNECT_TIMEOUT = "0.25s"
# Measured here with a canary at 25 % SIGSTOPped for a second under 200 req/s: without it, 44 of
# 1,415 requests timed out at the client (2 s); with it, none did (bench/faults.py: canary_hang).
PER_TRY_TIMEOUT = "1s"
MAX_RETRIES = 1000
OUTLIER_DETECTION: dict[str, Any] = {
    "consecutive_5xx": 5,
    "interval": "1s",
    "base_ejection_time": "10s",
    "max_ejection_percent": 100,
}
RETRY_POLICY: dict[str, Any] = {
    "retry_on": "5xx,reset,connect-failure",
    "num_retries": 2,
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            },
        }
    ],
    "retry_priority": {
        "name": "envoy.retry_priorities.previous_priorities",
        "typed_config": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
            "update_frequency": 1,
        },
    },
    "host_selection_retry_max_attempts": 3,
}
# A timed-out attempt is not cancelled: the retry runs beside it (see the module doc).
HEDGE_POLICY: dict[str, Any] = {"hedge_on_per_try_timeout": True}
IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS")
IDEMPOTENCY_HEADER = "idempotency-key"


def cluster_name(app: LocalApp | str, slot: str) -> str:
    """`<app>|<slot>`, e.g. `finance-trading|canary` (`finance-trading@production|canary` in
    another environment block); stats read `cluster.<app>|<slot>.…`."""
    name = app.key if isinstance(app, LocalApp) else app
    return f"{name}|{slot}"


def route_config_name(app: LocalApp) -> str:
    """The RouteConfiguration's name: the app instance's key."""
    return app.key


def routes_dir(home: Path, app: LocalApp) -> Path:
    """The folder Envoy watches for the app's route file (one folder per app and environment)."""
    return envoy_dir(home) / "routes" / app.key


def routes_path(home: Path, app: LocalApp) -> Path:
    return routes_dir(home, app) / "routes.yaml"


def bootstrap_path(home: Path) -> Path:
    return envoy_dir(home) / "envoy.json"


DRILL_PREFIX = "/drill/"


def route_configuration(app: LocalApp, weights: Mapping[str, int]) -> dict[str, Any]:
    """The app's route file: the RDS resource splitting traffic by `weights` (see module doc)."""
    split = validate_weights(weights)
    action = {
        "weighted_clusters": {
            "clusters": [
                {"name": cluster_name(app, slot), "weight": weight}
                for slot, weight in split.items()
                if weight > 0
            ]
        }
    }
    idempotent = {
        "name": "idempotent",
        "match": {
            "prefix": "/",
            "headers": [
                {
                    "name": ":method",
                    "string_match": {"safe_regex": {"regex": "|".join(IDEMPOTENT_METHODS)}},
                }
            ],
        },
        "route": {
            **action,
            "retry_policy": {**RETRY_POLICY, "per_try_timeout": PER_TRY_TIMEOUT},
            "hedge_policy": HEDGE_POLICY,
        },
    }
    keyed = {
        "name": "idempotency-key",
        "match": {"prefix": "/", "headers": [{"name": IDEMPOTENCY_HEADER, "present_match": True}]},
        "route": {**action, "retry_policy": RETRY_POLICY},
    }
    default = {"name": "default", "match": {"prefix": "/"}, "route": action}
    # Drills (the apps' POST /drill/faults) are run on a slot's own port, never through the
    # listener users reach: the listener answers 404 for them, whatever the app allows.
    drills = {
        "name": "no-drills",
        "match": {"prefix": DRILL_PREFIX, "case_sensitive": False},
        "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}},
    }
    return {
        "resources": [
            {
                "@type": ROUTE_TYPE,
                "name": route_config_name(app),
                "virtual_hosts": [
                    {
                        "name": app.key,
                        "domains": ["*"],
                        "routes": [drills, idempotent, keyed, default],
                    }
                ],
            }
        ]
    }


def _endpoint(port: int, priority: int) -> dict[str, Any]:
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    return {"priority": priority, "lb_endpoints": [{"endpoint": {"address": address}}]}


def cluster(app: LocalApp, slot: str, base: int | None = None) -> dict[str, Any]:
    """The slot's cluster: its own port at priority 0, the fallback slot's port at priority 1."""
    endpoints = [_endpoint(app.slot_port(slot, base), 0)]
    fallback = FALLBACK.get(slot)
    if fallback is not None:
        endpoints.append(_endpoint(app.slot_port(fallback, base), 1))
    spec: dict[str, Any] = {
        "name": cluster_name(app, slot),
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "ROUND_ROBIN",
        "circuit_breakers": {"thresholds": [{"priority": "DEFAULT", "max_retries": MAX_RETRIES}]},
        "load_assignment": {"cluster_name": cluster_name(app, slot), "endpoints": endpoints},
    }
    if fallback is not None:
        spec["outlier_detection"] = dict(OUTLIER_DETECTION)
    return spec


def listener(app: LocalApp, home: Path, base: int | None = None) -> dict[str, Any]:
    """The app's listener, whose routes come from its watched route file."""
    manager = {
        "@type": "type.googleapis.com/"
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": app.key,
        "codec_type": "AUTO",
        # Paths are normalized before routes match (RFC 3986 dot segments, repeated slashes),
        # so a route for /drill/ cannot be walked around with /./drill/ or //drill/.
        "normalize_path": True,
        "merge_slashes": True,
        "rds": {
            "route_config_name": route_config_name(app),
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": str(routes_path(home, app)),
                    "watched_directory": {"path": str(routes_dir(home, app))},
                },
            },
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": app.key,
        "address": {
            "socket_address": {"address": "127.0.0.1", "port_value": app.listener_port(base)}
        },
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def bootstrap(base: int | None, home: Path) -> dict[str, Any]:
    """Envoy's bootstrap for every app in LOCAL_APPS in every environment block, with ports
    from `base` (ZDP_PORT_BASE)."""
    apps = local_instances()
    return {
        "node": {"id": "zdp", "cluster": "zdp"},
        # Histogram quantiles (upstream_rq_time) are recomputed at each flush; default is 5 s.
        "stats_flush_interval": "1s",
        "admin": {
            "address": {
                "socket_address": {"address": "127.0.0.1", "port_value": envoy_admin_port(base)}
            }
        },
        "static_resources": {
            "listeners": [listener(app, home, base) for app in apps],
            "clusters": [cluster(app, slot, base) for app in apps for slot in SLOTS],
        },
    }


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temp file in `path`'s folder, fsync it, and rename it onto `path`.

    The rename is what Envoy's watched directory reacts to, and it means Envoy never reads a
    half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, text.encode("utf-8"))


def route_text(app: LocalApp, weights: Mapping[str, int]) -> str:
    return json.dumps(route_configuration(app, weights), indent=1) + "\n"


def write_routes(home: Path, app: LocalApp, weights: Mapping[str, int]) -> Path:
    """Atomically replace the app's route file with the split `weights` (validated first)."""
    text = route_text(app, weights)
    path = routes_path(home, app)
    write_atomically(path, text)
    return path


def write_bootstrap(home: Path, base: int | None = None) -> Path:
    """Write `<envoy_dir>/envoy.json`, and a route file (100% stable) for apps that have none."""
    for app in local_instances():
        if not routes_path(home, app).exists():
            write_routes(home, app, {"stable": 100})
    path = bootstrap_path(home)
    write_atomically(path, json.dumps(bootstrap(base, home), indent=1) + "\n")
    return path
