#!/usr/bin/env python3
"""Writes benches/RESULTS.md (stdout) from target/bench/report.json and the core timings."""
import gzip
import json
import os
import time
import statistics
import subprocess
import sys

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
med = {label: {k: statistics.median(r.get(k, 0) for r in runs) for k in ("rps", "p50", "p99", "cpu_us")}
       for label, runs in report["results"].items()}


def label(prefix):
    """The variant whose label starts with `prefix` and a space (bench.py names them)."""
    return next(l for l in report["results"] if l.startswith(prefix + " "))


rps = lambda l: med[l]["rps"]
none, noop, floor, floor_d = label("1"), label("2"), label("2b"), label("2c")
gate, asserting, gate_d, unauth = label("3"), label("3b"), label("3c"), label("4")
unit_pass, unit_gate = label("6"), label("6b")
# jwt_authn as an operator would configure it: with its token cache where that helps, so the
# faster of the two configurations of each algorithm.
rs = max([label("5"), label("5b")], key=rps)
hs = max([label("5c"), label("5d")], key=rps)

wasm = os.path.join(TARGET, "wasm32-wasip1/release/claveunica_gate.wasm")
raw = os.path.getsize(wasm)
opt_size = report["oz_bytes"]
# What the image carries over the network: its layer is the module gzipped (scripts/oci_image.py).
gz_size = len(gzip.compress(open(wasm, "rb").read(), 9))
mem = report["memory_kib"]
workers = sorted({int(k.split("-")[1]) for k in mem})
over = {n: (mem[f"gate-{n}"] - mem[f"noop-{n}"]) / 1024 for n in workers}
alloc = report["allocated_kib"]
mb = lambda mib: mib * 1.048576
start = {n: statistics.median(v) for n, v in report["start_ms"].items()}


def verdict(ok):
    return "**met**" if ok else "**not met**"


def ratio(name, a, b, want, at_least=True, key="rps"):
    r = med[a][key] / med[b][key]
    return (name, f"{r:.2f}", f"{'>=' if at_least else '<='} {want}", r >= want if at_least else r <= want)


# Issue 16's table, row by row, then issue 14's row for the signed assertion.
targets = [
    ratio(f"authenticated / header floor, repeated cookie (3 / 2b)", gate, floor, 0.90),
    ratio(f"authenticated / header floor, {report['sessions']:,} distinct sessions (3c / 2c)", gate_d, floor_d, 0.85),
    ratio("authenticated p99 / header floor p99, repeated cookie (3 / 2b)", gate, floor, 1.15, False, "p99"),
    ratio(f"authenticated p99 / header floor p99, {report['sessions']:,} distinct sessions (3c / 2c)", gate_d, floor_d,
          1.15, False, "p99"),
    ratio(f"authenticated / jwt_authn RS256 (3 / {rs.split()[0]})", gate, rs, 1.5),
    ratio(f"authenticated / jwt_authn HS256 (3 / {hs.split()[0]})", gate, hs, 1.1),
    ratio("unauthenticated 302 / no-op filter (4 / 2)", unauth, noop, 1.0),
    ("shipped module (`cargo build --release`, what the image holds)", f"{raw:,} B", "<= 450 KB", raw <= 450_000),
    (f"Envoy memory, gate - no-op filter, 1 worker", f"{mb(over[1]):+.1f} MB", "<= +8 MB", mb(over[1]) <= 8),
    (f"Envoy memory, gate - no-op filter, {workers[-1]} workers", f"{mb(over[workers[-1]]):+.1f} MB", "<= +8 MB",
     mb(over[workers[-1]]) <= 8),
    ("Envoy start to ready, gate - no-op filter (medians)", f"{start['gate'] - start['noop']:+.0f} ms", "<= +100 ms",
     start["gate"] - start["noop"] <= 100),
    ratio("Unit component / pass-through component under wasmtime serve (6b / 6)", unit_gate, unit_pass, 0.85),
    # Issue 14: the assertion is signed once per session, so it should barely move the ratio.
    ratio("authenticated with the signed assertion / without (3b / 3)", asserting, gate, 0.95),
]

print("# Benchmark results\n")
print("Written by `bash benches/run.sh` (see [README.md](README.md) in this directory for what each variant is"
      " and how it is driven). Ratios come from the same interleaved run; absolute numbers are context only.\n")
