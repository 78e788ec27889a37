#!/usr/bin/env python3
"""The soak run behind tests/soak/run.sh (see tests/soak/README.md).

Starts the ClaveÚnica emulator, the demo legacy app and Envoy (2 workers) with the gate on
loopback, then: warm-up (logins, requests with repeated cookies, requests rotating through more
distinct sessions than the gate's cache of opened sessions holds), complete logins through the
emulator's form, a long series of authenticated requests with wrk in chunks (each: repeated
cookies, then every session so far in turn; logins alongside; earlier sessions re-checked
after), Envoy's memory after each step, and the Envoy log and stats checked for VM failures.
Writes results.json and RESULTS.md (with the commit measured and whether the tree was clean)
into --out; exits 1 on any failure.

Python 3 standard library only.
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../benches"))
from ports import free_port  # noqa: E402 (after the path it is found on)

RUNS = ["44444444-4", "55555555-5", "88888888-8", "99999999-9"]
PASSWORD = "testing"
CLIENT_ID = "demo-client"
CLIENT_SECRET = "demo-secret"
SESSION_COOKIE = "claveunica_session"
CALLBACK_PATH = "/claveunica/callback"
PROTECTED_PATH = "/soak/cuenta"

MB = 1024 * 1024
# Memory bounds (see README.md "Pass or fail"): growth from the start (after warm-up) to the
# end, and growth over the second half of the chunk series.
BOUNDS = {
    "allocated": {"total": 20 * MB, "second_half": 5 * MB},
    "rss": {"total": 40 * MB, "second_half": 8 * MB},
}

# Lines that mean a VM failed, trapped or panicked (Envoy's log, wasm at info).
CRASH_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in [
        r"panic",
        r"wasm trap",
        r"Function: proxy_on_",
        r"RuntimeError",
        r"\bVM\b.*\bfailed\b",
        r"failed to (start|create|load|initialize).*(vm|wasm)",
        r"unreachable",
        r"\[critical\]",
    ]
]


class Failure(Exception):
    pass


class Stack:
    """Emulator, legacy app and Envoy; stop() kills exactly these three processes."""

    def __init__(self, root, out, workers):
        self.root, self.out, self.workers = root, out, workers
        self.procs = []

    def _spawn_listening(self, name, argv):
        err = open(os.path.join(self.out, f"{name}.stderr"), "w")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
        self.procs.append(p)
        marker = f"{name} listening on "
        deadline = time.time() + 15
        while time.time() < deadline:
            line = p.stdout.readline()
            if not line:
                raise Failure(f"{name} exited before listening; see {err.name}")
            if line.startswith(marker):
                url = line[len(marker):].strip()
                # Keep its stdout drained.
                threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
                return url
        raise Failure(f"{name} printed no listening line")

    def start(self):
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(self.root, "target"))
        wasm = os.path.join(target, "wasm32-wasip1/release/claveunica_gate.wasm")
        self.listen_port, self.admin_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.listen_port}"
        self.redirect_uri = self.base + CALLBACK_PATH
        self.provider = self._spawn_listening(
            "claveunica-emulator",
            [os.path.join(target, "release/claveunica-emulator"), "--listen", "127.0.0.1:0",
             "--redirect-uri", self.redirect_uri],
        )
        self.app = self._spawn_listening(
            "legacy-app", [os.path.join(target, "release/legacy-app"), "--listen", "127.0.0.1:0"]
        )
        key = base64.b64encode(os.urandom(32)).decode()
        gate_config = {
            "issuer": f"{self.provider}/openid",
            "cluster": "claveunica",
            "client_id": CLIENT_ID,
            "client_secret_env": "CLAVEUNICA_CLIENT_SECRET",
            "redirect_uri": self.redirect_uri,
            "session_keys": [key],
        }
        with open(os.path.join(self.root, "envoy/gate.yaml.tmpl")) as f:
            yaml = f.read()
        for name, value in {
            "ADMIN_PORT": self.admin_port,
            "LISTEN_PORT": self.listen_port,
            "APP_PORT": urllib.parse.urlsplit(self.app).port,
            "PROVIDER_PORT": urllib.parse.urlsplit(self.provider).port,
            "WASM_PATH": wasm,
            "GATE_CONFIG": json.dumps(gate_config, separators=(",", ":")),
        }.items():
            yaml = yaml.replace("${%s}" % name, str(value))
        yaml_path = os.path.join(self.out, "envoy.yaml")
        with open(yaml_path, "w") as f:
            f.write(yaml)
        self.log_path = os.path.join(self.out, "envoy.log")
        env = dict(os.environ, CLAVEUNICA_CLIENT_SECRET=CLIENT_SECRET)
        self.envoy = subprocess.Popen(
            [os.environ.get("ENVOY_BIN", "envoy"), "-c", yaml_path, "--concurrency", str(self.workers),
             "--log-level", "warn", "--component-log-level", "wasm:info", "--disable-hot-restart"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), env=env,
        )
        self.procs.append(self.envoy)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.envoy.poll() is not None:
                raise Failure(f"Envoy exited ({self.envoy.returncode}); see {self.log_path}")
            try:
                if self.admin("/ready").strip() == "LIVE":
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise Failure("Envoy was not ready in 30 s")

    def admin(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            c.request("GET", path)
            return c.getresponse().read().decode()
        finally:
            c.close()

    def memory(self):
        m = json.loads(self.admin("/memory"))
        rss = None
        with open(f"/proc/{self.envoy.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        return {"allocated": int(m["allocated"]), "heap_size": int(m["heap_size"]), "rss": rss}

    def stats(self, regex):
        text = self.admin("/stats?filter=" + urllib.parse.quote(regex))
        out = {}
        for line in text.splitlines():
            if ": " in line:
                k, v = line.split(": ", 1)
                out[k] = v.strip()
        return out

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Client:
    """One thread's keep-alive connections, one per origin; follows no redirects."""

    def __init__(self):
        self.conns = {}
        self.reconnects = 0

    def request(self, method, url, headers=None, body=None):
        u = urllib.parse.urlsplit(url)
        origin = (u.hostname, u.port)
        path = u.path + ("?" + u.query if u.query else "")
        for attempt in (0, 1):
            conn = self.conns.get(origin)
            fresh = conn is None
            if fresh:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                self.conns[origin] = conn
            try:
                conn.request(method, path, body=body, headers=headers or {})
                r = conn.getresponse()
                data = r.read()
                if (r.getheader("connection") or "").lower() == "close":
                    conn.close()
                    del self.conns[origin]
                return r.status, r.msg, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server had closed: a browser retries on a new one.
                conn.close()
                del self.conns[origin]
                if fresh or attempt:
                    raise
                self.reconnects += 1
        raise AssertionError("unreachable")


