#!/usr/bin/env bash
# Deploy a signed release of pharma-manufacturing and wait for the outcome.
#   scripts/deploy-pharma.sh <release.json>       ENV=production scripts/deploy-pharma.sh <release.json>
# A thin wrapper over `zdp deploy`: the signed envelope is read from <release>.dsse.json
# beside it, ENV picks the environment (default: staging), and the exit code is the outcome.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $(basename "$0") <release.json>   (ENV=<environment>, default staging)" >&2
  exit 2
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
zdp="$root/.venv/bin/zdp"
[[ -x "$zdp" ]] || zdp=zdp

exec "$zdp" deploy pharma-manufacturing --env "${ENV:-staging}" --release "$1" --wait
