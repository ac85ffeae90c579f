"""Start-up settings: the environment's config file, then `APP_*` variables over it.

`APP_ENV` (default `local`) picks `config/<env>.yaml` (shipped inside the package; `APP_CONFIG_DIR`
points elsewhere). Any key of that file can be overridden by `APP_<KEY>`. The engine passes a
release's config overrides as `APP_<NAME>` variables, so a drill is a release whose overrides
set one of the `APP_FAULT_*` variables, which are read from the environment only.

Secrets never have to be in a file that ships: the signing key comes from `APP_SIGNING_KEY` or
the file `APP_SIGNING_KEY_FILE` names, the users from the YAML file `APP_USERS_FILE` names.
Only `local.yaml` ships demo users and a demo key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ops_kit.settings import (
    TRUE,
    DrillSettings,
    check_error_rate,
    drill_fields,
    non_negative_number,
    refuse_drills_in_production,
)

from pharma_manufacturing import APP_NAME, __version__
from pharma_manufacturing.services.credentials import User, UsersConfigError, parse_users
from pharma_manufacturing.storage.database import sqlite_url

ENVIRONMENTS = ("local", "staging", "production")
MIN_SIGNING_KEY_CHARS = 32
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting holds a value the app cannot use; the message names it and where it came from."""


