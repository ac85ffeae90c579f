"""The Slack configuration: which Slack user is which approver, and each app's channel.

It lives at `infrastructure/canary-deployments/slack.yaml` and is found like the engine
configuration ($ZDP_SLACK_CONFIG, else up from the current directory, else the repo). A Slack
user is an approver only through the (team id, user id) pair listed here: display names and
usernames can be changed by their owner, so they are never trusted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zdp.config import find_data_file, read_yaml
from zdp.errors import ConfigError
from zdp.release import summarize_validation_error
from zdp.settings import settings

SLACK_CONFIG_RELATIVE_PATH = Path("infrastructure/canary-deployments/slack.yaml")
SLACK_CONFIG_ENV_VAR = "ZDP_SLACK_CONFIG"

# The Web API base URL; tests point it at a fake Slack API server on loopback.
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
SLACK_API_URL_ENV_VAR = "ZDP_SLACK_API_URL"
SLACK_BOT_TOKEN_ENV_VAR = "ZDP_SLACK_BOT_TOKEN"
SLACK_SIGNING_SECRET_ENV_VAR = "ZDP_SLACK_SIGNING_SECRET"

_APP = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackIdentity(_Config):
    """One Slack user, named by workspace (team) id and user id, and who they are to zdp."""

    team: str = Field(pattern=r"^[TE][A-Z0-9]{2,}$")
    user: str = Field(pattern=r"^[UW][A-Z0-9]{2,}$")
    approver: str = Field(min_length=1)


class SlackConfig(_Config):
    """The identity map and the channel each app's deployment messages go to."""

    identities: list[SlackIdentity] = Field(default_factory=list)
    channels: dict[str, str] = Field(default_factory=dict)

    @field_validator("identities")
    @classmethod
    def _one_identity_per_user(cls, value: list[SlackIdentity]) -> list[SlackIdentity]:
        seen: set[tuple[str, str]] = set()
        for identity in value:
            key = (identity.team, identity.user)
            if key in seen:
                raise ValueError(
                    f"Slack user {identity.user} of team {identity.team} is listed twice: "
                    "a Slack user maps to exactly one approver"
                )
            seen.add(key)
        return value

    @field_validator("channels")
    @classmethod
    def _channels_name_apps(cls, value: dict[str, str]) -> dict[str, str]:
        for app, channel in value.items():
            if not _APP.match(app):
                raise ValueError(
                    f"app '{app}' must be a DNS-style name: lowercase letters, digits, '-'"
                )
            if not channel.strip():
                raise ValueError(f"the channel of app '{app}' is empty")
        return value

    def approver_for(self, team: str | None, user: str | None) -> str | None:
        """The approver identity of this Slack user, or None when they are not mapped."""
        return next(
            (i.approver for i in self.identities if i.team == team and i.user == user), None
        )


def parse_slack_config(data: Any, source: str = "<slack config>") -> SlackConfig:
    """Validate parsed YAML; ConfigError names the file and the first bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the Slack configuration must be a mapping")
    try:
        return SlackConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {summarize_validation_error(err)}") from None


def load_slack_config(path: Path | None = None) -> SlackConfig:
    """Find, read and validate slack.yaml; every failure is one line of ConfigError."""
    found = find_data_file(
        path, "SLACK_CONFIG", SLACK_CONFIG_RELATIVE_PATH, "Slack configuration file", "slack.yaml"
    )
    return parse_slack_config(read_yaml(found, "Slack configuration"), str(found))


def slack_api_url() -> str:
    """$ZDP_SLACK_API_URL or Slack's own, always ending in '/' as the SDK expects."""
    url = settings().SLACK_API_URL or DEFAULT_SLACK_API_URL
    return url if url.endswith("/") else url + "/"
