#!/usr/bin/env bash
# The release image through a real registry: builds the release artifacts (scripts/release.sh),
# starts Debian's docker-registry (the CNCF distribution registry) on a free loopback port with
# its storage in a temporary directory, pushes the image with skopeo from the layout and from the
# archive, and checks what an operator relies on:
#
#   1. the same module gives the same image twice (digest and archive bytes); a module one byte
#      different gives another digest (the positive control: the comparison can fail);
#   2. the manifest digest the registry serves for the tag (its Docker-Content-Digest header, and
#      the sha256 of the manifest bytes skopeo reads back) is the digest release.sh printed;
#   3. pulled back by that digest, the image's last layer holds, as plugin.wasm, the module
#      byte for byte, read by the rules Istio and Envoy Gateway apply (scripts/oci_image.py
#      extract), and its sha256 is the one in claveunica_gate.wasm.sha256;
#   4. a layer tampered with in the registry's storage (one byte, same size) is refused by the
#      pull, and a tampered layer in a layout is refused by the extraction.
#
# Nothing is skipped: a missing tool fails the test.
#
#   bash tests/image/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

fail() { echo "tests/image: FAIL: $*" >&2; exit 1; }
pass() { echo "tests/image: ok: $*"; }
for tool in skopeo docker-registry python3 curl sha256sum cmp; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (apt-get install docker-registry skopeo)"
done

work=$(mktemp -d)
registry_pid=''
cleanup() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# skopeo's signature policy, here and not /etc/containers/policy.json, so the test does not depend
# on the machine's: the test checks digests itself.
policy="$work/policy.json"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$policy"
skopeo_() { skopeo --policy "$policy" "$@"; }

# --- 1. the release artifacts, twice, and a module one byte different --------------------------
tag=test
bash scripts/release.sh --tag "$tag" --out "$work/first" >"$work/first.out"
printed=$(sed -n 's/^manifest digest: //p' "$work/first.out")
[[ $printed =~ ^sha256:[0-9a-f]{64}$ ]] || fail "release.sh printed no manifest digest: $(cat "$work/first.out")"
[ "$(cat "$work/first/claveunica-gate.digest")" = "$printed" ] || fail "claveunica-gate.digest is not the printed digest"
module="$work/first/claveunica_gate.wasm"
cmp -s "$module" target/wasm32-wasip1/release/claveunica_gate.wasm || fail "the release module is not the built module"
(cd "$work/first" && sha256sum -c --quiet claveunica_gate.wasm.sha256) || fail "claveunica_gate.wasm.sha256 does not match the module"

sleep 1 # a second later, so a build time that leaked into the image would show
bash scripts/release.sh --tag "$tag" --out "$work/second" >"$work/second.out"
[ "$(sed -n 's/^manifest digest: //p' "$work/second.out")" = "$printed" ] || fail "a second release of the same module has another digest"
cmp -s "$work/first/claveunica-gate-oci.tar" "$work/second/claveunica-gate-oci.tar" || fail "a second release of the same module has another archive"
(cd "$work/first/claveunica-gate-oci" && find . -type f | sort | xargs sha256sum) >"$work/first.files"
(cd "$work/second/claveunica-gate-oci" && find . -type f | sort | xargs sha256sum) >"$work/second.files"
cmp -s "$work/first.files" "$work/second.files" || fail "a second release of the same module has another layout"
pass "the same module gives the same image twice: $printed"

python3 - "$module" "$work/other.wasm" <<'EOF'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[-1] ^= 0x01  # the last byte: still a module's magic at the start
open(sys.argv[2], "wb").write(bytes(data))
EOF
other=$(python3 scripts/oci_image.py build "$work/other.wasm" "$work/other-oci" "$work/other-oci.tar" "$tag")
[[ $other =~ ^sha256:[0-9a-f]{64}$ ]] && [ "$other" != "$printed" ] || fail "a module one byte different gave the digest $other"
pass "a module one byte different gives another digest: $other"

# --- 2. a real registry, the image pushed, the digest it serves ---------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/storage"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  kill -0 "$registry_pid" 2>/dev/null || fail "docker-registry exited: $(cat "$work/registry.log")"
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/v2/" >/dev/null || fail "docker-registry did not answer on 127.0.0.1:$port"
repo="127.0.0.1:$port/claveunica-gate"

