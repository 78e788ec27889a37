#!/usr/bin/env bash
# The size of the shipped Envoy/Istio module: builds it as scripts/release.sh does
# (cargo build --release --target wasm32-wasip1), runs binaryen's wasm-opt -Oz over it, and
# prints both sizes in bytes, and the shipped one gzipped (as the OCI image's layer carries it).
# With --max BYTES it fails when the shipped module (cargo's, what release.sh and the image hold)
# is larger: the CI gate for issue 16's footprint target (450 KB).
#
# The optimised module is not shipped: Envoy's V8 compiles it more slowly and with more memory
# than cargo's (benches/PROFILE.md, "Start and memory"); it is built to measure that.
#
#   bash scripts/size.sh [--max BYTES] [--no-build]
#
# The optimised module is written beside the built one, as
# target/wasm32-wasip1/release/claveunica_gate.opt.wasm; CLAVEUNICA_GATE_WASM=that path runs the
# Envoy tests against it (tests/support/stack.rs).
#
# wasm-opt comes from npm's `binaryen` package, pinned, installed under target/ (nothing global,
# no package.json written): Debian's binaryen is version 108 (2022) and other distributions lag
# as much, while npm's follows binaryen's releases. Version 132 (published 2026-08-13) is the
# newest in December 2026, and gives a smaller module than Debian's 108; it runs under Node (the package is binaryen compiled to JavaScript and
# wasm), so it needs only the `node` and `npm` a CI image has. A different version may give a
# different size: change it here, on purpose, and re-measure (benches/PROFILE.md, "Size").
# When a `wasm-opt` is also on PATH (Debian's), its result is printed for comparison only.
set -euo pipefail
cd "$(dirname "$0")/.."

BINARYEN_VERSION=132.0.0
# -Oz: binaryen's size-first pipeline. Never --traps-never-happen or --ignore-implicit-traps:
# they let binaryen assume that no panic or trap happens, which for this module is not true.
WASM_OPT_FLAGS=(-Oz)

# The WebAssembly features wasm-opt may use: exactly those rustc compiled the module for. The
# stripped module has no target_features section to read them from, so they come from
# `rustc --print cfg` in binaryen's names (LLVM's bulk-memory includes what binaryen calls
# bulk-memory-opt, and reference-types the overlong call_indirect encoding). `$1` is the
# binaryen in use: Debian's 108 does not know the two newer names.
features() {
  local flags=() feature
  for feature in $(rustc --print cfg --target wasm32-wasip1 | sed -n 's/^target_feature="\(.*\)"$/\1/p'); do
    case $feature in
      bulk-memory) flags+=(--enable-bulk-memory); [ "$1" = old ] || flags+=(--enable-bulk-memory-opt) ;;
      reference-types) flags+=(--enable-reference-types); [ "$1" = old ] || flags+=(--enable-call-indirect-overlong) ;;
      nontrapping-fptoint) flags+=(--enable-nontrapping-float-to-int) ;;
      sign-ext | mutable-globals | multivalue | simd | tail-call | extended-const) flags+=("--enable-$feature") ;;
      crt-static) ;;
      *) echo "scripts/size.sh: rustc enables the wasm feature '$feature', unknown here; add it" >&2; return 1 ;;
    esac
  done
  echo "${flags[@]}"
}

max=
build=1
while [ $# -gt 0 ]; do
  case $1 in
    --max) max=${2:?--max needs a number of bytes}; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: bash scripts/size.sh [--max BYTES] [--no-build]" >&2; exit 2 ;;
  esac
done
case $max in
  '' | *[!0-9]*) [ -z "$max" ] || { echo "scripts/size.sh: --max wants a number of bytes, not '$max'" >&2; exit 2; } ;;
esac

target=${CARGO_TARGET_DIR:-target}
module="$target/wasm32-wasip1/release/claveunica_gate.wasm"
optimised="$target/wasm32-wasip1/release/claveunica_gate.opt.wasm"

if [ "$build" = 1 ]; then
  echo "== build: cargo build --release --target wasm32-wasip1 -p claveunica-gate-envoy" >&2
  cargo build --release --target wasm32-wasip1 -p claveunica-gate-envoy >&2
fi
[ -f "$module" ] || { echo "scripts/size.sh: $module is missing (drop --no-build)" >&2; exit 1; }

tools="$target/tools/binaryen-$BINARYEN_VERSION"
wasm_opt="$tools/node_modules/.bin/wasm-opt"
if [ ! -x "$wasm_opt" ]; then
  echo "== npm: binaryen@$BINARYEN_VERSION into $tools" >&2
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-save --no-audit --no-fund "binaryen@$BINARYEN_VERSION" >&2
fi
# The installed package is the pinned one, not whatever an earlier install left.
installed=$(node -p 'require(require("path").resolve(process.argv[1])).version' "$tools/node_modules/binaryen/package.json")
[ "$installed" = "$BINARYEN_VERSION" ] || {
  echo "scripts/size.sh: $tools holds binaryen $installed, not $BINARYEN_VERSION; remove it" >&2
  exit 1
}

# Two steps, so that set -e stops on an unknown feature (a failed substitution inside `read`'s
# here-string would not).
current_features=$(features current)
read -ra current_features <<<"$current_features"
"$wasm_opt" "${WASM_OPT_FLAGS[@]}" "${current_features[@]}" "$module" -o "$optimised"

size() { wc -c <"$1" | tr -d ' '; }
built_size=$(size "$module")
opt_size=$(size "$optimised")
printf '%-44s %9s bytes\n' "built (cargo, stripped), shipped" "$built_size"
printf '%-44s %9s bytes\n' "shipped, gzip -9 (the image's layer)" "$(gzip -9 -c "$module" | wc -c | tr -d ' ')"
printf '%-44s %9s bytes  %s\n' "wasm-opt ${WASM_OPT_FLAGS[*]} (npm binaryen $BINARYEN_VERSION)" "$opt_size" "$optimised"

if command -v wasm-opt >/dev/null; then
  other=$(mktemp)
  trap 'rm -f "$other"' EXIT
  system_version=$(wasm-opt --version 2>/dev/null | head -n 1)
  old_features=$(features old)
  read -ra old_features <<<"$old_features"
  if wasm-opt "${WASM_OPT_FLAGS[@]}" "${old_features[@]}" "$module" -o "$other" 2>/dev/null; then
    printf '%-44s %9s bytes  (comparison only)\n' "wasm-opt ${WASM_OPT_FLAGS[*]} ($system_version)" "$(size "$other")"
  else
    echo "wasm-opt on PATH ($system_version) failed on this module (comparison only)" >&2
  fi
fi

if [ -n "$max" ] && [ "$built_size" -gt "$max" ]; then
  echo "scripts/size.sh: the shipped module is $built_size bytes, over the limit of $max" >&2
  exit 1
fi
