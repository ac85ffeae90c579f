"""docs/to-production.md, walked as a newcomer walks it: both apps to production from a fresh home.

A checkout of its own (the repository's files linked in, an empty `.zdp/`), a home directory
for the people's keys, the stack on moved ports, and no `ZDP_*` variable but the ports: every
command runs from the checkout as the page shows it, and each is first looked up in the page
(its code blocks, with continuation lines joined), so a step the docs do not show, or show
differently, fails here. What the test adds, each said where it happens:

- passphrases: typed on standard input where the page says `--prompt`; where the page relies
  on a terminal (the scripts, `--as ADMIN`), `--passphrase-env VAR`, which the page gives for
  "elsewhere" (those options are left out when the command is looked up);
- the rehearsal config the page describes: `apps.yaml` with short bakes, a poll of one second
  for batches, and no sample freeze window (a date in it would block this test then);
- pharma's users file, written with the hash the page's command printed;
- values the page writes as placeholders (`<version>`, the ports) filled in.

It ends with both apps promoted in production, approvals proven by the approvers' keys (Part 11
signatures for pharma), and a second pharma deployment that waits while a batch is in
progress, goes on once QA has released it, and is promoted too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ports import free_port, port_base
from zdp.platforms.layout import LOCAL_APPS

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "to-production.md"
FINANCE = "deploy-finance-trading-production"
PHARMA = "deploy-pharma-manufacturing-production"
# Passphrases of the people's keys (each types their own).
PASSPHRASE = {
    "olivia": "olivia-ops-2026",
    "bob": "bob-approves-2026",
    "alice": "alice-approves-2026",
    "qa-lead": "qa-lead-signs-2026",
    "validation-eng": "validation-signs-2026",
}
BATCH_USERS = {"sam": ("Samuel Reyes", "supervisor", "sam-line-2026"),
               "quinn": ("Quinn Adebayo", "qa", "quinn-qa-2026")}  # fmt: skip
# What the page shows as placeholders, for the values this walk produces.
REASON = "QA needs the release time on exported batch records."  # pharma's change record
PLACEHOLDER_OPTIONS = re.compile(r"\s--(?:admin-)?passphrase-env \S+")


def doc_lines() -> str:
    """Every command of the page's code blocks, one per line, continuations joined and
    whitespace collapsed."""
    text = DOC.read_text()
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return "\n".join(" ".join(line.split()) for line in joined.splitlines())


def checkout(tmp: Path) -> Path:
    """A checkout as a newcomer has one: the repository's files, and no `.zdp/` yet.

    Its `.venv` is this checkout's own, linked: the page's `make venv` must find it up to
    date, or it would reinstall the project into it from the temporary checkout (and every
    later `zdp` of this checkout would run code from a folder that is gone)."""
    stale = subprocess.run(["make", "-q", "venv"], cwd=REPO, capture_output=True)
    if stale.returncode != 0:
        pytest.fail(
            f"{REPO / '.venv'} is older than pyproject.toml or the locks: run `make venv` "
            "first (`make test` does); the walk would otherwise reinstall the project into it"
        )
    root = tmp / "checkout"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name in (".zdp", ".zdp-demo", ".pytest_cache"):
            continue
        (root / entry.name).symlink_to(entry)
    return root


def rehearsal_config(path: Path) -> None:
    """apps.yaml as the page's rehearsal: short bakes, batches asked for every second, no
    sample freeze window."""
    config = yaml.safe_load((REPO / "infrastructure/canary-deployments/apps.yaml").read_text())
    for tier in config["policy"]["tiers"]:
        tier["min_bake_seconds"] = 2
    for app in config["apps"].values():
        app["calendar"]["freeze_windows"] = []
    wip = config["apps"]["pharma-manufacturing"]["work_in_progress"]
    wip["poll_seconds"] = 1
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@dataclass
class Newcomer:
    """Runs the page's commands from the checkout, each as the person the page names."""

    root: Path
    env: dict[str, str]
    shown: str
    placeholders: dict[str, str]

    def documented(self, line: str) -> None:
        shown = " ".join(PLACEHOLDER_OPTIONS.sub("", line).split())
        for actual, placeholder in self.placeholders.items():
            shown = shown.replace(actual, placeholder)
        assert shown in self.shown, f"docs/to-production.md does not show: {shown}"

    def as_person(self, user: str) -> dict[str, str]:
        """The environment `user` runs commands in: who they are, and their passphrase."""
        return {**self.env, "ZDP_USER": user, "PASSPHRASE": PASSPHRASE.get(user, "")}

    def run(
        self,
        *lines: str,
        user: str = "olivia",
        typed: str | None = None,
        code: int = 0,
        documented: bool = True,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The lines, in one shell, as `user` (typing `typed`); each as the page shows it."""
        script = "\n".join(lines)
        for line in script.replace("\\\n", " ").splitlines() if documented else ():
            self.documented(line)
        done = subprocess.run(
            ["bash", "-c", f"set -euo pipefail\n{script}"],
            cwd=self.root,
            env={**self.as_person(user), **(env or {})},
            input=typed,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,  # no terminal: --prompt reads standard input
        )
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == code, (
            f"{script}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
        )
        return done

    def start(self, line: str, *, user: str = "olivia") -> subprocess.Popen[str]:
        """A script that waits for its deployment's outcome, in the background."""
        self.documented(line)
        return subprocess.Popen(
            ["bash", "-c", line],
            cwd=self.root,
            env=self.as_person(user),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def zdp_json(self, *args: str) -> Any:
        done = subprocess.run(
            [str(self.root / ".venv/bin/zdp"), *args, "--json"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def status(self, deployment: str) -> dict[str, Any]:
        return dict(self.zdp_json("status", deployment))

    def wait_for(
        self, deployment: str, what: str, ready: Any, script: subprocess.Popen[str]
    ) -> dict[str, Any]:
        """The deployment's status once `ready(status)` holds (bounded: 10 minutes)."""
        deadline = time.monotonic() + 600
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if script.poll() is not None:
                out, err = script.communicate()
                pytest.fail(
                    f"the script ended (exit {script.returncode}) before {what}:\n{out}{err}"
                )
            try:
                last = self.status(deployment)
            except AssertionError:
                last = {}  # not started yet
            if last and ready(last):
                return last
            time.sleep(0.5)
        pytest.fail(f"{deployment}: not {what} within 10 minutes; last status {last}")

    def outcome(self, script: subprocess.Popen[str]) -> tuple[int, str]:
        out, err = script.communicate(timeout=600)
        assert "Traceback" not in err, err
        return script.returncode, out + err


def awaiting_approval(status: dict[str, Any]) -> bool:
    return bool(status["phase"] == "await_approval")


@pytest.fixture
def newcomer(tmp_path: Path) -> Iterator[Newcomer]:
    root = checkout(tmp_path)
    people = tmp_path / "people"  # HOME: ~/.config/zdp/keys holds each person's key
    people.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ZDP_", "TEMPORAL_", "XDG_", "APP_"))
    }
    base = port_base("to-production")
    env.update(
        HOME=str(people),
        PATH=f"{root / '.venv/bin'}:{env['PATH']}",
        ZDP_PORT_BASE=str(base),
        ZDP_TEMPORAL_PORT=str(free_port()),
        COLUMNS="200",
    )
    # The page shows the default port map (ZDP_PORT_BASE 18000); this stack is moved.
    pharma = LOCAL_APPS["pharma-manufacturing"].in_environment("production")
    ports = {str(pharma.listener_port(base)): str(pharma.listener_port(18000))}
    walker = Newcomer(root, env, doc_lines(), ports)
    try:
        yield walker
    finally:
        stopped = subprocess.run(
            [str(root / ".venv/bin/zdp"), "down"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert stopped.returncode == 0, stopped.stderr


def events(walker: Newcomer, deployment: str) -> list[dict[str, Any]]:
    return list(walker.zdp_json("timeline", deployment)["timeline"])


def test_both_apps_reach_production_by_the_docs_alone(newcomer: Newcomer, tmp_path: Path) -> None:
    walk = newcomer
    root = walk.root

    # 2. The stack, with the rehearsal copy of apps.yaml.
    walk.run("cp infrastructure/canary-deployments/apps.yaml my-apps.yaml")
    rehearsal_config(root / "my-apps.yaml")
    setup = walk.run("scripts/setup.sh --config my-apps.yaml", timeout=600)
    assert "Your key is not ready yet" in setup.stdout  # nobody has a key yet

    # 3. Keys and identities: each person makes a key with a passphrase.
    for person in PASSPHRASE:
        phrase = PASSPHRASE[person]
        walk.run(
            '.venv/bin/zdp keys generate "$ZDP_USER" --dir ~/.config/zdp/keys --prompt',
            user=person,
            typed=f"{phrase}\n{phrase}\n",
        )
    keys = Path(walk.env["HOME"]) / ".config/zdp/keys"
    olivia = PASSPHRASE["olivia"]
    walk.run(
        ".venv/bin/zdp keys register olivia --key ~/.config/zdp/keys/olivia.key --prompt "
        '--printed-name "Olivia Novak" --administrator --as olivia',
        typed=f"{olivia}\n" * 3,
    )
    for person, name in (("bob", "Bob Stone"), ("alice", "Alice Reyes")):
        (root / f"{person}.pub").write_bytes((keys / f"{person}.pub").read_bytes())  # sent
        walk.run(
            f".venv/bin/zdp keys register {person} --public-key {person}.pub"
            f' --printed-name "{name}" --as olivia --admin-passphrase-env PASSPHRASE',
            documented=person == "bob",  # the page shows bob; alice is the same command
        )
    for person, name in (("qa-lead", "Quinn Adebayo"), ("validation-eng", "Val Eng")):
        walk.run(
            f".venv/bin/zdp keys register-approver {person} --key ~/.config/zdp/keys/{person}.key"
            f' --prompt --printed-name "{name}" --as olivia --admin-passphrase-env PASSPHRASE',
            typed=f"{PASSPHRASE[person]}\n",
        )
    walk.run("cp ~/.config/zdp/keys/olivia.pub .zdp/trusted-keys/")
    walk.run(".venv/bin/zdp whoami")
    walk.run(".venv/bin/zdp release signing-key --trusted-keys .zdp/trusted-keys --registered")

    # 4. The apps' secrets, as the page makes them; pharma's users file holds the hashes its
    # command prints (a supervisor and QA, who run the line in step 6).
    walk.run(
        "mkdir -p .zdp/secrets/finance-trading/production",
        'key=$(openssl rand -hex 24); echo "give this API key to the desk: $key"',
        "printf '%s: desk-1\\n' \"$(printf %s \"$key\" | sha256sum | cut -d' ' -f1)\" "
        "> .zdp/secrets/finance-trading/production/API_KEYS_FILE",
        "mkdir -p .zdp/secrets/pharma-manufacturing/production",
        "openssl rand -hex 32 > .zdp/secrets/pharma-manufacturing/production/SIGNING_KEY_FILE",
    )
    users = []
    for user, (printed, role, password) in BATCH_USERS.items():
        hashed = walk.run(
            "PYTHONPATH=apps/pharma-manufacturing/src .venv/bin/python "
            "-m pharma_manufacturing.services.credentials",
            typed=f"{password}\n{password}\n",
        ).stdout.strip()
        assert hashed.startswith("scrypt$"), hashed
        users.append({"user_id": user, "printed_name": printed, "roles": [role],
                      "password_hash": hashed})  # fmt: skip
    secrets = root / ".zdp/secrets/pharma-manufacturing/production"
    (secrets / "USERS_FILE").write_text(yaml.safe_dump({"users": users}))
    walk.run("chmod -R go-rwx .zdp/secrets")

    # 5. finance-trading to production: the operator's script, another person's approval.
    walk.run("cp examples/ci/change-record.yaml change.yaml")
    finance = walk.start(
        "scripts/deploy-finance.sh --env production --strategy canary --change-record change.yaml"
        " --passphrase-env PASSPHRASE"
    )
    status = walk.wait_for(FINANCE, "awaiting approval", awaiting_approval, finance)
    assert status["initiator"]["user"] == "olivia" and status["initiator"]["proven"]
    needed = status["approvals_required"]
    approvers = ["bob", "alice"][:needed]
    assert len(approvers) == needed, f"the risk asks for {needed} approvals: {status['risk']}"
    for person in approvers:
        walk.run(
            f'ZDP_USER={person} .venv/bin/zdp approve {FINANCE} --reason "reviewed CHG-1234"'
            " --passphrase-env PASSPHRASE",
            user=person,
            documented=person == "bob",
        )
    code, output = walk.outcome(finance)
    assert code == 0, output
    assert "promoted" in output
    status = walk.status(FINANCE)
    assert status["outcome"] == "promoted"
    approved = {a["approver"]: a["proof"]["proven"] for a in status["approvals"]}
    assert approved == dict.fromkeys(approvers, True), status["approvals"]

    port = (
        LOCAL_APPS["pharma-manufacturing"]
        .in_environment("production")
        .listener_port(int(walk.env["ZDP_PORT_BASE"]))
    )
    line_passwords = {
        "SUPERVISOR_PASSWORD": BATCH_USERS["sam"][2],
        "QA_PASSWORD": BATCH_USERS["quinn"][2],
    }
    # 6. pharma-manufacturing to production, twice: the first has no running version to ask
    # about batches; the second waits while a batch is in progress.
    for round, batch in ((1, None), (2, "B-2001")):
        walk.run(
            "cat > change.yaml <<'EOF'",
            "ticket: CHG-2001",
            "author: dev@example.com",
            "description: Batch record export adds the QA release timestamp.",
            "validation_doc: VAL-2026-0142",
            f"reason: {REASON}",
            "EOF",
        )
        created = walk.run(
            "scripts/deploy-pharma.sh --env production --strategy canary"
            " --change-record change.yaml",
            code=2,
        )
        match = re.search(r"wrote (\S+/release\.json): pharma-manufacturing (\S+)", created.stdout)
        assert match, created.stdout
        version = match.group(2)
        assert (
            Path(match.group(1))
            == root / f".zdp/releases/pharma-manufacturing-{version}/release.json"
        )
        assert "nothing deployed yet" in created.stderr
        # The command it says to run next is the page's, with this release.
        resume = f"scripts/deploy-pharma.sh --env production --strategy canary --release {root}"
        assert (
            f"{resume}/.zdp/releases/pharma-manufacturing-{version}/release.json" in created.stderr
        )
        walk.placeholders[version] = "<version>"
        walk.placeholders[f'--reason "{REASON}"'] = '--reason "QA needs …"'
        release = f".zdp/releases/pharma-manufacturing-{version}/release.json"
        walk.run(
            f"ZDP_USER=validation-eng .venv/bin/zdp release approve-validation {release}"
            ' --meaning "IQ/OQ/PQ executed and approved" --prompt',
            user="validation-eng",
            typed=f"{PASSPHRASE['validation-eng']}\n",
        )
        if batch is not None:
            started = walk.run(
                f"curl -s -X POST localhost:{port}/api/batches"
                " -H 'Content-Type: application/json' \\",
                '    -H "X-User: sam" -H "X-Password: $SUPERVISOR_PASSWORD" \\',
                f"""    -d '{{"batch_id": "{batch}", "product": "Amoxicillin 500 mg capsules"}}'""",
                env=line_passwords,
            )
            assert json.loads(started.stdout)["batch_id"] == batch, started.stdout
        pharma = walk.start(
            "scripts/deploy-pharma.sh --env production --strategy canary"
            f' --release {release} --reason "{REASON}"'
            " --passphrase-env PASSPHRASE"
        )
        if batch is not None:
            waiting = walk.wait_for(
                PHARMA,
                "waiting for the batch",
                lambda s: any(e["kind"] == "waiting" for e in events(walk, PHARMA)),
                pharma,
            )
            assert waiting["phase"] != "await_approval"
            wait = next(e for e in events(walk, PHARMA) if e["kind"] == "waiting")
            assert batch in json.dumps(wait["data"]), wait
            line = walk.run(f"curl -s localhost:{port}/api/line/status")
            in_progress = json.loads(line.stdout)["batches_in_progress"]
            assert [b["batch_id"] for b in in_progress] == [batch], line.stdout
            released = walk.run(
                f"curl -s -X POST localhost:{port}/api/batches/{batch}/release"
                " -H 'Content-Type: application/json' \\",
                '    -H "X-User: quinn" -H "X-Password: $QA_PASSWORD" \\',
                """    -d '{"signature": {"user_id": "quinn", "password": "'"$QA_PASSWORD"'","""
                """ "meaning": "approved"}}'""",
                env=line_passwords,
            )
            assert json.loads(released.stdout)["status"] == "released", released.stdout
        walk.wait_for(PHARMA, "awaiting approval", awaiting_approval, pharma)
        walk.run(
            f"ZDP_USER=qa-lead .venv/bin/zdp approve {PHARMA}"
            ' --meaning "approve release to production" --prompt',
            user="qa-lead",
            typed=f"{PASSPHRASE['qa-lead']}\n",
        )
        code, output = walk.outcome(pharma)
        assert code == 0, f"round {round}: {output}"
        timeline = events(walk, PHARMA)
        kinds = [e["kind"] for e in timeline]
        if batch is not None:
            assert kinds.index("waiting") < kinds.index("wait_over") < kinds.index("approved")
        approval = next(e for e in timeline if e["kind"] == "approved")
        assert "qa-lead" in json.dumps(approval)

    # 7. Afterwards: the report and the audit log.
    walk.run(f".venv/bin/zdp timeline {FINANCE} --format md -o finance-production.md")
    report = (root / "finance-production.md").read_text()
    assert "promoted" in report and "bob" in report
    walk.run(".venv/bin/zdp audit verify")
