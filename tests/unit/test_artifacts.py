"""The artifact store: wheels built offline, kept by sha256, tampering refused, unpacked once."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from zdp.errors import PlatformError
from zdp.models import Artifact
from zdp.platforms.local.artifacts import (
    UNPACK_MARKER,
    build_wheel,
    find_artifact,
    store_artifact,
    unpack_wheel,
    unpacked_digest,
)

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "zdp-tiny"
version = "{version}"

[tool.setuptools.packages.find]
where = ["src"]
"""


def tiny_package(root: Path, version: str = "1.0.0") -> Path:
    """A src-layout package `zdp_tiny` whose module says its version."""
    (root / "src" / "zdp_tiny").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(version=version))
    (root / "src" / "zdp_tiny" / "__init__.py").write_text(f'VERSION = "{version}"\n')
    return root


def hand_made_wheel(path: Path, body: str) -> Path:
    """A wheel zipped by hand: one module and a dist-info folder."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("zdp_hand/__init__.py", body)
        archive.writestr("zdp_hand-1.0.dist-info/METADATA", "Name: zdp-hand\nVersion: 1.0\n")
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ZDP_ARTIFACTS", raising=False)
    monkeypatch.setenv("ZDP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_build_wheel_builds_offline_and_the_wheel_unpacks_to_importable_code(
    tmp_path: Path, home: Path
) -> None:
    wheel = build_wheel(tiny_package(tmp_path / "src-tree"), tmp_path / "dist")
    assert wheel.name == "zdp_tiny-1.0.0-py3-none-any.whl"
    artifact = store_artifact(wheel, home)
    dest = unpack_wheel(find_artifact(artifact, home), home / "versions" / "zdp-tiny" / "1.0.0")
    assert (dest / "zdp_tiny" / "__init__.py").read_text() == 'VERSION = "1.0.0"\n'
    assert unpacked_digest(dest) == artifact.digest


def test_a_build_failure_is_one_line_with_pips_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text("[project\nname = ")
    with pytest.raises(PlatformError) as err:
        build_wheel(broken, tmp_path / "dist")
    assert "building the wheel of" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_folder_without_a_project_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match=r"no pyproject\.toml"):
        build_wheel(tmp_path, tmp_path / "dist")


def test_store_is_content_addressed_and_idempotent(tmp_path: Path, home: Path) -> None:
    wheel = hand_made_wheel(tmp_path / "zdp_hand-1.0-py3-none-any.whl", "X = 1\n")
    hex_digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    first = store_artifact(wheel, home)
    second = store_artifact(wheel, home)
    assert (
        first
        == second
        == Artifact(kind="wheel", reference=wheel.name, digest=f"sha256:{hex_digest}")
    )
    stored = home / "artifacts" / hex_digest / wheel.name
    assert find_artifact(first, home) == stored
    assert [p.name for p in (home / "artifacts").iterdir()] == [hex_digest]
    assert [p.name for p in stored.parent.iterdir()] == [wheel.name]


def test_two_wheels_with_the_same_name_do_not_overwrite_each_other(
    tmp_path: Path, home: Path
) -> None:
    name = "zdp_hand-1.0-py3-none-any.whl"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = store_artifact(hand_made_wheel(tmp_path / "a" / name, "X = 1\n"), home)
    two = store_artifact(hand_made_wheel(tmp_path / "b" / name, "X = 2\n"), home)
    assert one.digest != two.digest
    assert find_artifact(one, home) != find_artifact(two, home)


def test_a_tampered_artifact_is_refused(tmp_path: Path, home: Path) -> None:
    artifact = store_artifact(hand_made_wheel(tmp_path / "zdp_hand-1.0-py3-none-any.whl", ""), home)
    stored = find_artifact(artifact, home)
    data = bytearray(stored.read_bytes())
    data[10] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(PlatformError) as err:
        find_artifact(artifact, home)
    message = str(err.value)
    assert message.startswith("artifact zdp_hand-1.0-py3-none-any.whl digest mismatch: expected")
    assert artifact.digest in message
    assert "file has sha256:" in message


def test_a_missing_artifact_names_the_store(home: Path) -> None:
    artifact = Artifact(
        kind="wheel", reference="nope-1.0-py3-none-any.whl", digest="sha256:" + "a" * 64
    )
    with pytest.raises(PlatformError, match=r"not in the artifact store .*artifacts"):
        find_artifact(artifact, home)


def test_a_reference_with_a_path_is_refused(home: Path) -> None:
    artifact = Artifact(kind="wheel", reference="../../etc/passwd", digest="sha256:" + "a" * 64)
    with pytest.raises(PlatformError, match="bare file name"):
        find_artifact(artifact, home)


def test_an_oci_image_is_not_in_the_wheel_store(home: Path) -> None:
    artifact = Artifact(kind="oci-image", reference="ghcr.io/x/y:1", digest="sha256:" + "a" * 64)
    with pytest.raises(PlatformError, match="not a wheel"):
        find_artifact(artifact, home)


def test_zdp_artifacts_moves_the_store(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDP_ARTIFACTS", str(tmp_path / "elsewhere"))
    artifact = store_artifact(hand_made_wheel(tmp_path / "zdp_hand-1.0-py3-none-any.whl", ""), home)
    assert find_artifact(artifact, home).is_relative_to(tmp_path / "elsewhere")


def test_unpack_reuses_a_complete_unpack_of_the_same_wheel(tmp_path: Path) -> None:
    wheel = hand_made_wheel(tmp_path / "zdp_hand-1.0-py3-none-any.whl", "X = 1\n")
    dest = tmp_path / "versions" / "1.0"
    unpack_wheel(wheel, dest)
    sentinel = dest / "zdp_hand" / "sentinel"
    sentinel.write_text("kept")
    assert unpack_wheel(wheel, dest) == dest
    assert sentinel.exists(), "a second unpack of the same wheel must reuse the folder"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["1.0"], "no temp folders left"


def test_unpack_replaces_an_unpack_of_another_wheel(tmp_path: Path) -> None:
    first = hand_made_wheel(tmp_path / "one.whl", "X = 1\n")
    second = hand_made_wheel(tmp_path / "two.whl", "X = 2\n")
    dest = tmp_path / "versions" / "1.0"
    unpack_wheel(first, dest)
    unpack_wheel(second, dest)
    assert (dest / "zdp_hand" / "__init__.py").read_text() == "X = 2\n"
    assert unpacked_digest(dest) == "sha256:" + hashlib.sha256(second.read_bytes()).hexdigest()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["1.0"]


def test_a_half_unpacked_folder_without_marker_is_replaced(tmp_path: Path) -> None:
    wheel = hand_made_wheel(tmp_path / "one.whl", "X = 1\n")
    dest = tmp_path / "versions" / "1.0"
    (dest / "zdp_hand").mkdir(parents=True)
    (dest / "zdp_hand" / "__init__.py").write_text("partial")
    unpack_wheel(wheel, dest)
    assert (dest / "zdp_hand" / "__init__.py").read_text() == "X = 1\n"
    assert (dest / UNPACK_MARKER).exists()


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.whl"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(PlatformError, match="not a valid wheel"):
        unpack_wheel(bogus, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bogus.whl"]
