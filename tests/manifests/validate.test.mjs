// The deployment manifests (envoy/istio/, envoy/envoy-gateway/) pass the schemas of their APIs,
// and the validation is able to fail: each control below breaks one field of a real manifest
// the way an operator could, and must be refused.
//
//   node --test validate.test.mjs     (from tests/manifests/, after npm ci; tests/run.sh does both)

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO, documents, manifestFiles, validateDocuments, validateTree, PATCH_FILES } from "./validate.mjs";

function docsOf(file) {
  return documents(readFileSync(join(REPO, file), "utf8"), file);
}

/** The first document of `file` whose kind is `kind`, as a fresh copy. */
function docOf(file, kind) {
  const doc = docsOf(file).find((d) => d.kind === kind);
  assert.ok(doc, `${file} has no ${kind}`);
  return structuredClone(doc);
}

async function errorsFor(doc, isPatch = false) {
  const results = await validateDocuments([{ label: "control", doc, isPatch }]);
  return results.flatMap((r) => r.errors);
}

/** Renames one key of an object in place: the misspelling an operator could make. */
function rename(object, from, to) {
  object[to] = object[from];
  delete object[from];
}

/** `change` applied to a copy of the document must be refused, naming `expected`. */
async function refused(file, kind, change, expected, isPatch = false) {
  const doc = docOf(file, kind);
  const original = await errorsFor(structuredClone(doc), isPatch);
  assert.deepEqual(original, [], `${file} ${kind} must be valid before the change`);
  change(doc);
  const errors = await errorsFor(doc, isPatch);
  assert.ok(errors.length > 0, `the changed ${kind} of ${file} was accepted`);
  assert.match(errors.join("\n"), expected);
}

test("every manifest under envoy/istio and envoy/envoy-gateway passes its API's schema", async () => {
  const results = await validateTree();
  const refusedDocs = results.filter((r) => r.errors.length > 0);
  assert.deepEqual(refusedDocs, [], JSON.stringify(refusedDocs, null, 2));
  // What was checked: every kind the deployment guide relies on, from every variant.
  const checked = new Set(results.filter((r) => !r.note).map((r) => `${r.label.split("#")[0]} ${r.key}`));
  for (const expected of [
    "envoy/istio/wasmplugin.yaml extensions.istio.io/v1alpha1 WasmPlugin",
    "envoy/istio/serviceentry.yaml networking.istio.io/v1 ServiceEntry",
    "envoy/istio/destinationrule.yaml networking.istio.io/v1 DestinationRule",
    "envoy/istio/deployment-patch.yaml apps/v1 Deployment",
    "envoy/istio/secret.yaml v1 Secret",
    "envoy/istio/telemetry.yaml telemetry.istio.io/v1 Telemetry",
    "envoy/istio/assertion/requestauthentication.yaml security.istio.io/v1 RequestAuthentication",
    "envoy/istio/assertion/authorizationpolicy.yaml security.istio.io/v1 AuthorizationPolicy",
    "envoy/istio/assertion/authorizationpolicy-pilot.yaml security.istio.io/v1 AuthorizationPolicy",
    "envoy/istio/ingress/gateway.yaml networking.istio.io/v1 Gateway",
    "envoy/istio/ingress/gateway.yaml networking.istio.io/v1 VirtualService",
    "envoy/istio/ingress/security.yaml security.istio.io/v1 PeerAuthentication",
    "envoy/istio/ingress/security.yaml security.istio.io/v1 AuthorizationPolicy",
    "envoy/istio/ingress/wasmplugin.yaml extensions.istio.io/v1alpha1 WasmPlugin",
    "envoy/istio/ingress/gateway-patch.yaml apps/v1 Deployment",
    "envoy/istio/gateway-api/gateway.yaml gateway.networking.k8s.io/v1 Gateway",
    "envoy/istio/gateway-api/gateway.yaml gateway.networking.k8s.io/v1 HTTPRoute",
    "envoy/istio/gateway-api/gateway.yaml v1 ConfigMap",
    "envoy/istio/gateway-api/gateway.yaml apps/v1 Deployment",
    "envoy/istio/gateway-api/wasmplugin.yaml extensions.istio.io/v1alpha1 WasmPlugin",
    "envoy/envoy-gateway/extensionpolicy.yaml gateway.envoyproxy.io/v1alpha1 EnvoyExtensionPolicy",
    "envoy/envoy-gateway/patchpolicy.yaml gateway.envoyproxy.io/v1alpha1 EnvoyPatchPolicy",
    "envoy/envoy-gateway/envoyproxy.yaml gateway.envoyproxy.io/v1alpha1 EnvoyProxy",
    "envoy/envoy-gateway/gateway.yaml gateway.networking.k8s.io/v1 HTTPRoute",
  ]) {
    assert.ok(checked.has(expected), `not checked: ${expected}\nchecked: ${[...checked].join("\n")}`);
  }
  // Every file was read: as many labels as files, each file at least once.
  const files = manifestFiles();
  const labelled = new Set(results.map((r) => r.label.split("#")[0]));
  for (const file of files) assert.ok(labelled.has(file), `${file} was not validated`);
  for (const patch of PATCH_FILES) assert.ok(files.includes(patch), `PATCH_FILES names a missing ${patch}`);
});

