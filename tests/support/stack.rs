//! The Envoy stack: the ClaveÚnica emulator, the legacy echo app and Envoy running the built
//! gate, on fresh loopback ports, torn down on drop; and what tests ask of it (Envoy's log
//! and counters, the emulator's test modes, reloading the gate's configuration, the session
//! key to seal cookies with). Envoy may listen with TLS ([`StackBuilder::tls`]).

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use claveunica_core::primitives::seal::KeyRing;
use claveunica_core::testkit;

use super::client::{agent, url_encode, Browser, HTTP_TIMEOUT};
use super::envoy::{envoy_bin, Bootstrap, FailurePolicy, Reload};
use super::process::{
    built, free_port, random_key, spawn_app, spawn_listening, tail, tear_down, unique_dir, App, Children,
};
use super::tls::TestCert;
use super::{BUILD_HINT, CALLBACK_PATH, CLIENT_ID, CLIENT_SECRET, DRILL_BUILD_HINT, LOGIN_PATH};

/// Runs the Envoy tests against another build of the product, such as the module
/// `scripts/size.sh` writes through `wasm-opt`: what a release ships must pass the same tests.
pub const MODULE_ENV: &str = "CLAVEUNICA_GATE_WASM";

/// The gate's module Envoy loads: the one [`MODULE_ENV`] names, else cargo's build.
fn product_module() -> PathBuf {
    match std::env::var_os(MODULE_ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "{MODULE_ENV}={} is not a file", path.display());
            path
        }
        None => built("wasm32-wasip1/release/claveunica_gate.wasm", BUILD_HINT),
    }
}

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: u32 = 3;
/// What Envoy logs when a listener's port is taken (`cannot bind '127.0.0.1:N': Address
/// already in use`): the one start-up failure worth another attempt on fresh ports.
const PORT_CLASH: &str = "Address already in use";
/// Lines that must not be in Envoy's log once it is ready: an error or a crash while the gate
/// loaded and configured itself.
const LOAD_FAILURE_MARKS: &[&str] = &["[error]", "[critical]", "panicked", "wasm trap", "Function: proxy_on_"];
/// Lines that must never be in Envoy's log, unless the stack expects a VM failure
/// ([`StackBuilder::expect_vm_failure`]): the gate's VM failed (a panic, a trap, a callback that
/// did not return). Checked again when the stack is dropped, so a VM failure during any test
/// fails it, whatever the answers looked like (a failed VM answers 503, which a test of a
/// refusal could take for one).
const VM_FAILURE_MARKS: &[&str] = &["panicked", "wasm trap", "Function: proxy_on_"];

/// Options for a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackBuilder {
    session_keys: Vec<String>,
    client_secret: String,
    numero_as_string: bool,
    edit_config: Vec<fn(&mut serde_json::Value)>,
    concurrency: u32,
    struct_config: bool,
    reloadable: bool,
    tls: bool,
    wasm_log_level: &'static str,
    second_gate: bool,
    app: App,
    failure_policy: FailurePolicy,
    drill_module: bool,
    expect_vm_failure: bool,
    site_clients: Vec<SiteClient>,
    upstream_port: Option<u16>,
}

/// A further client registered at the emulator (`--client`) for one site of the gate
/// (`"sites"` in its configuration), named by a host under [`super::client::TEST_TLD`]: its
/// redirect URI is the gate's callback at `http://HOST:PORT` (the gate's port), its Logout URI
/// that origin.
#[derive(Debug, Clone, Copy)]
pub struct SiteClient {
    /// `client_id`.
    pub id: &'static str,
    /// `client_secret`.
    pub secret: &'static str,
    /// The site's host name, e.g. `a.test`.
    pub host: &'static str,
}

impl SiteClient {
    /// The site's origin on the gate at `gate` (`http://127.0.0.1:PORT`).
    pub fn origin(&self, gate: &str) -> String {
        let port = port_of(gate);
        format!("http://{}:{port}", self.host)
    }

