"""The seed scripts and the CI examples as a user runs them, without a running stack.

scripts/deploy-finance.sh and deploy-pharma.sh: their help, and every refusal that comes
before a deployment starts (a bad option, no key, a key the worker does not trust or the
registry does not know, a release that lacks production's change record), then pharma
production's stop for the validation approval. Nothing here reaches `zdp deploy`: with no
stack in the test's home the CLI would look for a Temporal server on the default address,
which may be someone else's. The CI examples' release step is run for production against the
shipped engine config: with the change record the release passes production's compliance
profiles, without it `zdp release create` refuses it naming each missing field.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.github_actions import clean_env, run_job
from zdp.acceptance import Target, accept_release
from zdp.config import load_config
from zdp.release import read_manifest

REPO = Path(__file__).parents[2]
SCRIPTS = REPO / "scripts"
APPS = REPO / "infrastructure" / "canary-deployments" / "apps.yaml"
BIN = Path(sys.executable).parent
ZDP = str(BIN / "zdp")
EXIT_CODES = (
    "0 promoted", "10 rolled back", "11 rejected", "12 expired", "13 aborted", "14 failed",
    "15 blocked",
)  # fmt: skip
PCI_RECORD = {
    "ticket": "CHG-1234",
    "description": "Quotes from the in-memory book",
    "security_impact": "none: no change to authentication or stored data",
    "test_evidence": "CI run 4242; staging canary promoted",
    "backout_procedure": "zdp abort during the rollout; after it, redeploy the previous release",
    "reason": "quotes were slow at the open",
}


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A user `olivia` with an empty key folder and a home of her own (no stack in it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZDP_", "TEMPORAL_"))}
    env.update(
        PATH=f"{BIN}:{os.environ['PATH']}",
        ZDP_HOME=str(tmp_path / "home"),
        ZDP_KEY_DIR=str(tmp_path / "keys"),
        ZDP_USER="olivia",
        ZDP_CONFIG=str(APPS),
    )
    return env


def script(
    name: str, *args: str, env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / name), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def zdp(*args: str, env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(
        [ZDP, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def only_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def operator_ready(env: dict[str, str], tmp_path: Path) -> None:
    """Olivia's key made, trusted for releases and registered (as the first administrator)."""
    keys, home = tmp_path / "keys", tmp_path / "home"
    zdp("keys", "generate", "olivia", "--dir", str(keys), env=env, cwd=tmp_path)
    (home / "trusted-keys").mkdir(parents=True)
    (home / "trusted-keys" / "olivia.pub").write_bytes((keys / "olivia.pub").read_bytes())
    zdp(
        "keys", "register", "olivia", "--key", str(keys / "olivia.key"),
        "--printed-name", "Olivia Ops", "--administrator", "--as", "olivia",
        env=env, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["deploy-finance.sh", "deploy-pharma.sh"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_exits_0_names_the_script_and_lists_every_exit_code(
    name: str, flag: str, user_env: dict[str, str], tmp_path: Path
) -> None:
    done = script(name, flag, env=user_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {name} "), done.stdout
    assert "_deploy.sh" not in done.stdout + done.stderr
    text = " ".join(done.stdout.split())
    for code in EXIT_CODES:
        assert code in text
    app = "finance-trading" if "finance" in name else "pharma-manufacturing"
    assert f"zdp build {app}" in text  # the commands it runs, exactly
    assert f"zdp release create {app} --version V --artifact WHEEL --for-env ENV" in text
    assert f"zdp deploy {app} --env ENV --strategy S --release DIR/release.json --wait" in text


def test_a_bad_option_is_one_line_naming_the_script(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    done = script("deploy-pharma.sh", "--strategy", "rolling", env=user_env, cwd=tmp_path)
    assert done.returncode == 2
    line = only_line(done.stderr)
    assert line.startswith("deploy-pharma.sh: --strategy must be canary or blue-green")
    assert "see deploy-pharma.sh --help" in line

    done = script("deploy-finance.sh", "--env", env=user_env, cwd=tmp_path)
    assert done.returncode == 2
    assert only_line(done.stderr).startswith("deploy-finance.sh: --env needs a value")


def test_without_a_key_it_says_which_key_and_how_to_make_it(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    """The seed command, run by someone with no key yet: refused before anything is built."""
    done = script(
        "deploy-finance.sh", "--env", "production", "--strategy", "canary",
        env=user_env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    line = only_line(done.stderr)
    keys = tmp_path / "keys"
    assert f"no signing key for olivia: {keys}/olivia.key does not exist" in line
    assert f"`zdp keys generate olivia --dir {keys} --prompt`" in line
    assert f"`zdp keys register olivia --public-key {keys}/olivia.pub" in line
    assert f"`cp {keys}/olivia.pub {tmp_path}/home/trusted-keys/`" in line
    assert not (tmp_path / "home" / "artifacts").exists()  # nothing was built


def test_a_key_the_worker_does_not_trust_or_the_registry_does_not_know_is_refused(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    keys, home = tmp_path / "keys", tmp_path / "home"
    zdp("keys", "generate", "olivia", "--dir", str(keys), env=user_env, cwd=tmp_path)
    (home / "trusted-keys").mkdir(parents=True)  # as `zdp up` leaves it: empty

    done = script("deploy-finance.sh", "--env", "production", env=user_env, cwd=tmp_path)
    assert done.returncode == 2
    line = only_line(done.stderr)
    assert f"the worker does not trust {keys}/olivia.pub for releases" in line
    assert f"cp {keys}/olivia.pub {home}/trusted-keys/" in line

    (home / "trusted-keys" / "olivia.pub").write_bytes((keys / "olivia.pub").read_bytes())
    done = script("deploy-finance.sh", "--env", "production", env=user_env, cwd=tmp_path)
    assert done.returncode == 2
    line = only_line(done.stderr)
    assert "olivia is not registered: the registry" in line
    assert "--printed-name" in line and "--administrator --as olivia" in line
    assert not (home / "artifacts").exists()


def test_finance_production_without_the_change_record_is_refused_at_create(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    operator_ready(user_env, tmp_path)
    done = script(
        "deploy-finance.sh", "--env", "production", "--strategy", "canary",
        "--ticket", "CHG-1", env=user_env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    line = only_line(done.stderr)
    assert "for production (sox, pci-dss) it lacks: change description (--description" in line
    for flag in ("--security-impact", "--test-evidence", "--backout-procedure"):
        assert flag in line
    assert "wheel: " not in done.stdout  # the build's own lines are not the user's business
    assert not list((tmp_path / "home").glob("releases/*/release.json"))


def test_pharma_production_stops_for_the_validation_approval(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    """Built, created with its change record (author from the file), not signed: a validation
    approver signs the document first; the script says what to run next."""
    operator_ready(user_env, tmp_path)
    record = tmp_path / "change.yaml"
    record.write_text(
        yaml.safe_dump(
            {"validation_doc": "VAL-2026-0142", "author": "dev@example.com", "reason": "OQ fix"}
        )
    )
    done = script(
        "deploy-pharma.sh", "--env", "production", "--strategy", "canary",
        "--change-record", str(record), "--version", "2.1.0", env=user_env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    release = tmp_path / "home" / "releases" / "pharma-manufacturing-2.1.0" / "release.json"
    assert f"wrote {release}: pharma-manufacturing 2.1.0" in done.stdout
    assert "pending: production needs the validation document approved" in done.stdout
    assert "deploy-pharma.sh: nothing deployed yet" in done.stderr
    assert f"--release {release} --reason OQ\\ fix" in done.stderr
    manifest = json.loads(release.read_text())
    assert manifest["environments"] == ["production"]
    assert manifest["change"]["author"] == "dev@example.com"
    assert manifest["validation"]["status"] == "pending"
    assert not release.with_name("release.dsse.json").exists()  # signed after the approval


# --------------------------------------------------------------------------- CI examples


def two_commit_repo(path: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    path.mkdir()
    git("init", "-q")
    git("config", "user.email", "dev@example.com")
    git("config", "user.name", "Dev")
    (path / "app.py").write_text("print(1)\n")
    git("add", ".")
    git("commit", "-qm", "first")
    (path / "app.py").write_text("print(2)\n")
    (path / "change-record.yaml").write_text(yaml.safe_dump(PCI_RECORD))
    git("add", ".")
    git("commit", "-qm", "PAY-7 faster quotes")
    return git("rev-parse", "HEAD")


def test_the_github_actions_release_passes_production_compliance(tmp_path: Path) -> None:
    """examples/ci/github-actions.yml's "Create the release" step, for production: with the
    change record committed beside the code, the release it writes is bound to production and
    passes its profiles (sox, pci-dss) with the deploy step's --change-ref and --reason;
    without the record, the step fails at create, naming each missing field."""
    workflow = REPO / "examples" / "ci" / "github-actions.yml"
    checkout = tmp_path / "checkout"
    head = two_commit_repo(checkout)
    (checkout / "finance_trading-1.0.0-py3-none-any.whl").write_bytes(b"wheel")
    expressions = {
        "inputs.environment || 'staging'": "production",
        "vars.ZDP_VERSION_MAJOR || '1'": "9",
        "github.run_number": "100",
        "vars.ZDP_ARTIFACT_KIND || 'image'": "wheel",
        "github.event.before": "0" * 40,
        "github.sha": head,
        "github.actor": "octocat",
    }
    env = {
        **clean_env(),
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ZDP_CONFIG": str(APPS),
        # What "Build the artifact" leaves in $GITHUB_ENV for a wheel.
        "ARTIFACT_ARGS": "--artifact finance_trading-1.0.0-py3-none-any.whl",
    }
    others = {
        "Install zdp": "installed here",
        "Build the artifact": "ARTIFACT_ARGS is given",
        "Sign the release": "not needed to check the evidence",
        "Deploy and wait for the outcome": "no stack here",
    }
    runs = run_job(workflow, "deploy", expressions, checkout, env, others)
    assert [r.name for r in runs] == ["Create the release"]
    assert runs[0].code == 0, runs[0].output
    manifest = read_manifest(checkout / "release.json")
    assert manifest.environments == ["production"]
    assert manifest.change.ticket == "CHG-1234" and manifest.change.author == "octocat"
    # The deploy step gives the request's own evidence: the change ref and the reason.
    steps = yaml.safe_load(workflow.read_text())["jobs"]["deploy"]["steps"]
    deploy = next(s["run"] for s in steps if s.get("name") == "Deploy and wait for the outcome")
    assert '--change-ref "GH-$RUN_ID"' in deploy and "--reason" in deploy
    target = Target("finance-trading", "production", change_ref="GH-4242", reason="Faster quotes")
    checks = accept_release(manifest, target, load_config(APPS))
    assert any(c.name == "compliance" and c.passed for c in checks), checks

    (checkout / "change-record.yaml").unlink()
    (checkout / "release.json").unlink()
    runs = run_job(workflow, "deploy", expressions, checkout, env, others)
    assert runs[0].code == 2, runs[0].output
    assert "for production (sox, pci-dss) it lacks: change description" in runs[0].output
    assert "--backout-procedure" in runs[0].output
    assert not (checkout / "release.json").exists()


def test_the_gitlab_example_gives_the_same_change_record() -> None:
    """gitlab-ci.yml follows the GitHub example's commands (only that one runs here)."""
    spec = yaml.safe_load((REPO / "examples" / "ci" / "gitlab-ci.yml").read_text())
    assert spec["variables"]["CHANGE_RECORD"] == "change-record.yaml"
    body = "\n".join(spec["deploy"]["script"])
    assert 'record=(--change-record "$CHANGE_RECORD")' in body
    assert '"${record[@]}"' in body and '--for-env "$ENVIRONMENT"' in body
    assert "--change-ref" in body and "--reason" in body
