//! The VM failure drill: the Envoy filter, compiled from the adapter's own source files, behind
//! an entry that traps the VM when a request asks for it. Test only, never deployed.
//!
//! A VM failure has no honest outside trigger in the product (every input is bounded before
//! or by the gate), and a switch that traps must not ship in it. So the switch lives in this
//! separate module, `claveunica_gate_drill.wasm`, built from the same `abi.rs`, `host.rs`,
//! `pairs.rs` and `filter.rs` with the same release profile (`panic = "abort"`, so a panic is
//! a Wasm trap, as in the product). The product's crate is not changed by it: its module is
//! byte for byte what it is without this crate. `tests/faults.rs` runs it in a real Envoy to
//! show that a failed VM fails closed and, with `FAIL_RELOAD`, is replaced.
//!
//! Every callback goes to the product's contexts unchanged. The one difference: a request
//! carrying `x-drill: trap` is handled by the gate as usual (forged headers removed, identity
//! set, the decision carried out) and then, before the callback returns to Envoy, the VM
//! panics: the worst moment, with a forward already prepared.

// Only the module: natively, and in a test build (which would compile `pairs.rs`'s tests
// without their wasm test runner), the crate is empty.
#![cfg(all(not(test), target_arch = "wasm32", target_os = "wasi", target_env = "p1"))]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unsafe_code)] // proxy-wasm's host calls without the SDK's panicking helpers.
#[path = "../../src/abi.rs"]
mod abi;
#[path = "../../src/call.rs"]
mod call;
#[path = "../../src/filter.rs"]
mod filter;
#[path = "../../src/host.rs"]
mod host;
#[path = "../../src/pairs.rs"]
mod pairs;
mod trap;

/// The drill's entry, in place of the product's (`envoy/src/lib.rs`): the product's root
/// context, wrapped.
#[allow(unsafe_code)] // proxy_wasm::main! exports the `_initialize` symbol the host calls.
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|_| crate::trap::wrap(crate::filter::root_context()));
    }}
}
