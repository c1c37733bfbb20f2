/**
 * infra/k8s: every overlay renders with `kubectl kustomize` and every rendered object validates
 * against the Kubernetes schemas offline (kubernetes-models: types, enums, required fields; KEDA's
 * ScaledObject and TriggerAuthentication against KEDA's own CRD schemas, @kubernetes-models/keda),
 * plus what the schemas cannot see: references between objects (probe ports, volumes, ConfigMap,
 * Secret, selectors, KEDA's target) and the KEDA list name against QUEUE_PREFIX.
 *
 * kubectl is not a Debian package: where it is missing the render tests are skipped (and say so),
 * and the raw resources of the base are validated the same way either way, so the schema check
 * never disappears with it.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as keda from "@kubernetes-models/keda";
import * as k8s from "kubernetes-models";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { REPO_ROOT } from "./helpers/paths.ts";

const K8S = join(REPO_ROOT, "infra/k8s");
const OVERLAYS = ["cpu", "gpu"] as const;

/** A rendered object: parsed YAML, read field by field as each check needs. */
type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  // biome-ignore lint/suspicious/noExplicitAny: parsed YAML of every kind, checked by the schemas
  [k: string]: any;
};
type ModelClass = { apiVersion: string; kind: string; new (o: unknown): { validate(): void } };

/** Every model class of kubernetes-models and KEDA, by `apiVersion/kind` (core v1 has no group). */
const MODELS = new Map<string, ModelClass>();
const collect = (exports: unknown, depth: number): void => {
  const c = exports as ModelClass;
  if (typeof c === "function" && c.apiVersion && c.kind) MODELS.set(`${c.apiVersion}/${c.kind}`, c);
  else if (depth > 0 && exports && typeof exports === "object") {
    for (const value of Object.values(exports)) collect(value, depth - 1);
  }
};
collect([k8s, keda], 4);

/** Schema problems of one object, or [] when it validates. */
function schemaProblems(o: K8sObject): string[] {
  const model = MODELS.get(`${o.apiVersion}/${o.kind}`);
  if (!model) return [`${o.kind} ${o.metadata?.name}: no schema for ${o.apiVersion}/${o.kind}`];
  try {
    new model(o).validate();
    return [];
  } catch (error) {
    return [`${o.kind} ${o.metadata.name}: ${(error as Error).message}`];
  }
}

const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;

function render(overlay: string): K8sObject[] {
  const r = spawnSync("kubectl", ["kustomize", join(K8S, "overlays", overlay)], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${overlay}: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject);
}

function baseResources(): K8sObject[] {
  const kustomization = parseAllDocuments(
    readFileSync(join(K8S, "base/kustomization.yaml"), "utf8"),
  )[0]!.toJS() as { resources: string[] };
  return kustomization.resources.flatMap((file) =>
    parseAllDocuments(readFileSync(join(K8S, "base", file), "utf8")).map(
      (d) => d.toJS() as K8sObject,
    ),
  );
}