def set_cookies(msg, jar):
    for line in msg.get_all("Set-Cookie") or []:
        nv, *attrs = [p.strip() for p in line.split(";")]
        name, _, value = nv.partition("=")
        deleted = any(a.lower().startswith("max-age=") and a.split("=", 1)[1].strip().lstrip("-").isdigit()
                      and int(a.split("=", 1)[1]) <= 0 for a in attrs)
        if deleted:
            jar.pop(name, None)
        else:
            jar[name] = value


def cookie_header(jar):
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def login(client, stack, run, n):
    """One complete login with a fresh cookie jar; returns the session cookie's value."""
    jar = {}
    path = f"{PROTECTED_PATH}/{n}?format=json"
    status, msg, _ = client.request("GET", stack.base + path)
    if status != 302:
        raise Failure(f"GET {path} without a session: {status}, not 302")
    authorize = msg["Location"]
    if not authorize.startswith(stack.provider + "/openid/authorize/?"):
        raise Failure(f"redirected to {authorize}, not to the emulator's authorize endpoint")
    set_cookies(msg, jar)
    if not any(k.startswith("claveunica_flow_") for k in jar):
        raise Failure("no flow cookie with the redirect to login")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    status, _, _ = client.request("GET", authorize)
    if status != 200:
        raise Failure(f"the emulator's login form: {status}")
    form = {k: query[k] for k in ("client_id", "redirect_uri", "state", "nonce", "scope") if k in query}
    form.update(run=run, password=PASSWORD, login="1")
    status, msg, _ = client.request(
        "POST", stack.provider + "/openid/authorize/", {"Content-Type": "application/x-www-form-urlencoded"},
        urllib.parse.urlencode(form),
    )
    callback = msg["Location"] or ""
    if status != 302 or not callback.startswith(stack.redirect_uri + "?"):
        raise Failure(f"the emulator's form answered {status} to {callback!r}, not 302 to the callback")
    status, msg, body = client.request("GET", callback, {"Cookie": cookie_header(jar)})
    set_cookies(msg, jar)
    if status != 302 or msg["Location"] != path:
        raise Failure(f"callback: {status} to {msg['Location']!r}, not 302 to {path}: {body[:200]!r}")
    session = jar.get(SESSION_COOKIE)
    if not session:
        raise Failure("callback set no session cookie")
    check_session(client, stack, session, run, path)
    return session


def check_session(client, stack, session, run, path=PROTECTED_PATH + "/check?format=json"):
    status, _, body = client.request("GET", stack.base + path, {"Cookie": f"{SESSION_COOKIE}={session}"})
    if status != 200:
        raise Failure(f"GET {path} with a session for {run}: {status}, not 200")
    echo = json.loads(body)
    got = [v for k, v in echo["headers"] if k == "x-claveunica-run"]
    if got != [run]:
        raise Failure(f"the app received x-claveunica-run {got}, not [{run!r}]")


