#!/usr/bin/env python3
"""Writes benches/RESULTS.md (stdout) from target/bench/report.json and the core timings."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
report = json.load(open(sys.argv[1]))
core = dict(line.split() for line in open(sys.argv[2]) if line.strip())


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "n/a"


model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
med = {label: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
       for label, runs in report["results"].items()}
rps = lambda label: med[label]["rps"]
gate, floor, jwt, noop = "3 gate authenticated", "2b floor", "5 jwt_authn", "2 noop"
unauth = "4 gate unauthenticated"

wasm = os.path.join(TARGET, "wasm32-wasip1/release/claveunica_gate.wasm")
raw = os.path.getsize(wasm)
wasm_opt = os.environ.get("WASM_OPT") or shutil.which("wasm-opt")
opt_size = None
if wasm_opt:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "o.wasm")
        if subprocess.run([wasm_opt, "-Oz", "--all-features", wasm, "-o", out], capture_output=True).returncode == 0:
            opt_size = os.path.getsize(out)
mem = report["memory_kib"]
gate_over_noop_mib = (mem["gate-1"] - mem["noop-1"]) / 1024
per_worker_gate = (mem["gate-2"] - mem["gate-1"]) / 1024
per_worker_noop = (mem["noop-2"] - mem["noop-1"]) / 1024
best = min(raw, opt_size or raw)


def verdict(ok):
    return "**met**" if ok else "**not met**"


targets = [
    ("authenticated / header floor (2b)", f"{rps(gate) / rps(floor):.2f}", ">= 0.90", rps(gate) / rps(floor) >= 0.90),
    ("authenticated / jwt_authn (5)", f"{rps(gate) / rps(jwt):.2f}", ">= 1.2", rps(gate) / rps(jwt) >= 1.2),
    ("authenticated p99 / header floor p99", f"{med[gate]['p99'] / med[floor]['p99']:.2f}", "<= 1.25",
     med[gate]["p99"] / med[floor]["p99"] <= 1.25),
    ("unauthenticated / no-op wasm (2)", f"{rps(unauth) / rps(noop):.2f}", ">= 0.75", rps(unauth) / rps(noop) >= 0.75),
    ("wasm size", f"{best / 1024:.0f} KiB", "<= 400 KB", best <= 400_000),
    ("memory, gate over no-op, 1 worker", f"{gate_over_noop_mib:.1f} MiB", "<= 10 MB", gate_over_noop_mib <= 10),
]

print("# Benchmark results\n")
print("Written by `bash benches/run.sh` (see [README.md](README.md) in this directory for what each variant is"
      " and how it is driven). Ratios come from the same interleaved run; absolute numbers are context only.\n")
print("## Machine and versions\n")
print(f"- CPU: {model}, `nproc` = {os.cpu_count()}")
print(f"- load average (1, 5, 15 min) before the run: {' '.join(report['load_before'])}; after:"
      f" {' '.join(report['load_after'])}" + (" (**busy machine**: other jobs ran meanwhile, so absolute"
                                                " numbers are low and noisy)" if float(report['load_before'][0]) > 1.2 else ""))
print(f"- {sh('envoy', '--version').split('version:')[-1].strip()}")
print(f"- {sh('rustc', '--version')}; {sh('wrk', '--version').splitlines()[0] if sh('wrk', '--version') != 'n/a' else 'wrk'}")
print(f"- wrk `-t1 -c{report['connections']} -d{report['duration']} --latency`, {report['rounds']} rounds, variants"
      " alternating (order reversed every other round); medians over rounds\n")
print("## Requests per second and latency\n")
print("| variant | req/s (median) | p50 ms | p99 ms | req/s per round |")
print("|---|---:|---:|---:|---|")
for label, runs in report["results"].items():
    m = med[label]
    print(f"| {label} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {', '.join('%.0f' % r['rps'] for r in runs)} |")
print("\n## Targets\n")
print("| target | measured | wanted | |")
print("|---|---:|---:|---|")
for name, got, want, ok in targets:
    print(f"| {name} | {got} | {want} | {verdict(ok)} |")
print("\n## Other measurements\n")
print(f"- Complete logins through the emulator (authorize, form post, callback with token exchange, RS256"
      f" verification, userinfo), 4 in parallel: `{report['logins']}`")
print(f"- `claveunica_gate.wasm`: {raw} bytes ({raw / 1024:.0f} KiB) after `cargo build --release`"
      + (f"; {opt_size} bytes ({opt_size / 1024:.0f} KiB) after `wasm-opt -Oz` (binaryen), which saves"
         f" {(raw - opt_size) / 1024:.0f} KiB" if opt_size else "; wasm-opt not available"))
print(f"- Envoy VmRSS after warm-up: no-op filter {mem['noop-1'] / 1024:.1f} MiB (1 worker),"
      f" {mem['noop-2'] / 1024:.1f} MiB (2 workers); gate {mem['gate-1'] / 1024:.1f} MiB (1 worker),"
      f" {mem['gate-2'] / 1024:.1f} MiB (2 workers). The gate costs {gate_over_noop_mib:.1f} MiB more than the"
      f" no-op filter with one worker; a second worker adds {per_worker_gate:.1f} MiB with the gate and"
      f" {per_worker_noop:.1f} MiB with the no-op filter.")
print(f"- The core alone, natively (no proxy, no Wasm; `gate-bench core`): authenticated request"
      f" {int(core['core_authenticated_ns']) / 1000:.1f} µs, unauthenticated (302 with a new flow cookie)"
      f" {int(core['core_unauthenticated_ns']) / 1000:.1f} µs, identity-header check over 10 headers"
      f" {int(core['core_strip_ns'])} ns.")