print("## Machine and versions\n")
# The code measured: the commit, and whether the tree had changes beyond it.
commit = sh('git', 'rev-parse', '--short=12', 'HEAD')
# RESULTS.md itself is being rewritten by this run: it does not count.
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benches/RESULTS.md"],
                       capture_output=True, text=True).stdout
print(f"- code: commit `{commit}`" + (" **with uncommitted changes**" if dirty.strip() else "") +
      f", measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
print(f"- CPU: {model}, `nproc` = {os.cpu_count()}")
print(f"- load average (1, 5, 15 min) before the run (read before its build): {' '.join(report['load_before'])}; after:"
      f" {' '.join(report['load_after'])}" + (" (**busy machine**: other jobs ran meanwhile, so absolute"
                                                " numbers are low and noisy)" if float(report['load_before'][0]) > 1.2 else ""))
print(f"- envoy {sh('envoy', '--version').split('version:')[-1].strip()}")
# wrk prints its version on stderr, with a non-zero exit status.
wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
wrk_version = (wrk_version.stdout + wrk_version.stderr).strip().splitlines()
print(f"- {sh('rustc', '--version')}; {wrk_version[0] if wrk_version else 'wrk'}")
print(f"- wrk `-t1 -c{report['connections']} -d{report['duration']} --latency -s benches/check.lua` after a 1 s"
      " warm-up,"
      f" {report['rounds']} rounds, every Envoy started afresh each round, variants alternating (order reversed"
      " every other round); medians over rounds; every answer checked (status and, where the variant identifies,"
      " the RUN the application received), none failed"
      + ("; the Envoy under test pinned to CPU 1, wrk, the upstream and the emulator to CPU 0" if report.get("pinned")
         else "") + "\n")
print("## Requests per second and latency\n")
print("`CPU µs/req` is the CPU time (user + system) the Envoy under test spent per request: what the variant"
      " costs, whatever else ran on the machine.\n")
print("| variant | req/s (median) | p50 ms | p99 ms | CPU µs/req | req/s per round |")
print("|---|---:|---:|---:|---:|---|")
for l, runs in report["results"].items():
    m = med[l]
    print(f"| {l} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['cpu_us']:.1f} |"
          f" {', '.join('%.0f' % r['rps'] for r in runs)} |")
print("\n## Targets\n")
print("| target | measured | wanted | |")
print("|---|---:|---:|---|")
for name, got, want, ok in targets:
    print(f"| {name} | {got} | {want} | {verdict(ok)} |")
print("\njwt_authn as an operator would configure it: each row uses the faster of its algorithm's two"
      " configurations (with and without `jwt_cache_config`). Every configuration (jwt_authn always gets one"
      " repeated token, so with its cache on it verifies once; the 3c ratios set the gate's distinct sessions"
      " against that):\n")
for l in (label("5"), label("5b"), label("5c"), label("5d")):
    print(f"- 3 / {l}: {rps(gate) / rps(l):.2f}; 3c / {l}: {rps(gate_d) / rps(l):.2f}")
print("\n## Where the time goes\n")
print("CPU the Envoy under test spent per request beyond Envoy with no filter (variant 1), medians:\n")
none_cpu = med[none]["cpu_us"]
for l in report["results"]:
    if l != none and not l.startswith("6"):
        print(f"- {l}: {med[l]['cpu_us'] - none_cpu:+.1f} µs")
print(f"\nUnder `wasmtime serve` (its CPU time per request): pass-through {med[unit_pass]['cpu_us']:.1f} µs, the"
      f" gate's component {med[unit_gate]['cpu_us']:.1f} µs.")
print(f"\nThe gate's authenticated request costs {med[gate]['cpu_us'] - med[floor]['cpu_us']:+.1f} µs of CPU over the"
      " header floor's, which makes 7 of the gate's 10 to 12 host calls (PROFILE.md, section 3) and nothing else. [PROFILE.md](PROFILE.md) breaks"
      " this down step by step (concurrent A/B runs on one CPU), counts the host calls, and says what reaching the"
      " target would take.")
print("\n## Other measurements\n")
print(f"- Complete logins through the emulator (authorize, form post, callback with token exchange, RS256"
      f" verification, userinfo), 4 in parallel: `{report['logins']}`")
print(f"- `claveunica_gate.wasm`: {raw:,} bytes ({raw / 1024:.0f} KiB) after `cargo build --release`, as"
      f" `scripts/release.sh` ships it; {gz_size:,} bytes gzipped, as the image's layer carries it; {opt_size:,}"
      f" bytes ({opt_size / 1024:.0f} KiB) after `wasm-opt -Oz` (`scripts/size.sh`, not shipped: its start and"
      " memory are below)")
plain = report["unchecked"]
print(f"- What checking every answer costs wrk (on CPU 0, not the CPU under test): variant 1 without"
      f" check.lua ran at {statistics.median(p['rps'] for p in plain):.0f} req/s with wrk spending"
      f" {statistics.median(p['wrk_cpu_us'] for p in plain):.2f} µs of CPU per request; with it,"
      f" {rps(none):.0f} req/s and {statistics.median(r['wrk_cpu_us'] for r in report['results'][none]):.2f} µs"
      " (medians). Every variant runs the same script.")
ms = lambda name: ", ".join("%.0f" % v for v in report["start_ms"][name])
print(f"- Envoy start (process spawned) to `/ready` LIVE, {len(report['start_ms']['noop'])} starts each, median:"
      f" no-op filter {start['noop']:.0f} ms, gate {start['gate']:.0f} ms, the gate after `wasm-opt -Oz`"
      f" {start['gate_oz']:.0f} ms (each start, ms: no-op {ms('noop')}; gate {ms('gate')}; after wasm-opt"
      f" {ms('gate_oz')}). Envoy's V8 compiles every function of the module with its optimising compiler"
      " before the listener opens (PROFILE.md, \"Start and memory\").")
print("- Envoy memory after warm-up, by workers (`--concurrency`): VmRSS, and in brackets what Envoy's allocator"
      " has handed out (admin `/memory`, `allocated`), which leaves out what tcmalloc keeps free after V8's"
      " compile:\n")
print("  | workers | no-op filter MiB | gate MiB | gate over no-op MiB | after wasm-opt, over no-op MiB |")
print("  |---:|---:|---:|---:|---:|")
for n in workers:
    d = lambda name, table: (table[f"{name}-{n}"] - table[f"noop-{n}"]) / 1024
    print(f"  | {n} | {mem[f'noop-{n}'] / 1024:.1f} ({alloc[f'noop-{n}'] / 1024:.1f}) | {mem[f'gate-{n}'] / 1024:.1f}"
          f" ({alloc[f'gate-{n}'] / 1024:.1f}) | {over[n]:+.1f} ({d('gate', alloc):+.1f}) |"
          f" {d('gate_oz', mem):+.1f} ({d('gate_oz', alloc):+.1f}) |")
print()
print(f"- The core alone, natively (no proxy, no Wasm; `gate-bench core`): authenticated request"
      f" {int(core['core_authenticated_ns']) / 1000:.1f} µs (a cookie it opened before),"
      f" {int(core['core_distinct_ns']) / 1000:.1f} µs (1,200 sessions in turn: each cookie opened),"
      f" unauthenticated (302 with a new flow cookie)"
      f" {int(core['core_unauthenticated_ns']) / 1000:.1f} µs, identity-header check over 10 headers"
      f" {int(core['core_strip_ns'])} ns; loading the configuration (what a host that makes an instance per"
      f" request, wasmtime serve or Unit, pays before each) {int(core['core_configure_ns']) / 1000:.1f} µs.")
print(f"- The same, compiled to Wasm with the release profile's opt-levels, as the gate ships, and run under"
      f" wasmtime (`wasmtime run gate-bench.wasm core`; Cranelift, not Envoy's V8, and with warm caches):"
      f" authenticated {int(core['wasm_core_authenticated_ns']) / 1000:.1f} µs (a cookie it opened before),"
      f" {int(core['wasm_core_distinct_ns']) / 1000:.1f} µs (1,200 sessions in turn), unauthenticated"
      f" {int(core['wasm_core_unauthenticated_ns']) / 1000:.1f} µs, configuration"
      f" {int(core['wasm_core_configure_ns']) / 1000:.1f} µs.")
