//! The end-to-end harness: the built gate (`.wasm`) inside a real Envoy, in front of the
//! legacy echo app, with the ClaveÚnica emulator as the provider, all on loopback.
//!
//! [`Stack::start`] brings the three processes up on fresh ports and tears them down on drop;
//! [`Browser`] is a cookie-keeping HTTP client that follows no redirects, so each step of a
//! login can be looked at (and tampered with) on its own.
//!
//! The binaries are not built here: the test command builds them first (see [`BUILD_HINT`]).
#![cfg(not(target_arch = "wasm32"))]
// Each test file uses its own part of the harness.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// The NGINX Unit component under `wasmtime serve`.
pub mod unit;

/// How to build what the harness runs.
pub const BUILD_HINT: &str = "cargo build --release --target wasm32-wasip1 && \
cargo build --release -p claveunica-emulator -p legacy-app";
/// The session cookie's name (plain http, so no `__Host-` prefix).
pub const SESSION_COOKIE: &str = "claveunica_session";
/// The prefix of the per-login flow cookies.
pub const FLOW_PREFIX: &str = "claveunica_flow_";
/// Where the provider sends the browser back.
pub const CALLBACK_PATH: &str = "/claveunica/callback";
/// The gate's logout path.
pub const LOGOUT_PATH: &str = "/claveunica/logout";
/// The gate's login path (default).
pub const LOGIN_PATH: &str = "/claveunica/login";
/// The client registered with the emulator.
pub const CLIENT_ID: &str = "demo-client";
/// Its secret, as the emulator expects it by default.
pub const CLIENT_SECRET: &str = "demo-secret";
/// A sandbox user: María Carmen De los Ríos Núñez.
pub const RUN: &str = "44444444-4";
/// The sandbox password.
pub const PASSWORD: &str = "testing";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const LISTENING_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
const START_ATTEMPTS: u32 = 3;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn built(relative: &str) -> PathBuf {
    let path = target_dir().join(relative);
    assert!(path.is_file(), "{} is missing; build it first:\n    {BUILD_HINT}", path.display());
    path
}

fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN").map_or_else(|| PathBuf::from("envoy"), PathBuf::from)
}

/// A loopback port nobody listens on right now (it may be taken again before it is used;
/// [`StackBuilder::start`] retries when Envoy cannot bind).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("address of an ephemeral port").port()
}

