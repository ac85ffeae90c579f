"""The identity registry: every identity is registered by an administrator's signature, each
registration and removal is in the audit log, and a file nobody signed is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner, Result

from tests.cli_checks import assert_one_line_error
from zdp.cli import keys_cmd
from zdp.cli.main import whoami
from zdp.compliance.audit.log import default_log_path, verify_log
from zdp.compliance.engine_key import engine_key
from zdp.compliance.registry import Admin, RegistryChange, load_registry, register, remove
from zdp.errors import ConfigError, ZdpError
from zdp.signing import fingerprint

ROOT = Admin("ada", Ed25519PrivateKey.generate())


def bootstrap(folder: Path, log: list[RegistryChange] | None = None) -> None:
    recorder = log.append if log is not None else None
    register(folder, "ada", "Ada D. Admin", ROOT.key.public_key(), ROOT, recorder,
             administrator=True)  # fmt: skip


def test_registering_without_an_administrators_signature_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "approvers"
    bootstrap(folder)
    stranger = Admin("mallory", Ed25519PrivateKey.generate())
    with pytest.raises(ZdpError, match="mallory is not a registered administrator"):
        register(folder, "bob", "Bob B.", Ed25519PrivateKey.generate().public_key(), stranger,
                 None)  # fmt: skip
    # A registered person who is not an administrator cannot register anyone either.
    bob = Ed25519PrivateKey.generate()
    register(folder, "bob", "Bob B. Example", bob.public_key(), ROOT, None)
    with pytest.raises(ZdpError, match="bob is not an administrator"):
        register(folder, "eve", "Eve E.", Ed25519PrivateKey.generate().public_key(),
                 Admin("bob", bob), None)  # fmt: skip
    # Nor can an administrator sign with a key other than their registered one.
    with pytest.raises(ZdpError, match="not the key registered to them"):
        register(folder, "eve", "Eve E.", Ed25519PrivateKey.generate().public_key(),
                 Admin("ada", Ed25519PrivateKey.generate()), None)  # fmt: skip
    # And only the first administrator registers themselves.
    with pytest.raises(ZdpError, match="mallory is not a registered administrator"):
        register(folder, "mallory", "Mallory M.", stranger.key.public_key(), stranger, None,
                 administrator=True)  # fmt: skip
    assert sorted(load_registry(folder)) == ["ada", "bob"]


def test_one_key_per_user_another_is_refused_until_the_old_one_is_removed(
    tmp_path: Path,
) -> None:
    """21 CFR 11.100(a): a signature is unique to one individual. Registering the same key
    again changes nothing; a second key for the same user is refused until an administrator
    removes the first."""
    folder = tmp_path / "approvers"
    bootstrap(folder)
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    register(folder, "bob", "Bob B. Example", first.public_key(), ROOT, None)
    register(folder, "bob", "Bob B. Example", first.public_key(), ROOT, None)  # a no-op
    with pytest.raises(ZdpError, match="bob already has a registered key"):
        register(folder, "bob", "Bob B. Example", second.public_key(), ROOT, None)
    assert load_registry(folder)["bob"].fingerprint == fingerprint(first.public_key())
    remove(folder, "bob", ROOT, None)
    register(folder, "bob", "Bob B. Example", second.public_key(), ROOT, None)
    assert load_registry(folder)["bob"].fingerprint == fingerprint(second.public_key())


def test_a_file_nobody_signed_or_someone_edited_stops_the_registry(tmp_path: Path) -> None:
    folder = tmp_path / "approvers"
    bootstrap(folder)
    register(folder, "bob", "Bob B. Example", Ed25519PrivateKey.generate().public_key(), ROOT,
             None)  # fmt: skip
    bob = json.loads((folder / "bob.json").read_text())

    bob["administrator"] = True  # promoted by editing the file
    (folder / "bob.json").write_text(json.dumps(bob))
    with pytest.raises(ConfigError, match="bob's file differs from what the administrator signed"):
        load_registry(folder)

    bob["administrator"] = False
    del bob["registration"]  # a key dropped in by hand
    (folder / "bob.json").write_text(json.dumps(bob))
    with pytest.raises(ConfigError, match="bob was not registered by an administrator"):
        load_registry(folder)

    # A second self-registered administrator: someone wrote themselves a root.
    (folder / "bob.json").unlink()
    rogue = Admin("rogue", Ed25519PrivateKey.generate())
    other = tmp_path / "other"
    register(other, "rogue", "Rogue R.", rogue.key.public_key(), rogue, None, administrator=True)
    (folder / "rogue.json").write_bytes((other / "rogue.json").read_bytes())
    with pytest.raises(ConfigError, match="2 self-registered administrators"):
        load_registry(folder)


def test_registrations_and_removals_are_audited_and_checked(tmp_path: Path) -> None:
    folder = tmp_path / "approvers"
    changes: list[RegistryChange] = []
    bootstrap(folder, changes)
    carl = Admin("carl", Ed25519PrivateKey.generate())
    register(folder, "carl", "Carl C. Admin", carl.key.public_key(), ROOT, changes.append,
             administrator=True)  # fmt: skip
    register(folder, "slack-bot", "Slack bot", Ed25519PrivateKey.generate().public_key(), carl,
             changes.append, kind="bot")  # fmt: skip
    with pytest.raises(ZdpError, match="carl registered slack-bot: remove them first"):
        remove(folder, "carl", ROOT, changes.append)
    remove(folder, "slack-bot", ROOT, changes.append)
    remove(folder, "carl", ROOT, changes.append)
    with pytest.raises(ZdpError, match="ada is the last administrator"):
        remove(folder, "ada", ROOT, changes.append)
    assert [(c.kind, c.actor) for c in changes] == [
        ("identity_registered", "ada"),
        ("identity_registered", "ada"),
        ("identity_registered", "carl"),
        ("identity_removed", "ada"),
        ("identity_removed", "ada"),
    ]
    assert changes[2].message.startswith("carl registered slack-bot (Slack bot; bot) with key")
    assert changes[3].data["removal"]["sig"]  # the administrator's signed removal
    assert sorted(load_registry(folder)) == ["ada"]


# --------------------------------------------------------------------------- the CLI

cli = typer.Typer()
cli.add_typer(keys_cmd.app, name="keys")
cli.command("whoami")(whoami)


def run(*args: str | Path, env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "ZDP_HOME": str(tmp_path / "home"),
        "ZDP_APPROVER_REGISTRY": str(tmp_path / "home" / "approvers"),
        "ZDP_KEY_DIR": str(tmp_path / "keys"),
        "ZDP_USER": "ada",
        "ZDP_AUDIT_DATABASE_URL": "",
    }


def test_the_cli_registers_only_with_an_administrators_key_and_logs_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    keys = tmp_path / "keys"
    for name in ("ada", "bob"):
        assert run("keys", "generate", name, "--dir", keys, env=env).exit_code == 0
    # Nobody is an administrator yet, and bob is not registering himself as the first one.
    refused = run("keys", "register", "bob", "--public-key", keys / "bob.pub", "--printed-name",
                  "Bob B. Example", "--as", "bob", env=env)  # fmt: skip
    assert_one_line_error(refused, "bob cannot register themselves", code=2)
    # Without the administrator's key at hand, nothing is registered either.
    no_key = run("keys", "register", "bob", "--public-key", keys / "bob.pub", "--printed-name",
                 "Bob B. Example", "--as", "carl", env=env)  # fmt: skip
    assert_one_line_error(no_key, "registry changes are signed by an administrator", code=2)
    assert not (tmp_path / "home" / "approvers" / "bob.json").exists()

    root = run("keys", "register", "ada", "--key", keys / "ada.key", "--printed-name",
               "Ada D. Admin", "--administrator", env=env)  # fmt: skip
    assert root.exit_code == 0, root.output
    made = run("keys", "register", "bob", "--public-key", keys / "bob.pub", "--printed-name",
               "Bob B. Example", env=env)  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "signed by ada; recorded in the audit log" in made.stdout

    log = default_log_path(tmp_path / "home")
    report = verify_log(log, public_keys=[engine_key(tmp_path / "home").public_key()])
    assert report.entries == 2 and report.checkpoints == 2
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["workflow_id"], e["kind"], e["actor"]) for e in entries] == [
        ("identity-registry", "identity_registered", "ada"),
        ("identity-registry", "identity_registered", "ada"),
    ]

    me = run("whoami", env={**env, "ZDP_USER": "bob"})
    assert me.exit_code == 0, me.output
    assert "user:     bob" in me.stdout and f"key:      {keys / 'bob.key'}" in me.stdout
    assert "registry: bob is Bob B. Example (person), key sha256:" in me.stdout
    nobody = run("whoami", env={**env, "ZDP_USER": "zoe"})
    assert nobody.exit_code == 1 and "no key there: requests go unsigned" in nobody.stdout


def test_a_file_whose_key_was_swapped_is_refused(tmp_path: Path) -> None:
    """The administrator signed the fingerprint; a file carrying another public key (under the
    same fingerprint) would let the other key's holder act as the registered person."""
    folder = tmp_path / "approvers"
    bootstrap(folder)
    register(folder, "bob", "Bob B. Example", Ed25519PrivateKey.generate().public_key(), ROOT,
             None)  # fmt: skip
    bob = json.loads((folder / "bob.json").read_text())
    other = Ed25519PrivateKey.generate().public_key()
    bob["public_key_pem"] = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    (folder / "bob.json").write_text(json.dumps(bob))
    with pytest.raises(ConfigError, match="bob's public key is not the one the administrator"):
        load_registry(folder)


def test_a_pinned_root_refuses_a_registry_rebuilt_around_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "approvers"
    bootstrap(folder)
    monkeypatch.setenv("ZDP_REGISTRY_ROOT", fingerprint(ROOT.key.public_key()))
    assert "ada" in load_registry(folder)
    monkeypatch.setenv("ZDP_REGISTRY_ROOT", fingerprint(Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(ConfigError, match="not the one pinned in ZDP_REGISTRY_ROOT"):
        load_registry(folder)
