#!/usr/bin/env bash
# Deploy a signed release of finance-trading and wait for the outcome (the seed interface):
#   scripts/deploy-finance.sh --release release.json [--env production] [--strategy canary|blue-green]
# The signed envelope is read from release.dsse.json beside the manifest; the exit code is
# the outcome (0 promoted, 10 rolled back, 11 rejected, 12 expired, 13 aborted, 14 failed).
exec "$(dirname "$0")/_deploy.sh" finance-trading "$@"