skopeo_ copy --quiet --dest-tls-verify=false "oci:$work/first/claveunica-gate-oci:$tag" "docker://$repo:$tag" \
  || fail "skopeo could not push the layout"
skopeo_ copy --quiet --dest-tls-verify=false "oci-archive:$work/first/claveunica-gate-oci.tar:$tag" "docker://$repo:$tag-archive" \
  || fail "skopeo could not push the archive"

for t in "$tag" "$tag-archive"; do
  served=$(curl -sfI -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://127.0.0.1:$port/v2/claveunica-gate/manifests/$t" \
    | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p') || true
  [ "$served" = "$printed" ] || fail "the registry serves $t with the digest '$served', not the printed $printed"
  skopeo_ inspect --raw --tls-verify=false "docker://$repo:$t" >"$work/raw-$t.json" || fail "skopeo could not read the manifest of $t"
  [ "sha256:$(sha256sum <"$work/raw-$t.json" | cut -d' ' -f1)" = "$printed" ] \
    || fail "the manifest bytes skopeo reads for $t do not hash to $printed"
  # The check envoy/README.md gives operators after their push.
  inspected=$(skopeo_ inspect --tls-verify=false --format '{{.Digest}}' "docker://$repo:$t") || fail "skopeo inspect failed on $t"
  [ "$inspected" = "$printed" ] || fail "skopeo inspect says $t is $inspected, not $printed"
done
pass "the registry serves the printed digest for the layout's push and the archive's"

# --- 3. pulled back by digest: the module, byte for byte ----------------------------------------
skopeo_ copy --quiet --src-tls-verify=false "docker://$repo@$printed" "oci:$work/pulled:pulled" \
  || fail "skopeo could not pull $repo@$printed"
pulled_digest=$(python3 scripts/oci_image.py extract "$work/pulled" pulled "$work/pulled.wasm") \
  || fail "the pulled image is not one Istio and Envoy Gateway would read"
[ "$pulled_digest" = "$printed" ] || fail "the pulled manifest is $pulled_digest, not $printed"
cmp "$work/pulled.wasm" "$module" || fail "the module in the pulled image is not claveunica_gate.wasm"
[ "$(sha256sum <"$work/pulled.wasm" | cut -d' ' -f1)" = "$(cut -d' ' -f1 "$work/first/claveunica_gate.wasm.sha256")" ] \
  || fail "the pulled module's sha256 is not the one in claveunica_gate.wasm.sha256"
pass "pulled by digest, plugin.wasm in the last layer is claveunica_gate.wasm byte for byte ($(wc -c <"$module") bytes)"

# --- 4. tampered layers are refused -------------------------------------------------------------
layer=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["layers"][-1]["digest"].split(":")[1])' "$work/raw-$tag.json")
stored="$work/storage/docker/registry/v2/blobs/sha256/${layer:0:2}/$layer/data"
[ -f "$stored" ] || fail "the layer is not where the registry's filesystem storage keeps blobs: $stored"
flip() { # FILE: one byte in the middle changed, the size kept
  python3 - "$1" <<'EOF'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0xFF
open(path, "wb").write(bytes(data))
EOF
}
flip "$stored"
if skopeo_ copy --quiet --src-tls-verify=false "docker://$repo@$printed" "oci:$work/tampered:tampered" 2>"$work/tampered.err"; then
  fail "a pull of a layer tampered with in the registry succeeded"
fi
grep -qi 'digest' "$work/tampered.err" || fail "the tampered pull failed, but not on a digest: $(cat "$work/tampered.err")"
pass "a layer tampered with in the registry is refused by the pull: $(grep -i -m1 'digest' "$work/tampered.err")"

cp -r "$work/pulled" "$work/pulled-tampered"
flip "$work/pulled-tampered/blobs/sha256/$layer"
if python3 scripts/oci_image.py extract "$work/pulled-tampered" pulled "$work/tampered.wasm" 2>"$work/extract.err"; then
  fail "a layout whose layer was tampered with gave a module"
fi
grep -q "blob sha256:$layer holds bytes whose digest is" "$work/extract.err" || fail "the tampered layout failed for another reason: $(cat "$work/extract.err")"
pass "a tampered layer in a layout is refused by the extraction"

echo "tests/image: all checks passed (registry $(docker-registry --version 2>/dev/null | head -n 1 || true); $(skopeo --version))"
