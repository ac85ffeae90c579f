# Sourced by deploy-finance.sh and deploy-pharma.sh (with APP set): the seed interface over the
# zdp CLI. From a checkout it builds the app's wheel, creates the release for the environment
# with its change record, signs it with the operator's key, deploys it and waits; the exit code
# is the outcome. `deploy-finance.sh --help` shows the options and the exact commands it runs.
set -euo pipefail
: "${APP:?_deploy.sh is sourced by deploy-finance.sh and deploy-pharma.sh, which set APP}"

me="$(basename "$0")"
root="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
  cat <<USAGE
usage: $me [--env ENV] [--strategy canary|blue-green] [--version V] [change record]
       ${me//?/ } [--key FILE] [--passphrase-env VAR | --passphrase-file FILE] [zdp deploy options]
       $me --release release.json [--env ENV] [--strategy …] [zdp deploy options]

Deploy $APP from this checkout and wait for the outcome. It runs, in order:
  zdp release signing-key [--key FILE] [--trusted-keys \$ZDP_HOME/trusted-keys] [--registered]
      (your key is there and trusted; for production, registered too)
  zdp build $APP
  zdp release create $APP --version V --artifact WHEEL --for-env ENV [change record] -o DIR/release.json
  zdp release sign DIR/release.json [--key FILE]
  zdp deploy $APP --env ENV --strategy S --release DIR/release.json --wait [--reason R] [options]
With --release FILE it deploys that release instead (a manifest without its signature beside it
is signed with your key first).

Options:
  --env ENV             staging (default) or production
  --strategy S          canary (default) or blue-green
  --version V           the release version [default: the wheel's, plus .postYYYYMMDDHHMMSS (UTC),
                        so each run is above the last; a version below the running one is refused]
  --out DIR             where the release is written [default: \$ZDP_HOME/releases/$APP-V]
  --key FILE            your private key: signs the release and the start [default:
                        \$ZDP_KEY_DIR/USER.key, else ~/.config/zdp/keys/USER.key, USER = \$ZDP_USER
                        or your login; see \`zdp whoami\`]
  --passphrase-env VAR, --passphrase-file FILE
                        the key's passphrase (an encrypted key is asked for it on a terminal)
Change record (given to zdp release create; production needs it: docs/to-production.md):
  --change-record FILE  YAML or JSON with the fields below by name (security_impact, …); flags win
  --ticket T            change ticket (sox)
  --description TEXT, --security-impact TEXT, --test-evidence TEXT, --backout-procedure TEXT
                        the PCI DSS 6.5.1 change record (finance production)
  --reason TEXT         why: given to zdp deploy --reason (pci-dss; also read from the file)
  --author WHO          who wrote the change [default: the file's, else the checkout's last commit
                        author]; a validation approver must be someone else
  --validation-doc ID   the IQ/OQ/PQ document (pharma production); it is approved by a validation
                        approver before the release is signed, so the script stops there once
  --dpia-ref REF, --personal-data-change   gdpr
  --from-git RANGE      change size, ticket and author from git (e.g. v1.0.0..HEAD)
Anything else goes to zdp deploy (--steps, --bake, --change-ref, --initiator, --emergency-override…).

Exit codes: 0 promoted, 10 rolled back, 11 rejected, 12 expired, 13 aborted, 14 failed,
15 blocked (a domain check before anything changed: freeze window, batch in progress);
1 error; 2 refused before anything started (a bad option, a missing key or change record, a
release that does not verify, or a release that waits for its validation approval);
130 interrupted.
USAGE
}

bad_usage() {
  echo "$me: $1 (see $me --help)" >&2
  exit 2
}

env="staging"; strategy="canary"; release=""; version=""; out=""; key=""; author=""
reason=""; record=""; from_git=""; create=(); secret=(); extra=()
need() { [[ $# -ge 2 && -n "$2" ]] || bad_usage "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --env) need "$@"; env="$2"; shift 2 ;;
    --strategy) need "$@"; strategy="$2"; shift 2 ;;
    --release) need "$@"; release="$2"; shift 2 ;;
    --version) need "$@"; version="$2"; shift 2 ;;
    --out) need "$@"; out="$2"; shift 2 ;;
    --key) need "$@"; key="$2"; shift 2 ;;
    --passphrase-env|--passphrase-file) need "$@"; secret+=("$1" "$2"); shift 2 ;;
    --prompt) secret+=("$1"); shift ;;
    --change-record) need "$@"; record="$2"; create+=("$1" "$2"); shift 2 ;;
    --reason) need "$@"; reason="$2"; shift 2 ;;
    --author) need "$@"; author="$2"; shift 2 ;;
    --from-git) need "$@"; from_git="$2"; create+=("$1" "$2"); shift 2 ;;
    --ticket|--description|--security-impact|--test-evidence|--backout-procedure|\
    --validation-doc|--dpia-ref)
      need "$@"; create+=("$1" "$2"); shift 2 ;;
    --personal-data-change|--no-personal-data-change) create+=("$1"); shift ;;
    *) extra+=("$1"); shift ;;
  esac
done
case "$strategy" in canary|blue-green) ;; *) bad_usage "--strategy must be canary or blue-green, not '$strategy'" ;; esac

zdp="$root/.venv/bin/zdp"
[[ -x "$zdp" ]] || zdp="$(command -v zdp || true)"
[[ -n "$zdp" ]] || { echo "$me: zdp is not installed: run scripts/setup.sh (or make venv)" >&2; exit 1; }
export ZDP_HOME="${ZDP_HOME:-$root/.zdp}"  # the home scripts/setup.sh's `zdp up` runs in
trusted="${ZDP_TRUSTED_KEYS:-$ZDP_HOME/trusted-keys}"

# A field of the change record file (the file is checked by zdp release create).
record_field() {
  local py="$root/.venv/bin/python"
  [[ -x "$py" ]] || py="$(sed -n '1s/^#! *//p' "$zdp")"
  "$py" -c 'import sys, pathlib
from zdp.release import load_change_record
try:
    value = getattr(load_change_record(pathlib.Path(sys.argv[1])), sys.argv[2])
except Exception:
    value = None
print(value or "")' "$1" "$2"
}

# 1. The operator's key: there, trusted by the worker, and registered where it must be.
check=(release signing-key)
[[ -n "$key" ]] && check+=(--key "$key")
[[ -d "$trusted" ]] && check+=(--trusted-keys "$trusted")
[[ "$env" == production ]] && check+=(--registered)
"$zdp" "${check[@]}" >/dev/null || exit 2
signing=(); [[ -n "$key" ]] && signing=(--key "$key")

if [[ -z "$release" ]]; then
  # 2. Build the wheel from this checkout.
  built="$(ZDP_APPS_DIR="${ZDP_APPS_DIR:-$root/apps}" "$zdp" build "$APP")" || exit 1  # from this checkout
  wheel="$(sed -n 's/^wheel: //p' <<<"$built")"
  [[ -f "$wheel" ]] || { echo "$me: zdp build printed no wheel path: $built" >&2; exit 1; }
  if [[ -z "$version" ]]; then
    base="$(basename "$wheel" | cut -d- -f2)"
    version="$base.post$(date -u +%Y%m%d%H%M%S)"
  fi
  # 3. The release, bound to the environment: create refuses (exit 2) what it would lack there.
  if [[ -n "$record" && -z "$reason" ]]; then reason="$(record_field "$record" reason)"; fi
  if [[ -z "$author" && -n "$record" ]]; then author="$(record_field "$record" author)"; fi
  if [[ -z "$author" && -z "$from_git" ]]; then
    author="$(git -C "$root" log -1 --format=%ae 2>/dev/null || true)"
  fi
  [[ -n "$author" ]] && create+=(--author "$author")
  out="${out:-$ZDP_HOME/releases/$APP-$version}"
  release="$out/release.json"
  created="$("$zdp" release create "$APP" --version "$version" --artifact "$wheel" \
    --for-env "$env" "${create[@]}" -o "$release")" || exit $?
  printf '%s\n' "$created"
  if grep -q '^pending: ' <<<"$created"; then
    printf -v resume '%q ' "$0" --env "$env" --strategy "$strategy" --release "$release"
    [[ -n "$reason" ]] && printf -v resume '%s--reason %q' "$resume" "$reason"
    cat >&2 <<STOP
$me: nothing deployed yet: $env needs the validation document approved first (above), by a
validation approver who is not the author; then deploy this release (it is signed with your key
first):
  $resume
STOP
    exit 2
  fi
fi

# 4. Sign it (a manifest without its envelope beside it), then deploy and wait.
envelope="$(dirname "$release")/$(basename "$release" .json).dsse.json"
if [[ -f "$release" ]] && ! grep -q '"payloadType"' "$release" && [[ ! -f "$envelope" ]]; then
  "$zdp" release sign "$release" "${signing[@]}" "${secret[@]}" || exit $?
fi
deploy=(deploy "$APP" --env "$env" --strategy "$strategy" --release "$release" --wait)
[[ -n "$reason" ]] && deploy+=(--reason "$reason")
exec "$zdp" "${deploy[@]}" "${signing[@]}" "${secret[@]}" "${extra[@]}"
