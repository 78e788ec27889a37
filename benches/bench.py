#!/usr/bin/env python3
"""The benchmark driver (see benches/README.md). Started by benches/run.sh once everything is built.

Starts, on loopback: one upstream (an Envoy answering with a direct_response that echoes the
x-claveunica-run and the path it received, identical for every variant), the ClaveUnica emulator,
one Envoy (--concurrency 1) per Envoy variant, all with the same route to the same upstream, and
the two Unit components under `wasmtime serve`. Then drives them with wrk in alternation for
several rounds, checking every answer (benches/check.lua), and writes report.json: req/s and
latency per round, logins per second, Envoy's start time and memory.
"""
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import base64

from ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SMOKE = "--smoke" in sys.argv
ROUNDS = 1 if SMOKE else int(os.environ.get("BENCH_ROUNDS", "5"))
DURATION = "2s" if SMOKE else os.environ.get("BENCH_DURATION", "10s")
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
LOGINS = 20 if SMOKE else int(os.environ.get("BENCH_LOGINS", "400"))
WORK = os.path.join(TARGET, "bench")
GATE_WASM = os.path.join(TARGET, "wasm32-wasip1/release/claveunica_gate.wasm")
# The same module after `wasm-opt -Oz` (scripts/size.sh writes it): not shipped, measured beside
# the shipped one for start and memory, which is where wasm-opt would have to earn its place.
OZ_WASM = os.path.join(TARGET, "wasm32-wasip1/release/claveunica_gate.opt.wasm")
NOOP_WASM = os.path.join(TARGET, "bench-filters/wasm32-wasip1/release/bench_noop_filter.wasm")
FLOOR_WASM = os.path.join(TARGET, "bench-filters/wasm32-wasip1/release/bench_header_floor.wasm")
TOOL = os.path.join(TARGET, "release/gate-bench")
UNIT_WASM = os.path.join(TARGET, "wasm32-wasip2/release/claveunica_gate_unit.wasm")
PASS_WASM = os.path.join(TARGET, "wasm32-wasip2/release/bench_passthrough.wasm")
CHECK_LUA = os.path.join(ROOT, "benches/check.lua")
WASMTIME = os.environ.get("WASMTIME_BIN") or shutil.which("wasmtime") or os.path.expanduser("~/.cargo/bin/wasmtime")
# More distinct sessions than the gate's cache of opened sessions holds (two generations of 256,
# src/gate/known.rs), so nearly every request opens its cookie.
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "1200"))
STARTS = 2 if SMOKE else int(os.environ.get("BENCH_STARTS", "7"))
# The RUN of the session every repeated-cookie request carries (testkit::maria), which the header
# floor also sets, and the one the client forges.
RUN = "44444444-4"
FORGED_RUN = "11111111-1"
FORGED = [f"x-claveunica-run: {FORGED_RUN}", "X_CLAVEUNICA_NOMBRES: forged"]
APP_COOKIES = "JSESSIONID=abc123; theme=dark"

procs = []




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
                  local_jwks: {{ filename: "{jwks}" }}{cache}
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
                # What reached the application, for benches/check.lua to check every answer:
                # the RUN it was given and the path (which names the request's cookie).
                response_headers_to_add:
                - header: {{ key: x-echo-run, value: "%REQ(x-claveunica-run)%" }}
                - header: {{ key: x-echo-path, value: "%REQ(:path)%" }}
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


