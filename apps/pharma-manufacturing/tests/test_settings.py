"""Settings: config/<env>.yaml selected by APP_ENV, APP_* over it, secrets from files or the
environment, and a refusal naming the setting for anything the app cannot use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from pharma_manufacturing.services.credentials import hash_password, password_matches
from pharma_manufacturing.settings import Settings, SettingsError, config_dir

if TYPE_CHECKING:
    from collections.abc import Callable

    from ops_kit.testing import AppProcess

KEY = "a-signing-key-for-tests-that-is-long-enough"


def users_file(folder: Path) -> Path:
    path = folder / "users.yaml"
    entry = {
        "user_id": "pat",
        "printed_name": "Pat Example",
        "roles": ["qa"],
        "password_hash": hash_password("s3cret"),
    }
    path.write_text(json.dumps({"users": [entry]}))  # JSON is YAML
    return path


def test_local_is_the_default_with_demo_users_demo_data_and_open_reads(tmp_path: Path) -> None:
    settings = Settings.from_env({"APP_DATA_DIR": str(tmp_path)})
    assert settings.environment == "local"
    assert settings.config_file == str(config_dir() / "local.yaml")
    assert settings.database_url == f"sqlite:///{tmp_path}/pharma-manufacturing.db"
    assert (settings.seed_demo_data, settings.open_reads, settings.migrate_on_start) == (
        True,
        True,
        True,
    )
    assert {(u.user_id, u.printed_name) for u in settings.users} == {
        ("olivia", "Olivia Novak"),
        ("sam", "Samuel Reyes"),
        ("quinn", "Quinn Adebayo"),
    }
    assert "signing_key" not in repr(settings) and "scrypt$" not in repr(settings)


def test_database_url_wins_over_the_data_dir(tmp_path: Path) -> None:
    url = "postgresql+psycopg://pharma:pw@db.internal:5432/pharma"
    settings = Settings.from_env({"APP_DATA_DIR": str(tmp_path), "APP_DATABASE_URL": url})
    assert settings.database_url == url
    with pytest.raises(SettingsError, match=r"set APP_DATA_DIR .* or APP_DATABASE_URL"):
        Settings.from_env({})


def test_app_variables_override_the_file(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "APP_DATA_DIR": str(tmp_path),
            "APP_OPEN_READS": "false",
            "APP_MIGRATE_ON_START": "0",
            "APP_DRAIN_DELAY_S": "2",
            "APP_SIGNING_KEY": KEY,
            "APP_USERS_FILE": str(users_file(tmp_path)),
        }
    )
    assert (settings.open_reads, settings.migrate_on_start, settings.drain_delay_s) == (
        False,
        False,
        2.0,
    )
    assert settings.signing_key == KEY.encode()
    assert [u.user_id for u in settings.users] == ["pat"]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"APP_ENV": "prod"}, "APP_ENV must be one of local, staging, production, got 'prod'"),
        ({"APP_OPEN_READS": "maybe"}, "APP_OPEN_READS: must be true or false, got 'maybe'"),
        ({"APP_DRAIN_DELAY_S": "-1"}, "APP_DRAIN_DELAY_S: must not be negative"),
        ({"APP_BUSY_TIMEOUT_MS": "soon"}, "APP_BUSY_TIMEOUT_MS: must be a number"),
        ({"APP_FAULT_ERROR_RATE": "2"}, "APP_FAULT_ERROR_RATE must be between 0.0 and 1.0"),
        ({"APP_SIGNING_KEY": "short"}, "APP_SIGNING_KEY: the signing key must be at least 32"),
        ({"APP_USERS_FILE": "/nonexistent/users.yaml"}, "APP_USERS_FILE: cannot read"),
    ],
)
def test_an_invalid_value_is_refused_naming_it(
    tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"APP_DATA_DIR": str(tmp_path), **variables})
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("colour: blue\n", "unknown keys: colour"),
        ("open_reads: [\n", "is not valid YAML"),
        (
            "users:\n  - {user_id: pat, printed_name: Pat, roles: [qa], password_hash: plain}\n",
            "users[0] (pat): password_hash is not a scrypt hash",
        ),
        (
            "users:\n  - {user_id: pat, printed_name: Pat, roles: [admin], password_hash: x}\n",
            "roles must be a non-empty list of operator, qa, supervisor",
        ),
    ],
)
def test_a_bad_config_file_is_refused_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "staging.yaml").write_text(content)
    env = {"APP_ENV": "staging", "APP_CONFIG_DIR": str(tmp_path), "APP_DATA_DIR": str(tmp_path)}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**env, "APP_SIGNING_KEY": KEY})
    assert message in str(refused.value)
    assert "staging.yaml" in str(refused.value)


def test_production_ships_no_users_or_key_and_gets_them_from_files(tmp_path: Path) -> None:
    env = {"APP_ENV": "production", "APP_DATABASE_URL": f"sqlite:///{tmp_path}/p.db"}
    with pytest.raises(SettingsError, match="no signing key for APP_ENV=production"):
        Settings.from_env(env)
    key_file = tmp_path / "signing-key"
    key_file.write_text(KEY + "\n")
    env["APP_SIGNING_KEY_FILE"] = str(key_file)
    with pytest.raises(SettingsError, match="no users for APP_ENV=production: set APP_USERS_FILE"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "APP_USERS_FILE": str(users_file(tmp_path))})
    assert settings.signing_key == KEY.encode()
    assert (settings.seed_demo_data, settings.open_reads) == (False, False)
    with pytest.raises(SettingsError, match="seed_demo_data is for APP_ENV=local only"):
        Settings.from_env(
            {**env, "APP_USERS_FILE": str(users_file(tmp_path)), "APP_SEED_DEMO_DATA": "1"}
        )


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_the_public_demo_key_and_demo_users_are_refused_outside_local(
    tmp_path: Path, environment: str
) -> None:
    """local.yaml's signing key and users' passwords are public (README.md): outside local they
    would let anyone sign batch records."""
    demo = yaml.safe_load((config_dir() / "local.yaml").read_text())
    env = {"APP_ENV": environment, "APP_DATABASE_URL": f"sqlite:///{tmp_path}/p.db"}
    with pytest.raises(SettingsError, match=f"public demo signing key is for APP_ENV=local "
                       f"only, not {environment}"):  # fmt: skip
        Settings.from_env(
            {**env, "APP_SIGNING_KEY": demo["signing_key"],
             "APP_USERS_FILE": str(users_file(tmp_path))}
        )  # fmt: skip
    demo_users = tmp_path / "demo-users.yaml"
    demo_users.write_text(json.dumps({"users": demo["users"]}))
    with pytest.raises(SettingsError, match=r"demo users with public passwords \(olivia, quinn, "
                       rf"sam\) are for APP_ENV=local only, not {environment}"):  # fmt: skip
        Settings.from_env({**env, "APP_SIGNING_KEY": KEY, "APP_USERS_FILE": str(demo_users)})


def test_the_drill_endpoint_is_refused_in_production(tmp_path: Path) -> None:
    env = {
        "APP_ENV": "production",
        "APP_DATABASE_URL": f"sqlite:///{tmp_path}/p.db",
        "APP_SIGNING_KEY": KEY,
        "APP_USERS_FILE": str(users_file(tmp_path)),
        "APP_DRILL_ENDPOINT": "1",
    }
    with pytest.raises(SettingsError, match="APP_DRILL_ENDPOINT is refused in production"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "APP_ENV": "staging"}).drill_endpoint


def test_production_without_secrets_stops_with_one_log_line(
    app_process: Callable[[dict[str, str]], AppProcess],
) -> None:
    app = app_process({"APP_ENV": "production"})
    assert app.process.wait(timeout=30) == 1
    [line] = [json.loads(line) for line in app.log().splitlines() if line.strip()]
    assert line["level"] == "critical"
    assert line["msg"].startswith("configuration error: no signing key for APP_ENV=production")


def test_password_hashes_are_salted_and_checked() -> None:
    first, second = hash_password("demo"), hash_password("demo")
    assert first != second  # a fresh salt each time
    assert password_matches("demo", first) and password_matches("demo", second)
    assert not password_matches("Demo", first)
    assert not password_matches("demo", "plain-text")