const find = (objects: K8sObject[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name}`);
  return o;
};

/** What the schemas cannot see: references between objects and kneegrade's own conventions. */
function referenceProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const names = (kind: string) =>
    new Set(objects.filter((o) => o.kind === kind).map((o) => o.metadata.name));
  const configMaps = names("ConfigMap");
  const secrets = names("Secret");
  const claims = names("PersistentVolumeClaim");
  for (const d of objects.filter((o) => o.kind === "Deployment" || o.kind === "Job")) {
    const where = `${d.kind} ${d.metadata.name}`;
    const pod = d.spec.template;
    if (d.kind === "Deployment") {
      for (const [k, v] of Object.entries(d.spec.selector.matchLabels ?? {})) {
        if (pod.metadata.labels?.[k] !== v)
          problems.push(`${where}: selector ${k} not on its pods`);
      }
    }
    const volumes = new Set<string>();
    for (const v of pod.spec.volumes ?? []) {
      volumes.add(v.name);
      const claim = v.persistentVolumeClaim?.claimName;
      if (claim && !claims.has(claim)) problems.push(`${where}: no PVC ${claim}`);
    }
    for (const c of pod.spec.containers) {
      const ports = new Set((c.ports ?? []).map((p: { name: string }) => p.name));
      for (const ref of c.envFrom ?? []) {
        if (ref.configMapRef && !configMaps.has(ref.configMapRef.name))
          problems.push(`${where}: no ConfigMap ${ref.configMapRef.name}`);
        if (ref.secretRef && !secrets.has(ref.secretRef.name))
          problems.push(`${where}: no Secret ${ref.secretRef.name}`);
      }
      for (const m of c.volumeMounts ?? []) {
        if (!volumes.has(m.name)) problems.push(`${where}: mount of unknown volume ${m.name}`);
      }
      if (d.kind === "Deployment") {
        for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
          const get = c[probe]?.httpGet;
          if (!get) problems.push(`${where}: no ${probe}`);
          else if (typeof get.port === "string" && !ports.has(get.port))
            problems.push(`${where}: ${probe} on unknown port ${get.port}`);
        }
        if (c.readinessProbe?.httpGet?.path !== "/readyz")
          problems.push(`${where}: readiness is not /readyz`);
        if (c.livenessProbe?.httpGet?.path !== "/healthz")
          problems.push(`${where}: liveness is not /healthz`);
        if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory)
          problems.push(`${where}: no CPU and memory requests`);
      }
    }
  }
  for (const s of objects.filter((o) => o.kind === "Service")) {
    const selected = objects.filter(
      (o) =>
        o.kind === "Deployment" &&
        Object.entries(s.spec.selector).every(([k, v]) => o.spec.template.metadata.labels[k] === v),
    );
    if (selected.length !== 1)
      problems.push(`Service ${s.metadata.name}: selects ${selected.length} Deployments`);
  }
  for (const p of objects.filter((o) => o.kind === "PodDisruptionBudget")) {
    const selected = objects.filter(
      (o) =>
        o.kind === "Deployment" &&
        Object.entries(p.spec.selector.matchLabels).every(
          ([k, v]) => o.spec.template.metadata.labels[k] === v,
        ),
    );
    if (selected.length !== 1) problems.push(`PDB ${p.metadata.name}: selects ${selected.length}`);
  }
  return problems;
}

describe("infra/k8s base resources (no kubectl needed)", () => {
  const objects = baseResources();

  it("validate against the Kubernetes and KEDA schemas", () => {
    expect(objects.length).toBeGreaterThan(15);
    expect(objects.flatMap(schemaProblems)).toEqual([]);
  });

  it("the schema check catches a broken object (it is not a no-op)", () => {
    const worker = structuredClone(find(objects, "Deployment", "kneegrade-worker"));
    worker.spec.template.spec.containers[0].imagePullPolicy = "Sometimes";
    delete worker.spec.template.spec.containers[0].name;
    expect(schemaProblems(worker).join()).toMatch(/imagePullPolicy.*name|name.*imagePullPolicy/s);
    const scaled = structuredClone(find(objects, "ScaledObject", "kneegrade-worker"));
    delete scaled.spec.scaleTargetRef;
    expect(schemaProblems(scaled)).toHaveLength(1);
    const broken = structuredClone(objects);
    find(
      broken,
      "Deployment",
      "kneegrade-listener",
    ).spec.template.spec.containers[0].readinessProbe.httpGet.port = "metrics";
    expect(referenceProblems(broken)).toEqual([
      "Deployment kneegrade-listener: readinessProbe on unknown port metrics",
    ]);
  });

  it("scales workers with KEDA on the grade-study wait list of the configured Redis", () => {
    const config = find(objects, "ConfigMap", "kneegrade-config").data;
    const secret = find(objects, "Secret", "kneegrade-secrets").stringData;
    const scaled = find(objects, "ScaledObject", "kneegrade-worker");
    expect(scaled.spec.scaleTargetRef).toEqual({ name: "kneegrade-worker" });
    const [trigger] = scaled.spec.triggers;
    expect(trigger.type).toBe("redis");
    // BullMQ keeps waiting job ids in the list <prefix>:<queue>:wait.
    expect(trigger.metadata.listName).toBe(`${config.QUEUE_PREFIX}:grade-study:wait`);
    const redis = new URL(secret.REDIS_URL);
    expect(trigger.metadata.address).toBe(`${redis.hostname}:${redis.port || 6379}`);
    expect(Number(trigger.metadata.listLength)).toBeGreaterThan(0);
    const auth = find(objects, "TriggerAuthentication", trigger.authenticationRef.name);
    expect(auth.spec.secretTargetRef).toEqual([
      { parameter: "password", name: "kneegrade-secrets", key: "REDIS_PASSWORD" },
    ]);
    // KEDA owns the worker's replica count.
    expect(find(objects, "Deployment", "kneegrade-worker").spec.replicas).toBeUndefined();
  });

  it("keeps the spool on a ReadWriteMany volume mounted by every service", () => {
    const spool = find(objects, "PersistentVolumeClaim", "kneegrade-spool");
    expect(spool.spec.accessModes).toEqual(["ReadWriteMany"]);
    const config = find(objects, "ConfigMap", "kneegrade-config").data;
    for (const name of ["listener", "worker", "reporter", "review"]) {
      const pod = find(objects, "Deployment", `kneegrade-${name}`).spec.template.spec;
      const volume = pod.volumes.find(
        (v: { persistentVolumeClaim?: { claimName: string } }) =>
          v.persistentVolumeClaim?.claimName === "kneegrade-spool",
      );
      expect(volume, name).toBeDefined();
      expect(
        pod.containers[0].volumeMounts.find((m: { name: string }) => m.name === volume.name)
          .mountPath,
      ).toBe(config.SPOOL_DIR);
      expect(pod.containers[0].args).toEqual(["serve", "--only", name]);
    }
  });

  it("lets only the listener in from outside and only the reporter out to the PACS", () => {
    const policies = objects.filter((o) => o.kind === "NetworkPolicy");
    const deny = find(policies, "NetworkPolicy", "kneegrade-default-deny");
    expect(deny.spec).toEqual({ podSelector: {}, policyTypes: ["Ingress", "Egress"] });
    // Ingress without a `from` (anyone) only for the listener's DICOM port.
    const open = policies.flatMap((p) =>
      (p.spec.ingress ?? [])
        .filter((rule: { from?: unknown[] }) => !rule.from || rule.from.length === 0)
        .map((rule: { ports: { port: number }[] }) => ({
          component: p.spec.podSelector.matchLabels?.["app.kubernetes.io/component"] ?? "(all)",
          ports: rule.ports.map((x) => x.port),
        })),
    );
    expect(open).toEqual([{ component: "listener", ports: [11112] }]);
    // The PACS port is in one egress rule, the reporter's.
    const config = find(objects, "ConfigMap", "kneegrade-config").data;
    const toPacs = policies.filter((p) =>
      (p.spec.egress ?? []).some((rule: { ports?: { port: number }[] }) =>
        (rule.ports ?? []).some((x) => x.port === Number(config.PACS_PORT)),
      ),
    );
    expect(toPacs.map((p) => p.spec.podSelector)).toEqual([
      { matchLabels: { "app.kubernetes.io/component": "reporter" } },
    ]);
  });
});

describe.skipIf(!kubectl)("infra/k8s overlays rendered by kubectl kustomize", () => {
  for (const overlay of OVERLAYS) {
    it(`${overlay}: renders, and every object validates and references what exists`, () => {
      const objects = render(overlay);
      expect(objects.length).toBe(baseResources().length);
      expect(objects.flatMap(schemaProblems)).toEqual([]);
      expect(referenceProblems(objects)).toEqual([]);
      for (const o of objects) {
        if (o.kind !== "Namespace") expect(o.metadata.namespace, o.kind).toBe("kneegrade");
      }
      const deployments = objects.filter((o) => o.kind === "Deployment");
      expect(deployments.map((d) => d.metadata.name).sort()).toEqual([
        "kneegrade-listener",
        "kneegrade-reporter",
        "kneegrade-review",
        "kneegrade-worker",
      ]);
      const dicom = find(objects, "Service", "kneegrade-dicom");
      expect(dicom.spec.ports).toEqual([
        { name: "dicom", port: 11112, targetPort: "dicom", protocol: "TCP" },
      ]);
      const worker = find(objects, "Deployment", "kneegrade-worker").spec.template.spec;
      const resources = worker.containers[0].resources;
      if (overlay === "gpu") {
        expect(resources.limits["nvidia.com/gpu"]).toBe(1);
        expect(worker.nodeSelector).toEqual({ "nvidia.com/gpu.present": "true" });
        expect(worker.containers[0].image).toMatch(/-gpu$/);
        expect(worker.containers[0].env).toContainEqual({
          name: "INFERENCE_PROVIDERS",
          value: "cuda,webgpu,cpu",
        });
      } else {
        expect(resources.limits["nvidia.com/gpu"]).toBeUndefined();
        expect(worker.nodeSelector).toBeUndefined();
      }
      // Only the worker differs between overlays' images.
      for (const d of deployments.filter((x) => x.metadata.name !== "kneegrade-worker")) {
        expect(d.spec.template.spec.containers[0].image).toBe(
          "registry.example.org/kneegrade:0.1.0",
        );
      }
    });
  }
});

it("has an overlay directory for each overlay the tests render", () => {
  expect(readdirSync(join(K8S, "overlays")).sort()).toEqual([...OVERLAYS]);
});
