#!/usr/bin/env bash
# The benchmark (benches/README.md): builds the gate (Envoy and Unit), the two floor filters, the
# Unit pass-through component, the emulator and the helper, then runs benches/bench.py, which
# starts every variant on loopback and drives them with wrk in alternation, checking every answer. `--smoke` runs each variant for 2 s once: it checks the harness works, not
# how fast anything is (CI runs it). The full run writes target/bench/report.json and
# benches/RESULTS.md (write_results.py).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# The load before this run's own build and native benchmark, which would otherwise count as
# "other jobs" in RESULTS.md: what it should say is whether anything else was running.
BENCH_LOAD_BEFORE=${BENCH_LOAD_BEFORE:-$(cut -d' ' -f1-3 /proc/loadavg)}
export BENCH_LOAD_BEFORE
target=${CARGO_TARGET_DIR:-$root/target}

export PATH="$PATH:$HOME/.cargo/bin"
for tool in envoy wrk python3 "${WASMTIME_BIN:-wasmtime}"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "benches/run.sh: $tool is missing (see benches/README.md)" >&2; exit 1; }
done

echo "== build"
cargo build --release --target wasm32-wasip1
cargo build --release -p claveunica-emulator -p claveunica-gate-bench
# The helper once more, for wasm32-wasip1: `core` then times the core compiled as the gate ships
# it (the release profile's opt-levels), under wasmtime.
cargo build --release --target wasm32-wasip1 -p claveunica-gate-bench
cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit -p bench-passthrough
CARGO_TARGET_DIR="$target/bench-filters" cargo build --release --target wasm32-wasip1 \
  --manifest-path benches/filters/Cargo.toml
# The module after wasm-opt -Oz, measured beside the shipped one (start and memory).
bash scripts/size.sh --no-build

n=$([[ "${1:-}" == --smoke ]] && echo 2000 || echo 200000)
echo "== core (native, no proxy)"
"$target/release/gate-bench" core "$n" | tee "$target/core.txt"
echo "== core (compiled to Wasm, under wasmtime, no proxy)"
"${WASMTIME_BIN:-wasmtime}" run "$target/wasm32-wasip1/release/gate-bench.wasm" core "$n" | sed 's/^core_/wasm_core_/' \
  | tee -a "$target/core.txt"

echo "== proxy"
python3 benches/bench.py "$@"
if [[ "${1:-}" != --smoke ]]; then
  python3 benches/write_results.py "$target/bench/report.json" "$target/core.txt" > benches/RESULTS.md
  echo "wrote benches/RESULTS.md"
fi
