// Validates Kubernetes manifests offline: node validate_manifests.mjs FILE.yaml...
//
// Every object of a kind kubernetes-models knows is checked against the Kubernetes OpenAPI
// schema it was generated from, and for fields the schema does not have (kubectl's strict field
// validation rejects them; the models' own validate() lets them through). KServe's
// ServingRuntime and InferenceService, which it does not know, get their required fields checked
// here. Then kiln's own rules across the objects: what the drain, the probes and the selectors
// must agree on. Prints "ok Kind/name" per valid object and "error FILE: Kind/name: problem" per
// problem; exits 1 if there was any.
import { readFileSync } from "node:fs";

let YAML;
try {
  YAML = (await import("yaml")).default;
  await import("kubernetes-models/v1/Service");
} catch (error) {
  console.error(
    `error: cannot load the npm packages (${error.message}); ` +
      "install them with scripts/setup.sh (npm ci --prefix tests/deploy/k8s)",
  );
  process.exit(2);
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate_manifests.mjs FILE.yaml...");
  process.exit(2);
}

const objects = []; // { file, obj, id, problems }
let failed = false;

function fail(file, id, message) {
  console.log(`error ${file}: ${id ? id + ": " : ""}${message}`);
  failed = true;
}

for (const file of files) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    fail(file, null, `cannot read: ${error.message}`);
    continue;
  }
  for (const doc of YAML.parseAllDocuments(text)) {
    if (doc.errors.length > 0) {
      for (const error of doc.errors) fail(file, null, `YAML: ${error.message.split("\n")[0]}`);
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue; // an empty document
    const id = `${obj.kind ?? "?"}/${obj.metadata?.name ?? "?"}`;
    objects.push({ file, obj, id, problems: [] });
  }
}

// --- schema ---------------------------------------------------------------------------------

