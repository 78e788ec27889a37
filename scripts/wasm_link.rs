//! The build script of the two shipped modules, the Envoy filter (`envoy/`) and the Unit
//! component (`nginx-unit/`, where wasm-component-ld hands the options on to wasm-ld): their
//! link options.
//!
//! wasm-ld writes every function index and address it relocates as a five-byte LEB128, so that
//! it can patch each one in place; `--compress-relocations` rewrites them at their shortest. That
//! takes about 57 KB (7%) off the module Envoy reads and keeps in memory in every sidecar, and
//! 84 KB off the component, with the code otherwise unchanged (`benches/PROFILE.md`, "Size").
//! wasm-ld allows it only when no debug information is written, so it comes with `--strip-debug`
//! and only in builds without debug information (the release profile): a debug build keeps its
//! DWARF for a debugger.

fn main() {
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    let debug = std::env::var("DEBUG").is_ok_and(|d| d != "false");
    if wasm && !debug {
        println!("cargo:rustc-link-arg-cdylib=--compress-relocations");
        println!("cargo:rustc-link-arg-cdylib=--strip-debug");
    }
}