def spawn(name, cmd, under_test):
    """Starts a server of the benchmark, its stderr in WORK/NAME.log; killed at the end."""
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    p = subprocess.Popen(pinned(cmd, under_test), stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    procs.append(p)
    return p


def start_envoy(name, yaml, concurrency=1):
    path = os.path.join(WORK, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(yaml)
    return spawn(name, ["envoy", "-c", path, "--concurrency", str(concurrency), "--log-level", "warn",
                        "--disable-hot-restart", "--base-id", str(free_port())], name != "upstream")


def wait_for(name, proc, ready, poll=0.1, timeout=120):
    """Polls `ready()` until it holds; stops the run if the process exits or the time is up."""
    deadline = time.perf_counter() + timeout
    while not ready():
        if proc.poll() is not None:
            sys.exit(f"{name}: exited; see {WORK}/{name}.log")
        if time.perf_counter() > deadline:
            sys.exit(f"{name}: not ready after {timeout} s; see {WORK}/{name}.log")
        time.sleep(poll)


def admin_get(admin, path, timeout):
    """Envoy's admin answer to `GET path`, whole, over a bare socket (no client library in the way)."""
    with socket.create_connection(("127.0.0.1", admin), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    return answer


def ready_at(admin):
    """Whether Envoy's /ready says LIVE."""
    try:
        answer = admin_get(admin, "/ready", 1)
    except OSError:
        return False
    # The body is chunked: LIVE is in it, not at its end.
    return answer.startswith(b"HTTP/1.1 200") and b"LIVE" in answer.partition(b"\r\n\r\n")[2]


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_ready(admin, name, proc):
    wait_for(name, proc, lambda: ready_at(admin))


class WrongAnswers(Exception):
    """A variant answered wrongly (or not at all): it fails, however fast it was."""


def run_wrk(cmd):
    """Runs wrk; returns its output and the CPU time it used (user + system), in seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def wrk_plain(port, cookie, duration=DURATION):
    """wrk without check.lua (one fixed request, nothing checked): only to measure what the
    script costs wrk."""
    cmd = pinned(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}", "--latency"], False)
    for h in FORGED + [f"Cookie: {cookie}"]:
        cmd += ["-H", h]
    out, cpu = run_wrk(cmd + [f"http://127.0.0.1:{port}/private"])
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "requests": requests,
            "wrk_cpu_us": cpu * 1e6 / max(requests, 1)}


def wrk(port, spec, duration=DURATION):
    """Drives one variant with wrk and benches/check.lua; `spec` is (list file, status, "run" or
    "status"). Raises WrongAnswers if any answer failed the check, a socket error occurred, or
    the checker did not see every answer wrk counted."""
    listfile, status, mode = spec
    cmd = pinned(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}", "--latency", "-s", CHECK_LUA], False)
    for h in FORGED:
        cmd += ["-H", h]
    cmd += [f"http://127.0.0.1:{port}/private", "--", listfile, str(status), mode]
    out, cpu = run_wrk(cmd)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def lat(pct):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out)
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    checked = re.search(r"checked ok=(\d+) bad_status=(\d+) bad_run=(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    res = {"rps": rps, "requests": requests, "p50": lat(50), "p99": lat(99), "errors": errors.group(1) if errors else "",
           "wrk_cpu_us": cpu * 1e6 / max(requests, 1)}
    if not checked:
        raise WrongAnswers(f"the checker printed no counts:\n{out}")
    ok, bad_status, bad_run = map(int, checked.groups())
    res.update(ok=ok, bad_status=bad_status, bad_run=bad_run)
    if bad_status or bad_run or errors or ok != requests or requests == 0:
        raise WrongAnswers(f"{requests} answers, {ok} right, {bad_status} with a status other than {status}, {bad_run}"
                           f" without the request's RUN, socket errors: {res['errors'] or 'none'}")
    return res


def cpu_s(pid):
    """User plus system CPU time the process has used, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def allocated_kib(admin):
    """What Envoy's allocator (tcmalloc) has handed out and not had back, from the admin's
    /memory: the memory in use, beside VmRSS, which also counts what tcmalloc keeps free."""
    answer = admin_get(admin, "/memory", 5)
    return int(re.search(rb'"allocated":\s*"(\d+)"', answer).group(1)) // 1024


def write_list(name, lines):
    """A request list for benches/check.lua: (RUN expected upstream, Cookie header or "-")."""
    path = os.path.join(WORK, f"{name}.tsv")
    with open(path, "w") as f:
        f.writelines(f"{run}\t{cookie}\n" for run, cookie in lines)
    return path


def start_wasmtime(name, wasm, port, args):
    """A component under `wasmtime serve`, as tests/support/unit.rs runs the gate's, pinned as the
    Envoy under test is (wasmtime serve's threads then share CPU 1 as Envoy's worker does)."""
    return spawn(name, [WASMTIME, "serve", "--addr", f"127.0.0.1:{port}", "-S", "cli", *args, wasm], True)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    # run.sh reads it before it builds: the build's own load is not another job's.
    load_before = os.environ.get("BENCH_LOAD_BEFORE", "").split()[:3] or open("/proc/loadavg").read().split()[:3]
    key = base64.b64encode(os.urandom(32)).decode()
    tool = lambda *a: subprocess.run([TOOL, *a], capture_output=True, text=True, check=True).stdout.strip()
    session_cookie = f"{tool('cookie', key)}; {APP_COOKIES}"
    distinct = [line.split("\t") for line in tool("cookies", key, str(SESSIONS)).splitlines()]
    if len({run for run, _ in distinct}) != SESSIONS:
        sys.exit("gate-bench cookies: not as many distinct RUNs as sessions")
    jwts = {alg: f"claveunica_jwt={tool('jwt', WORK, alg)}; {APP_COOKIES}" for alg in ["rs256", "hs256"]}

    # What each request carries and what must reach the application. Variants that identify must
    # deliver the session's RUN; those that do not (no filter, no-op, pass-through) must deliver
    # what the client sent, the forged one. Either way every variant's answers get the same check.
    lists = {
        "forged": write_list("forged", [(FORGED_RUN, session_cookie)]),
        "session": write_list("session", [(RUN, session_cookie)]),
        "distinct": write_list("distinct", [(run, f"{cookie}; {APP_COOKIES}") for run, cookie in distinct]),
        # The same cookies for the header floor, which sets a fixed RUN whatever the cookie.
        "distinct_floor": write_list("distinct_floor", [(RUN, f"{cookie}; {APP_COOKIES}") for _, cookie in distinct]),
        "none": write_list("none", [("-", "-")]),
        **{alg: write_list(alg, [(RUN, jwts[alg])]) for alg in jwts},
    }

    up_port, up_admin = free_port(), free_port()
    wait_ready(up_admin, "upstream", start_envoy("upstream", UPSTREAM.format(listen=up_port, admin=up_admin)))

    em_port = free_port()
    envoy_names = ["none", "noop", "floor", "gate", "gate_assert", "jwt_rs", "jwt_rs_cache", "jwt_hs", "jwt_hs_cache"]
    variants = {name: (free_port(), free_port()) for name in envoy_names}
    unit_ports = {"unit_pass": free_port(), "unit_gate": free_port()}
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
    # jwt_authn as an operator would configure it: with and without its cache of verified tokens
    # (jwt_cache_config, which helps when the same token comes again), for RS256 (a provider's
    # signature) and HS256 (a shared secret: the cheapest check jwt_authn has).
    cache = "\n                  jwt_cache_config: { jwt_cache_size: 100 }"
    jwks = lambda alg: os.path.join(WORK, f"jwks-{alg}.json")
    filters = {
        "none": "",
        "noop": WASM_FILTER.format(name="noop", config="'{}'", wasm=NOOP_WASM),
        "floor": WASM_FILTER.format(name="floor", config="'{}'", wasm=FLOOR_WASM),
        "gate": WASM_FILTER.format(name="claveunica_gate", config=json.dumps(gate_config), wasm=GATE_WASM),
        "gate_assert": WASM_FILTER.format(name="claveunica_gate", config=json.dumps(assert_config), wasm=GATE_WASM),
        "gate_oz": WASM_FILTER.format(name="claveunica_gate", config=json.dumps(gate_config), wasm=OZ_WASM),
        "jwt_rs": JWT_FILTER.format(jwks=jwks("rs256"), cache=""),
        "jwt_rs_cache": JWT_FILTER.format(jwks=jwks("rs256"), cache=cache),
        "jwt_hs": JWT_FILTER.format(jwks=jwks("hs256"), cache=""),
        "jwt_hs_cache": JWT_FILTER.format(jwks=jwks("hs256"), cache=cache),
    }
    # The Unit component's configuration (as tests/support/unit.rs writes it): the same session
    # key, so the same cookie opens, and the same upstream.
    unit_etc = os.path.join(WORK, "unit-etc")
    os.makedirs(unit_etc)
    unit_base = f"http://127.0.0.1:{unit_ports['unit_gate']}"
    with open(os.path.join(unit_etc, "config.json"), "w") as f:
        json.dump({"issuer": f"http://127.0.0.1:{em_port}/openid", "client_id": "demo-client",
                   "client_secret_env": "CLAVEUNICA_CLIENT_SECRET", "redirect_uri": f"{unit_base}/claveunica/callback",
                   "session_keys": [key], "upstream": f"http://127.0.0.1:{up_port}"}, f)
    unit_args = {
        "unit_pass": (PASS_WASM, ["--env", f"BENCH_UPSTREAM=127.0.0.1:{up_port}"]),
        "unit_gate": (UNIT_WASM, ["--dir", f"{unit_etc}::/etc/claveunica-gate", "--env",
                                  "CLAVEUNICA_GATE_CONFIG=/etc/claveunica-gate/config.json", "--env",
                                  "CLAVEUNICA_CLIENT_SECRET=demo-secret"]),
    }
    # label: (variant, (request list, status, what is checked)); benches/README.md describes them.
    ok_run = lambda name: (lists[name], 200, "run")
    runs = {
        "1 none": ("none", ok_run("forged")),
        "2 noop": ("noop", ok_run("forged")),
        "2b floor": ("floor", ok_run("session")),
        f"2c floor, {SESSIONS:,} distinct sessions": ("floor", ok_run("distinct_floor")),
        "3 gate authenticated": ("gate", ok_run("session")),
        "3b gate authenticated, signed assertion": ("gate_assert", ok_run("session")),
        f"3c gate authenticated, {SESSIONS:,} distinct sessions": ("gate", ok_run("distinct")),
        "4 gate unauthenticated": ("gate", (lists["none"], 302, "status")),
        "5 jwt_authn RS256": ("jwt_rs", ok_run("rs256")),
        "5b jwt_authn RS256, jwt_cache_config": ("jwt_rs_cache", ok_run("rs256")),
        "5c jwt_authn HS256": ("jwt_hs", ok_run("hs256")),
        "5d jwt_authn HS256, jwt_cache_config": ("jwt_hs_cache", ok_run("hs256")),
        "6 Unit pass-through component": ("unit_pass", ok_run("forged")),
        "6b Unit gate component, authenticated": ("unit_gate", ok_run("session")),
    }
    port_of = lambda name: unit_ports[name] if name in unit_ports else variants[name][0]

    def start_variants():
        envoys = {}
        for name, (port, admin) in variants.items():
            envoys[name] = start_envoy(name, bootstrap(port, admin, filters[name], up_port, em_port))
        for name, port in unit_ports.items():
            wasm, args = unit_args[name]
            envoys[name] = start_wasmtime(name, wasm, port, args)
        for name, (port, admin) in variants.items():
            wait_ready(admin, name, envoys[name])
        for name, port in unit_ports.items():
            wait_for(name, envoys[name], lambda: listening(port))
        # One request each before timing, for a clear message if a variant is broken outright.
        for label, (name, (listfile, want, mode)) in runs.items():
            run, cookie = open(listfile).readline().rstrip("\n").split("\t")
            hdrs = dict(h.split(": ", 1) for h in FORGED + ([f"Cookie: {cookie}"] if cookie != "-" else []))
            status, headers, _ = http(f"http://127.0.0.1:{port_of(name)}/private?s=1", hdrs)
            echoed = {k.lower(): v for k, v in headers.items()}.get("x-echo-run")
            if status != want or (mode == "run" and echoed != run):
                sys.exit(f"{label}: answered {status} with RUN {echoed!r} upstream, expected {want} with {run!r};"
                         f" see {WORK}/{name}.log")
        return envoys

    def stop(envoys):
        for p in envoys.values():
            p.send_signal(signal.SIGTERM)
            p.wait()

    def control(envoys):
        """The checker's positive control: real answers that are wrong for what is expected of
        them must fail. If checking were off, or blind to one kind of wrong answer, the whole run
        stops here."""
        wrong = [
            ("the forged RUN reaching the application", "none", ok_run("session")),
            ("another person's RUN (the floor's fixed one for distinct sessions)", "floor", ok_run("distinct")),
            ("a status other than the expected one", "gate", (lists["session"], 302, "status")),
            ("no RUN at all (a 302 that never reached the application)", "gate", (lists["none"], 302, "run")),
        ]
        for what, name, spec in wrong:
            try:
                res = wrk(port_of(name), spec, "1s")
            except WrongAnswers as e:
                print(f"control: {what}: caught ({e})", flush=True)
                continue
            sys.exit(f"control: {what}: the checker let {res['requests']} wrong answers through; it is broken")

    # Every round starts every Envoy afresh: how one start lays out its memory and compiles its
    # Wasm moves its speed by several per cent, and a fresh start per round turns that from a
    # bias of the whole run into noise the medians absorb.
    results = {label: [] for label in runs}
    unchecked = []
    for r in range(ROUNDS):
        envoys = start_variants()
        if r == 0:
            control(envoys)
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for label in order:
            name, spec = runs[label]
            port = port_of(name)
            try:
                wrk(port, spec, "1s")  # warm-up: connections, JIT, the gate's cache
                before = cpu_s(envoys[name].pid)
                res = wrk(port, spec)
            except WrongAnswers as e:
                sys.exit(f"{label}: FAILED: {e}")
            # The CPU the process under test spent per request: unlike req/s, it does not depend
            # on how the cores were shared with wrk and the upstream meanwhile.
            res["cpu_us"] = (cpu_s(envoys[name].pid) - before) * 1e6 / max(res["requests"], 1)
            results[label].append(res)
            if label == "1 none":
                # What check.lua costs wrk: the same variant, the same cookie, no script.
                plain = wrk_plain(port, session_cookie)
                unchecked.append(plain)
                print(f"round {r + 1} {label}, wrk without check.lua: {plain['rps']:.0f} req/s, wrk"
                      f" {plain['wrk_cpu_us']:.2f} us/req (with it: {res['wrk_cpu_us']:.2f})", flush=True)
            print(f"round {r + 1} {label}: {res['rps']:.0f} req/s p50 {res['p50']:.2f} ms p99 {res['p99']:.2f} ms "
                  f"cpu {res['cpu_us']:.1f} us/req, {res['ok']} answers checked", flush=True)
        stop(envoys)

    envoys = start_variants()
    logins = tool("logins", f"http://127.0.0.1:{gate_port}", str(LOGINS), "4")
    print(logins, flush=True)
    stop(envoys)

    # Start: from spawning Envoy to its /ready saying LIVE (the listener is up, the Wasm VMs
    # started), with the no-op filter and with the gate, alternating, several times each.
    start_ms = {"noop": [], "gate": [], "gate_oz": []}
    for _ in range(STARTS):
        for name in start_ms:
            port, admin = free_port(), free_port()
            yaml = bootstrap(port, admin, filters[name], up_port, em_port)
            t0 = time.perf_counter()
            p = start_envoy(f"start-{name}", yaml)
            wait_for(f"start-{name}", p, lambda: ready_at(admin), poll=0.002)
            start_ms[name].append((time.perf_counter() - t0) * 1000)
            p.send_signal(signal.SIGTERM)
            p.wait()
    print(f"start to ready, ms: {json.dumps({n: [round(v) for v in vs] for n, vs in start_ms.items()})}", flush=True)

    # Memory: Envoy with the no-op filter and with the gate, 1, 2 and 4 workers, after a warm-up
    # (the authenticated request, checked like every other).
    memory, allocated = {}, {}
    for name in ["noop", "gate", "gate_oz"]:
        for conc in [1, 2, 4]:
            port, admin = free_port(), free_port()
            p = start_envoy(f"mem-{name}-{conc}", bootstrap(port, admin, filters[name], up_port, em_port), conc)
            wait_ready(admin, f"mem-{name}-{conc}", p)
            try:
                wrk(port, ok_run("session" if name.startswith("gate") else "forged"), "1s" if SMOKE else "3s")
            except WrongAnswers as e:
                sys.exit(f"memory, {name} with {conc} workers: FAILED: {e}")
            time.sleep(1)
            memory[(name, conc)] = rss_kib(p.pid)
            allocated[(name, conc)] = allocated_kib(admin)
            p.send_signal(signal.SIGTERM)
            p.wait()
    load_after = open("/proc/loadavg").read().split()[:3]

    report = {
        "smoke": SMOKE, "pinned": PIN, "rounds": ROUNDS, "duration": DURATION, "connections": CONNECTIONS,
        "sessions": SESSIONS, "load_before": load_before, "load_after": load_after, "results": results,
        "unchecked": unchecked, "logins": logins, "start_ms": start_ms, "memory_kib": {f"{n}-{c}": v for (n, c), v in memory.items()},
        "allocated_kib": {f"{n}-{c}": v for (n, c), v in allocated.items()}, "oz_bytes": os.path.getsize(OZ_WASM),
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
