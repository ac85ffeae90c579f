#!/usr/bin/env bash
# Shared by deploy-finance.sh and deploy-pharma.sh: the seed interface over `zdp deploy`.
#   _deploy.sh APP --release release.json [--env production] [--strategy canary|blue-green] [zdp deploy options]
# Waits for the outcome; the exit code is the deployment's (0 promoted, 10 rolled back, ...).
set -euo pipefail

app="$1"; shift
env="staging"; strategy="canary"; release=""; extra=()
usage() {
  echo "usage: $(basename "$0") --release release.json [--env ENV] [--strategy canary|blue-green]" >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --env) env="${2:?--env needs a value}"; shift 2 ;;
    --strategy) strategy="${2:?--strategy needs a value}"; shift 2 ;;
    --release) release="${2:?--release needs a value}"; shift 2 ;;
    -h|--help) usage ;;
    *) extra+=("$1"); shift ;;
  esac
done
case "$strategy" in canary|blue-green) ;; *) echo "--strategy must be canary or blue-green, not '$strategy'" >&2; exit 2 ;; esac
[[ -n "$release" ]] || usage

root="$(cd "$(dirname "$0")/.." && pwd)"
zdp="$root/.venv/bin/zdp"
[[ -x "$zdp" ]] || zdp=zdp
exec "$zdp" deploy "$app" --env "$env" --strategy "$strategy" --release "$release" --wait "${extra[@]}"