    /// The site's `redirect_uri` on the gate at `gate`.
    pub fn redirect_uri(&self, gate: &str) -> String {
        format!("{}{CALLBACK_PATH}", self.origin(gate))
    }

    /// The emulator's `--client` value registering this client for the gate at `gate`.
    pub fn emulator_arg(&self, gate: &str) -> String {
        format!("{},{},{},{}/", self.id, self.secret, self.redirect_uri(gate), self.origin(gate))
    }
}

impl Default for StackBuilder {
    fn default() -> Self {
        Self {
            session_keys: vec![random_key()],
            client_secret: CLIENT_SECRET.into(),
            numero_as_string: false,
            edit_config: Vec::new(),
            concurrency: 2,
            struct_config: false,
            reloadable: false,
            tls: false,
            wasm_log_level: "info",
            second_gate: false,
            app: App::Portal,
            failure_policy: FailurePolicy::FailClosed,
            drill_module: false,
            expect_vm_failure: false,
            site_clients: Vec::new(),
            upstream_port: None,
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

    /// Changes the gate's JSON configuration before Envoy gets it; edits apply in order.
    #[must_use]
    pub fn edit_config(mut self, edit: fn(&mut serde_json::Value)) -> Self {
        self.edit_config.push(edit);
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

    /// Envoy's listener speaks TLS, with a certificate made for this stack: the gate's origin
    /// and `redirect_uri` are `https://127.0.0.1:PORT`, and [`Stack::browser`] trusts exactly
    /// that certificate. (The gate's calls to the emulator stay plain http, on its cluster.)
    #[must_use]
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Envoy's log level for its `wasm` component, where the gate's log lines go (the rest of
    /// Envoy logs at `warn`). Default: `info`; `trace` shows everything the VM logs.
    #[must_use]
    pub fn wasm_log_level(mut self, level: &'static str) -> Self {
        self.wasm_log_level = level;
        self
    }

    /// Which server of the legacy app Envoy forwards to. Default: the portal.
    #[must_use]
    pub fn app(mut self, app: App) -> Self {
        self.app = app;
        self
    }

    /// The wasm filter's `failure_policy`. Default: `FAIL_CLOSED`, as in the test templates;
    /// `envoy/production.yaml` has `FAIL_RELOAD`.
    #[must_use]
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Runs the VM failure drill's module (`claveunica_gate_drill.wasm`, built from
    /// `envoy/drill/`) instead of the product: the same filter, whose VM traps after a request
    /// with `x-drill: trap` is handled. Never in a deployment.
    #[must_use]
    pub fn drill_module(mut self) -> Self {
        self.drill_module = true;
        self
    }

    /// The test provokes a VM failure: a trap or panic in Envoy's log after the stack started
    /// does not fail it when the stack is dropped (the start itself must still be clean).
    #[must_use]
    pub fn expect_vm_failure(mut self) -> Self {
        self.expect_vm_failure = true;
        self
    }

    /// Registers a further client at the emulator, for a site of the gate's. When the gate's
    /// configuration has no top-level `redirect_uri` (so no default site), the readiness probe
    /// asks as the first such site's host, the address `127.0.0.1` being no site's.
    #[must_use]
    pub fn site_client(mut self, client: SiteClient) -> Self {
        self.site_clients.push(client);
        self
    }

    /// Envoy forwards to this loopback port instead of the legacy app's: for something the
    /// test starts between the gate and the app afterwards (the application's sidecar,
    /// [`super::verifier`]). The app still starts; [`Stack::app`] is its origin, and
    /// [`Stack::app_requests`] counts what Envoy sent to that port.
    #[must_use]
    pub fn upstream_port(mut self, port: u16) -> Self {
        self.upstream_port = Some(port);
        self
    }

    /// Starts everything with a configuration the gate must refuse, and returns Envoy's log
    /// once Envoy has exited. Panics if Envoy gets ready instead.
    pub fn start_refused(self) -> String {
        for _ in 1..START_ATTEMPTS {
            let log = self.refused_once();
            // Envoy refused to start, but because a port was taken between `free_port` and its
            // bind, not because of the gate: that says nothing of the configuration, so again on
            // fresh ports, as `start` does.
            if !log.contains(PORT_CLASH) {
                return log;
            }
        }
        self.refused_once()
    }

    fn refused_once(&self) -> String {
        let mut stack = self.launch();
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if stack.envoy_exit().is_some() {
                return stack.envoy_log();
            }
            if let Ok(r) = stack.agent.get(&format!("{}/ready", stack.admin)).call() {
                if r.into_string().is_ok_and(|b| b.trim() == "LIVE") {
                    let probe = stack.browser().get("/private");
                    panic!("Envoy started with a configuration the gate should refuse; /private got {probe:?}");
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("Envoy neither exited nor got ready; log tail:\n{}", tail(&stack.envoy_log(), 40));
    }

    /// Starts emulator, app and Envoy. Starts again only when Envoy lost a port race (its log
    /// says a port was in use); any other failure, and any error the gate logged while it
    /// loaded, fails the test at once, so a gate that crashes while loading is never hidden
    /// behind a retry.
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

    /// One attempt. `Err` only for an Envoy that exited because a port was taken between
    /// [`free_port`] and its bind; anything else panics.
    fn try_start(&self) -> Result<Stack, String> {
        let mut stack = self.launch();
        if let Err(why) = stack.wait_ready() {
            let log = stack.envoy_log();
            assert!(log.contains(PORT_CLASH), "Envoy exited while starting, not for a port clash:\n{why}");
            return Err(why);
        }
        let log = stack.envoy_log();
        let bad: Vec<&str> = log.lines().filter(|l| LOAD_FAILURE_MARKS.iter().any(|m| l.contains(m))).collect();
        assert!(bad.is_empty(), "Envoy started, but its log shows errors while loading the gate:\n{}", bad.join("\n"));
        Ok(stack)
    }

    /// A second gate in the same Envoy (same VM, same shared data): its own listener, its own
    /// emulator (another issuer, other keys) and cluster; see [`Stack::second`].
    #[must_use]
    pub fn second_gate(mut self) -> Self {
        self.second_gate = true;
        self
    }

    /// Spawns the processes without waiting for Envoy.
    fn launch(&self) -> Stack {
        let emulator_bin = built("release/claveunica-emulator", BUILD_HINT);
        let app_bin = built("release/legacy-app", BUILD_HINT);
        let wasm = if self.drill_module {
            built("wasm32-wasip1/release/claveunica_gate_drill.wasm", DRILL_BUILD_HINT)
        } else {
            product_module()
        };

        let dir = unique_dir();
        let mut children = Children::default();
        let (listen_port, admin_port) = (free_port(), free_port());
        let cert = self.tls.then(TestCert::new);
        let scheme = if cert.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://127.0.0.1:{listen_port}");
        let redirect_uri = format!("{base}{CALLBACK_PATH}");

        let mut cmd = Command::new(&emulator_bin);
        // Registered like an agency's credentials: the callback, and the gate's origin as the
        // Logout URI (the emulator's logout answers 204 for any other origin, as ClaveÚnica does).
        cmd.args(["--listen", "127.0.0.1:0", "--redirect-uri", &redirect_uri, "--logout-uri", &format!("{base}/")]);
        if self.numero_as_string {
            cmd.arg("--numero-as-string");
        }
        for client in &self.site_clients {
            cmd.args(["--client", &client.emulator_arg(&base)]);
        }
        let provider = spawn_listening("claveunica-emulator", cmd, &dir, &mut children);
        let provider_port = port_of(&provider);

        let app = spawn_app(&app_bin, self.app, &dir, &mut children);
        let app_port = self.upstream_port.unwrap_or_else(|| port_of(&app));

        let second = self.second_gate.then(|| {
            let port = free_port();
            let base = format!("http://127.0.0.1:{port}");
            let mut cmd = Command::new(&emulator_bin);
            let redirect_uri = format!("{base}{CALLBACK_PATH}");
            cmd.args(["--listen", "127.0.0.1:0", "--redirect-uri", &redirect_uri, "--logout-uri", &format!("{base}/")]);
            let provider = spawn_listening("claveunica-emulator", cmd, &dir, &mut children);
            let config = serde_json::json!({
                "issuer": format!("{provider}/openid"),
                "cluster": "claveunica_staging",
                "client_id": CLIENT_ID,
                "client_secret_env": "CLAVEUNICA_CLIENT_SECRET",
                "redirect_uri": format!("{base}{CALLBACK_PATH}"),
                "session_keys": [random_key()],
            });
            (port, base, provider, config)
        });

        let mut gate_config = serde_json::json!({
            "issuer": format!("{provider}/openid"),
            "cluster": "claveunica",
            "client_id": CLIENT_ID,
            "client_secret_env": "CLAVEUNICA_CLIENT_SECRET",
            "redirect_uri": redirect_uri,
            "session_keys": self.session_keys,
        });
        for edit in &self.edit_config {
            edit(&mut gate_config);
        }
        let login_path = gate_config.get("login_path").and_then(|p| p.as_str()).unwrap_or(LOGIN_PATH).to_string();
        let probe_host =
            self.site_clients.first().filter(|_| gate_config.get("redirect_uri").is_none()).map(|c| c.host);
        let tls = cert.as_ref().map(|cert| {
            let (cert_path, key_path) = (dir.join("listener.crt"), dir.join("listener.key"));
            for (path, pem) in [(&cert_path, &cert.cert_pem), (&key_path, &cert.key_pem)] {
                fs::write(path, pem).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            }
            (cert_path, key_path)
        });
        let mut values = vec![
            ("ADMIN_PORT", admin_port.to_string()),
            ("LISTEN_PORT", listen_port.to_string()),
            ("APP_PORT", app_port.to_string()),
            ("PROVIDER_PORT", provider_port.to_string()),
            ("WASM_PATH", wasm.display().to_string()),
        ];
        if let Some((port, _, provider, _)) = &second {
            values.push(("LISTEN_PORT_2", port.to_string()));
            values.push(("PROVIDER_PORT_2", port_of(provider).to_string()));
        }
        let (yaml_path, reload) = Bootstrap {
            reloadable: self.reloadable,
            struct_config: self.struct_config,
            tls,
            failure_policy: self.failure_policy,
            values,
            gate_config: &gate_config,
            second_gate: second.as_ref().map(|(_, _, _, config)| config),
        }
        .write(&dir);

        let log_path = dir.join("envoy.log");
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&yaml_path)
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--log-level", "warn", "--component-log-level", &format!("wasm:{}", self.wasm_log_level)])
            // No hot restart, so no shared memory to clash between concurrent Envoys.
            .arg("--disable-hot-restart")
            // Envoy writes access logs from a buffer it flushes every 10 s by default; tests read
            // the log right after a request.
            .args(["--file-flush-interval-msec", "100"])
            .env("CLAVEUNICA_CLIENT_SECRET", &self.client_secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start Envoy ({:?}; set ENVOY_BIN or put envoy on PATH): {e}", cmd.get_program())
        });
        children.push("envoy", child);

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
            cert,
            second: second.map(|(_, base, provider, _)| (base, provider)),
            expect_vm_failure: self.expect_vm_failure,
            probe_host,
        }
    }
}

/// The port of `url` (`http://127.0.0.1:PORT`).
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url:?}"))
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
    cert: Option<TestCert>,
    /// The second gate's base URL and its emulator's ([`StackBuilder::second_gate`]).
    second: Option<(String, String)>,
    /// A VM failure in the log is what the test is after ([`StackBuilder::expect_vm_failure`]).
    expect_vm_failure: bool,
    /// The site the readiness probe asks as, when the gate serves no default site.
    probe_host: Option<&'static str>,
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
        let mut browser = match self.probe_host {
            Some(host) => Browser::for_site(&self.base, host, &self.provider),
            None => self.browser(),
        };
        let probe = browser.get(&path);
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

    /// `http://127.0.0.1:PORT` (`https` with [`StackBuilder::tls`]) + `path`, through Envoy.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Envoy's origin, `http://127.0.0.1:PORT` (`https` with [`StackBuilder::tls`]).
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
        admin_counter(&self.admin, name)
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

    /// Connections each of Envoy's workers has accepted on its listeners so far, worker by
    /// worker (Envoy's `listener.<address>.worker_<n>.downstream_cx_total`): whether requests
    /// sent on fresh connections reached more than one worker, and so more than one VM.
    pub fn connections_per_worker(&self) -> Vec<u64> {
        self.stats_matching(r"^listener\..*\.worker_[0-9]+\.downstream_cx_total$")
            .into_iter()
            .map(|(_, v)| v.parse().unwrap_or(0))
            .collect()
    }

    /// How many requests each emulator endpoint has received.
    pub fn emulator_stats(&self) -> EmulatorStats {
        emulator_stats(&self.provider)
    }

    /// Switches the emulator's test modes (`POST /__emulator/mode`, see the emulator's
    /// `src/modes.rs`); returns the settings now in force.
    pub fn set_emulator_mode(&self, modes: &serde_json::Value) -> serde_json::Value {
        emulator_mode(&self.provider, modes)
    }
}

impl Stack {
    /// Makes the emulator sign with a new key under a new kid (`POST /__emulator/rotate-key`);
    /// its JWKS then publishes the new key only, or with `keep_old` the older ones too.
    /// Returns the new kid.
    pub fn rotate_provider_key(&self, keep_old: bool) -> String {
        rotate_provider_key(&self.provider, keep_old)
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

    /// A ring of the first (sealing) session key the gate was configured with, to seal and
    /// open cookies in tests.
    pub fn ring(&self) -> KeyRing {
        let key = self.session_keys.first().expect("the stack has a session key");
        testkit::key_ring(&[key])
    }

    /// How many requests Envoy has sent to the legacy app so far.
    pub fn app_requests(&self) -> u64 {
        self.counter("cluster.legacy_app.upstream_rq_total")
    }

    /// How many calls the gate has made to the provider so far.
    pub fn provider_calls(&self) -> u64 {
        self.counter("cluster.claveunica.upstream_rq_total")
    }

    /// The second gate's base URL and its emulator's URL ([`StackBuilder::second_gate`]).
    pub fn second(&self) -> Option<(&str, &str)> {
        self.second.as_ref().map(|(base, provider)| (base.as_str(), provider.as_str()))
    }

    /// A browser with an empty cookie jar.
    pub fn browser(&self) -> Browser {
        match &self.cert {
            Some(cert) => Browser::with_agent(cert.agent(HTTP_TIMEOUT), &self.base, &self.provider),
            None => Browser::new(&self.base, &self.provider),
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.expect_vm_failure && !thread::panicking() {
            let log = self.envoy_log();
            let failures: Vec<&str> = log.lines().filter(|l| VM_FAILURE_MARKS.iter().any(|m| l.contains(m))).collect();
            // The processes stop as the fields drop; the files stay, as for any failed test.
            assert!(failures.is_empty(), "the gate's VM failed during the test:\n{}", failures.join("\n"));
        }
        tear_down(&mut self.children, &self.dir, "end-to-end stack", "Envoy", &self.log_path);
    }
}

/// A counter from the admin stats of the Envoy whose admin listens at `admin`; 0 while Envoy
/// has not made it yet.
pub fn admin_counter(admin: &str, name: &str) -> u64 {
    let url = format!("{admin}/stats?filter={}", name.replace('.', "%5C."));
    let body = match agent().get(&url).call() {
        Ok(r) => r.into_string().unwrap_or_else(|e| panic!("reading {url}: {e}")),
        Err(e) => panic!("GET {url}: {e}"),
    };
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| v.trim().parse().unwrap_or_else(|_| panic!("counter {name} is not a number: {v:?}")))
}

/// Switches the test modes of the emulator at `provider` (`POST /__emulator/mode`).
pub fn emulator_mode(provider: &str, modes: &serde_json::Value) -> serde_json::Value {
    emulator_post(provider, "/__emulator/mode", modes).2
}

/// Makes the emulator at `provider` sign with a fresh key (`POST /__emulator/rotate-key`),
/// publishing the old one beside it when `keep_old`; returns the new `kid`.
pub fn rotate_provider_key(provider: &str, keep_old: bool) -> String {
    let (url, answer, v) =
        emulator_post(provider, "/__emulator/rotate-key", &serde_json::json!({ "keep_old": keep_old }));
    v["kid"].as_str().unwrap_or_else(|| panic!("{url}: no kid in {answer}")).to_string()
}

/// What the emulator at `provider` has served so far (`GET /__emulator/stats`).
pub fn emulator_stats(provider: &str) -> EmulatorStats {
    let (url, body, v) = emulator_get(provider, "/__emulator/stats");
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or_else(|| panic!("{url}: no {k}: {body}"));
    EmulatorStats { jwks: n("jwks"), token: n("token"), userinfo: n("userinfo"), authorize: n("authorize") }
}

/// The last codes, access tokens and ID tokens the emulator at `provider` issued, newest last
/// (`GET /__emulator/issued`).
#[derive(Debug, Clone, Default)]
pub struct Issued {
    /// Authorization codes.
    pub codes: Vec<String>,
    /// Access tokens.
    pub access_tokens: Vec<String>,
    /// ID tokens, as signed (broken ones too, in the emulator's ID-token test modes).
    pub id_tokens: Vec<String>,
}

/// What the emulator at `provider` has issued lately (`GET /__emulator/issued`).
pub fn emulator_issued(provider: &str) -> Issued {
    let (url, body, v) = emulator_get(provider, "/__emulator/issued");
    let list = |k: &str| -> Vec<String> {
        let items = v.get(k).and_then(serde_json::Value::as_array).unwrap_or_else(|| panic!("{url}: no {k}: {body}"));
        items.iter().map(|s| s.as_str().unwrap_or_else(|| panic!("{url}: {k} holds {s}")).to_string()).collect()
    };
    Issued { codes: list("codes"), access_tokens: list("access_tokens"), id_tokens: list("id_tokens") }
}

/// `POST` of `json` to a test aid of the emulator: the URL, the answer and its JSON.
fn emulator_post(provider: &str, path: &str, json: &serde_json::Value) -> (String, String, serde_json::Value) {
    let url = format!("{provider}{path}");
    let body = match agent().post(&url).set("content-type", "application/json").send_string(&json.to_string()) {
        Ok(r) => r.into_string().unwrap_or_else(|e| panic!("reading {url}: {e}")),
        Err(e) => panic!("POST {url} {json}: {e}"),
    };
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url} is not JSON ({e}): {body}"));
    (url, body, v)
}

/// `GET` of a test aid's JSON at the emulator: the URL, the body and its JSON.
fn emulator_get(provider: &str, path: &str) -> (String, String, serde_json::Value) {
    let url = format!("{provider}{path}");
    let body = match agent().get(&url).call() {
        Ok(r) => r.into_string().unwrap_or_else(|e| panic!("reading {url}: {e}")),
        Err(e) => panic!("GET {url}: {e}"),
    };
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url} is not JSON ({e}): {body}"));
    (url, body, v)
}
