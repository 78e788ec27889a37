//! ClaveÚnica Gate for NGINX Unit: the gate as a `wasi:http/proxy` component.
//!
//! Unit cannot host proxy-wasm filters and has no auth subrequest, so on Unit the gate is the
//! authenticating reverse proxy itself: Unit's `wasm-wasi-component` application runs this
//! component for every request on its listener; the component answers the login, callback
//! and logout paths, calls ClaveÚnica through `wasi:http/outgoing-handler`, and forwards
//! authenticated requests to the legacy application (`upstream` in the configuration) with
//! the identity headers, streaming bodies both ways.
//!
//! The protocol is the core's (`claveunica_gate`), unchanged; this crate only translates.
//! [`forward`] decides what goes upstream and back without WASI types, and is tested natively;
//! the adapter itself (`component`) is compiled only for `wasm32-wasip2`.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit`, giving
//! `target/wasm32-wasip2/release/claveunica_gate_unit.wasm`.

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod forward;

#[cfg(all(target_arch = "wasm32", target_os = "wasi", target_env = "p2"))]
mod component;
