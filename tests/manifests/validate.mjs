// Validates every Kubernetes manifest under envoy/istio/ and envoy/envoy-gateway/ against the
// published models of its API, the way a cluster would check it before accepting it:
//
// - Istio's kinds against npm @kubernetes-models/istio, the Gateway API's against
//   @kubernetes-models/gateway-api, Kubernetes' own (Deployment, Secret, ConfigMap) against
//   kubernetes-models: each model's JSON-schema validator (types, enums, patterns, required
//   fields), and its TypeScript declaration, which names every field the API has, so that a
//   misspelt or invented key is refused as `kubectl apply` refuses an unknown field (the schema
//   validators alone let unknown keys through);
// - Envoy Gateway's kinds against envoy-gateway-schema.mjs with Ajv (that file says why and
//   where it comes from).
//
// Every YAML file in those folders is read, every document in it; a document whose apiVersion
// and kind have no model here is an error, not a skip. The one kind that is not sent to the API
// server, kustomize's Kustomization, is named in NOT_API_OBJECTS.
//
//   node validate.mjs            (from tests/manifests/, after npm ci) prints each document
//                                and exits 1 if any is refused

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { Ajv } from "ajv";
import ts from "typescript";
import * as envoyGateway from "./envoy-gateway-schema.mjs";

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, "../..");
export const FOLDERS = ["envoy/istio", "envoy/envoy-gateway"];

/** apiVersion + kind -> the npm module and export that models it. */
const MODELS = {
  "extensions.istio.io/v1alpha1 WasmPlugin": "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin",
  "networking.istio.io/v1 ServiceEntry": "@kubernetes-models/istio/networking.istio.io/v1/ServiceEntry",
  "networking.istio.io/v1 DestinationRule": "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule",
  "networking.istio.io/v1 Gateway": "@kubernetes-models/istio/networking.istio.io/v1/Gateway",
  "networking.istio.io/v1 VirtualService": "@kubernetes-models/istio/networking.istio.io/v1/VirtualService",
  "security.istio.io/v1 PeerAuthentication": "@kubernetes-models/istio/security.istio.io/v1/PeerAuthentication",
  "security.istio.io/v1 AuthorizationPolicy": "@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy",
  "security.istio.io/v1 RequestAuthentication": "@kubernetes-models/istio/security.istio.io/v1/RequestAuthentication",
  "telemetry.istio.io/v1 Telemetry": "@kubernetes-models/istio/telemetry.istio.io/v1/Telemetry",
  "gateway.networking.k8s.io/v1 Gateway": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway",
  "gateway.networking.k8s.io/v1 HTTPRoute": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute",
  "apps/v1 Deployment": "kubernetes-models/apps/v1/Deployment",
  "v1 Secret": "kubernetes-models/v1/Secret",
  "v1 ConfigMap": "kubernetes-models/v1/ConfigMap",
};

// strictTypes off: the schemas' if/then and oneOf branches name required keys without a type.
const ajv = new Ajv({ allErrors: true, strictTypes: false });
const SCHEMAS = {
  "gateway.envoyproxy.io/v1alpha1 EnvoyExtensionPolicy": ajv.compile(envoyGateway.envoyExtensionPolicy),
  "gateway.envoyproxy.io/v1alpha1 EnvoyPatchPolicy": ajv.compile(envoyGateway.envoyPatchPolicy),
  "gateway.envoyproxy.io/v1alpha1 EnvoyProxy": ajv.compile(envoyGateway.envoyProxy),
};

/** Read by a tool on the operator's side, never sent to the API server: no API schema. */
export const NOT_API_OBJECTS = {
  "kustomize.config.k8s.io/v1beta1 Kustomization":
    "read by kubectl apply -k, not by the API server; tests/deploy_manifests.rs checks that what it lists exists",
};

/**
 * Strategic merge patches for an object that exists elsewhere (the portal's or the gateway's
 * Deployment): they hold only the fields they change, so the fields the API requires of a whole
 * Deployment come from PATCH_BASE. Every field of the patch is still checked, by name and by
 * value.
 */
