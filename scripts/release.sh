#!/usr/bin/env bash
# Builds the release artifacts of the Envoy/Istio filter into target/release-artifacts/:
#
#   claveunica_gate.wasm          the module (cargo build --release --target wasm32-wasip1)
#   claveunica_gate.wasm.sha256   its SHA-256, in sha256sum's format (for file:// and http(s)://)
#   claveunica-gate-oci/          the OCI image, as an OCI image layout (skopeo: oci:DIR:TAG)
#   claveunica-gate-oci.tar       the same layout as one archive (skopeo: oci-archive:FILE:TAG)
#   claveunica-gate.digest        the image manifest digest, the one to pin (oci://...@sha256:)
#
# and prints the digest last. No Docker: scripts/oci_image.py writes the image with Python's
# standard library, reproducibly (the same module gives the same digest; tests/image/run.sh
# checks it). The tag is the adapter crate's version unless --tag says otherwise.
#
#   bash scripts/release.sh [--tag TAG] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/release-artifacts
tag=$(sed -n 's/^version = "\(.*\)"$/\1/p' envoy/Cargo.toml | head -n 1)
while [ $# -gt 0 ]; do
  case $1 in
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    *) echo "usage: bash scripts/release.sh [--tag TAG] [--out DIR]" >&2; exit 2 ;;
  esac
done
[ -n "$tag" ] || { echo "scripts/release.sh: no version in envoy/Cargo.toml; give --tag" >&2; exit 1; }

echo "== build: the gate for Envoy and Istio (wasm32-wasip1)"
cargo build --release --target wasm32-wasip1

mkdir -p "$out"
module="$out/claveunica_gate.wasm"
cp target/wasm32-wasip1/release/claveunica_gate.wasm "$module"
# sha256sum's own format, with the file's name only, so `sha256sum -c` works beside the file.
(cd "$out" && sha256sum claveunica_gate.wasm >claveunica_gate.wasm.sha256)

echo "== image: OCI image layout and archive, tag $tag"
digest=$(python3 scripts/oci_image.py build "$module" "$out/claveunica-gate-oci" "$out/claveunica-gate-oci.tar" "$tag")
echo "$digest" >"$out/claveunica-gate.digest"

cat <<EOF
$out/claveunica_gate.wasm         $(wc -c <"$module") bytes
$out/claveunica_gate.wasm.sha256  $(cut -d' ' -f1 "$out/claveunica_gate.wasm.sha256")
$out/claveunica-gate-oci/         OCI image layout, tag $tag
$out/claveunica-gate-oci.tar      the same, as one archive
$out/claveunica-gate.digest       the image manifest digest

Publish (envoy/README.md, "Publish the wasm"), then pin the digest:
  skopeo copy --preserve-digests oci:$out/claveunica-gate-oci:$tag docker://REGISTRY/claveunica-gate:$tag
  Istio WasmPlugin:           url: oci://REGISTRY/claveunica-gate@$digest
  or beside the tag:          url: oci://REGISTRY/claveunica-gate:$tag  +  sha256: ${digest#sha256:}
  Envoy Gateway image source: url: REGISTRY/claveunica-gate@$digest
manifest digest: $digest
EOF