@dataclass(frozen=True)
class Settings(DrillSettings):
    """The drill faults, drain timings and drill endpoint are ops_kit's `DrillSettings`
    (keyword-only)."""

    app_name: str = APP_NAME
    version: str = __version__
    slot: str | None = None
    environment: str = "local"  # APP_ENV: which config/<env>.yaml was read
    config_file: str = ""  # the file itself (logged at start-up)
    database_url: str = "sqlite://"  # APP_DATABASE_URL, else a file in APP_DATA_DIR
    migrate_on_start: bool = True  # run `alembic upgrade head` at start-up (never a downgrade)
    seed_demo_data: bool = False  # seed B-1001..B-1003 and a genealogy once (local only)
    open_reads: bool = False  # batch and lot reads without credentials
    busy_timeout_ms: int = 5000  # SQLite: how long a writer waits for the other process
    signing_key: bytes = field(default=b"", repr=False)  # HMAC key of signatures and sessions
    users: tuple[User, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        name = env.get("APP_ENV", "").strip() or "local"
        if name not in ENVIRONMENTS:
            raise SettingsError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {name!r}")
        folder = Path(env["APP_CONFIG_DIR"]) if env.get("APP_CONFIG_DIR") else config_dir()
        source = _Source(folder / f"{name}.yaml", env)
        settings = cls(
            version=env.get("APP_VERSION") or __version__,
            slot=env.get("APP_SLOT") or None,
            environment=name,
            config_file=str(source.path),
            database_url=_database_url(source),
            migrate_on_start=source.get("migrate_on_start", _flag, True),
            seed_demo_data=source.get("seed_demo_data", _flag, False),
            open_reads=source.get("open_reads", _flag, False),
            busy_timeout_ms=int(source.get("busy_timeout_ms", _number, 5000)),
            signing_key=_signing_key(source),
            users=_users(source),
            **drill_fields(env, lambda name, default: _number(env.get(name, ""), default)),
            drain_delay_s=source.get("drain_delay_s", _number, 0.5),
            drain_timeout_s=source.get("drain_timeout_s", _number, 30.0),
        )
        check_error_rate(settings, SettingsError)
        if settings.seed_demo_data and name != "local":
            raise SettingsError(f"seed_demo_data is for APP_ENV=local only, not {name}")
        if name != "local":
            _refuse_demo_credentials(settings, folder / "local.yaml", name)
        refuse_drills_in_production(settings, name, SettingsError)
        return settings


def _refuse_demo_credentials(settings: Settings, local: Path, name: str) -> None:
    """The signing key and users local.yaml ships are public (README.md): outside
    APP_ENV=local they would let anyone sign batch records, so start-up stops."""
    try:
        demo = yaml.safe_load(local.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return  # no demo file shipped beside this config: nothing public to refuse
    if str(demo.get("signing_key", "")).strip().encode() == settings.signing_key:
        raise SettingsError(
            f"the public demo signing key is for APP_ENV=local only, not {name}: set "
            "APP_SIGNING_KEY_FILE to a key of your own"
        )
    hashes = {
        str(u.get("password_hash")): str(u.get("user_id"))
        for u in demo.get("users") or []
        if isinstance(u, dict)
    }
    public = sorted(hashes[u.password_hash] for u in settings.users if u.password_hash in hashes)
    if public:
        raise SettingsError(
            f"demo users with public passwords ({', '.join(public)}) are for APP_ENV=local "
            f"only, not {name}: give your own in APP_USERS_FILE"
        )


def config_dir() -> Path:
    """config/ inside the installed package (the wheel), or the app's config/ in a checkout."""
    packaged = Path(__file__).resolve().parent / "config"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "config"


# Keys a config file may hold; each is also read from APP_<KEY>, which wins.
_FILE_KEYS = frozenset(
    {
        "database_url",
        "migrate_on_start",
        "seed_demo_data",
        "open_reads",
        "busy_timeout_ms",
        "signing_key",
        "signing_key_file",
        "users",
        "users_file",
        "drain_delay_s",
        "drain_timeout_s",
    }
)


class _Source:
    """One environment's config file with the process environment over it."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.env = env
        self.path = path
        if not path.is_file():
            raise SettingsError(f"no config file for APP_ENV={path.stem} at {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise SettingsError(f"{path} is not valid YAML: {_one_line(error)}") from None
        self.values: dict[str, Any] = loaded or {}
        if not isinstance(self.values, dict):
            raise SettingsError(f"{path} must hold a mapping of settings")
        unknown = set(self.values) - _FILE_KEYS
        if unknown:
            raise SettingsError(
                f"{path} has unknown keys: {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(_FILE_KEYS))})"
            )

    def raw(self, key: str) -> tuple[Any, str] | None:
        """The value and where it came from (the variable or the file), or None if unset."""
        variable = f"APP_{key.upper()}"
        if self.env.get(variable, "").strip():
            return self.env[variable].strip(), variable
        if self.values.get(key) is not None:
            return self.values[key], f"{key} in {self.path}"
        return None

    def get(self, key: str, parse: Callable[[str, Any], Any], default: Any) -> Any:
        found = self.raw(key)
        if found is None:
            return default
        value, origin = found
        try:
            return parse(str(value).strip(), default)
        except ValueError as error:
            raise SettingsError(f"{origin}: {error}") from None


def _flag(raw: str, _: object) -> bool:
    if raw.lower() in TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


_number = non_negative_number  # raw, default -> a number >= 0; ValueError names the problem


def _database_url(source: _Source) -> str:
    if source.env.get("APP_DATABASE_URL", "").strip():
        return source.env["APP_DATABASE_URL"].strip()
    if source.env.get("APP_DATA_DIR", "").strip():
        return sqlite_url(Path(source.env["APP_DATA_DIR"].strip()))
    found = source.raw("database_url")
    if found is None:
        raise SettingsError(
            "no database: set APP_DATA_DIR (the SQLite file goes in it) or APP_DATABASE_URL"
        )
    return str(found[0])


def _signing_key(source: _Source) -> bytes:
    key_file = source.raw("signing_key_file")
    direct = source.raw("signing_key")
    if direct is not None and (key_file is None or direct[1].startswith("APP_")):
        key, origin = str(direct[0]), direct[1]
    elif key_file is not None:
        path, origin = Path(str(key_file[0])), key_file[1]
        try:
            key = path.read_text().strip()
        except OSError as error:
            raise SettingsError(f"{origin}: cannot read {path}: {error.strerror}") from None
    else:
        raise SettingsError(
            f"no signing key for APP_ENV={source.path.stem}: set APP_SIGNING_KEY or "
            "APP_SIGNING_KEY_FILE (only local.yaml ships one)"
        )
    if len(key) < MIN_SIGNING_KEY_CHARS:
        raise SettingsError(
            f"{origin}: the signing key must be at least {MIN_SIGNING_KEY_CHARS} characters"
        )
    return key.encode()


def _users(source: _Source) -> tuple[User, ...]:
    users_file = source.raw("users_file")
    try:
        if users_file is not None:
            path = Path(str(users_file[0]))
            try:
                loaded = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as error:
                raise SettingsError(
                    f"{users_file[1]}: cannot read {path}: {_one_line(error)}"
                ) from None
            entries = loaded.get("users") if isinstance(loaded, dict) else None
            users = parse_users(entries, str(path))
        elif source.values.get("users") is not None:
            users = parse_users(source.values["users"], str(source.path))
        else:
            users = ()
    except UsersConfigError as error:
        raise SettingsError(str(error)) from None
    if not users:
        raise SettingsError(
            f"no users for APP_ENV={source.path.stem}: set APP_USERS_FILE to a YAML file with "
            "`users:` (only local.yaml ships demo users)"
        )
    return users


def _one_line(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split())
