#!/usr/bin/env bash
# Makes the fuzzing record: builds every cargo-fuzz target once, runs each for N seconds, one
# after another under `nice -n 10`, and writes fuzz/RESULTS.md from what the runs printed.
# It measures the commit checked out, so it refuses to start (and to write the record) while
# tracked files under src/ or fuzz/, or the root Cargo.toml/Cargo.lock, have uncommitted changes.
#
#   bash fuzz/record.sh [seconds_per_target]      # default 300 s; the recorded run uses 300
#
# Each target starts from its seed corpus (fuzz/corpus/<target>/, read only) and an empty
# grown corpus in a scratch directory, so a record does not depend on earlier runs. The
# binaries are copied aside once built, so an edit of the tree while the record runs cannot
# rebuild what is measured. Crash inputs land in fuzz/artifacts/<target>/, full logs in
# fuzz/logs/record/. Exits non-zero if any target failed (RESULTS.md is written all the same).
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$(pwd)
root=$(cd .. && pwd)

secs=${1:-300}
case "$secs" in '' | *[!0-9]*) echo "fuzz/record.sh: seconds must be a whole number, not '$secs'" >&2; exit 2 ;; esac
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz/record.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 1; }

# The libFuzzer options of every run (fuzz/run.sh's, with a fixed time) and the sanitizer
# options cargo-fuzz would set.
options=(-max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 -timeout=25 -print_final_stats=1)
export ASAN_OPTIONS=detect_odr_violation=0

# Uncommitted changes to what is measured, as `git status` lines (empty when clean).
dirty() {
  git -C "$root" status --porcelain --untracked-files=no -- src fuzz Cargo.toml Cargo.lock
}
if [ -n "$(dirty)" ]; then
  echo "fuzz/record.sh: uncommitted changes; commit them first, the record names a commit:" >&2
  dirty >&2
  exit 1
fi
commit=$(git -C "$root" rev-parse HEAD)
commit_line=$(git -C "$root" log -1 --format='%h %s' HEAD)
branch=$(git -C "$root" rev-parse --abbrev-ref HEAD)

started=$(date -u '+%Y-%m-%d %H:%M:%S')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
cores=$(nproc)
memory=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
kernel=$(uname -sr)
rustc_version=$(rustc +nightly --version)
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
fuzz_version=$(cargo +nightly fuzz --version)
libfuzzer_version=$(awk '/^name = "libfuzzer-sys"$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)

mapfile -t targets < <(cargo +nightly fuzz list)
logs=logs/record
scratch=$(mktemp -d "${TMPDIR:-/tmp}/claveunica-fuzz-record.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
rm -rf "$logs"
mkdir -p "$logs" "$scratch/bin"

echo "== record: the fixtures are what the targets take them for (cargo test)"
nice -n 10 cargo test --quiet
echo "== record: the seed corpus is what examples/seeds.rs writes"
nice -n 10 cargo run --quiet --example seeds -- --check
echo "== record: building the targets (nightly, address sanitizer, debug assertions)"
nice -n 10 cargo +nightly fuzz build -a
if [ -n "$(dirty)" ] || [ "$(git -C "$root" rev-parse HEAD)" != "$commit" ]; then
  echo "fuzz/record.sh: the tree changed during the build; nothing recorded" >&2
  exit 1
fi
for t in "${targets[@]}"; do
  cp "target/$host/release/$t" "$scratch/bin/$t"
done

# One libFuzzer statistic (`stat::<name>: value`) from a log, or `?`.
stat() {
  local v
  v=$(sed -n "s/^stat::$1: *//p" "$2" | tail -n 1)
  echo "${v:-?}"
}
# One field (`cov:`, `ft:`, `corp:`) of the last `DONE` line, or else of the last stats line.
field() {
  local line
  line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$2" | tail -n 1 || true)
  [ -n "$line" ] || line=$(grep -E '^#[0-9]+[[:space:]]' "$2" | grep -E " $1: " | tail -n 1 || true)
  local v
  v=$(sed -n "s/.* $1: \([^ ]*\).*/\1/p" <<<"$line")
  echo "${v:-?}"
}
# Thousands separators for a whole number.
grouped() {
  case "$1" in
    '' | *[!0-9]*) echo "$1" ;;
    *) rev <<<"$1" | sed 's/[0-9]\{3\}/&,/g; s/,$//' | rev ;;
  esac
}

