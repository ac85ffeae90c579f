#!/usr/bin/env bash
# Deploy finance-trading from this checkout and wait for the outcome (the seed interface):
#   scripts/deploy-finance.sh --env production --strategy canary --change-record change.yaml
# Builds the wheel, creates the release with its change record, signs it with your key, runs
# `zdp deploy … --wait`; `--help` lists the options and the commands. The exit code is the
# outcome: 0 promoted, 10 rolled back, 11 rejected, 12 expired, 13 aborted, 14 failed,
# 15 blocked; 1 error, 2 refused before anything started.
APP=finance-trading
# shellcheck source=scripts/_deploy.sh
. "$(dirname "$0")/_deploy.sh"