export const PATCH_FILES = new Set(["envoy/istio/deployment-patch.yaml", "envoy/istio/ingress/gateway-patch.yaml"]);
const PATCH_KEY = "apps/v1 Deployment";
const PATCH_BASE = {
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "patched" },
  spec: { selector: { matchLabels: { app: "patched" } }, template: { spec: { containers: [] } } },
};

/** Every .yaml/.yml file under the folders, relative to the repository, sorted. */
export function manifestFiles(root = REPO) {
  const found = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.ya?ml$/.test(name)) found.push(relative(root, path));
    }
  };
  for (const folder of FOLDERS) walk(join(root, folder));
  return found;
}

/**
 * The documents of a YAML text, as plain values; a YAML error or a duplicate key throws. Read
 * as YAML 1.1, as kubectl and the API server read manifests (sigs.k8s.io/yaml).
 */
export function documents(text, name) {
  return parseAllDocuments(text, { version: "1.1", uniqueKeys: true, prettyErrors: true })
    .filter((doc) => doc.contents !== null)
    .map((doc, index) => {
      const problems = [...doc.errors, ...doc.warnings];
      if (problems.length > 0) throw new Error(`${name} document ${index + 1}: ${problems.join("; ")}`);
      return doc.toJS();
    });
}

function deepMerge(base, patch) {
  if (Array.isArray(patch) || typeof patch !== "object" || patch === null) return patch;
  const out = { ...base };
  for (const [key, value] of Object.entries(patch)) out[key] = deepMerge(base?.[key], value);
  return out;
}

/**
 * The checks for one document: [{label, key, value, whole}], where `value` is what the
 * TypeScript check reads and `whole` what the model's schema validates (a patch merged onto
 * PATCH_BASE).
 * A ConfigMap holding Istio's gateway deployment options (data.deployment) adds that embedded
 * patch as a check of its own.
 */
function checksFor(doc, label, isPatch) {
  const key = `${doc?.apiVersion} ${doc?.kind}`;
  if (isPatch) {
    if (key !== PATCH_KEY) throw new Error(`${label}: PATCH_FILES holds Deployment patches only, not ${key}`);
    return [{ label, key, value: doc, whole: deepMerge(PATCH_BASE, doc) }];
  }
  const checks = [{ label, key, value: doc, whole: doc }];
  if (key === "v1 ConfigMap" && typeof doc?.data?.deployment === "string") {
    const [overlay, ...rest] = documents(doc.data.deployment, `${label} data.deployment`);
    if (rest.length > 0) throw new Error(`${label} data.deployment holds more than one document`);
    const asDeployment = { apiVersion: "apps/v1", kind: "Deployment", ...overlay };
    checks.push({
      label: `${label} data.deployment`,
      key: PATCH_KEY,
      value: asDeployment,
      whole: deepMerge(PATCH_BASE, asDeployment),
    });
  }
  return checks;
}

