#!/usr/bin/env bash
# Validates every manifest under envoy/istio/ and envoy/envoy-gateway/ against the published
# schemas of its API (validate.mjs says which), with the controls that prove the validation can
# refuse a broken one. Installs the pinned models first if they are missing.
#
#   bash tests/manifests/run.sh
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null 2>&1 || { echo "tests/manifests: node is missing (Node.js 20 or newer)" >&2; exit 1; }
{ [ -d node_modules/@kubernetes-models/istio ] && [ -d node_modules/@kubernetes-models/gateway-api ] \
  && [ -d node_modules/kubernetes-models ] && [ -d node_modules/typescript ] && [ -d node_modules/ajv ] \
  && [ -d node_modules/yaml ]; } || npm ci --no-audit --no-fund --silent
node --test validate.test.mjs