/// 32 random bytes, base64: a session key.
pub fn random_key() -> String {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("read /dev/urandom for a session key");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unique_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = target_dir().join("tmp").join(format!("e2e-{}-{n}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Child processes, killed (newest first) when dropped, also when a start panics midway.
#[derive(Default)]
struct Children(Vec<(&'static str, Child)>);

impl Children {
    fn kill(&mut self, name: &str) {
        if let Some(i) = self.0.iter().position(|(n, _)| *n == name) {
            let (_, mut child) = self.0.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn kill_all(&mut self) {
        while let Some((_, mut child)) = self.0.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn get(&mut self, name: &str) -> Option<&mut Child> {
        self.0.iter_mut().find(|(n, _)| *n == name).map(|(_, c)| c)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Starts `cmd` and waits for the line `<name> listening on <url>` on its stdout; returns the
/// URL. Its stderr goes to `<dir>/<name>.stderr`.
fn spawn_listening(name: &'static str, mut cmd: Command, dir: &Path, children: &mut Children) -> String {
    let stderr_path = dir.join(format!("{name}.stderr"));
    let stderr = File::create(&stderr_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr_path.display()));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
    let stdout = child.stdout.take();
    children.0.push((name, child));
    let Some(stdout) = stdout else { panic!("{name}: no stdout pipe") };
    let (tx, rx) = mpsc::channel();
    let marker = format!("{name} listening on ");
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    if let Some(url) = line.trim().strip_prefix(&marker) {
                        let _ = tx.send(Some(url.to_string()));
                        break;
                    }
                }
            }
        }
        // Keep the pipe drained so the process never blocks on a full stdout.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let stderr_tail = || tail(&fs::read_to_string(&stderr_path).unwrap_or_default(), 20);
    match rx.recv_timeout(LISTENING_TIMEOUT) {
        Ok(Some(url)) => url,
        Ok(None) => panic!("{name} exited before it was listening; its stderr:\n{}", stderr_tail()),
        Err(_) => {
            panic!("{name} printed no listening line within {LISTENING_TIMEOUT:?}; its stderr:\n{}", stderr_tail())
        }
    }
}

/// Options for a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackBuilder {
    session_keys: Vec<String>,
    client_secret: String,
    numero_as_string: bool,
    edit_config: Option<fn(&mut serde_json::Value)>,
    concurrency: u32,
    struct_config: bool,
    reloadable: bool,
}

impl Default for StackBuilder {
    fn default() -> Self {
        Self {
            session_keys: vec![random_key()],
            client_secret: CLIENT_SECRET.into(),
            numero_as_string: false,
            edit_config: None,
            concurrency: 2,
            struct_config: false,
            reloadable: false,
        }
    }
}

impl StackBuilder {
    /// The gate's `session_keys` (base64, newest first). Default: one fresh random key.
    #[must_use]
    pub fn session_keys(mut self, keys: &[&str]) -> Self {
        self.session_keys = keys.iter().map(|k| (*k).to_string()).collect();
        self
    }

    /// The client secret the gate sends (the emulator always expects `demo-secret`).
    #[must_use]
    pub fn client_secret(mut self, secret: &str) -> Self {
        self.client_secret = secret.into();
        self
    }

    /// The emulator sends `RolUnico.numero` as a string.
    #[must_use]
    pub fn numero_as_string(mut self) -> Self {
        self.numero_as_string = true;
        self
    }

    /// Changes the gate's JSON configuration before Envoy gets it.
    #[must_use]
    pub fn edit_config(mut self, edit: fn(&mut serde_json::Value)) -> Self {
        self.edit_config = Some(edit);
        self
    }

    /// Envoy's worker threads (`--concurrency`), each with its own wasm VM. Default: 2.
    #[must_use]
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Hands Envoy the gate's configuration as a `google.protobuf.Struct` (the JSON object
    /// inline in the YAML, numbers becoming doubles) instead of a `StringValue` holding JSON.
    #[must_use]
    pub fn struct_config(mut self) -> Self {
        self.struct_config = true;
        self
    }

    /// Envoy gets its listener, with the gate's configuration, from a file it watches
    /// (`envoy/gate-reload.yaml.tmpl`), so [`Stack::reload_gate_config`] can change the
    /// configuration while Envoy runs.
    #[must_use]
    pub fn reloadable(mut self) -> Self {
        self.reloadable = true;
        self
    }

    /// Starts everything with a configuration the gate must refuse, and returns Envoy's log
    /// once Envoy has exited. Panics if Envoy gets ready instead.
    pub fn start_refused(self) -> String {
        let mut stack = self.launch();
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if stack.envoy_exit().is_some() {
                return stack.envoy_log();
            }
            if let Ok(r) = stack.agent.get(&format!("{}/ready", stack.admin)).call() {
                if r.into_string().is_ok_and(|b| b.trim() == "LIVE") {
                    let probe = Browser::new(&stack).get("/private");
                    panic!("Envoy started with a configuration the gate should refuse; /private got {probe:?}");
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("Envoy neither exited nor got ready; log tail:\n{}", tail(&stack.envoy_log(), 40));
    }

    /// Starts emulator, app and Envoy; retries when Envoy loses a port race.
    pub fn start(self) -> Stack {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.try_start() {
                Ok(stack) => return stack,
                Err(why) => last = why,
            }
        }
        panic!("the stack did not start in {START_ATTEMPTS} attempts; last failure:\n{last}");
    }

    /// One attempt. `Err` only for an Envoy that exited early (most likely a port taken
    /// between [`free_port`] and Envoy's bind); anything else panics at once.
    fn try_start(&self) -> Result<Stack, String> {
        let mut stack = self.launch();
        stack.wait_ready()?;
        Ok(stack)
    }

    /// Spawns the processes without waiting for Envoy.
    fn launch(&self) -> Stack {
        let emulator_bin = built("release/claveunica-emulator");
        let app_bin = built("release/legacy-app");
        let wasm = built("wasm32-wasip1/release/claveunica_gate.wasm");
        let template_name = if self.reloadable { "envoy/gate-reload.yaml.tmpl" } else { "envoy/gate.yaml.tmpl" };
        let template_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(template_name);
        let mut template = fs::read_to_string(&template_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", template_path.display()));
        if self.struct_config {
            template = struct_configuration(&template);
        }

        let dir = unique_dir();
        let mut children = Children::default();
        let (listen_port, admin_port) = (free_port(), free_port());
        let base = format!("http://127.0.0.1:{listen_port}");
        let redirect_uri = format!("{base}{CALLBACK_PATH}");

        let mut cmd = Command::new(&emulator_bin);
        cmd.args(["--listen", "127.0.0.1:0", "--redirect-uri", &redirect_uri]);
        if self.numero_as_string {
            cmd.arg("--numero-as-string");
        }
        let provider = spawn_listening("claveunica-emulator", cmd, &dir, &mut children);
        let provider_port = port_of(&provider);

        let mut cmd = Command::new(&app_bin);
        cmd.args(["--listen", "127.0.0.1:0"]);
        let app = spawn_listening("legacy-app", cmd, &dir, &mut children);
        let app_port = port_of(&app);

        let mut gate_config = serde_json::json!({
            "issuer": format!("{provider}/openid"),
            "cluster": "claveunica",
            "client_id": CLIENT_ID,
            "client_secret_env": "CLAVEUNICA_CLIENT_SECRET",
            "redirect_uri": redirect_uri,
            "session_keys": self.session_keys,
        });
        if let Some(edit) = self.edit_config {
            edit(&mut gate_config);
        }
        let login_path = gate_config.get("login_path").and_then(|p| p.as_str()).unwrap_or(LOGIN_PATH).to_string();
        let gate_config_json = gate_config.clone();
        let gate_config = gate_config.to_string();
        let lds_dir = dir.join("lds");
        let mut yaml = template;
        for (name, value) in [
            ("ADMIN_PORT", admin_port.to_string()),
            ("LISTEN_PORT", listen_port.to_string()),
            ("APP_PORT", app_port.to_string()),
            ("PROVIDER_PORT", provider_port.to_string()),
            ("WASM_PATH", wasm.display().to_string()),
            ("LDS_DIR", lds_dir.display().to_string()),
        ] {
            yaml = yaml.replace(&format!("${{{name}}}"), &value);
        }
        let reload = if self.reloadable {
            let (bootstrap, lds) = yaml
                .split_once("\n---\n")
                .unwrap_or_else(|| panic!("{} has no `---` line before its LDS document", template_path.display()));
            let reload = Reload { lds_dir, lds_template: lds.to_string(), gate_config: gate_config_json, version: 0 };
            fs::create_dir_all(&reload.lds_dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", reload.lds_dir.display()));
            reload.write_lds(&dir);
            yaml = bootstrap.to_string();
            Some(reload)
        } else {
            yaml = yaml.replace("${GATE_CONFIG}", &gate_config);
            None
        };
        let unfilled = yaml.lines().find(|l| !l.trim_start().starts_with('#') && l.contains("${"));
        assert!(unfilled.is_none(), "a placeholder of {} was not filled: {unfilled:?}", template_path.display());
        let yaml_path = dir.join("envoy.yaml");
        fs::write(&yaml_path, yaml).unwrap_or_else(|e| panic!("cannot write {}: {e}", yaml_path.display()));

        let log_path = dir.join("envoy.log");
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&yaml_path)
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
            // No hot restart, so no shared memory to clash between concurrent Envoys.
            .arg("--disable-hot-restart")
            .env("CLAVEUNICA_CLIENT_SECRET", &self.client_secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start Envoy ({:?}; set ENVOY_BIN or put envoy on PATH): {e}", cmd.get_program())
        });
        children.0.push(("envoy", child));

        Stack {
            children,
            dir,
            base,
            provider,
            app,
            admin: format!("http://127.0.0.1:{admin_port}"),
            log_path,
            agent: agent(),
            session_keys: self.session_keys.clone(),
            login_path,
            reload,
        }
    }
}

/// What a reloadable stack needs to write Envoy's LDS file again.
struct Reload {
    lds_dir: PathBuf,
    /// The LDS document, every placeholder filled but `${GATE_CONFIG}` and `${LDS_VERSION}`.
    lds_template: String,
    gate_config: serde_json::Value,
    version: u32,
}

impl Reload {
    /// Writes the LDS file beside the watched one and renames it over it (the atomic move
    /// Envoy watches for).
    fn write_lds(&self, scratch: &Path) {
        let lds = self
            .lds_template
            .replace("${GATE_CONFIG}", &self.gate_config.to_string())
            .replace("${LDS_VERSION}", &self.version.to_string());
        let unfilled = lds.lines().find(|l| !l.trim_start().starts_with('#') && l.contains("${"));
        assert!(unfilled.is_none(), "a placeholder of the LDS document was not filled: {unfilled:?}");
        let tmp = scratch.join(format!("lds.yaml.{}", self.version));
        fs::write(&tmp, lds).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        let target = self.lds_dir.join("lds.yaml");
        fs::rename(&tmp, &target)
            .unwrap_or_else(|e| panic!("cannot move {} to {}: {e}", tmp.display(), target.display()));
    }
}

/// Rewrites the template's `configuration` from a `StringValue` holding the JSON to a
/// `Struct` with the JSON object inline (JSON is YAML flow syntax), as Istio's `pluginConfig`
/// is a Struct.
fn struct_configuration(template: &str) -> String {
    let string_value = "\"@type\": type.googleapis.com/google.protobuf.StringValue";
    let block = template
        .lines()
        .collect::<Vec<_>>()
        .windows(3)
        .find(|w| w[0].trim() == string_value && w[1].trim() == "value: |" && w[2].trim() == "${GATE_CONFIG}")
        .map(|w| w.join("\n"))
        .unwrap_or_else(|| panic!("the template's configuration block is not the expected StringValue:\n{template}"));
    let indent = &block[..block.len() - block.trim_start().len()];
    let replacement =
        format!("{indent}\"@type\": type.googleapis.com/google.protobuf.Struct\n{indent}value: ${{GATE_CONFIG}}");
    template.replacen(&block, &replacement, 1)
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url:?}"))
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).timeout(HTTP_TIMEOUT).build()
}

/// Emulator, legacy app and Envoy with the gate, on loopback. Everything stops on drop; the
/// working directory (Envoy's config and log) stays when the test failed.
pub struct Stack {
    children: Children,
    dir: PathBuf,
    base: String,
    provider: String,
    app: String,
    admin: String,
    log_path: PathBuf,
    agent: ureq::Agent,
    session_keys: Vec<String>,
    login_path: String,
    reload: Option<Reload>,
}

/// How many requests each emulator endpoint has received (`GET /__emulator/stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatorStats {
    /// `/openid/jwks`.
    pub jwks: u64,
    /// `/openid/token/`.
    pub token: u64,
    /// `/openid/userinfo/`.
    pub userinfo: u64,
    /// `/openid/authorize/` (form and submit).
    pub authorize: u64,
}

impl Stack {
    /// A stack with default options.
    pub fn start() -> Stack {
        StackBuilder::default().start()
    }

    /// Options.
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.envoy_exit() {
                return Err(format!("Envoy exited ({status}); log tail:\n{}", tail(&self.envoy_log(), 40)));
            }
            if let Ok(r) = self.agent.get(&format!("{}/ready", self.admin)).call() {
                if r.into_string().is_ok_and(|b| b.trim() == "LIVE") {
                    break;
                }
            }
            if Instant::now() > deadline {
                panic!("Envoy was not ready within {READY_TIMEOUT:?}; log tail:\n{}", tail(&self.envoy_log(), 40));
            }
            thread::sleep(Duration::from_millis(50));
        }
        // LIVE says the listener is up; a request says the gate is loaded and configured. The
        // login path is always answered by the gate with a redirect to the provider, whatever
        // the rules and the migration mode.
        let path = format!("{}?return_to=%2F__harness_probe", self.login_path);
        let probe = Browser::new(self).get(&path);
        assert!(
            probe.status == 302 && probe.header("location").is_some_and(|l| l.starts_with(&self.authorize_endpoint())),
            "the gate does not answer {path} with a login redirect (configuration refused?); \
             got {probe:?}\nEnvoy log tail:\n{}",
            tail(&self.envoy_log(), 40)
        );
        Ok(())
    }

    fn envoy_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.children.get("envoy").and_then(|c| c.try_wait().ok().flatten())
    }

    /// `http://127.0.0.1:PORT` + `path`, through Envoy.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Envoy's origin, `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The emulator's origin.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The emulator's authorize endpoint, as the gate derives it from `issuer`.
    pub fn authorize_endpoint(&self) -> String {
        format!("{}/openid/authorize/", self.provider)
    }

    /// The registered callback URL.
    pub fn redirect_uri(&self) -> String {
        self.url(CALLBACK_PATH)
    }

    /// The legacy app's origin (for reaching it directly, bypassing the gate).
    pub fn app(&self) -> &str {
        &self.app
    }

    /// Everything Envoy has logged so far (wasm log lines included).
    pub fn envoy_log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the emulator: the provider becomes unreachable.
    pub fn stop_provider(&mut self) {
        self.children.kill("claveunica-emulator");
    }

    /// Whether the emulator still runs.
    pub fn provider_running(&mut self) -> bool {
        self.children.get("claveunica-emulator").is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// A counter from Envoy's admin stats, e.g. `cluster.legacy_app.upstream_rq_total`.
    pub fn counter(&self, name: &str) -> u64 {
        let url = format!("{}/stats?filter={}", self.admin, name.replace('.', "%5C."));
        let body = match self.agent.get(&url).call() {
            Ok(r) => r.into_string().unwrap_or_else(|e| panic!("reading {url}: {e}")),
            Err(e) => panic!("GET {url}: {e}"),
        };
        body.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| v.trim().parse().unwrap_or_else(|_| panic!("counter {name} is not a number: {v:?}")))
    }

    /// A counter the gate defines (e.g. `claveunica_gate.logins_started`), as Envoy's admin
    /// shows it: custom wasm metrics get the `wasmcustom.` prefix, and Envoy sums each name
    /// over the workers' VMs. 0 while the gate has not defined it yet.
    pub fn gate_counter(&self, name: &str) -> u64 {
        self.counter(&format!("wasmcustom.{name}"))
    }

    /// Envoy's admin `/stats/prometheus` text.
    pub fn prometheus(&self) -> String {
        let url = format!("{}/stats/prometheus", self.admin);
        match self.agent.get(&url).call() {
            Ok(r) => r.into_string().unwrap_or_else(|e| panic!("reading {url}: {e}")),
            Err(e) => panic!("GET {url}: {e}"),
        }
    }

    /// Envoy's admin `/stats` lines whose name matches `regex` (Envoy's `filter`).
    pub fn stats_matching(&self, regex: &str) -> Vec<(String, String)> {
        let url = format!("{}/stats?filter={}", self.admin, url_encode(regex));
        let body = match self.agent.get(&url).call() {
            Ok(r) => r.into_string().unwrap_or_else(|e| panic!("reading {url}: {e}")),
            Err(e) => panic!("GET {url}: {e}"),
        };
        body.lines().filter_map(|l| l.split_once(": ")).map(|(n, v)| (n.to_string(), v.trim().to_string())).collect()
    }

    /// How many requests each emulator endpoint has received.
    pub fn emulator_stats(&self) -> EmulatorStats {
        let url = format!("{}/__emulator/stats", self.provider);
        let body = match self.agent.get(&url).call() {
            Ok(r) => r.into_string().unwrap_or_else(|e| panic!("reading {url}: {e}")),
            Err(e) => panic!("GET {url}: {e}"),
        };
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url} is not JSON ({e}): {body}"));
        let n =
            |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or_else(|| panic!("{url}: no {k}: {body}"));
        EmulatorStats { jwks: n("jwks"), token: n("token"), userinfo: n("userinfo"), authorize: n("authorize") }
    }

    /// Switches the emulator's test modes (`POST /__emulator/mode`, see the emulator's
    /// `src/modes.rs`); returns the settings now in force.
    pub fn set_emulator_mode(&self, modes: &serde_json::Value) -> serde_json::Value {
        let url = format!("{}/__emulator/mode", self.provider);
        let body = match self.agent.post(&url).set("content-type", "application/json").send_string(&modes.to_string()) {
            Ok(r) => r.into_string().unwrap_or_else(|e| panic!("reading {url}: {e}")),
            Err(e) => panic!("POST {url} {modes}: {e}"),
        };
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url} is not JSON ({e}): {body}"))
    }

    /// Makes the emulator sign with a new key under a new kid (`POST /__emulator/rotate-key`);
    /// its JWKS then publishes the new key only, or with `keep_old` the older ones too.
    /// Returns the new kid.
    pub fn rotate_provider_key(&self, keep_old: bool) -> String {
        let url = format!("{}/__emulator/rotate-key", self.provider);
        let body = serde_json::json!({ "keep_old": keep_old }).to_string();
        let answer = match self.agent.post(&url).set("content-type", "application/json").send_string(&body) {
            Ok(r) => r.into_string().unwrap_or_else(|e| panic!("reading {url}: {e}")),
            Err(e) => panic!("POST {url}: {e}"),
        };
        let v: serde_json::Value =
            serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{url} is not JSON ({e}): {answer}"));
        v["kid"].as_str().unwrap_or_else(|| panic!("{url}: no kid in {answer}")).to_string()
    }

    /// The gate's JSON configuration as Envoy has it now (reloadable stacks only).
    pub fn gate_config(&self) -> &serde_json::Value {
        &self.reload.as_ref().expect("gate_config: start the stack with .reloadable()").gate_config
    }

    /// Changes the gate's configuration while Envoy runs: rewrites the watched LDS file with
    /// the edited configuration (reloadable stacks only). Envoy picks it up asynchronously;
    /// wait on a counter to know when.
    pub fn reload_gate_config(&mut self, edit: impl FnOnce(&mut serde_json::Value)) {
        let dir = self.dir.clone();
        let reload = self.reload.as_mut().expect("reload_gate_config: start the stack with .reloadable()");
        edit(&mut reload.gate_config);
        reload.version += 1;
        reload.write_lds(&dir);
    }

    /// The first (sealing) session key the gate was configured with, to seal cookies in tests.
    pub fn session_key(&self) -> [u8; 32] {
        let text = self.session_keys.first().expect("the stack has a session key");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_else(|e| panic!("session key {text:?} is not standard base64: {e}"));
        bytes.try_into().unwrap_or_else(|b: Vec<u8>| panic!("session key of {} bytes, not 32", b.len()))
    }

    /// How many requests Envoy has sent to the legacy app so far.
    pub fn app_requests(&self) -> u64 {
        self.counter("cluster.legacy_app.upstream_rq_total")
    }

    /// How many calls the gate has made to the provider so far.
    pub fn provider_calls(&self) -> u64 {
        self.counter("cluster.claveunica.upstream_rq_total")
    }

    /// A browser with an empty cookie jar.
    pub fn browser(&self) -> Browser {
        Browser::new(self)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.children.kill_all();
        if thread::panicking() {
            eprintln!("end-to-end stack files kept in {}", self.dir.display());
            eprintln!("Envoy log tail:\n{}", tail(&self.envoy_log(), 30));
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// An HTTP answer, status and body whatever the status.
#[derive(Debug, Clone)]
pub struct Response {
    /// The URL asked for.
    pub url: String,
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, repeats kept.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Response {
    fn from_ureq(url: &str, r: ureq::Response) -> Response {
        let status = r.status();
        let mut names: Vec<String> = r.headers_names().into_iter().map(|n| n.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        let headers =
            names.iter().flat_map(|n| r.all(n).into_iter().map(move |v| (n.clone(), v.to_string()))).collect();
        let body = r.into_string().unwrap_or_else(|e| panic!("reading the body of {url}: {e}"));
        Response { url: url.to_string(), status, headers, body }
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// `Location`, or a panic naming the response.
    pub fn location(&self) -> &str {
        self.header("location").unwrap_or_else(|| panic!("no Location in the answer to {}: {self:?}", self.url))
    }

    /// The whole `Set-Cookie` line that sets or deletes cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.header_all("set-cookie").into_iter().find(|line| cookie_name_of(line) == name)
    }

    /// Names of the cookies this answer sets (not deletes).
    pub fn cookies_set(&self) -> Vec<String> {
        self.header_all("set-cookie")
            .into_iter()
            .filter_map(parse_set_cookie)
            .filter_map(|(n, v)| v.map(|_| n))
            .collect()
    }

    /// The reference code of an error page (`Código de referencia: <code>XXXX</code>`).
    pub fn reference(&self) -> String {
        let marker = "Código de referencia: <code>";
        self.body
            .split_once(marker)
            .and_then(|(_, rest)| rest.split_once("</code>"))
            .map(|(code, _)| code.to_string())
            .unwrap_or_else(|| panic!("no reference code in the page from {}:\n{}", self.url, self.body))
    }

    /// The legacy app's JSON echo of the request it received.
    pub fn echo(&self) -> Echo {
        assert_eq!(self.status, 200, "expected the app's JSON echo from {}, got {self:?}", self.url);
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the answer to {} is not the app's JSON echo ({e}): {}", self.url, self.body));
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
        let headers = v
            .get("headers")
            .and_then(|h| h.as_array())
            .unwrap_or_else(|| panic!("echo without headers: {}", self.body))
            .iter()
            .filter_map(|pair| Some((pair.get(0)?.as_str()?.to_string(), pair.get(1)?.as_str()?.to_string())))
            .collect();
        Echo { path: text("path"), query: text("query"), headers }
    }
}

/// What the legacy app says it received.
#[derive(Debug, Clone)]
pub struct Echo {
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Headers, lower-cased names, in order, repeats kept.
    pub headers: Vec<(String, String)>,
}

impl Echo {
    /// Every value of a header (name lower-case).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The only value of a header; panics when it is there more than once.
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "the app received {name} {} times: {all:?}", all.len());
        all.first().copied()
    }

    /// Every cookie name the app received.
    pub fn cookie_names(&self) -> Vec<String> {
        self.all("cookie")
            .iter()
            .flat_map(|h| h.split(';'))
            .filter_map(|p| p.split_once('=').map(|(n, _)| n.trim().to_string()))
            .collect()
    }
}

fn cookie_name_of(set_cookie: &str) -> &str {
    set_cookie.split(';').next().and_then(|nv| nv.split_once('=')).map_or("", |(n, _)| n.trim())
}

/// `(name, Some(value))` for a cookie set, `(name, None)` for one deleted (`Max-Age` ≤ 0).
fn parse_set_cookie(line: &str) -> Option<(String, Option<String>)> {
    let mut parts = line.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let deleted = parts.any(|attr| {
        attr.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("max-age") && v.trim().parse::<i64>().is_ok_and(|n| n <= 0)
        })
    });
    Some((name.trim().to_string(), (!deleted).then(|| value.trim().to_string())))
}