// A proxy over `value` that records which keys of each object the validator reads, and whether
// it enumerated them (a map such as labels: every key is then allowed). The models' validators
// are compiled by ajv and read every property their schema lists, so an own key never read is
// one the schema lacks. (A free-form object, x-kubernetes-preserve-unknown-fields, would be
// reported too; kiln's manifests have none.)
function tracked(value, path, reads) {
  if (value === null || typeof value !== "object") return value;
  const known = reads.get(value);
  if (known) return known.proxy;
  const record = { read: new Set(), enumerated: false };
  record.proxy = new Proxy(value, {
    get(target, key, receiver) {
      const child = Reflect.get(target, key, receiver);
      if (typeof key !== "string" || !Object.hasOwn(target, key)) return child;
      record.read.add(key);
      return tracked(child, `${path}.${key}`, reads);
    },
    has(target, key) {
      if (typeof key === "string") record.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      record.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
  reads.set(value, record);
  return record.proxy;
}

// Keys of `value` (recursively) that the validator never read: fields the schema does not have.
function unknownFields(value, reads, path, out) {
  if (value === null || typeof value !== "object") return;
  if (Array.isArray(value)) {
    value.forEach((element, i) => unknownFields(element, reads, `${path}[${i}]`, out));
    return;
  }
  const record = reads.get(value);
  for (const key of Object.keys(value)) {
    if (record && !record.enumerated && !record.read.has(key)) {
      out.push(`${path}.${key}`.replace(/^\./, ""));
      continue;
    }
    unknownFields(value[key], reads, `${path}.${key}`, out);
  }
}

// kubernetes-models/<group>/<version>/<Kind>, the core group as plain "v1".
async function modelClass(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  try {
    const module = await import(`kubernetes-models/${apiVersion}/${kind}`);
    return module[kind] ?? null;
  } catch {
    return null;
  }
}

async function checkSchema(entry, Class, obj) {
  const model = new Class(obj);
  try {
    model.validate();
  } catch (error) {
    entry.problems.push(`schema: ${error.message}`);
    return;
  }
  // Run the same validation again through the proxy, on the model's own copy of the data.
  const reads = new Map();
  model.validate.call(tracked(model, "", reads));
  const unknown = [];
  unknownFields(model, reads, "", unknown);
  for (const field of unknown) entry.problems.push(`unknown field ${field}`);
}

// --- KServe ---------------------------------------------------------------------------------

const ContainerClass = await modelClass("v1", "Container");

async function checkContainers(entry, containers, where) {
  if (!Array.isArray(containers) || containers.length === 0) {
    entry.problems.push(`${where} must list at least one container`);
    return;
  }
  for (const [i, container] of containers.entries()) {
    if (!container?.name || !container?.image) {
      entry.problems.push(`${where}[${i}] needs a name and an image`);
    }
    const sub = { problems: [] };
    await checkSchema(sub, ContainerClass, container);
    for (const p of sub.problems) entry.problems.push(`${where}[${i}]: ${p}`);
  }
}

async function checkServingRuntime(entry) {
  const spec = entry.obj.spec ?? {};
  await checkContainers(entry, spec.containers, "spec.containers");
  const formats = spec.supportedModelFormats;
  if (!Array.isArray(formats) || formats.length === 0 || formats.some((f) => !f?.name)) {
    entry.problems.push("spec.supportedModelFormats must list formats, each with a name");
  }
  if (!Array.isArray(spec.protocolVersions) || !spec.protocolVersions.includes("grpc-v2")) {
    entry.problems.push("spec.protocolVersions must include grpc-v2 (kiln serves gRPC only)");
  }
  const ports = (spec.containers ?? []).flatMap((c) => c?.ports ?? []);
  if (!ports.some((p) => p?.name === "h2c")) {
    entry.problems.push("no container port named h2c: KServe would not proxy it as HTTP/2 (gRPC)");
  }
}

function checkInferenceService(entry, runtimes) {
  const model = entry.obj.spec?.predictor?.model;
  if (!model?.modelFormat?.name) {
    entry.problems.push("spec.predictor.model.modelFormat.name is required");
  }
  if (!model?.storageUri) entry.problems.push("spec.predictor.model.storageUri is required");
  if (model?.protocolVersion !== "grpc-v2") {
    entry.problems.push("spec.predictor.model.protocolVersion must be grpc-v2");
  }
  const runtime = runtimes.get(model?.runtime);
  if (!runtime) {
    entry.problems.push(
      `spec.predictor.model.runtime ${JSON.stringify(model?.runtime)} names no ServingRuntime in ` +
        "these files",
    );
  } else {
    const names = (runtime.spec?.supportedModelFormats ?? []).map((f) => f?.name);
    if (model?.modelFormat?.name && !names.includes(model.modelFormat.name)) {
      entry.problems.push(
        `modelFormat ${model.modelFormat.name} is not one the runtime ${model.runtime} supports ` +
          `(${names.join(", ")})`,
      );
    }
  }
}

// --- kiln's rules across objects ------------------------------------------------------------

// --name=value from a container's args; `fallback` when absent.
function flag(container, name, fallback) {
  for (const arg of container?.args ?? []) {
    if (typeof arg === "string" && arg.startsWith(`--${name}=`)) return arg.slice(name.length + 3);
  }
  return fallback;
}

function kilnContainer(deployment) {
  const containers = deployment.spec?.template?.spec?.containers ?? [];
  return containers.find((c) => c?.name === "kiln-server") ?? containers[0];
}

function preStopSleepSeconds(container) {
  const preStop = container?.lifecycle?.preStop;
  if (preStop?.sleep?.seconds !== undefined) return Number(preStop.sleep.seconds);
  const command = preStop?.exec?.command ?? [];
  if (command.length === 2 && /(^|\/)sleep$/.test(command[0])) return Number(command[1]);
  return 0;
}

function labelsMatch(selector, labels) {
  const entries = Object.entries(selector ?? {});
  return entries.length > 0 && entries.every(([k, v]) => labels?.[k] === v);
}

function checkDeployment(entry) {
  const d = entry.obj;
  const pod = d.spec?.template?.spec ?? {};
  const container = kilnContainer(d);
  if (!container) return;
  const drain = Number(flag(container, "drain_timeout_s", "30"));
  const sleep = preStopSleepSeconds(container);
  const grace = pod.terminationGracePeriodSeconds ?? 30; // Kubernetes' default
  if (!(grace >= sleep + drain)) {
    entry.problems.push(
      `terminationGracePeriodSeconds ${grace} < preStop sleep ${sleep} s + --drain_timeout_s ` +
        `${drain} s: the kubelet would SIGKILL kiln mid-drain`,
    );
  }
  const startup = container.startupProbe;
  if (!startup) {
    entry.problems.push("no startupProbe: liveness would run while kiln warms up");
  } else {
    const budget = (startup.periodSeconds ?? 10) * (startup.failureThreshold ?? 3);
    if (budget < 120) {
      entry.problems.push(
        `startupProbe allows ${budget} s (periodSeconds x failureThreshold), under the 120 s ` +
          "kiln's warmup may need before it opens its port",
      );
    }
  }
  if (!container.resources?.limits?.memory) {
    entry.problems.push("no memory limit: kiln sizes its memory budget to the cgroup's limit");
  }
  const port = Number(flag(container, "port", "8001"));
  const grpc = (container.ports ?? []).find((p) => p?.name === "grpc");
  if (!grpc || grpc.containerPort !== port) {
    entry.problems.push(`no container port named grpc on --port ${port}`);
  }
  for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    const probed = container[probe]?.grpc?.port;
    if (probed !== undefined && probed !== port) {
      entry.problems.push(`${probe} checks port ${probed}, not kiln's --port ${port}`);
    }
  }
  const metricsPort = flag(container, "metrics_port", "8002");
  const annotated = d.spec?.template?.metadata?.annotations?.["prometheus.io/port"];
  if (annotated !== undefined && annotated !== metricsPort) {
    entry.problems.push(`prometheus.io/port ${annotated} is not --metrics_port ${metricsPort}`);
  }
}

function checkService(entry, deployments) {
  const service = entry.obj;
  const target = deployments.find((d) =>
    labelsMatch(service.spec?.selector, d.spec?.template?.metadata?.labels),
  );
  if (!target) {
    entry.problems.push("its selector matches the pods of no Deployment in these files");
    return;
  }
  const grpc = (service.spec?.ports ?? []).find((p) => p?.name === "grpc");
  if (!grpc) {
    entry.problems.push("no port named grpc");
    return;
  }
  if (grpc.appProtocol !== "kubernetes.io/h2c") {
    entry.problems.push("port grpc needs appProtocol kubernetes.io/h2c (gRPC is HTTP/2 cleartext)");
  }
  const containerPorts = (kilnContainer(target)?.ports ?? []).filter((p) => p?.name === "grpc");
  const targetPort = grpc.targetPort ?? grpc.port;
  const reaches = containerPorts.some((p) =>
    typeof targetPort === "string" ? p.name === targetPort : p.containerPort === targetPort,
  );
  if (!reaches) {
    entry.problems.push(
      `port grpc targets ${targetPort}, not the grpc port of Deployment/${target.metadata?.name}`,
    );
  }
}

function checkDisruptionBudget(entry, deployments) {
  const selector = entry.obj.spec?.selector?.matchLabels;
  if (!deployments.some((d) => labelsMatch(selector, d.spec?.template?.metadata?.labels))) {
    entry.problems.push("its selector matches the pods of no Deployment in these files");
  }
}

function checkAutoscaler(entry, deployments) {
  const ref = entry.obj.spec?.scaleTargetRef ?? {};
  const found =
    ref.kind === "Deployment" &&
    ref.apiVersion === "apps/v1" &&
    deployments.some((d) => d.metadata?.name === ref.name);
  if (!found) {
    entry.problems.push(
      `scaleTargetRef ${ref.apiVersion}/${ref.kind}/${ref.name} is no Deployment in these files`,
    );
  }
}

// --- run ------------------------------------------------------------------------------------

const deployments = objects.filter((e) => e.obj.kind === "Deployment").map((e) => e.obj);
const runtimes = new Map(
  objects.filter((e) => e.obj.kind === "ServingRuntime").map((e) => [e.obj.metadata?.name, e.obj]),
);

for (const entry of objects) {
  const { obj } = entry;
  if (!obj.apiVersion || !obj.kind || !obj.metadata?.name) {
    entry.problems.push("apiVersion, kind and metadata.name are required");
  } else if (obj.apiVersion === "serving.kserve.io/v1alpha1" && obj.kind === "ServingRuntime") {
    await checkServingRuntime(entry);
  } else if (obj.apiVersion === "serving.kserve.io/v1beta1" && obj.kind === "InferenceService") {
    checkInferenceService(entry, runtimes);
  } else {
    const Class = await modelClass(obj.apiVersion, obj.kind);
    if (!Class) {
      entry.problems.push(`unknown kind ${obj.apiVersion} ${obj.kind}`);
    } else {
      await checkSchema(entry, Class, obj);
    }
  }
  if (obj.kind === "Deployment") checkDeployment(entry);
  if (obj.kind === "Service") checkService(entry, deployments);
  if (obj.kind === "PodDisruptionBudget") checkDisruptionBudget(entry, deployments);
  if (obj.kind === "HorizontalPodAutoscaler") checkAutoscaler(entry, deployments);

  if (entry.problems.length === 0) {
    console.log(`ok ${entry.id}`);
  } else {
    for (const problem of entry.problems) fail(entry.file, entry.id, problem);
  }
}

if (objects.length === 0) fail(files.join(" "), null, "no objects");
process.exit(failed ? 1 : 0);
