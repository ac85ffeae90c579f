"""Run a GitHub Actions workflow's shell steps locally, the way a runner would.

Only `run:` steps are executed, in order, with `bash --noprofile --norc -eo pipefail` (the
runner's default shell). `uses:` steps are skipped (checkout is the folder the steps run in;
setup-python is this interpreter). `${{ ... }}` expressions are replaced from a table the test
gives, by exact text: an expression the table does not know fails the run, so the example
cannot drift from what the test covers. `$GITHUB_ENV` works as on a runner.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class StepRun:
    name: str
    code: int
    output: str


def substitute(text: str, expressions: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression not in expressions:
            raise KeyError(f"expression not provided by the test: ${{{{ {expression} }}}}")
        return expressions[expression]

    return _EXPRESSION.sub(one, text)


def _env_block(block: dict[str, Any] | None, expressions: dict[str, str]) -> dict[str, str]:
    return {k: substitute(str(v), expressions) for k, v in (block or {}).items()}


def run_job(
    workflow: Path,
    job: str,
    expressions: dict[str, str],
    workdir: Path,
    base_env: dict[str, str],
    skip: dict[str, str],
    timeout: float = 600,
) -> list[StepRun]:
    """Run the job's `run:` steps; `skip` maps step names to why they are not run here."""
    spec = yaml.safe_load(workflow.read_text())
    env = {**base_env, **_env_block(spec.get("env"), expressions)}
    env.update(_env_block(spec["jobs"][job].get("env"), expressions))
    github_env = workdir / ".github_env"
    runner_temp = workdir / ".runner_temp"
    runner_temp.mkdir(exist_ok=True)
    env.update(GITHUB_ENV=str(github_env), RUNNER_TEMP=str(runner_temp), CI="true")
    runs: list[StepRun] = []
    for step in spec["jobs"][job]["steps"]:
        name = step.get("name") or step.get("uses", "?")
        if "run" not in step or name in skip:
            continue
        github_env.write_text("")
        script = workdir / ".step.sh"
        script.write_text(substitute(step["run"], expressions))
        step_env = {**env, **_env_block(step.get("env"), expressions)}
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workdir,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        runs.append(StepRun(name, done.returncode, done.stdout + done.stderr))
        if done.returncode != 0:
            break
        for line in github_env.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key] = value
    return runs


def clean_env() -> dict[str, str]:
    """This process's environment without Temporal or ZDP settings leaking into the steps."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "ZDP_", "GITHUB_"))
    }
