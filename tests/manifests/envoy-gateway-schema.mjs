// JSON Schemas for the three Envoy Gateway kinds under envoy/envoy-gateway/, for Ajv.
//
// Envoy Gateway publishes its CRDs only in its own repository and Helm chart, not as a package
// this project can install, and we do not copy that text into the tree. These schemas are a
// transcription, field by field, of what Envoy Gateway v1.9.0 declares for the fields our
// manifests use: the Go API types (api/v1alpha1/envoyextensionypolicy_types.go, wasm_types.go,
// envoypatchpolicy_types.go, envoyproxy_types.go, shared_types.go, policy_helpers.go) and the
// CRDs generated from them (charts/gateway-crds-helm/templates/generated/
// gateway.envoyproxy.io_{envoyextensionpolicies,envoypatchpolicies,envoyproxies}.yaml): the same
// names, types, enums, required lists and length limits, and the CEL rules that decide whether
// our objects are accepted, written as JSON Schema. They are stricter than the CRDs in one way:
// a field we do not use is refused (additionalProperties: false), as `kubectl apply` refuses an
// unknown field, so a misspelt key cannot pass. A manifest that needs another field of these
// kinds must add it here from the same source, citing it.

const string = { type: "string" };
const objectName = { type: "string", minLength: 1, maxLength: 253 };

/** Closed object: exactly these properties, these required. */
function object(properties, required = []) {
  return { type: "object", properties, required, additionalProperties: false };
}

/** ObjectMeta, limited to what a manifest in this tree sets. */
const metadata = object(
  {
    name: objectName,
    namespace: objectName,
    labels: { type: "object", additionalProperties: string },
    annotations: { type: "object", additionalProperties: string },
  },
  ["name"],
);

/** gwapiv1.LocalPolicyTargetReference (group, kind, name; all required). */
const localTarget = {
  group: { type: "string", maxLength: 253, pattern: "^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" },
  kind: { type: "string", minLength: 1, maxLength: 63, pattern: "^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$" },
  name: objectName,
};

/** The CEL rules of EnvoyExtensionPolicySpec on targetRefs: group and kind. */
const extensionTargetKinds = ["Gateway", "ListenerSet", "HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute"];
const extensionTarget = object(
  {
    ...localTarget,
    group: { ...localTarget.group, const: "gateway.networking.k8s.io" },
    kind: { ...localTarget.kind, enum: extensionTargetKinds },
    sectionName: { type: "string", minLength: 1, maxLength: 253 },
  },
  ["group", "kind", "name"],
);

/** corev1.EnvVar, with the one value source our manifests use (a Secret key). */
const envVar = object(
  {
    name: { type: "string", minLength: 1 },
    value: string,
    valueFrom: object({
      secretKeyRef: object({ name: string, key: string, optional: { type: "boolean" } }, ["key"]),
    }),
  },
  ["name"],
);

const apiVersion = { const: "gateway.envoyproxy.io/v1alpha1" };

export const envoyExtensionPolicy = object(
  {
    apiVersion,
    kind: { const: "EnvoyExtensionPolicy" },
    metadata,
    spec: {
      ...object({
        targetRef: extensionTarget,
        targetRefs: { type: "array", items: extensionTarget },
        wasm: {
          type: "array",
          maxItems: 16,
          items: object(
            {
              name: string,
              rootID: string,
              code: {
                ...object(
                  {
                    type: { enum: ["HTTP", "Image"] },
                    image: object(
                      {
                        url: string,
                        sha256: string,
                        pullSecretRef: object(
                          { group: string, kind: { const: "Secret" }, name: objectName, namespace: objectName },
                          ["name"],
                        ),
                      },
                      ["url"],
                    ),
                    http: object({ url: string, sha256: string }, ["url"]),
                    pullPolicy: { enum: ["IfNotPresent", "Always"] },
                  },
                  ["type"],
                ),
                // CEL: "If type is HTTP, http field needs to be set." / "If type is Image, image
                // field needs to be set." (and the other one absent).
                allOf: [
                  {
                    if: { properties: { type: { const: "Image" } } },
                    then: { required: ["image"], not: { required: ["http"] } },
                  },
                  {
                    if: { properties: { type: { const: "HTTP" } } },
                    then: { required: ["http"], not: { required: ["image"] } },
                  },
                ],
              },
              // apiextensionsv1.JSON: any JSON; the gate's own check reads it (deploy_manifests.rs).
              config: {},
              failOpen: { type: "boolean" },
              env: object({ hostKeys: { type: "array", items: string } }),
            },
            ["code"],
          ),
        },
      }),
      // CEL: "either targetRef or targetRefs must be used".
      oneOf: [{ required: ["targetRef"] }, { required: ["targetRefs"] }],
    },
  },
  ["apiVersion", "kind", "metadata", "spec"],
);

export const envoyPatchPolicy = object(
  {
    apiVersion,
    kind: { const: "EnvoyPatchPolicy" },
    metadata,
    spec: object(
      {
        type: { enum: ["JSONPatch"] },
        targetRef: object(localTarget, ["group", "kind", "name"]),
        priority: { type: "integer", minimum: -2147483648, maximum: 2147483647 },
        jsonPatches: {
          type: "array",
          items: object(
            {
              type: {
                enum: [
                  "type.googleapis.com/envoy.config.listener.v3.Listener",
                  "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                  "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                  "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                  "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                ],
              },
              name: string,
              operation: object(
                {
                  op: { enum: ["add", "remove", "replace", "move", "copy", "test"] },
                  path: string,
                  jsonPath: string,
                  from: string,
                  // apiextensionsv1.JSON: an Envoy resource; Envoy checks it (deploy_manifests.rs).
                  value: {},
                },
                ["op"],
              ),
            },
            ["type", "name", "operation"],
          ),
        },
      },
      ["type", "targetRef"],
    ),
  },
  ["apiVersion", "kind", "metadata", "spec"],
);

export const envoyProxy = object(
  {
    apiVersion,
    kind: { const: "EnvoyProxy" },
    metadata,
    spec: object({
      provider: object(
        {
          type: { enum: ["Kubernetes", "Host"] },
          kubernetes: object({
            envoyDeployment: object({
              container: object({ env: { type: "array", items: envVar } }),
            }),
          }),
        },
        ["type"],
      ),
    }),
  },
  ["apiVersion", "kind", "metadata"],
);