/// The redirect to the provider that starts a login, taken apart.
#[derive(Debug, Clone)]
pub struct Authorize {
    /// The full authorize URL.
    pub url: String,
    /// Its query parameters, decoded, in order.
    pub params: Vec<(String, String)>,
    /// `state`.
    pub state: String,
    /// `nonce`.
    pub nonce: String,
    /// The gate's 302.
    pub response: Response,
}

impl Authorize {
    /// A query parameter (the first, if repeated).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The name of the flow cookie bound to this login.
    pub fn flow_cookie(&self) -> String {
        format!("{FLOW_PREFIX}{}", self.state.get(..12).unwrap_or(&self.state))
    }
}

/// A browser: a cookie jar for the gate's origin and an HTTP client that follows nothing.
#[derive(Debug, Clone)]
pub struct Browser {
    agent: ureq::Agent,
    base: String,
    provider: String,
    authorize_endpoint: String,
    redirect_uri: String,
    /// Cookies for the gate's origin, by name.
    pub jar: BTreeMap<String, String>,
}

impl Browser {
    fn new(stack: &Stack) -> Browser {
        Browser {
            agent: agent(),
            base: stack.base.clone(),
            provider: stack.provider.clone(),
            authorize_endpoint: stack.authorize_endpoint(),
            redirect_uri: stack.redirect_uri(),
            jar: BTreeMap::new(),
        }
    }