async function schemaErrors(check) {
  if (SCHEMAS[check.key]) {
    const validate = SCHEMAS[check.key];
    return validate(check.whole) ? [] : validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}`);
  }
  const module = MODELS[check.key];
  const name = check.key.split(" ")[1];
  const Model = (await import(module))[name];
  try {
    new Model(check.whole).validate();
    return [];
  } catch (error) {
    if (!Array.isArray(error.errors)) throw error;
    return error.errors.map((e) => `${e.instancePath || "/"} ${e.message}`);
  }
}

const parsedDeclarations = new Map();

/**
 * Type-checks each value against its model's TypeScript interface (I<Kind>), all in one
 * program: an object literal may only name fields the interface declares. Returns, per check,
 * the compiler's complaints.
 */
function typeErrors(checks) {
  // Known<T>: the fields of T at every depth, all optional (required fields are the schema
  // validator's business), with the alternatives of a union merged: the models write a oneOf as
  // `Spec & (A | B)`, and TypeScript does not look for unknown keys inside such a union, so
  // without the merge a misspelt key there would pass.
  const lines = [
    "type AllKeys<T> = T extends unknown ? keyof T : never;",
    "type ValueAt<T, K extends PropertyKey> = T extends unknown ? (K extends keyof T ? T[K] : never) : never;",
    "type Known<T> = [T] extends [readonly (infer U)[]] ? Known<U>[] : [T] extends [object] ? { [K in AllKeys<T>]?: Known<NonNullable<ValueAt<T, K>>> } : T;",
  ];
  // Which lines (0-based, inclusive) belong to which check, to give each complaint its owner.
  const spans = [];
  checks.forEach((check, i) => {
    const name = check.key.split(" ")[1];
    const start = lines.length;
    lines.push(`import type { I${name} as T${i} } from ${JSON.stringify(MODELS[check.key])};`);
    lines.push(...`export const doc${i}: Known<T${i}> = ${JSON.stringify(check.value, null, 1)};`.split("\n"));
    spans.push({ start, end: lines.length - 1 });
  });
  const text = lines.join("\n");
  const file = join(here, "__manifests_typecheck__.mts");
  const options = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const original = { getSourceFile: host.getSourceFile, fileExists: host.fileExists, readFile: host.readFile };
  host.getSourceFile = (name, version, ...rest) => {
    if (resolve(name) === file) return ts.createSourceFile(name, text, version);
    // The declarations do not change between calls: parse each once per process.
    if (!parsedDeclarations.has(name)) parsedDeclarations.set(name, original.getSourceFile(name, version, ...rest));
    return parsedDeclarations.get(name);
  };
  host.fileExists = (name) => resolve(name) === file || original.fileExists(name);
  host.readFile = (name) => (resolve(name) === file ? text : original.readFile(name));
  const program = ts.createProgram([file], options, host);
  const source = program.getSourceFile(file);
  const found = checks.map(() => []);
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n");
    if (diagnostic.file !== source || diagnostic.start === undefined) {
      // A problem outside the generated file (a missing module, say) concerns every check.
      found.forEach((list) => list.push(message));
      continue;
    }
    const line = source.getLineAndCharacterOfPosition(diagnostic.start).line;
    const index = spans.findIndex((span) => line >= span.start && line <= span.end);
    const where = `${message} (at ${lines[line].trim()})`;
    if (index >= 0) found[index].push(where);
    else found.forEach((list) => list.push(where));
  }
  return found;
}

/**
 * Validates documents given as [{label, doc, isPatch}]. Returns [{label, kind, errors}], one
 * per check, in order.
 */
export async function validateDocuments(items) {
  const results = [];
  const checks = [];
  for (const { label, doc, isPatch } of items) {
    const key = `${doc?.apiVersion} ${doc?.kind}`;
    if (NOT_API_OBJECTS[key]) {
      results.push({ label, key, errors: [], note: NOT_API_OBJECTS[key] });
      continue;
    }
    if (!MODELS[key] && !SCHEMAS[key]) {
      results.push({ label, key, errors: [`no schema for ${key}: add its model to tests/manifests/validate.mjs`] });
      continue;
    }
    for (const check of checksFor(doc, label, isPatch)) {
      const result = { label: check.label, key: check.key, errors: await schemaErrors(check) };
      results.push(result);
      if (MODELS[check.key]) checks.push({ check, result });
    }
  }
  const typed = typeErrors(checks.map(({ check }) => check));
  checks.forEach(({ result }, i) => result.errors.push(...typed[i]));
  return results;
}

/** Every document of every manifest file. */
export async function validateTree(root = REPO) {
  const items = [];
  for (const file of manifestFiles(root)) {
    const docs = documents(readFileSync(join(root, file), "utf8"), file);
    docs.forEach((doc, i) => items.push({ label: `${file}#${i + 1}`, doc, isPatch: PATCH_FILES.has(file) }));
  }
  return validateDocuments(items);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const results = await validateTree();
  let refused = 0;
  for (const { label, key, errors, note } of results) {
    console.log(`${errors.length ? "REFUSED" : note ? "skipped" : "valid  "} ${label} (${key})${note ? `: ${note}` : ""}`);
    for (const error of errors) console.log(`    ${error}`);
    if (errors.length) refused += 1;
  }
  process.exit(refused ? 1 : 0);
}
