//! The application's sidecar: a second Envoy between the gate and the legacy app, running
//! `envoy/verifier-sidecar.yaml.tmpl` (Envoy's `jwt_authn` verifying the gate's signed
//! assertion with the keys the gate publishes), as an operator would put one in front of an
//! application. It listens on a port chosen before the gate starts, since the gate's upstream
//! is the sidecar and the sidecar's JWKS comes from the gate.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::client::agent;
use super::envoy::{assert_filled, envoy_bin, fill};
use super::process::{free_port, tail, tear_down, unique_dir, workspace_root, Children};
use super::stack::{admin_counter, port_of};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const TEMPLATE: &str = "envoy/verifier-sidecar.yaml.tmpl";

/// What the sidecar checks an assertion against: the gate's `assertion` section.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `assertion.issuer`.
    pub issuer: &'a str,
    /// `assertion.audience`.
    pub audience: &'a str,
}

/// The sidecar Envoy, stopped on drop.
pub struct Verifier {
    children: Children,
    dir: PathBuf,
    base: String,
    admin: String,
    log_path: PathBuf,
}

impl Verifier {
    /// A free loopback port for the sidecar to listen on: the gate's upstream.
    pub fn pick_port() -> u16 {
        free_port()
    }

    /// Starts the sidecar on `port` in front of the app at `app` (`http://127.0.0.1:N`),
    /// fetching the gate's keys from the gate at `gate` (its origin), and waits until Envoy is
    /// live. Panics if the port was taken meanwhile: the gate already points at it.
    pub fn start(port: u16, app: &str, gate: &str, expected: Expected<'_>) -> Verifier {
        let template_path = workspace_root().join(TEMPLATE);
        let template = fs::read_to_string(&template_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", template_path.display()));
        let admin_port = free_port();
        let yaml = fill(
            &template,
            &[
                ("ADMIN_PORT", admin_port.to_string()),
                ("LISTEN_PORT", port.to_string()),
                ("APP_PORT", port_of(app).to_string()),
                ("GATE_PORT", port_of(gate).to_string()),
                ("GATE_ORIGIN", gate.trim_end_matches('/').to_string()),
                ("ASSERTION_ISSUER", expected.issuer.to_string()),
                ("ASSERTION_AUDIENCE", expected.audience.to_string()),
            ],
        );
        assert_filled(&yaml, TEMPLATE);
        let dir = unique_dir();
        let yaml_path = dir.join("sidecar.yaml");
        fs::write(&yaml_path, yaml).unwrap_or_else(|e| panic!("cannot write {}: {e}", yaml_path.display()));
        let log_path = dir.join("sidecar.log");
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&yaml_path)
            .args(["--concurrency", "1", "--log-level", "warn", "--component-log-level", "jwt:debug"])
            .arg("--disable-hot-restart")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start the sidecar Envoy ({cmd:?}): {e}"));
        let mut children = Children::default();
        children.push("sidecar-envoy", child);
        let mut verifier = Verifier {
            children,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            log_path,
        };
        verifier.wait_live();
        verifier
    }

    fn wait_live(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.children.get("sidecar-envoy").and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the sidecar Envoy exited ({status}); log tail:\n{}", tail(&self.log(), 40));
            }
            if let Ok(r) = agent().get(&format!("{}/ready", self.admin)).call() {
                if r.into_string().is_ok_and(|b| b.trim() == "LIVE") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the sidecar Envoy was not live within {READY_TIMEOUT:?}; log tail:\n{}",
                tail(&self.log(), 40)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The sidecar's origin: where a pod in the mesh could send requests without the gate.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// What the sidecar logged (its `jwt` component at debug: why each assertion failed).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// How many requests the sidecar let through to the application.
    pub fn app_requests(&self) -> u64 {
        self.counter("cluster.application.upstream_rq_total")
    }

    /// How many times the sidecar fetched the gate's JWKS.
    pub fn jwks_fetches(&self) -> u64 {
        self.counter("cluster.claveunica_gate.upstream_rq_total")
    }

    fn counter(&self, name: &str) -> u64 {
        admin_counter(&self.admin, name)
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        tear_down(&mut self.children, &self.dir, "sidecar", "sidecar Envoy", &self.log_path);
    }
}