test("a new file in the folders is validated without being named anywhere", async () => {
  const root = mkdtempSync(join(tmpdir(), "manifests-"));
  try {
    mkdirSync(join(root, "envoy/istio/extra"), { recursive: true });
    mkdirSync(join(root, "envoy/envoy-gateway"), { recursive: true });
    const plugin = readFileSync(join(REPO, "envoy/istio/wasmplugin.yaml"), "utf8");
    writeFileSync(join(root, "envoy/istio/extra/copy.yaml"), plugin);
    // A second document, broken, after a valid one: multi-document files are read whole.
    writeFileSync(join(root, "envoy/envoy-gateway/new.yml"), `${plugin}\n---\n${plugin.replace("failStrategy: FAIL_RELOAD", "failStrategy: FAIL_LATER")}`);
    const results = await validateTree(root);
    assert.deepEqual(
      results.map((r) => [r.label, r.errors.length > 0]),
      [
        ["envoy/istio/extra/copy.yaml#1", false],
        ["envoy/envoy-gateway/new.yml#1", false],
        ["envoy/envoy-gateway/new.yml#2", true],
      ],
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a kind without a model is refused, not skipped", async () => {
  const errors = await errorsFor({ apiVersion: "networking.istio.io/v1", kind: "EnvoyFilter", metadata: { name: "x" } });
  assert.match(errors.join("\n"), /no schema for networking\.istio\.io\/v1 EnvoyFilter/);
});

test("a duplicate key in a manifest is refused", () => {
  assert.throws(() => documents("a: 1\na: 2\n", "dup.yaml"), /dup\.yaml document 1/);
});

test("Istio WasmPlugin controls: a wrong value, a misspelt key, a nested unknown key", async () => {
  const file = "envoy/istio/wasmplugin.yaml";
  await refused(file, "WasmPlugin", (d) => (d.spec.failStrategy = "FAIL_SOMETIMES"), /failStrategy|allowed values/);
  await refused(
    file,
    "WasmPlugin",
    (d) => rename(d.spec, "failStrategy", "failStratgy"),
    /failStratgy/,
  );
  await refused(
    file,
    "WasmPlugin",
    (d) => rename(d.spec.match[0], "ports", "port"),
    /'"?port"?' does not exist/,
  );
  await refused(file, "WasmPlugin", (d) => (d.spec.sha256 = "sha256:abc"), /sha256|pattern/);
});

test("Istio networking and security controls", async () => {
  await refused("envoy/istio/serviceentry.yaml", "ServiceEntry", (d) => (d.spec.ports[0].targetPort = "443"), /targetPort|number/);
  await refused("envoy/istio/destinationrule.yaml", "DestinationRule", (d) => (d.spec.trafficPolicy.portLevelSettings[0].tls.mode = "TLS"), /mode|allowed values/);
  await refused("envoy/istio/ingress/security.yaml", "PeerAuthentication", (d) => (d.spec.mtls.mode = "STRICTER"), /mode|allowed values/);
  await refused(
    "envoy/istio/ingress/security.yaml",
    "AuthorizationPolicy",
    (d) => rename(d.spec.rules[0].from[0].source, "principals", "principal"),
    /principal/,
  );
});

test("Istio assertion controls: a misspelt header list, a claim header without its claim, a misspelt principal list", async () => {
  const authn = "envoy/istio/assertion/requestauthentication.yaml";
  await refused(authn, "RequestAuthentication", (d) => rename(d.spec.jwtRules[0], "fromHeaders", "fromHeader"), /fromHeader/);
  await refused(authn, "RequestAuthentication", (d) => delete d.spec.jwtRules[0].outputClaimToHeaders[0].claim, /claim/);
  await refused(
    "envoy/istio/assertion/authorizationpolicy-pilot.yaml",
    "AuthorizationPolicy",
    (d) => rename(d.spec.rules[0].from[0].source, "notRequestPrincipals", "notRequestPrincipal"),
    /notRequestPrincipal/,
  );
});

test("Gateway API controls", async () => {
  await refused("envoy/istio/gateway-api/gateway.yaml", "HTTPRoute", (d) => (d.spec.rules[0].backendRefs[0].port = 70000), /port|must be <=/);
  await refused("envoy/istio/gateway-api/gateway.yaml", "Gateway", (d) => (d.spec.listeners[0].tls.mode = "Reencrypt"), /mode|allowed values/);
  await refused(
    "envoy/istio/gateway-api/gateway.yaml",
    "ConfigMap",
    (d) => (d.data.deployment = d.data.deployment.replace("secretKeyRef:", "secretRef:")),
    /secretRef/,
  );
});

test("Deployment patch controls: a misspelt field inside a patch", async () => {
  await refused(
    "envoy/istio/deployment-patch.yaml",
    "Deployment",
    (d) => rename(d.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef, "name", "nme"),
    /nme/,
    true,
  );
});

test("Envoy Gateway controls: wrong type, misspelt key, Image without image, unknown patch type", async () => {
  const eep = "envoy/envoy-gateway/extensionpolicy.yaml";
  await refused(eep, "EnvoyExtensionPolicy", (d) => (d.spec.wasm[0].failOpen = "false"), /failOpen.*boolean/);
  await refused(
    eep,
    "EnvoyExtensionPolicy",
    (d) => rename(d.spec.wasm[0], "failOpen", "failopen"),
    /additional properties/,
  );
  await refused(eep, "EnvoyExtensionPolicy", (d) => delete d.spec.wasm[0].code.image, /image/);
  await refused(eep, "EnvoyExtensionPolicy", (d) => (d.spec.targetRefs[0].group = "gateway.envoyproxy.io"), /group/);
  await refused("envoy/envoy-gateway/patchpolicy.yaml", "EnvoyPatchPolicy", (d) => (d.spec.jsonPatches[0].type = "Cluster"), /type|allowed values/);
  await refused("envoy/envoy-gateway/envoyproxy.yaml", "EnvoyProxy", (d) => (d.spec.provider.type = "Docker"), /type|allowed values/);
});
