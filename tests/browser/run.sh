#!/usr/bin/env bash
# Starts the demo stack (examples/demo.sh) on its own ports, runs the browser tests against it
# with Debian's Chromium, and stops the stack; then the same with the demo in `parallel`
# migration (DEMO_MIGRATION=parallel: the old login beside ClaveÚnica) for parallel.test.mjs.
# Screenshots land in target/browser-artifacts/.
#
#   bash tests/browser/run.sh
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)

command -v /usr/bin/chromium >/dev/null 2>&1 || { echo "tests/browser: /usr/bin/chromium is missing (apt-get install chromium)" >&2; exit 1; }
{ [ -d node_modules/playwright-core ] && [ -d node_modules/axe-core ]; } || npm ci --no-audit --no-fund --silent
mkdir -p "$root/target/browser-artifacts"

# with_demo MIGRATION FIRST_PORT TEST_FILE...: the demo in that migration mode on four ports from
# FIRST_PORT, the test files against it, the demo stopped whatever the outcome.
with_demo() {
  local migration=$1 port=$2
  shift 2
  local log="$root/target/browser-artifacts/demo-$migration.out"
  GATE_PORT=$port PROVIDER_PORT=$((port + 10)) APP_PORT=$((port + 11)) ADMIN_PORT=$((port + 12)) \
    DEMO_MIGRATION=$migration DEMO_STATE="$root/target/browser-demo-$migration" \
    setsid bash "$root/examples/demo.sh" >"$log" 2>&1 &
  local demo=$!
  # shellcheck disable=SC2064 # the pid is meant to be fixed now
  trap "kill -- -$demo 2>/dev/null || kill $demo 2>/dev/null || true" EXIT
  local started=''
  for _ in $(seq 1 600); do
    grep -q "demo is running" "$log" 2>/dev/null && { started=1; break; }
    kill -0 "$demo" 2>/dev/null || break
    sleep 0.5
  done
  [ -n "$started" ] || { echo "the demo ($migration) did not start:"; cat "$log"; exit 1; }
  local status=0
  BASE="http://localhost:$port" PROVIDER_PORT=$((port + 10)) ARTIFACTS="$root/target/browser-artifacts" \
    node --test --test-concurrency=1 "$@" || status=$?
  kill -- -"$demo" 2>/dev/null || kill "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  trap - EXIT
  return "$status"
}

with_demo enforce 18080 login.test.mjs pages.test.mjs
with_demo parallel 18180 parallel.test.mjs
