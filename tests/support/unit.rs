//! The NGINX Unit flavour's harness: the built component (`claveunica_gate_unit.wasm`) under
//! `wasmtime serve`, the reference host of the `wasi:http/proxy` world that Unit's
//! `wasm-wasi-component` applications run (Unit embeds wasmtime), in front of the legacy app,
//! with the emulator as the provider, all on loopback.
//!
//! The component reads its configuration file on every fresh instance, so [`UnitStack`]
//! starts `wasmtime serve` on a port the kernel picks, then writes the configuration (whose
//! `redirect_uri` needs that port), and tests may rewrite it while the stack runs.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::client::Browser;
use super::process::{built, random_key, spawn_app, spawn_listening, tail, tear_down, unique_dir, App, Children};
use super::stack::{emulator_mode, SiteClient};
use super::{CALLBACK_PATH, CLIENT_ID, CLIENT_SECRET};

/// How to build what this harness runs.
pub const UNIT_BUILD_HINT: &str = "cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
cargo build --release -p claveunica-emulator -p legacy-app";
/// Where the configuration directory appears inside the component.
const GUEST_DIR: &str = "/etc/claveunica-gate";
/// What `wasmtime serve` prints once it listens.
const SERVING: &str = "Serving HTTP on ";
const SERVE_TIMEOUT: Duration = Duration::from_secs(60);

fn wasmtime_bin() -> PathBuf {
    std::env::var_os("WASMTIME_BIN").map_or_else(|| PathBuf::from("wasmtime"), PathBuf::from)
}

/// Waits for `wasmtime serve` to say where it listens (on stderr); returns `http://ADDR`.
/// Its whole stderr is copied to `log` as it comes, for the tests to read.
fn wait_serving(stderr: std::process::ChildStderr, log: &Path) -> String {
    let mut file = File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        let mut tx = Some(tx);
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let _ = std::io::Write::write_all(&mut file, line.as_bytes());
                    if let Some(rest) = line.trim().strip_prefix(SERVING) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(rest.trim_end_matches('/').to_string());
                        }
                    }
                }
            }
        }
    });
    rx.recv_timeout(SERVE_TIMEOUT).unwrap_or_else(|_| {
        panic!("wasmtime serve did not start within {SERVE_TIMEOUT:?}; its stderr:\n{}", read_tail(log))
    })
}

fn read_tail(path: &Path) -> String {
    tail(&fs::read_to_string(path).unwrap_or_default(), 30)
}

/// Emulator, legacy app and the component under `wasmtime serve`. Everything stops on drop;
/// the working directory (configuration, logs) stays when the test failed.
pub struct UnitStack {
    children: Children,
    dir: PathBuf,
    base: String,
    provider: String,
    app: String,
    log_path: PathBuf,
    config: serde_json::Value,
}

impl UnitStack {
    /// Starts everything with the default configuration: every path enforced but `/public/`.
    pub fn start() -> UnitStack {
        UnitStack::start_with(App::Portal)
    }

    /// Likewise, with this server of the legacy app as the upstream.
    pub fn start_with(app: App) -> UnitStack {
        UnitStack::start_with_clients(app, &[])
    }

