"""Where the embedded stack lives: ports, folders and app entry points, shared by every local part.

Ports are fixed and documented so that Envoy's clusters never change: each (app, slot) has its
own loopback port, and a new version in a slot takes that slot's port. Only the route weights
change at run time. `ZDP_PORT_BASE` (default 18000) moves the whole map, so tests and a running
`zdp up` do not collide.

    Envoy admin        BASE+1            (18001)
    worker metrics     BASE+2 (engine, /metrics)  BASE+3 (Temporal SDK, /metrics)
    Prometheus         BASE+4            Alertmanager BASE+5     alert receiver BASE+6
    finance-trading    listener BASE+100 (18100); stable +101, canary +102, blue +103, green +104
    pharma-manufacturing listener BASE+200 (18200); stable +201, canary +202, blue +203, green +204

Each environment has its own listener and slots, so staging and production of one app run side
by side and never replace each other: environment block b (ENVIRONMENT_BLOCKS: staging 0,
production 1, dev 2, qa 3, uat 4) adds 10·b to an app's ports. Staging keeps the ports above;
finance-trading in production listens on BASE+110 (18110) with slots +111 to +114. Block 0's
names, folders and ports are the ones every earlier version of the stack used.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from zdp.config import apps_source_dir
from zdp.errors import ConfigError
from zdp.platforms.base import SLOTS
from zdp.settings import settings, zdp_home

# The environments the embedded stack runs side by side, and their port blocks.
ENVIRONMENT_BLOCKS: dict[str, int] = {"staging": 0, "production": 1, "dev": 2, "qa": 3, "uat": 4}
BLOCK_STRIDE = 10


def environment_block(environment: str) -> int:
    """The environment's port block on the embedded stack, or ConfigError naming the known ones."""
    block = ENVIRONMENT_BLOCKS.get(environment)
    if block is None:
        known = ", ".join(ENVIRONMENT_BLOCKS)
        raise ConfigError(
            f"environment '{environment}' has no place on the embedded stack, which runs {known} "
            "side by side (each its own listener and slots); name it one of those, or deploy it "
            "on Kubernetes"
        )
    return block


def instance_key(app: str, environment: str | None) -> str:
    """The app's name in block 0 (and with no environment), `<app>@<environment>` in the
    others: what names an app's listener, clusters, route file and folders per environment."""
    if environment is None or environment_block(environment) == 0:
        return app
    return f"{app}@{environment}"


@dataclass(frozen=True)
class LocalApp:
    name: str
    package: str  # import name of the app package, e.g. finance_trading
    index: int  # position in the port map
    # The environment this instance of the app serves (None: block 0, the stack's first).
    environment: str | None = None

    @property
    def block(self) -> int:
        return 0 if self.environment is None else environment_block(self.environment)

    @property
    def key(self) -> str:
        """What names this instance's listener, clusters, route and folders: see
        `instance_key`."""
        return instance_key(self.name, self.environment)

    def in_environment(self, environment: str | None) -> LocalApp:
        """This app as it runs in `environment` (its own ports, clusters and folders)."""
        if environment is None or environment_block(environment) == 0:
            return replace(self, environment=None)
        return replace(self, environment=environment)

    @property
    def asgi_target(self) -> str:
        """What uvicorn runs: `<package>.main:app`."""
        return f"{self.package}.main:app"

    @property
    def source_dir(self) -> Path:
        """apps/<name>: the installable package (src layout) its wheel is built from."""
        return apps_source_dir() / self.name

    def listener_port(self, base: int | None = None) -> int:
        return port_base(base) + 100 * self.index + BLOCK_STRIDE * self.block

    def slot_port(self, slot: str, base: int | None = None) -> int:
        if slot not in SLOTS:
            raise ConfigError(f"unknown slot '{slot}': use one of {', '.join(SLOTS)}")
        return self.listener_port(base) + 1 + SLOTS.index(slot)


LOCAL_APPS: dict[str, LocalApp] = {
    "finance-trading": LocalApp("finance-trading", "finance_trading", 1),
    "pharma-manufacturing": LocalApp("pharma-manufacturing", "pharma_manufacturing", 2),
}


def local_instances() -> list[LocalApp]:
    """Every app in every environment block: what the embedded Envoy listens for."""
    return [
        app.in_environment(environment)
        for environment in ENVIRONMENT_BLOCKS
        for app in LOCAL_APPS.values()
    ]


def local_app(name: str) -> LocalApp:
    app = LOCAL_APPS.get(name)
    if app is None:
        raise ConfigError(
            f"app '{name}' cannot run locally: local apps are {', '.join(sorted(LOCAL_APPS))}"
        )
    return app


def port_base(base: int | None = None) -> int:
    return base if base is not None else settings().PORT_BASE


def envoy_admin_port(base: int | None = None) -> int:
    return port_base(base) + 1


def worker_metrics_port(base: int | None = None) -> int:
    """The stack's worker serves the engine's metrics (zdp.metrics) here."""
    return port_base(base) + 2


def temporal_metrics_port(base: int | None = None) -> int:
    """The stack's worker serves the Temporal SDK's metrics here."""
    return port_base(base) + 3


def prometheus_port(base: int | None = None) -> int:
    return port_base(base) + 4


def alertmanager_port(base: int | None = None) -> int:
    return port_base(base) + 5


def alert_receiver_port(base: int | None = None) -> int:
    """Where the stack's alert receiver (Alertmanager webhook to pause/abort) listens."""
    return port_base(base) + 6


def artifacts_dir(home: Path | None = None) -> Path:
    """Where release artifacts (wheels) are kept, by file name: $ZDP_HOME/artifacts."""
    found = settings()
    return found.ARTIFACTS or (home or found.home) / "artifacts"


def versions_dir(home: Path | None = None) -> Path:
    """Unpacked wheels, one folder per app and version: $ZDP_HOME/versions/<app>/<version>."""
    return (home or zdp_home()) / "versions"


def data_dir(app: str, home: Path | None = None) -> Path:
    """An app's durable data (its SQLite database), shared by every version of the app in one
    environment (`app` is the instance's `LocalApp.key`): a canary and its stable read and
    write the same records, and a rollback loses none; staging and production never share."""
    return (home or zdp_home()) / "data" / app


def secrets_dir(home: Path | None = None) -> Path:
    """Secrets the local runtime gives apps by reference: $ZDP_HOME/secrets/<app>/<APP_ENV>/,
    one file per secret, named by the variable it is given as (API_KEYS_FILE becomes
    APP_API_KEYS_FILE=<path>)."""
    return (home or zdp_home()) / "secrets"


def runtime_dir(home: Path | None = None) -> Path:
    """Per-slot process records (pid, port, version): $ZDP_HOME/runtime/<app>/<slot>.json."""
    return (home or zdp_home()) / "runtime"


def envoy_dir(home: Path | None = None) -> Path:
    """Envoy's bootstrap, route files (one watched folder per app), logs and pid."""
    return (home or zdp_home()) / "envoy"