    /// The `Cookie` header this browser sends to the gate, if any.
    pub fn cookie_header(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| self.jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; "))
    }

    fn send(&mut self, method: &str, url: &str, headers: &[(&str, &str)], form: Option<&[(&str, &str)]>) -> Response {
        let ours = url.starts_with(&self.base);
        let mut req = self.agent.request(method, url);
        if ours {
            if let Some(cookie) = self.cookie_header() {
                req = req.set("Cookie", &cookie);
            }
        }
        for (name, value) in headers {
            req = req.set(name, value);
        }
        let result = match form {
            Some(fields) => req.send_form(fields),
            None => req.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => Response::from_ureq(url, r),
            Err(e) => panic!("{method} {url} failed: {e}"),
        };
        if ours {
            for line in response.header_all("set-cookie") {
                match parse_set_cookie(line) {
                    Some((name, Some(value))) => {
                        self.jar.insert(name, value);
                    }
                    Some((name, None)) => {
                        self.jar.remove(&name);
                    }
                    None => {}
                }
            }
        }
        response
    }

    /// Any method on a path through the gate, with extra request headers and no body.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let url = format!("{}{path}", self.base);
        self.send(method, &url, headers, None)
    }

    /// POST a form to a path through the gate.
    pub fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let url = format!("{}{path}", self.base);
        self.send("POST", &url, &[], Some(fields))
    }

    /// GET a path through the gate.
    pub fn get(&mut self, path: &str) -> Response {
        self.get_with_headers(path, &[])
    }

    /// GET a path through the gate with extra request headers (repeats are sent as repeats
    /// for `x-` names).
    pub fn get_with_headers(&mut self, path: &str, headers: &[(&str, &str)]) -> Response {
        let url = format!("{}{path}", self.base);
        self.send("GET", &url, headers, None)
    }

    /// GET an absolute URL; the jar is used only for the gate's origin.
    pub fn get_url(&mut self, url: &str) -> Response {
        self.send("GET", url, &[], None)
    }

    /// GET an absolute URL with extra request headers.
    pub fn get_url_with_headers(&mut self, url: &str, headers: &[(&str, &str)]) -> Response {
        self.send("GET", url, headers, None)
    }

    /// Asks for `path` without a session and takes the gate's redirect to the provider apart.
    pub fn start_login(&mut self, path: &str) -> Authorize {
        let response = self.get(path);
        assert_eq!(response.status, 302, "GET {path} without a session should redirect to login: {response:?}");
        let url = response.location().to_string();
        assert!(
            url.starts_with(&format!("{}?", self.authorize_endpoint)),
            "GET {path} redirected to {url}, not to the provider's authorize endpoint {}",
            self.authorize_endpoint
        );
        let parsed = url::Url::parse(&url).unwrap_or_else(|e| panic!("authorize URL {url:?} does not parse: {e}"));
        let params: Vec<(String, String)> =
            parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("authorize URL without {name}: {url}"))
        };
        let (state, nonce) = (get("state"), get("nonce"));
        Authorize { url, params, state, nonce, response }
    }

    fn provider_submit(&mut self, authorize: &Authorize, extra: &[(&str, &str)]) -> Response {
        let form_page = self.get_url(&authorize.url);
        assert_eq!(form_page.status, 200, "the provider did not show its login form: {form_page:?}");
        let mut fields: Vec<(&str, &str)> = ["client_id", "redirect_uri", "state", "nonce", "scope"]
            .into_iter()
            .filter_map(|k| authorize.param(k).map(|v| (k, v)))
            .collect();
        fields.extend_from_slice(extra);
        let submit = format!("{}/openid/authorize/", self.provider);
        self.send("POST", &submit, &[], Some(&fields))
    }

    /// Logs in at the provider; returns the callback URL it redirects to.
    pub fn provider_login(&mut self, authorize: &Authorize, run: &str, password: &str) -> String {
        let r = self.provider_submit(authorize, &[("run", run), ("password", password), ("login", "1")]);
        self.expect_callback(r)
    }

    /// Presses "Cancelar" at the provider; returns the callback URL it redirects to.
    pub fn provider_cancel(&mut self, authorize: &Authorize) -> String {
        let r = self.provider_submit(authorize, &[("cancel", "1")]);
        self.expect_callback(r)
    }

    fn expect_callback(&self, r: Response) -> String {
        assert_eq!(r.status, 302, "the provider did not send the browser back: {r:?}");
        let location = r.location().to_string();
        assert!(
            location.starts_with(&format!("{}?", self.redirect_uri)),
            "the provider redirected to {location}, not to the callback {}",
            self.redirect_uri
        );
        location
    }

    /// GETs the callback URL (absolute) through the gate.
    pub fn callback(&mut self, url: &str) -> Response {
        self.get_url(url)
    }

    /// A whole login from asking for `path` to the gate's answer at the callback (a 302 back
    /// to `path` when all goes well).
    pub fn login(&mut self, path: &str, run: &str, password: &str) -> Response {
        let authorize = self.start_login(path);
        let callback = self.provider_login(&authorize, run, password);
        self.callback(&callback)
    }
}

/// Replaces (or with `None` removes) one query parameter of a URL.
pub fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let mut parsed = url::Url::parse(url).expect("callback URLs parse");
    let pairs: Vec<(String, String)> =
        parsed.query_pairs().filter(|(k, _)| k != name).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    {
        let mut q = parsed.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        if let Some(v) = value {
            q.append_pair(name, v);
        }
    }
    parsed.to_string()
}

/// Polls `done` every 50 ms until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