    /// Likewise, with further clients registered at the emulator for sites of the gate's.
    pub fn start_with_clients(app: App, site_clients: &[SiteClient]) -> UnitStack {
        let emulator_bin = built("release/claveunica-emulator", UNIT_BUILD_HINT);
        let app_bin = built("release/legacy-app", UNIT_BUILD_HINT);
        let wasm = built("wasm32-wasip2/release/claveunica_gate_unit.wasm", UNIT_BUILD_HINT);
        let dir = unique_dir();
        let config_dir = dir.join("etc");
        fs::create_dir_all(&config_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", config_dir.display()));
        let mut children = Children::default();

        let mut cmd = Command::new(wasmtime_bin());
        cmd.arg("serve")
            .args(["--addr", "127.0.0.1:0"])
            // cli: environment variables and the preopened directory for the configuration.
            .args(["-S", "cli"])
            .arg("--dir")
            .arg(format!("{}::{GUEST_DIR}", config_dir.display()))
            .arg("--env")
            .arg(format!("CLAVEUNICA_GATE_CONFIG={GUEST_DIR}/config.json"))
            .arg("--env")
            .arg(format!("CLAVEUNICA_CLIENT_SECRET={CLIENT_SECRET}"))
            .arg(&wasm)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start wasmtime ({cmd:?}; set WASMTIME_BIN or put it on PATH): {e}"));
        let stderr = child.stderr.take();
        children.push("wasmtime", child);
        let log_path = dir.join("wasmtime.log");
        let Some(stderr) = stderr else { panic!("wasmtime: no stderr pipe") };
        let base = wait_serving(stderr, &log_path);

        let redirect_uri = format!("{base}{CALLBACK_PATH}");
        let mut cmd = Command::new(&emulator_bin);
        // Registered like an agency's credentials: the callback and, as the Logout URI, the gate's
        // origin (the emulator's logout answers 204 for any other origin, as ClaveÚnica does).
        cmd.args(["--listen", "127.0.0.1:0", "--redirect-uri", &redirect_uri, "--logout-uri", &format!("{base}/")]);
        for client in site_clients {
            cmd.args(["--client", &client.emulator_arg(&base)]);
        }
        let provider = spawn_listening("claveunica-emulator", cmd, &dir, &mut children);
        let app = spawn_app(&app_bin, app, &dir, &mut children);

        let config = serde_json::json!({
            "issuer": format!("{provider}/openid"),
            "client_id": CLIENT_ID,
            "client_secret_env": "CLAVEUNICA_CLIENT_SECRET",
            "redirect_uri": redirect_uri,
            "session_keys": [random_key()],
            "upstream": app,
            "rules": [{"prefix": "/public/", "action": "public"}],
        });
        let stack = UnitStack { children, dir, base, provider, app, log_path, config };
        stack.write_config(&stack.config.to_string());
        stack
    }

    /// Replaces the configuration file the component reads (each fresh instance reads it).
    pub fn write_config(&self, text: &str) {
        let path = self.dir.join("etc").join("config.json");
        fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// The configuration written at start.
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    /// The gate's origin, `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The emulator's authorize endpoint, as the gate derives it from `issuer`.
    pub fn authorize_endpoint(&self) -> String {
        format!("{}/openid/authorize/", self.provider)
    }

    /// The emulator's origin.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The legacy app's origin.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// What the component and wasmtime logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The legacy app's request log (`METHOD /path STATUS` lines).
    pub fn app_log(&self) -> String {
        fs::read_to_string(self.dir.join("legacy-app.stderr")).unwrap_or_default()
    }

    /// How many requests reached the legacy app so far.
    pub fn app_requests(&self) -> usize {
        self.app_log().lines().filter(|l| l.starts_with(char::is_uppercase)).count()
    }

    /// Switches the emulator's test modes (`POST /__emulator/mode`); returns what it says.
    pub fn set_emulator_mode(&self, modes: &serde_json::Value) -> serde_json::Value {
        emulator_mode(&self.provider, modes)
    }

    /// Kills the legacy app: the component's upstream becomes unreachable.
    pub fn stop_app(&mut self) {
        self.children.kill("legacy-app");
    }

    /// Kills the emulator: the provider becomes unreachable.
    pub fn stop_provider(&mut self) {
        self.children.kill("claveunica-emulator");
    }

    /// The peak resident memory of the wasmtime process so far, in KiB (`VmHWM`).
    pub fn wasmtime_peak_rss_kib(&mut self) -> u64 {
        let pid = self.children.get("wasmtime").map(|c| c.id()).unwrap_or_else(|| panic!("wasmtime is not running"));
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
    }

    /// A browser with an empty cookie jar.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.base, &self.provider)
    }
}

impl Drop for UnitStack {
    fn drop(&mut self) {
        tear_down(&mut self.children, &self.dir, "unit stack", "wasmtime", &self.log_path);
    }
}

/// The test pattern of the legacy app's `/__bulk`: byte `i` is `i % 251`.
pub struct Pattern {
    offset: u64,
    len: u64,
}

impl Pattern {
    /// `len` bytes of the pattern.
    pub fn new(len: u64) -> Pattern {
        Pattern { offset: 0, len }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.len - self.offset).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        for (i, b) in buf.iter_mut().take(n).enumerate() {
            *b = ((self.offset + i as u64) % 251) as u8;
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// 64-bit FNV-1a, as the legacy app's `/__bulk` computes it.
pub fn fnv1a(reader: &mut dyn Read) -> (u64, String) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).unwrap_or_else(|e| panic!("reading a body after {total} bytes: {e}"));
        if n == 0 {
            break;
        }
        for b in &buf[..n] {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        total += n as u64;
    }
    (total, format!("{hash:016x}"))
}
