"""The alerts the receiver already acted on, so that the same alert acts once.

Alertmanager sends a group's firing alerts again whenever the group changes, after
`repeat_interval`, and after a failed delivery; an HA pair may send the same notification
twice. The same alert (its fingerprint and when it started firing) must pause or abort once,
also after the receiver restarts: the keys are kept in `$ZDP_HOME/alert-receiver/seen.json`,
written atomically after each action, at most `limit` of them (the oldest go first: an alert
that has fired for longer than the newest `limit` actions is long over).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path

from zdp.errors import ConfigError, ZdpError
from zdp.fsutil import write_file_atomic

DEFAULT_LIMIT = 10_000


def seen_path(home: Path) -> Path:
    """$ZDP_HOME/alert-receiver/seen.json."""
    return home / "alert-receiver" / "seen.json"


class SeenAlerts:
    """A bounded, persistent set of alert keys, each with when and what it did."""

    def __init__(self, path: Path, limit: int = DEFAULT_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self._entries: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._load()

    def _load(self) -> None:
        """Read the file; a file that is not ours stops the receiver (one line) rather than
        forget what it did."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as err:
            raise ConfigError(f"{self.path}: cannot read: {err.strerror}") from None
        try:
            data = json.loads(text)
            entries = data["seen"]
            for entry in entries:
                self._entries[str(entry["key"])] = {
                    "at": str(entry["at"]),
                    "did": str(entry.get("did", "")),
                }
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{self.path}: not the alert receiver's record of alerts acted on; move it "
                "away to start afresh (alerts still firing may then act once more)"
            ) from None
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def when(self, key: str) -> str | None:
        """When `key` acted (ISO time), and what it did, as one phrase; None if it did not."""
        entry = self._entries.get(key)
        return f"{entry['did']} at {entry['at']}" if entry else None

    def add(self, key: str, did: str, at: datetime | None = None) -> None:
        """Remember `key` (and what it did), dropping the oldest past the limit; saved now."""
        stamp = (at or datetime.now(UTC)).isoformat(timespec="seconds")
        self._entries[key] = {"at": stamp, "did": did}
        self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)
        self._save()

    def _save(self) -> None:
        body = {
            "version": 1,
            "seen": [{"key": key, **entry} for key, entry in self._entries.items()],
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomic(self.path, (json.dumps(body, indent=1) + "\n").encode(), mode=0o600)
        except OSError as err:
            raise ZdpError(f"cannot record the alerts acted on in {self.path}: {err}") from None
