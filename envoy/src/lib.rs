//! ClaveÚnica Gate for Envoy and Istio: the proxy-wasm adapter over `claveunica_core`.
//!
//! Glue only. Facts go in (headers, the host clock, WASI random bytes, call answers, shared
//! data), the core's decisions come out and are carried out with host calls; events become
//! counters. Whatever the gate decides is decided in the core, once for Envoy and NGINX Unit.
//!
//! Build: `cargo build --release --target wasm32-wasip1` at the repository root, giving
//! `target/wasm32-wasip1/release/claveunica_gate.wasm`. On any other target this crate is
//! empty but for the tests of its pure parts, the header map codec (`pairs.rs`) and the header
//! list of a call (`call.rs`).

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(all(target_arch = "wasm32", target_os = "wasi", target_env = "p1"))]
#[allow(unsafe_code)] // proxy-wasm's host calls without the SDK's panicking helpers.
mod abi;
#[cfg(all(target_arch = "wasm32", target_os = "wasi", target_env = "p1"))]
mod filter;
#[cfg(all(target_arch = "wasm32", target_os = "wasi", target_env = "p1"))]
mod host;
// Pure, so their tests run natively too.
#[cfg(any(test, all(target_arch = "wasm32", target_os = "wasi", target_env = "p1")))]
mod call;
#[cfg(any(test, all(target_arch = "wasm32", target_os = "wasi", target_env = "p1")))]
mod pairs;

/// The module's entry: the host calls `_initialize` once per VM, which installs the root
/// context. Here, not in `filter.rs`, so the VM failure drill (`envoy/drill/`) can build the same
/// filter code behind an entry of its own.
#[cfg(all(target_arch = "wasm32", target_os = "wasi", target_env = "p1"))]
#[allow(unsafe_code)] // proxy_wasm::main! exports the `_initialize` symbol the host calls.
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|_| crate::filter::root_context());
    }}
}