class Logins:
    """Runs `count` logins on `threads` threads; records failures, timings, and sessions."""

    def __init__(self, stack, count, threads, offset=0, keep=0, until=None):
        """At least `count` logins; with `until` (a threading.Event), more until it is set."""
        self.stack, self.count, self.threads, self.offset, self.keep = stack, count, threads, offset, keep
        self.until = until
        self.next = 0
        self.ok = 0
        self.failures = []
        self.sessions = []  # (run, cookie), the first `keep`
        self.reconnects = 0
        self.lock = threading.Lock()

    def _worker(self):
        client = Client()
        while True:
            with self.lock:
                if self.next >= self.count and (self.until is None or self.until.is_set()):
                    break
                n = self.next
                self.next += 1
            run = RUNS[(self.offset + n) % len(RUNS)]
            try:
                session = login(client, self.stack, run, self.offset + n)
                with self.lock:
                    self.ok += 1
                    if len(self.sessions) < self.keep:
                        self.sessions.append((run, session))
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                with self.lock:
                    self.failures.append(f"login {self.offset + n} ({run}): {type(e).__name__}: {e}")
                client = Client()
        with self.lock:
            self.reconnects += client.reconnects

    def run(self):
        started = time.time()
        ts = [threading.Thread(target=self._worker) for _ in range(self.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.seconds = time.time() - started
        return self


def write_sessions(path, sessions):
    """The file soak.lua reads: one `RUN COOKIE` a line."""
    with open(path, "w") as f:
        for run, cookie in sessions:
            f.write(f"{run} {cookie}\n")
    return path


def run_wrk(stack, requests, sessions_file, mode, threads, connections, lua):
    # -d only bounds a stuck run (at 200 requests/s); the script ends each thread after its share.
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(60, requests // 200)}s",
            "--timeout", "10s", "-s", lua, stack.base + PROTECTED_PATH + "?format=json",
            "--", str(requests), str(threads), mode, sessions_file]
    started = time.time()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The script stops each wrk thread after its share of requests and says so on stderr, but
    # wrk's main thread sleeps out -d: once every thread is done, SIGINT ends it and runs done().
    stderr = []
    for line in p.stderr:
        stderr.append(line)
        if sum(1 for l in stderr if l.strip() == "SOAK_THREAD_DONE") == threads:
            p.send_signal(signal.SIGINT)
            break
    stdout, rest = p.communicate()
    stderr = "".join(l for l in stderr if l.strip() != "SOAK_THREAD_DONE") + rest
    seconds = time.time() - started
    line = next((l for l in stdout.splitlines() if l.startswith("SOAK ")), None)
    if p.returncode != 0 or line is None:
        raise Failure(f"wrk failed ({p.returncode}): {stdout}\n{stderr}")
    result = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    result["seconds"] = seconds
    result["socket_errors"] = result["connect"] + result["read"] + result["write"] + result["timeout"]
    return result


def log_problems(log_path):
    bad, errors, notes = [], [], []
    with open(log_path, errors="replace") as f:
        for line in f:
            if any(p.search(line) for p in CRASH_PATTERNS):
                bad.append(line.rstrip())
            elif "][error]" in line or "][warning][wasm]" in line:
                errors.append(line.rstrip())
            elif "][warning]" in line:
                notes.append(line.rstrip())
    return bad, errors, notes


def fmt_mb(n):
    return f"{n / MB:.1f}"


def cache_capacity(root):
    """The gate's cache of opened sessions holds two generations of GENERATION entries per VM;
    read from the source so the soak's sizes follow the code."""
    path = os.path.join(root, "src/gate/known.rs")
    with open(path) as f:
        m = re.search(r"pub const GENERATION: usize = (\d+);", f.read())
    if not m:
        raise SystemExit(f"no `pub const GENERATION: usize = N;` in {path}: the soak must know the cache's size")
    return 2 * int(m.group(1))


def git_state(root):
    """The commit measured and the tracked files that differ from it (RESULTS.md aside)."""
    def git(*argv):
        return subprocess.run(["git", "-C", root, *argv], capture_output=True, text=True, check=True).stdout
    dirty = [l[3:] for l in git("status", "--porcelain", "--untracked-files=no").splitlines()
             if l[3:] != "tests/soak/RESULTS.md"]
    return {"commit": git("rev-parse", "HEAD").strip(), "branch": git("branch", "--show-current").strip(),
            "dirty": dirty}


def wrk_checked(stack, what, requests, sessions_file, mode, args, lua, failures):
    """One wrk run with valid sessions; every answer must be a 200 for the right person."""
    w = run_wrk(stack, requests, sessions_file, mode, args.wrk_threads, args.wrk_connections, lua)
    if w["non200"] or w["wrong"] or w["socket_errors"] or w["requests"] < requests:
        failures.append(f"{what}: {w['requests']} requests of {requests} asked, {w['non200']} not 200 "
                        f"({w['s302']} 302), {w['wrong']} 200s not for the session's RUN, "
                        f"{w['socket_errors']} socket errors")
    return w


def wrk_summary(w):
    return {"requests": w["requests"], "non200": w["non200"], "s302": w["s302"], "s4xx": w["s4xx"],
            "s5xx": w["s5xx"], "wrong": w["wrong"], "socket_errors": w["socket_errors"],
            "sessions": w["sessions"], "wrk_seconds": w["seconds"],
            "rps": w["requests"] / (w["duration_us"] / 1e6), "duration_s": w["duration_us"] / 1e6,
            "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000, "max_ms": w["max_us"] / 1000}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--logins", type=int, required=True)
    ap.add_argument("--requests", type=int, required=True, help="repeated-cookie requests, over all chunks")
    ap.add_argument("--distinct-requests", type=int, required=True,
                    help="requests rotating through every session so far, over all chunks")
    ap.add_argument("--chunks", type=int, required=True)
    ap.add_argument("--interleaved-logins", type=int, required=True, help="logins during each wrk chunk")
    ap.add_argument("--warmup-logins", type=int, required=True,
                    help="their sessions are the warm-up's distinct sessions: more than the cache holds")
    ap.add_argument("--warmup-requests", type=int, required=True)
    ap.add_argument("--warmup-distinct-requests", type=int, required=True)
    ap.add_argument("--login-threads", type=int, default=4)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=16)
    ap.add_argument("--recheck", type=int, default=200, help="earlier sessions re-checked after each chunk")
    ap.add_argument("--label", default="soak")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lua = os.path.join(os.path.dirname(os.path.abspath(__file__)), "soak.lua")
    failures = []
    rec = {"label": args.label, "args": vars(args), "started": datetime.datetime.now().astimezone().isoformat(
        timespec="seconds"), "loadavg_start": os.getloadavg(), "git": git_state(args.root)}
    capacity = cache_capacity(args.root)
    rec["cache_capacity"] = capacity
    # A session comes back to a worker's cache only after the whole rotation; with fewer than
    # twice the capacity, a worker with a small share of the connections would mostly hit.
    if args.warmup_logins <= capacity or args.warmup_logins + args.logins <= 2 * capacity:
        raise SystemExit(f"--warmup-logins must exceed the cache ({capacity} sessions per VM), and with "
                         f"--logins make over {2 * capacity} distinct sessions for the chunks")
    stack = Stack(args.root, args.out, workers=2)
    t0 = time.time()
    try:
        stack.start()
        rec["envoy_pid"] = stack.envoy.pid
        say = lambda *a: print(f"[{time.time() - t0:7.1f}s]", *a, flush=True)  # noqa: E731
        say(f"stack up: gate {stack.base}, emulator {stack.provider}, app {stack.app}, "
            f"admin 127.0.0.1:{stack.admin_port}, logs in {args.out}")
        rec["memory_boot"] = stack.memory()
        worker_cx = rf"^listener\.127\.0\.0\.1_{stack.listen_port}\.worker_\d+\.downstream_cx_total$"

        def connections_per_worker(since):
            """Connections each Envoy worker accepted since `since` (None: since boot)."""
            now = {k.split(".")[-2]: int(v) for k, v in stack.stats(worker_cx).items()}
            return {w: n - (since or {}).get(w, 0) for w, n in sorted(now.items())}

        # 1. Warm-up: logins, requests with repeated cookies, then requests rotating through all
        # the warm-up's sessions, more than the gate's cache holds, so that pools, buffers, the
        # VMs' heaps and each worker's cache of opened sessions are full before "start".
        warm = Logins(stack, args.warmup_logins, args.login_threads, offset=0, keep=args.warmup_logins).run()
        if warm.failures:
            raise Failure("warm-up logins failed: " + "; ".join(warm.failures[:5]))
        say(f"warm-up: {warm.ok} logins in {warm.seconds:.1f}s")
        fixed_file = write_sessions(os.path.join(args.out, "sessions-fixed.txt"), warm.sessions[:4])
        warm_file = write_sessions(os.path.join(args.out, "sessions-warmup.txt"), warm.sessions)
        w = wrk_checked(stack, "warm-up, repeated cookies", args.warmup_requests, fixed_file, "fixed", args, lua,
                        failures)
        rec["warmup_fixed"] = wrk_summary(w)
        cx = connections_per_worker(None)
        w = wrk_checked(stack, "warm-up, distinct sessions", args.warmup_distinct_requests, warm_file, "rotate",
                        args, lua, failures)
        split = connections_per_worker(cx)
        rec["warmup_distinct"] = dict(wrk_summary(w), connections_per_worker=split)
        if failures:
            raise Failure("the warm-up failed")
        # Controls: the wrk script must count a forged session's 302 as not-200, and a 200 for
        # another person than the path names as wrong, or the zeros below would prove nothing.
        forged = "AZB5" + base64.urlsafe_b64encode(os.urandom(150)).decode().rstrip("=")
        ctl = run_wrk(stack, 200, write_sessions(os.path.join(args.out, "sessions-forged.txt"),
                                                 [(RUNS[0], forged)]), "fixed", 1, 4, lua)
        rec["control_forged_cookie"] = {k: ctl[k] for k in ("requests", "non200", "s302")}
        if not (ctl["requests"] >= 200 and ctl["s302"] == ctl["requests"] == ctl["non200"]):
            raise Failure(f"the wrk script did not count a forged session's 302s: {ctl}")
        (run_a, _), (run_b, cookie_b) = next(
            (a, b) for a in warm.sessions for b in warm.sessions if a[0] != b[0])
        ctl = run_wrk(stack, 200, write_sessions(os.path.join(args.out, "sessions-mismatch.txt"),
                                                 [(run_a, cookie_b)]), "fixed", 1, 4, lua)
        rec["control_other_person"] = {k: ctl[k] for k in ("requests", "non200", "wrong")}
        if not (ctl["requests"] >= 200 and ctl["wrong"] == ctl["requests"] and ctl["non200"] == 0):
            raise Failure(f"the wrk script did not count 200s for another RUN as wrong: {ctl}")
        time.sleep(1)
        rec["memory_start"] = stack.memory()
        rec["vms_created_start"] = int(stack.stats("wasm").get("wasm.envoy.wasm.runtime.v8.created", "0") or 0)
        say("warm-up done; memory", rec["memory_start"])

        # 2. Complete logins; their sessions join the distinct-session rotation.
        lg = Logins(stack, args.logins, args.login_threads, offset=args.warmup_logins, keep=args.logins).run()
        rec["logins"] = {"count": args.logins, "ok": lg.ok, "failed": len(lg.failures), "seconds": lg.seconds,
                         "per_s": lg.ok / lg.seconds, "failures": lg.failures[:20], "reconnects": lg.reconnects}
        failures += lg.failures[:20]
        time.sleep(1)
        rec["memory_after_logins"] = stack.memory()
        say(f"logins: {lg.ok}/{args.logins} ok in {lg.seconds:.1f}s ({lg.ok / lg.seconds:.1f}/s); memory",
            rec["memory_after_logins"])
        old_sessions = warm.sessions[:8] + lg.sessions[:args.recheck]
        pool = warm.sessions + lg.sessions
        pool_file = write_sessions(os.path.join(args.out, "sessions-all.txt"), pool)
        rec["distinct_pool"] = len(pool)

        # 3. Chunks: requests with repeated cookies, then requests rotating through every session
        # so far; logins alongside; old sessions re-checked after each.
        per_fixed = -(-args.requests // args.chunks)
        per_distinct = -(-args.distinct_requests // args.chunks)
        chunks = []
        offset = args.warmup_logins + args.logins
        for i in range(args.chunks):
            # Logins run on 2 threads for as long as wrk runs (and at least --interleaved-logins).
            wrk_done = threading.Event()
            side = Logins(stack, args.interleaved_logins, 2, offset=offset, until=wrk_done)
            side_thread = threading.Thread(target=side.run)
            side_thread.start()
            # Rotate which of the warm-up's first four sessions each wrk thread repeats.
            k = i % 4
            write_sessions(fixed_file, warm.sessions[k:4] + warm.sessions[:k])
            try:
                wf = wrk_checked(stack, f"chunk {i + 1}, repeated cookies", per_fixed, fixed_file, "fixed", args,
                                 lua, failures)
                cx = connections_per_worker(None)
                wd = wrk_checked(stack, f"chunk {i + 1}, distinct sessions", per_distinct, pool_file, "rotate",
                                 args, lua, failures)
                split = connections_per_worker(cx)
            finally:
                wrk_done.set()
                side_thread.join()
            offset += side.next
            client = Client()
            recheck_fail = []
            for run, s in old_sessions:
                try:
                    check_session(client, stack, s, run)
                except Exception as e:  # noqa: BLE001 - every failure is recorded
                    recheck_fail.append(f"{run}: {type(e).__name__}: {e}")
            mem = stack.memory()
            c = {"chunk": i + 1, "fixed": wrk_summary(wf), "distinct": dict(wrk_summary(wd), connections_per_worker=split),
                 "side_logins_ok": side.ok, "side_logins_failed": len(side.failures),
                 "rechecked": len(old_sessions), "recheck_failed": len(recheck_fail), "memory": mem}
            chunks.append(c)
            failures += side.failures[:10] + recheck_fail[:10]
            say(f"chunk {i + 1}/{args.chunks}: repeated {wf['requests']} ({c['fixed']['rps']:.0f}/s), "
                f"distinct {wd['requests']} ({c['distinct']['rps']:.0f}/s), not 200 {wf['non200'] + wd['non200']}, "
                f"wrong {wf['wrong'] + wd['wrong']}, socket errors {wf['socket_errors'] + wd['socket_errors']}; "
                f"{side.ok} logins alongside ({len(side.failures)} failed); "
                f"{len(old_sessions) - len(recheck_fail)}/{len(old_sessions)} old sessions ok; "
                f"allocated {fmt_mb(mem['allocated'])} MB, rss {fmt_mb(mem['rss'])} MB")
        rec["chunks"] = chunks
        for kind in ("fixed", "distinct"):
            rec[kind] = {key: sum(c[kind][key] for c in chunks)
                         for key in ("requests", "non200", "wrong", "socket_errors", "duration_s")}
        rec["interleaved_logins_ok"] = sum(c["side_logins_ok"] for c in chunks)
        rec["interleaved_logins_failed"] = sum(c["side_logins_failed"] for c in chunks)

        # 4. End: memory, VM stats, log.
        time.sleep(1)
        rec["memory_end"] = stack.memory()
        wasm_stats = stack.stats("wasm")
        rec["wasm_stats"] = {k: v for k, v in wasm_stats.items() if not k.startswith("wasmcustom.")}
        rec["gate_counters"] = {k: v for k, v in wasm_stats.items() if k.startswith("wasmcustom.")}
        rec["upstream"] = stack.stats(r"^cluster\.(legacy_app|claveunica)\.upstream_rq_(total|2xx|5xx)$")
        rec["envoy_alive"] = stack.envoy.poll() is None
        if not rec["envoy_alive"]:
            failures.append(f"Envoy exited ({stack.envoy.returncode})")
        # A VM that failed and was replaced shows up as more VMs created than the workers +
        # main thread need, or as a reload counter above zero.
        for k, v in rec["wasm_stats"].items():
            if re.search(r"(reload|crash|fail|restart)", k) and v.isdigit() and int(v) > 0:
                failures.append(f"Envoy stat {k} = {v}")
        created = int(wasm_stats.get("wasm.envoy.wasm.runtime.v8.created", "0") or 0)
        active = int(wasm_stats.get("wasm.envoy.wasm.runtime.v8.active", "0") or 0)
        rec["vms_created"], rec["vms_active"] = created, active
        # The gate's own counters, when it defines them, must agree with what the driver saw.
        done_logins = args.warmup_logins + lg.ok + rec["interleaved_logins_ok"]
        completed = wasm_stats.get("wasmcustom.claveunica_gate.logins_completed")
        if completed is not None and int(completed) != done_logins:
            failures.append(f"the gate counted {completed} completed logins, the driver {done_logins}")
        if created != rec.get("vms_created_start", created):
            failures.append(f"VMs created changed: {created}")
    except Failure as e:
        failures.append(str(e))
    finally:
        rec["seconds"] = time.time() - t0
        rec["loadavg_end"] = os.getloadavg()
        stack.stop()
    if os.path.exists(getattr(stack, "log_path", "")):
        bad, warn, notes = log_problems(stack.log_path)
        rec["log_other_warnings"] = notes[:20]
        rec["log_crash_lines"] = bad[:50]
        rec["log_crash_count"] = len(bad)
        rec["log_warn_error_count"] = len(warn)
        rec["log_warn_error_sample"] = warn[:20]
        failures += [f"Envoy log: {l}" for l in bad[:20]]
        failures += [f"Envoy log (error, or the gate's warning): {l}" for l in warn[:20]]
    memory_verdict(rec, failures)
    # The tree measured must still be the one recorded.
    rec["git_end"] = git_state(args.root)
    if rec["git_end"] != rec["git"]:
        failures.append(f"the tree changed during the run: {rec['git']} at the start, {rec['git_end']} at the end")
    rec["failures"] = failures
    rec["verdict"] = "PASS" if not failures else "FAIL"
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(rec, f, indent=2)
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write(markdown(rec))
    print(f"soak {rec['verdict']}: {len(failures)} failure(s); results in {args.out}/RESULTS.md")
    for line in failures[:30]:
        print("  -", line)
    return 0 if not failures else 1


def memory_verdict(rec, failures):
    start, end, chunks = rec.get("memory_start"), rec.get("memory_end"), rec.get("chunks") or []
    if not (start and end and chunks):
        failures.append("the run did not get far enough to judge memory")
        return
    half = chunks[(len(chunks) - 1) // 2]["memory"]  # after the middle chunk
    rec["memory_checks"] = []
    for key, bound in BOUNDS.items():
        total = end[key] - start[key]
        second = chunks[-1]["memory"][key] - half[key]
        ok = total <= bound["total"] and second <= bound["second_half"]
        rec["memory_checks"].append({"metric": key, "growth_total": total, "bound_total": bound["total"],
                                     "growth_second_half": second, "bound_second_half": bound["second_half"],
                                     "ok": ok})
        if not ok:
            failures.append(f"memory {key}: grew {fmt_mb(total)} MB overall (bound {fmt_mb(bound['total'])}), "
                            f"{fmt_mb(second)} MB over the second half (bound {fmt_mb(bound['second_half'])})")


def versions():
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip() or "?"
        except OSError:
            return "?"
    envoy = out([os.environ.get("ENVOY_BIN", "envoy"), "--version"])
    m = re.search(r"version: \S+?/(\d+\.\d+\.\d+)/", envoy)
    return {"envoy": m.group(1) if m else envoy, "rustc": out(["rustc", "--version"]),
            "wrk": out(["sh", "-c", "wrk --version 2>&1 | head -1"]).split(" [")[0],
            "python": platform.python_version(), "kernel": platform.release()}


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    mem = "?"
    with open("/proc/meminfo") as f:
        for l in f:
            if l.startswith("MemTotal:"):
                mem = f"{int(l.split()[1]) / 1024 / 1024:.1f} GiB"
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory": mem}


def tree_line(git):
    commit = f"`{git['commit'][:12]}` (branch `{git['branch'] or '?'}`)"
    if not git["dirty"]:
        return f"{commit}, tree clean (no tracked file differs from the commit)"
    return (f"{commit}, **TREE NOT CLEAN: {len(git['dirty'])} tracked file(s) differ from the commit "
            f"({', '.join(git['dirty'][:10])}); these figures do not describe that commit**")


def split_text(split):
    return " / ".join(str(n) for n in split.values()) or "?"


def kind_line(chunks, kind):
    """One kind of wrk request over all chunks: counts, rate, latency range over the chunks."""
    ws = [c[kind] for c in chunks]
    n = sum(w["requests"] for w in ws)
    secs = sum(w["duration_s"] for w in ws)
    return (f"{n} in {len(ws)} chunks: {sum(w['non200'] for w in ws)} not 200, "
            f"{sum(w['wrong'] for w in ws)} 200s for the wrong person, "
            f"{sum(w['socket_errors'] for w in ws)} socket errors; {secs:.0f} s of wrk, {n / secs:.0f}/s; "
            f"p50 {min(w['p50_ms'] for w in ws):.1f}–{max(w['p50_ms'] for w in ws):.1f} ms, "
            f"p99 {min(w['p99_ms'] for w in ws):.1f}–{max(w['p99_ms'] for w in ws):.1f} ms over the chunks")


def markdown(rec):
    a = rec["args"]
    v, m = versions(), machine()
    lg = rec.get("logins", {})
    chunks = rec.get("chunks", [])
    la0, la1 = rec["loadavg_start"], rec["loadavg_end"]
    cap = rec["cache_capacity"]
    L = []
    L.append(f"# Soak run ({rec['label']}): {rec['verdict']}\n")
    L.append("Written by `bash tests/soak/run.sh` (see `tests/soak/README.md`). "
             "Throughput figures are context only: the machine was shared with other work.\n")
    L.append("| | |\n|---|---|")
    L.append(f"| date | {rec['started']} |")
    L.append(f"| commit measured | {tree_line(rec['git'])} |")
    L.append(f"| machine | {m['cpus']} CPUs ({m['cpu']}), {m['memory']}, Linux {v['kernel']} |")
    L.append(f"| load average (1/5/15 min) | start {la0[0]:.2f} / {la0[1]:.2f} / {la0[2]:.2f}; "
             f"end {la1[0]:.2f} / {la1[1]:.2f} / {la1[2]:.2f} |")
    L.append(f"| versions | Envoy {v['envoy']} (`--concurrency 2`, V8), {v['rustc']}, {v['wrk']}, "
             f"Python {v['python']} |")
    L.append(f"| duration | {rec['seconds'] / 60:.1f} min in all |")
    L.append(f"| the gate's cache of opened sessions | {cap} per VM (two generations of {cap // 2}, "
             f"`src/gate/known.rs`) |")
    if rec.get("warmup_distinct"):
        wf, wd = rec["warmup_fixed"], rec["warmup_distinct"]
        L.append(f"| warm-up | {a['warmup_logins']} logins; {wf['requests']} requests with 4 repeated cookies; "
                 f"{wd['requests']} requests rotating through the {a['warmup_logins']} sessions (connections per "
                 f"worker {split_text(wd['connections_per_worker'])}); not 200, 200s for the wrong person, socket "
                 f"errors: {' / '.join(str(sum(w[k] for w in (wf, wd))) for k in ('non200', 'wrong', 'socket_errors'))} |")
    if lg:
        L.append(f"| complete logins | {lg['ok']} of {lg['count']} ok, {lg['failed']} failed, in {lg['seconds']:.0f} s "
                 f"({lg['per_s']:.1f}/s, {a['login_threads']} threads) |")
    if chunks:
        L.append(f"| requests with repeated cookies (4 sessions, one per wrk thread) | {kind_line(chunks, 'fixed')} |")
        L.append(f"| requests with distinct sessions (each the next of {rec['distinct_pool']}, "
                 f"{rec['distinct_pool'] / cap:.1f}× the cache) | {kind_line(chunks, 'distinct')} |")
        L.append(f"| wrk | {a['wrk_threads']} threads, {a['wrk_connections']} connections |")
        L.append(f"| logins alongside wrk | {rec['interleaved_logins_ok']} ok, {rec['interleaved_logins_failed']} "
                 f"failed (2 threads, for as long as each chunk's wrk ran) |")
        total_logins = a["warmup_logins"] + lg.get("ok", 0) + rec["interleaved_logins_ok"]
        L.append(f"| complete logins in all | {total_logins} (warm-up + logins + alongside wrk) |")
        L.append(f"| earlier sessions re-checked | after each chunk, the same {chunks[0]['rechecked']} sessions "
                 f"(the warm-up's first 8 and the logins' first {a['recheck']}): "
                 f"{sum(c['recheck_failed'] for c in chunks)} failures |")
    if rec.get("control_forged_cookie"):
        ctl = rec["control_forged_cookie"]
        L.append(f"| control: forged cookie | {ctl['requests']} requests, {ctl['s302']} counted as 302 "
                 f"by the wrk script, as they must be |")
    if rec.get("control_other_person"):
        ctl = rec["control_other_person"]
        L.append(f"| control: a valid cookie sent to another RUN's path | {ctl['requests']} requests, "
                 f"{ctl['wrong']} counted as 200s for the wrong person, as they must be |")
    L.append(f"| VMs (v8 created / active at end) | {rec.get('vms_created', '?')} / {rec.get('vms_active', '?')} |")
    L.append(f"| Envoy log | {rec.get('log_crash_count', '?')} crash/trap/panic lines, "
             f"{rec.get('log_warn_error_count', '?')} error lines or gate warnings |")
    for note in rec.get("log_other_warnings", []):
        L.append(f"| Envoy's own warning | {note.split('] ', 2)[-1]} |")
    L.append("")
    if chunks:
        L.append("## Memory\n")
        L.append("Envoy's admin `/memory` (`allocated`, `heap_size`: tcmalloc) and the process's `VmRSS` "
                 "(which also holds the V8 heaps and the wasm linear memories), in MB. \"start\" is after the "
                 "warm-up, when each worker's cache of opened sessions is full.\n")
        L.append("| point | requests so far | logins so far | allocated | heap_size | VmRSS |")
        L.append("|---|---:|---:|---:|---:|---:|")
        warm_req = rec["warmup_fixed"]["requests"] + rec["warmup_distinct"]["requests"]
        rows = [("boot", 0, 0, rec["memory_boot"]),
                ("start (after warm-up)", warm_req, a["warmup_logins"], rec["memory_start"]),
                ("after logins", warm_req, a["warmup_logins"] + lg.get("ok", 0), rec["memory_after_logins"])]
        logins_so_far = a["warmup_logins"] + lg.get("ok", 0)
        reqs = warm_req
        for c in chunks:
            logins_so_far += c["side_logins_ok"]
            reqs += c["fixed"]["requests"] + c["distinct"]["requests"]
            rows.append((f"chunk {c['chunk']}", reqs, logins_so_far, c["memory"]))
        rows.append(("end", reqs, logins_so_far, rec["memory_end"]))
        for name, n, logins, mem in rows:
            L.append(f"| {name} | {n} | {logins} | {fmt_mb(mem['allocated'])} | {fmt_mb(mem['heap_size'])} | "
                     f"{fmt_mb(mem['rss'])} |")
        L.append("")
        for chk in rec.get("memory_checks", []):
            L.append(f"- `{chk['metric']}`: {fmt_mb(chk['growth_total'])} MB from start to end "
                     f"(bound {fmt_mb(chk['bound_total'])}), {fmt_mb(chk['growth_second_half'])} MB over the second "
                     f"half of the chunks (bound {fmt_mb(chk['bound_second_half'])}): "
                     f"{'ok' if chk['ok'] else 'FAIL'}")
        L.append("")
        L.append("## Chunks\n")
        L.append("Each chunk: wrk with repeated cookies, then wrk with distinct sessions; logins alongside both. "
                 "\"bad\" counts answers other than 200, 200s for the wrong person and socket errors. "
                 "\"per worker\" is the connections each Envoy worker accepted during the distinct-session run.\n")
        L.append("| chunk | repeated: requests | bad | req/s | p50 ms | p99 ms | distinct: requests | bad | req/s | "
                 "p50 ms | p99 ms | per worker | logins alongside (failed) | old sessions ok |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in chunks:
            f, d = c["fixed"], c["distinct"]
            row = [str(c["chunk"])]
            for w in (f, d):
                row += [str(w["requests"]), str(w["non200"] + w["wrong"] + w["socket_errors"]), f"{w['rps']:.0f}",
                        f"{w['p50_ms']:.1f}", f"{w['p99_ms']:.1f}"]
            row += [split_text(d["connections_per_worker"]), f"{c['side_logins_ok']} ({c['side_logins_failed']})",
                    f"{c['rechecked'] - c['recheck_failed']}/{c['rechecked']}"]
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    if rec.get("wasm_stats"):
        L.append("## Envoy wasm stats at the end\n")
        L.append("```")
        L += [f"{k}: {v}" for k, v in sorted(rec["wasm_stats"].items())]
        L.append("```\n")
    if rec.get("gate_counters"):
        L.append("Gate counters (`wasmcustom.*`, summed over the workers' VMs):\n")
        L.append("```")
        L += [f"{k}: {v}" for k, v in sorted(rec["gate_counters"].items())]
        L.append("```\n")
    L.append("## Verdict\n")
    if rec["failures"]:
        L.append(f"**FAIL**: {len(rec['failures'])} problem(s):\n")
        L += [f"- {f}" for f in rec["failures"][:40]]
    else:
        L.append("**PASS**: every login completed, every request with a valid session got a 200 that reached the "
                 "app as the session's person, with repeated cookies and with distinct sessions beyond the cache's "
                 "capacity, every earlier session still worked after every chunk, no VM failure or panic in the "
                 "log or the stats, and memory stayed within the bounds.")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
