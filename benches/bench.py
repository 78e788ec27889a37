#!/usr/bin/env python3
"""The benchmark driver (see benches/README.md). Started by benches/run.sh once everything is built.

Starts, on loopback: one upstream (an Envoy answering with a direct_response, identical for
every variant), the ClaveUnica emulator, and one Envoy (--concurrency 1) per variant, all with the
same route to the same upstream. Then drives them with wrk in alternation for several rounds and
writes a results table (medians), logins per second, wasm sizes and memory.
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import base64

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SMOKE = "--smoke" in sys.argv
ROUNDS = 1 if SMOKE else int(os.environ.get("BENCH_ROUNDS", "5"))
DURATION = "2s" if SMOKE else os.environ.get("BENCH_DURATION", "10s")
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
LOGINS = 20 if SMOKE else int(os.environ.get("BENCH_LOGINS", "400"))
WORK = os.path.join(TARGET, "bench")
GATE_WASM = os.path.join(TARGET, "wasm32-wasip1/release/claveunica_gate.wasm")
NOOP_WASM = os.path.join(TARGET, "bench-filters/wasm32-wasip1/release/bench_noop_filter.wasm")
FLOOR_WASM = os.path.join(TARGET, "bench-filters/wasm32-wasip1/release/bench_header_floor.wasm")
TOOL = os.path.join(TARGET, "release/gate-bench")
FORGED = ["x-claveunica-run: 11111111-1", "X_CLAVEUNICA_NOMBRES: forged"]
APP_COOKIES = "JSESSIONID=abc123; theme=dark"

procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


WASM_FILTER = """
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: {name}
                failure_policy: FAIL_CLOSED
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {config}
                vm_config:
                  vm_id: {name}
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}"""

JWT_FILTER = """
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                bench:
                  issuer: https://accounts.claveunica.gob.cl/openid
                  audiences: [demo-client]
                  from_cookies: [claveunica_jwt]
                  local_jwks: {{ filename: "{jwks}" }}
                  claim_to_headers:
                  - {{ header_name: x-claveunica-run, claim_name: run }}
              rules:
              - match: {{ prefix: "/" }}
                requires: {{ provider_name: bench }}"""


def bootstrap(listen, admin, filters, upstream, provider=None):
    clusters = [("upstream", upstream)] + ([("claveunica", provider)] if provider else [])
    cluster_yaml = "".join(
        f"""
  - name: {n}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {n}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }}"""
        for n, p in clusters
    )
    return f"""admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: front
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream }}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{cluster_yaml}
"""


UPSTREAM = """admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: upstream
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          route_config:
            virtual_hosts:
            - name: up
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "ok\\n" }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


# The Envoy under test gets CPU 1 to itself; wrk, the upstream and the emulator share CPU 0. So
# the variant's own cost, not how the two cores happened to be shared, sets its req/s.
# BENCH_PIN=0 turns this off.
PIN = os.environ.get("BENCH_PIN", "1") == "1" and (os.cpu_count() or 1) >= 2


def pinned(cmd, under_test):
    return (["taskset", "-c", "1" if under_test else "0"] + cmd) if PIN else cmd


def start_envoy(name, yaml, concurrency=1):
    path = os.path.join(WORK, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(yaml)
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    p = subprocess.Popen(pinned(
        ["envoy", "-c", path, "--concurrency", str(concurrency), "--log-level", "warn", "--disable-hot-restart",
         "--base-id", str(free_port())], name != "upstream"),
        stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    procs.append(p)
    return p


def wait_ready(admin, name, proc):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name}: Envoy exited; see {WORK}/{name}.log")
        try:
            if http(f"http://127.0.0.1:{admin}/ready")[2].strip() == "LIVE":
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{name}: Envoy not ready; see {WORK}/{name}.log")


def wrk(port, headers, duration=DURATION):
    cmd = pinned(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}", "--latency"], False)
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/private"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def lat(pct):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out)
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "requests": requests, "p50": lat(50), "p99": lat(99), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(1) if errors else ""}