rows=()
failures=()
failed=()
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t" "$scratch/corpus/$t" "corpus/$t"
  log="$logs/$t.log"
  load=$(cut -d' ' -f1 /proc/loadavg)
  at=$(date -u '+%H:%M:%S')
  start=$(date +%s)
  echo "== record: $t, ${secs} s from $at UTC (load $load)"
  rc=0
  nice -n 10 "$scratch/bin/$t" -artifact_prefix="artifacts/$t/" "$scratch/corpus/$t" "corpus/$t" "${options[@]}" \
    >"$log" 2>&1 || rc=$?
  took=$(($(date +%s) - start))
  runs=$(stat number_of_executed_units "$log")
  speed=$(stat average_exec_per_sec "$log")
  rss=$(stat peak_rss_mb "$log")
  slowest=$(stat slowest_unit_time_sec "$log")
  added=$(stat new_units_added "$log")
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    artifact=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$log" | tail -n 1)
    kind=$(grep -o -m 1 -E 'ERROR: libFuzzer: [a-z-]+( signal)?|ERROR: (Address|Leak)Sanitizer: [a-z-]+' "$log" || echo "exit $rc")
    result="**failed** (${kind#ERROR: }), input \`fuzz/${artifact:-?}\`"
    failures+=("### \`$t\`" "" "${result}; from \`fuzz/$log\`:" "" '```' "$(sed -n '/panicked at\|ERROR: /,$p' "$log" | head -n 40 || true)" '```' "")
    failed+=("$t")
  fi
  echo "   $result: $runs runs, $speed exec/s, cov $(field cov "$log"), ft $(field ft "$log")"
  rows+=("| \`$t\` | $at | $took s | $(grouped "$runs") | $(grouped "$speed") | $(field cov "$log") | $(field ft "$log") | $(field corp "$log") | $(grouped "$added") | $rss MB | $slowest s | $load | $result |")
done
finished=$(date -u '+%Y-%m-%d %H:%M:%S')
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Whether the code (not the prose) in the working tree still is the commit's.
if git -C "$root" diff --quiet "$commit" -- src Cargo.toml Cargo.lock fuzz/src fuzz/fuzz_targets fuzz/examples \
  fuzz/corpus fuzz/Cargo.toml fuzz/Cargo.lock; then
  note="The code was still that commit's when the record ended."
else
  note="The code changed while the record ran; what was measured is the binaries built from that commit before it did."
fi
if [ ${#failed[@]} -eq 0 ]; then
  verdict="**Verdict: every target ran ${secs} s with no crash, panic, timeout, leak or out-of-memory.**"
else
  verdict="**Verdict: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}.**"
fi

# Each target's `//!` comment: what it feeds and what passing means.
about() {
  sed -n 's|^//! \{0,1\}||p' "fuzz_targets/$1.rs" | tr '\n' ' ' | sed 's/ *$//'
}

{
  cat <<EOF
# Fuzzing results

Written by \`bash fuzz/record.sh ${secs}\` (do not edit by hand; run it again). Earlier
hand-written records (November 2026) measured a gate that has since changed and are superseded
by this one.

${verdict}

- **Commit measured**: \`${commit}\` on \`${branch}\` (${commit_line}), no uncommitted change
  to tracked files under \`src/\` or \`fuzz/\`. ${note}
- **When**: ${started} to ${finished} UTC, one target after another, ${secs} s each.
- **Machine**: ${cpu}, ${cores} cores (\`nproc\`), ${memory} memory, ${kernel}; load average
  (1, 5, 15 min) ${load_before} before and ${load_after} after. The machine is shared and
  every run is under \`nice -n 10\`, so exec/s depend on what else ran.
- **Toolchain**: \`${rustc_version}\`, \`${fuzz_version}\`, libFuzzer from \`libfuzzer-sys
  ${libfuzzer_version}\` (\`fuzz/Cargo.lock\`); built by \`cargo +nightly fuzz build -a\` (address
  sanitizer, sanitizer coverage, debug assertions, so overflow checks on).
- **Each run** (the binary copied aside after the build; \`ASAN_OPTIONS=detect_odr_violation=0\`,
  as cargo-fuzz sets it):

  \`\`\`
  nice -n 10 ./<target> -artifact_prefix=artifacts/<target>/ <empty scratch dir> corpus/<target> \\
    ${options[*]}
  \`\`\`

## Per target

| target | started (UTC) | ran | executed units | exec/s | cov | ft | corpus | units added | peak RSS | slowest unit | load at start | result |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
  printf '%s\n' "${rows[@]}"
  cat <<'EOF'

Columns: *executed units* is `stat::number_of_executed_units` and *exec/s*
`stat::average_exec_per_sec`; *cov* (coverage edges), *ft* (features: edges with hit counts,
compared operands) and *corpus* (units/bytes held) are from the final `DONE` line, or the last
stats line of a run that stopped; *units added* is `stat::new_units_added`; *peak RSS*
`stat::peak_rss_mb` (mostly the address sanitizer's shadow memory and quarantine); *slowest
unit* `stat::slowest_unit_time_sec` (whole seconds, so 0 is under one); *load at start* the
1-minute load average as the target started.

EOF
  if [ ${#failures[@]} -gt 0 ]; then
    printf '%s\n' "## Failures" "" "Replay one with \`cargo +nightly fuzz run -a <target> <input>\`." "" "${failures[@]}"
  fi
  cat <<'EOF'
## What each target feeds, and what passing means

Every target: no panic (the address sanitizer and debug assertions make overflows, bad
indexing and memory errors crashes too), no input slower than 25 s, under 2 GB. The rest is
each target's own `//!` comment, copied from `fuzz/fuzz_targets/<target>.rs`:

| target | feeds, and passes when |
|---|---|
EOF
  for t in "${targets[@]}"; do
    echo "| \`$t\` | $(about "$t" | sed 's/|/\\|/g') |"
  done
} >RESULTS.md

echo "== record: wrote fuzz/RESULTS.md"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz/record.sh: failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in fuzz/$logs/)" >&2
  exit 1
fi
