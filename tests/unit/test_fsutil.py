"""Small file helpers the stack relies on: a restarted process never empties its last log."""

from __future__ import annotations

from pathlib import Path

import pytest

from zdp.errors import ReleaseError
from zdp.fsutil import inside, rotate_log


def test_rotate_log_keeps_the_last_logs_and_drops_the_oldest(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    for run in range(5):
        rotate_log(log, keep=3)
        log.write_text(f"run {run}\n")
    assert log.read_text() == "run 4\n"
    kept = [(tmp_path / f"worker.log.{n}").read_text() for n in (1, 2, 3)]
    assert kept == ["run 3\n", "run 2\n", "run 1\n"]
    assert not (tmp_path / "worker.log.4").exists()


def test_an_empty_or_missing_log_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    rotate_log(log)
    log.write_text("")
    rotate_log(log)
    assert log.exists() and not (tmp_path / "worker.log.1").exists()


def test_inside_refuses_every_way_out_of_its_base(tmp_path: Path) -> None:
    base = tmp_path / "versions"
    base.mkdir()
    (base / "app").mkdir()
    (base / "app" / "link").symlink_to(tmp_path)  # a symlink planted inside, pointing out
    assert inside(base, "app", "2.0.0") == base.resolve() / "app" / "2.0.0"
    for parts in [("app", ".."), ("..", "x"), ("app", "/etc"), ("app", "link", "x"), ("",)]:
        with pytest.raises(ReleaseError, match="would lead outside"):
            inside(base, *parts)
