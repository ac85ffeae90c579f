"""Settings: every `ZDP_*` environment variable the engine reads, in one place.

`settings()` reads the environment each time it is called (a command, a worker, a test that
sets a variable all see the current value); no other module reads a `ZDP_*` variable
(tests/unit/test_engine_settings.py checks the source). Each field is the variable's name without
`ZDP_`, lower case; a malformed value (a port that is not a number, an unknown confinement
mode) is a one-line ConfigError naming the variable. The table of every variable, with its
default and meaning, is docs/settings.md, checked against this class by the same test.

`home` is the rule for `ZDP_HOME`, for every module: the variable, else `./.zdp`, made
absolute against the working directory when read.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from zdp.errors import ConfigError

PREFIX = "ZDP_"


class Settings(BaseSettings):
    """The engine's settings from `ZDP_*` variables (see docs/settings.md)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, case_sensitive=True, extra="ignore", frozen=True
    )

    # -- where things are
    HOME: Path = Field(default=Path(".zdp"), description="the engine's home folder")
    CONFIG: Path | None = Field(default=None, description="the engine config (apps.yaml)")
    GATE_POLICIES: Path | None = Field(default=None, description="the gate policies file")
    TRUSTED_KEYS: Path | None = Field(
        default=None, description="release signers the worker trusts [$ZDP_HOME/trusted-keys]"
    )
    APPROVER_REGISTRY: Path | None = Field(
        default=None, description="the identity registry [$ZDP_HOME/approvers]"
    )
    REGISTRY_ROOT: str | None = Field(
        default=None, description="the fingerprint the registry's first administrator must have"
    )
    ARTIFACTS: Path | None = Field(
        default=None, description="the artifact store [$ZDP_HOME/artifacts]"
    )
    APPS_DIR: Path | None = Field(
        default=None, description="the apps' sources `zdp build` builds [apps/ up from the cwd]"
    )
    KEY_DIR: Path | None = Field(
        default=None, description="the CLI user's keys [$XDG_CONFIG_HOME/zdp/keys]"
    )
    USER: str | None = Field(default=None, description="who the CLI acts as [the login name]")
    DEMO_HOME: Path | None = Field(default=None, description="`zdp demo`'s home [./.zdp-demo]")
    TRUSTED_KEYS_DIR: Path | None = Field(
        default=None, description="the Compose stack's trusted keys (the demo refuses them)"
    )
    # -- the embedded stack
    TEMPORAL_PORT: int | None = Field(
        default=None, ge=1, le=65535, description="the dev server's port [7233]"
    )
    PORT_BASE: int = Field(default=18000, ge=1, le=65000, description="moves the stack's port map")
    RUNTIME: str = Field(default="memory", description="runtime: local, kubernetes, memory")
    ROUTER: str = Field(default="memory", description="router: envoy, gateway-api, istio, memory")
    APP_PASS_ENV: str = Field(
        default="", description="more variables the local runtime passes to apps (comma list)"
    )
    APP_CONFINEMENT: Literal["auto", "landlock", "none"] = Field(
        default="auto", description="how local apps are confined"
    )
    # -- services the engine talks to
    AUDIT_DATABASE_URL: str | None = Field(
        default=None, repr=False, description="the audit log in PostgreSQL"
    )
    AUDIT_DATABASE_CA: Path | None = Field(
        default=None, description="the CA that verifies the audit database's server"
    )
    REDIS_URL: str | None = Field(default=None, repr=False, description="the health cache")
    PROMETHEUS_URL: str | None = Field(default=None, description="the PromQL gates' server")
    # -- the worker's own metrics (host:port, or `off`)
    METRICS_ADDRESS: str = Field(
        default="127.0.0.1:9464", description="where the worker serves the engine's metrics"
    )
    TEMPORAL_METRICS_ADDRESS: str = Field(
        default="127.0.0.1:9465", description="where the worker serves the Temporal SDK's metrics"
    )
    WORKER_STICKY_TIMEOUT: float = Field(
        default=10.0,
        gt=0,
        description="seconds a workflow task waits for the worker it last ran on",
    )
    NOTIFY_WEBHOOK_URL: str | None = Field(
        default=None, repr=False, description="a webhook for notifications"
    )
    NOTIFY_WEBHOOK_SECRET: str | None = Field(
        default=None, repr=False, description="signs webhook notifications"
    )
    CHROMIUM: Path | None = Field(default=None, description="headless Chromium for PDFs")
    # -- Slack
    SLACK_CONFIG: Path | None = Field(default=None, description="slack.yaml")
    SLACK_API_URL: str | None = Field(default=None, description="Slack's Web API URL")
    SLACK_BOT_TOKEN: str | None = Field(default=None, repr=False, description="the bot token")
    SLACK_SIGNING_SECRET: str | None = Field(
        default=None, repr=False, description="verifies Slack's requests"
    )
    SLACK_BOT_KEY: Path | None = Field(default=None, description="the bot's attesting key")
    SLACK_BOT_IDENTITY: str = Field(
        default="slack-bot", description="the bot's registered identity"
    )
    # -- the alert receiver (`zdp alert-receiver`: Alertmanager's webhook to pause/abort)
    ALERT_POLICY: Path | None = Field(default=None, description="the alert policy file")
    ALERT_RECEIVER_PORT: int | None = Field(
        default=None, ge=1, le=65535, description="the receiver's port [the stack's BASE+6]"
    )
    ALERT_RECEIVER_TOKEN_FILE: Path | None = Field(
        default=None, description="Alertmanager's bearer token [$ZDP_HOME/alert-receiver.token]"
    )
    ALERT_RECEIVER_KEY: Path | None = Field(
        default=None, description="the receiver's signing key [$ZDP_HOME/keys/IDENTITY.key]"
    )
    ALERT_RECEIVER_IDENTITY: str = Field(
        default="alert-receiver", description="the receiver's registered identity"
    )
    # -- Kubernetes
    K8S_API: str | None = Field(default=None, description="the API server URL")
    K8S_CONTEXT: str | None = Field(default=None, description="the kubeconfig context")
    K8S_NAMESPACE: str = Field(default="default", description="where the backends act")
    K8S_ROUTES: str = Field(default="", description="app=route pairs, comma-separated")
    K8S_GATEWAY: str = Field(default="", description="the Gateway (namespace/name)")
    K8S_SERVICE_PORT: int = Field(default=80, ge=1, le=65535, description="Services' port")
    K8S_TEMPLATES: Path | None = Field(default=None, description="the apps' manifest templates")
    K8S_READY_TIMEOUT: float = Field(default=300.0, gt=0, description="rollout deadline (s)")
    K8S_DRAIN_TIMEOUT: float = Field(default=90.0, gt=0, description="drain deadline (s)")
    # -- diagnostics
    DEBUG: bool = Field(default=False, description="tracebacks instead of one-line errors")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object, info: ValidationInfo) -> object:
        """An empty (or blank) variable is as if unset: `ZDP_REDIS_URL=` means no Redis."""
        if isinstance(value, str):
            if value.strip():
                return value.strip()
            return cls.model_fields[str(info.field_name)].default
        return value

    @field_validator("APP_CONFINEMENT", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def home(self) -> Path:
        """ZDP_HOME, else ./.zdp: absolute (against the working directory now)."""
        return self.HOME.expanduser().resolve()

    @property
    def trusted_keys(self) -> Path:
        """ZDP_TRUSTED_KEYS, else $ZDP_HOME/trusted-keys."""
        return self.TRUSTED_KEYS or self.home / "trusted-keys"

    @property
    def app_pass_env(self) -> set[str]:
        return {n.strip() for n in self.APP_PASS_ENV.split(",") if n.strip()}


def settings() -> Settings:
    """The settings as the environment says now; ConfigError names a malformed variable."""
    return _parsed(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIX))))


@functools.lru_cache(maxsize=16)
def _parsed(variables: tuple[tuple[str, str], ...]) -> Settings:
    """Parsed once per set of values (parsing takes milliseconds; reading the environment,
    microseconds)."""
    try:
        return Settings()
    except ValidationError as err:
        first = err.errors()[0]
        name = PREFIX + str(first["loc"][0]) if first["loc"] else "a ZDP_ variable"
        raise ConfigError(f"{name}: {first['msg']}") from None


def zdp_home() -> Path:
    """$ZDP_HOME, else ./.zdp, absolute: the engine's home folder."""
    return settings().home
