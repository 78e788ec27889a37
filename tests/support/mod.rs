//! The end-to-end harness: the built gate inside a real Envoy (or, in [`unit`], the NGINX
//! Unit component under `wasmtime serve`), in front of the legacy echo app, with the
//! ClaveÚnica emulator as the provider, all on loopback.
//!
//! [`Stack::start`] brings the three processes up on fresh ports and tears them down on drop;
//! [`Browser`] is a cookie-keeping HTTP client that follows no redirects, so each step of a
//! login can be looked at (and tampered with) on its own. What the test files share beyond
//! that (waiting for a log line, a logged-in browser, sealing a session) is in [`checks`].
//!
//! The binaries are not built here: the test command builds them first (see [`BUILD_HINT`]).
#![cfg(not(target_arch = "wasm32"))]
// Each test file uses its own part of the harness.
#![allow(dead_code)]

/// Runs each named `fn(Host)` once per host, as tests `on_envoy::NAME` and `on_unit::NAME`.
/// The test file brings `Host` into scope and declares `#[macro_use] mod support;`.
#[allow(unused_macros)]
macro_rules! on_both_hosts {
    ($($name:ident),* $(,)?) => {
        mod on_envoy {
            $(#[test] fn $name() { super::$name(super::Host::Envoy) })*
        }
        mod on_unit {
            $(#[test] fn $name() { super::$name(super::Host::Unit) })*
        }
    };
}

pub mod checks;
pub mod client;
pub mod envoy;
pub mod http2;
pub mod parse;
pub mod process;
pub mod stack;
pub mod tls;
/// The NGINX Unit component under `wasmtime serve`.
pub mod unit;
/// The application's sidecar verifying the gate's assertion.
pub mod verifier;

// What the test files name most, at the top; each file uses some of it.
#[allow(unused_imports)]
pub use checks::{assert_sent_to_login, log_line_with, logged_in, seal_session, wait_for_log};
#[allow(unused_imports)]
pub use client::{param, raw_http1, url_encode, with_param, Authorize, Browser};
#[allow(unused_imports)]
pub use parse::{parse_http1, Echo, Response};
#[allow(unused_imports)]
pub use process::{now, random_bytes, random_key, wait_until};
#[allow(unused_imports)]
pub use stack::Stack;

/// How to build what the harness runs.
pub const BUILD_HINT: &str = "cargo build --release --target wasm32-wasip1 && \
cargo build --release -p claveunica-emulator -p legacy-app";
/// How to build the VM failure drill's module ([`stack::StackBuilder::drill_module`]), which
/// `cargo build --release --target wasm32-wasip1` leaves out (`tests/run.sh` builds it).
pub const DRILL_BUILD_HINT: &str = "cargo build --release --target wasm32-wasip1 -p claveunica-gate-drill";
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

/// María Carmen's names, percent-encoded as the default identity headers carry them.
pub const NOMBRES: &str = "Mar%C3%ADa%20Carmen";
/// Her surnames, likewise.
pub const APELLIDOS: &str = "De%20los%20R%C3%ADos%20N%C3%BA%C3%B1ez";