def cpu_s(pid):
    """User plus system CPU time the process has used, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    load_before = open("/proc/loadavg").read().split()[:3]
    key = base64.b64encode(os.urandom(32)).decode()
    tool = lambda *a: subprocess.run([TOOL, *a], capture_output=True, text=True, check=True).stdout.strip()
    session_cookie = tool("cookie", key)
    jwt = tool("jwt", WORK)

    up_port, up_admin = free_port(), free_port()
    wait_ready(up_admin, "upstream", start_envoy("upstream", UPSTREAM.format(listen=up_port, admin=up_admin)))

    em_port = free_port()
    variants = {}
    for name in ["none", "noop", "floor", "gate", "gate_assert", "jwt"]:
        variants[name] = (free_port(), free_port())
    gate_port = variants["gate"][0]
    redirect_uri = f"http://127.0.0.1:{gate_port}/claveunica/callback"
    em_log = open(os.path.join(WORK, "emulator.log"), "w")
    em = subprocess.Popen(pinned([os.path.join(TARGET, "release/claveunica-emulator"), "--listen",
                                  f"127.0.0.1:{em_port}", "--redirect-uri", redirect_uri], False),
                          stdout=em_log, stderr=em_log)
    procs.append(em)
    gate_config = json.dumps({
        "issuer": f"http://127.0.0.1:{em_port}/openid", "cluster": "claveunica", "client_id": "demo-client",
        "client_secret": "demo-secret", "redirect_uri": redirect_uri, "session_keys": [key]})
    # The same gate with the signed assertion on (issue 14), signing with the test key: what an
    # identified request costs when it also carries an ES256 JWT, signed once per session.
    with open(os.path.join(ROOT, "src/testdata/assertion_key.pem")) as f:
        assertion_key = f.read()
    assert_config = json.dumps({**json.loads(gate_config), "assertion": {
        "issuer": "https://bench.test/gate", "audience": "bench", "signing_keys": [assertion_key]}})
    filters = {
        "none": "",
        "noop": WASM_FILTER.format(name="noop", config="'{}'", wasm=NOOP_WASM),
        "floor": WASM_FILTER.format(name="floor", config="'{}'", wasm=FLOOR_WASM),
        "gate": WASM_FILTER.format(name="claveunica_gate", config=json.dumps(gate_config), wasm=GATE_WASM),
        "gate_assert": WASM_FILTER.format(name="claveunica_gate", config=json.dumps(assert_config), wasm=GATE_WASM),
        "jwt": JWT_FILTER.format(jwks=os.path.join(WORK, "jwks.json")),
    }
    authed = [f"Cookie: {session_cookie}; {APP_COOKIES}"] + FORGED
    runs = {
        "1 none": ("none", authed, 200),
        "2 noop": ("noop", authed, 200),
        "2b floor": ("floor", authed, 200),
        "3 gate authenticated": ("gate", authed, 200),
        "3b gate authenticated, signed assertion": ("gate_assert", authed, 200),
        "4 gate unauthenticated": ("gate", FORGED, 302),
        "5 jwt_authn": ("jwt", [f"Cookie: claveunica_jwt={jwt}; {APP_COOKIES}"] + FORGED, 200),
    }

    def start_variants():
        envoys = {}
        for name, (port, admin) in variants.items():
            envoys[name] = start_envoy(name, bootstrap(port, admin, filters[name], up_port, em_port))
        for name, (port, admin) in variants.items():
            wait_ready(admin, name, envoys[name])
        # Check each variant answers as it should before timing it. (Whether the gate strips and
        # sets headers cannot be seen through a direct_response upstream; the end-to-end tests
        # cover that.)
        for label, (name, headers, want) in runs.items():
            hdrs = dict(h.split(": ", 1) for h in headers)
            status, _, _ = http(f"http://127.0.0.1:{variants[name][0]}/private", hdrs)
            if status != want:
                sys.exit(f"{label}: answered {status}, expected {want}; see {WORK}/{name}.log")
        return envoys

    def stop(envoys):
        for p in envoys.values():
            p.send_signal(signal.SIGTERM)
            p.wait()

    # Every round starts every Envoy afresh: how one start lays out its memory and compiles its
    # Wasm moves its speed by several per cent, and a fresh start per round turns that from a
    # bias of the whole run into noise the medians absorb.
    results = {label: [] for label in runs}
    for r in range(ROUNDS):
        envoys = start_variants()
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for label in order:
            name, headers, want = runs[label]
            wrk(variants[name][0], headers, "1s")  # warm-up: connections, JIT, the gate's cache
            before = cpu_s(envoys[name].pid)
            res = wrk(variants[name][0], headers)
            # The CPU the Envoy under test spent per request: unlike req/s, it does not depend on
            # how the cores were shared with wrk and the upstream meanwhile.
            res["cpu_us"] = (cpu_s(envoys[name].pid) - before) * 1e6 / max(res["requests"], 1)
            if res["non2xx"] and want == 200:
                sys.exit(f"{label}: {res['non2xx']} answers were not 2xx/3xx")
            results[label].append(res)
            print(f"round {r + 1} {label}: {res['rps']:.0f} req/s p50 {res['p50']:.2f} ms p99 {res['p99']:.2f} ms "
                  f"cpu {res['cpu_us']:.1f} us/req", flush=True)
        stop(envoys)

    envoys = start_variants()
    logins = tool("logins", f"http://127.0.0.1:{gate_port}", str(LOGINS), "4")
    print(logins, flush=True)
    load_after = open("/proc/loadavg").read().split()[:3]
    stop(envoys)

    # Memory: Envoy with the no-op filter and with the gate, 1, 2 and 4 workers, after a warm-up.
    memory = {}
    for name in ["noop", "gate"]:
        for conc in [1, 2, 4]:
            port, admin = free_port(), free_port()
            p = start_envoy(f"mem-{name}-{conc}", bootstrap(port, admin, filters[name], up_port, em_port), conc)
            wait_ready(admin, f"mem-{name}-{conc}", p)
            wrk(port, authed, "1s" if SMOKE else "3s")
            time.sleep(1)
            memory[(name, conc)] = rss_kib(p.pid)
            p.send_signal(signal.SIGTERM)
            p.wait()

    report = {
        "smoke": SMOKE, "pinned": PIN, "rounds": ROUNDS, "duration": DURATION, "connections": CONNECTIONS,
        "load_before": load_before, "load_after": load_after, "results": results, "logins": logins,
        "memory_kib": {f"{n}-{c}": v for (n, c), v in memory.items()},
    }
    with open(os.path.join(WORK, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report["memory_kib"]))
    print(f"report: {WORK}/report.json")


try:
    main()
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
