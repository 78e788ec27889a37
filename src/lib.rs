//! ClaveÚnica Gate: ClaveÚnica OpenID Connect login in front of a legacy web application.
//!
//! # The contract
//!
//! The protocol core in this crate does no I/O. It never reads a clock, never draws random
//! bytes by itself, never opens a socket and knows nothing of proxy-wasm or WASI. It takes
//! facts (a request's method, path and headers, the current time, random bytes, the answers
//! of the calls it asked for) and returns a [`gate::Decision`]: forward the request upstream
//! with these header changes, answer it with this response, or make this call and resume me
//! with its answer. The same core is tested natively, tested again compiled to wasm, and
//! driven by thin host adapters (`proxy_wasm` for Envoy and Istio).
//!
//! # How an adapter drives the core
//!
//! 1. At configuration time, parse the JSON document with [`config::Config::from_json`] and
//!    build one [`gate::Gate`]; a configuration error refuses the load.
//! 2. When a request's headers arrive, call [`gate::Gate::on_request`] with the request, the
//!    current time and an entropy source. Apply the [`gate::Decision`] it returns.
//! 3. A [`gate::Decision::Call`] carries an outbound request and a [`gate::Pending`]
//!    continuation. Send the request; when its answer (or failure) arrives, call
//!    [`gate::Gate::on_call_response`] with the continuation, and apply the next decision.
//!    A login takes up to three calls in a row (token, JWKS when a key is unknown, userinfo).
//! 4. Log the [`gate::LogLine`] a decision carries, if any, at the level it names.
//!
//! Every request yields a decision, and nothing unauthenticated is ever forwarded to a
//! protected path: the only decision that forwards a request on a protected path carries
//! identity opened from a session cookie that this gate sealed.

#![deny(unsafe_code)]
#![deny(unused_must_use)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

// The layers, from the bottom up; each only uses the ones before it.
pub mod check;
pub mod config;
pub mod gate;
pub mod policy;
pub mod primitives;
pub mod protocol;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod web;
