#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for a while, one after another, from the seed
# corpus in fuzz/corpus/<target>/ (read only; what libFuzzer grows goes to the ignored
# fuzz/corpus-grown/<target>/). Prints each target's final stats line; exits non-zero if any
# target crashed, leaked, timed out or ran out of memory (its input is then in
# fuzz/artifacts/<target>/ and the end of its log is printed).
#
#   bash fuzz/run.sh [seconds_per_target] [target...]     # default: 20 s, every target
#
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked). Full logs go
# to fuzz/logs/ (FUZZ_LOGS=dir to change).
set -uo pipefail
cd "$(dirname "$0")"

secs=${1:-20}
shift $(($# > 0 ? 1 : 0))
case "$secs" in '' | *[!0-9]*) echo "fuzz/run.sh: seconds must be a whole number, not '$secs'" >&2; exit 2 ;; esac
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz/run.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 1; }

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
logs=${FUZZ_LOGS:-logs}
mkdir -p "$logs"

echo "== fuzz: the fixtures are what the targets take them for (cargo test)"
cargo test --quiet || exit 1
echo "== fuzz: the seed corpus is what examples/seeds.rs writes"
cargo run --quiet --example seeds -- --check || exit 1

echo "== fuzz: building the targets (nightly, address sanitizer, debug assertions)"
cargo +nightly fuzz build -a || exit 1

echo "== fuzz: ${secs} s per target"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus-grown/$t" "corpus/$t"
  log="$logs/$t.log"
  start=$(date +%s)
  cargo +nightly fuzz run -a "$t" "corpus-grown/$t" "corpus/$t" -- \
    -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  took=$(($(date +%s) - start))
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    printf '%-15s ok     %4ss %s runs  %s\n' "$t" "$took" "${runs:-?}" "${done_line:-(no DONE line)}"
  else
    printf '%-15s FAILED %4ss (exit %s), log %s\n' "$t" "$took" "$rc" "fuzz/$log"
    tail -n 60 "$log" | sed 's/^/    /'
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz/run.sh: failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "== fuzz: every target ran ${secs} s without a crash"
