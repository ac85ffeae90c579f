#!/usr/bin/env bash
# Deploy a signed release of finance-trading and wait for the outcome.
#   scripts/deploy-finance.sh <release.json>       ENV=production scripts/deploy-finance.sh <release.json>
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

exec "$zdp" deploy finance-trading --env "${ENV:-staging}" --release "$1" --wait
