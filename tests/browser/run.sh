#!/usr/bin/env bash
# Starts the demo stack (examples/demo.sh) on its own ports, runs the browser tests against it
# with Debian's Chromium, and stops the stack. Screenshots land in target/browser-artifacts/.
#
#   bash tests/browser/run.sh
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)

command -v /usr/bin/chromium >/dev/null 2>&1 || { echo "tests/browser: /usr/bin/chromium is missing (apt-get install chromium)" >&2; exit 1; }
{ [ -d node_modules/playwright-core ] && [ -d node_modules/axe-core ]; } || npm ci --no-audit --no-fund --silent

export GATE_PORT=${GATE_PORT:-18080} PROVIDER_PORT=${PROVIDER_PORT:-18090} APP_PORT=${APP_PORT:-18091} ADMIN_PORT=${ADMIN_PORT:-18092}
log="$root/target/browser-artifacts/demo.out"
mkdir -p "$root/target/browser-artifacts"
DEMO_STATE="$root/target/browser-demo" setsid bash "$root/examples/demo.sh" >"$log" 2>&1 &
demo=$!
stop() { kill -- -"$demo" 2>/dev/null || kill "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; }
trap stop EXIT

for _ in $(seq 1 600); do
  grep -q "demo is running" "$log" 2>/dev/null && break
  kill -0 "$demo" 2>/dev/null || { echo "the demo stopped:"; cat "$log"; exit 1; }
  sleep 0.5
done
grep -q "demo is running" "$log" || { echo "the demo did not start:"; cat "$log"; exit 1; }

BASE="http://localhost:$GATE_PORT" ARTIFACTS="$root/target/browser-artifacts" node --test --test-concurrency=1 login.test.mjs pages.test.mjs
