/**
 * kneegrade's configuration: environment variables only, validated before anything connects.
 * The variables are defined, and described, in variables.ts; here are the rules between them.
 */
import { z } from "zod";
import { variables } from "./variables.ts";

type Variable = keyof typeof variables;

/**
 * Variables that work only together (a certificate and its key, a host and its port): the problem
 * is reported under the missing one, or under the second where `under` says so.
 */
const TOGETHER: { pair: [Variable, Variable]; why?: string; under?: "second" }[] = [
  { pair: ["LISTENER_TLS_KEY", "LISTENER_TLS_CERT"], under: "second" },
  { pair: ["PACS_TLS_CERT", "PACS_TLS_KEY"], under: "second" },
  { pair: ["FHIR_TLS_CERT", "FHIR_TLS_KEY"], under: "second" },
  { pair: ["HL7_HOST", "HL7_PORT"], why: " (or neither: no HL7 output)" },
  { pair: ["HL7_TLS_CERT", "HL7_TLS_KEY"], why: " (mutual TLS)" },
  { pair: ["REVIEW_TLS_KEY", "REVIEW_TLS_CERT"], under: "second" },
];

export const configSchema = z.object(variables).superRefine((c, ctx) => {
  const problem = (variable: Variable, message: string) =>
    ctx.addIssue({ code: "custom", path: [variable], message });
  for (const { pair, why = "", under } of TOGETHER) {
    const [a, b] = pair;
    if ((c[a] === undefined) !== (c[b] === undefined)) {
      const missing = c[a] === undefined ? a : b;
      problem(under === "second" ? b : missing, `${a} and ${b} must be set together${why}`);
    }
  }
  if (c.LISTENER_MAX_CONNECTIONS < c.MAX_ASSOCIATIONS) {
    problem(
      "LISTENER_MAX_CONNECTIONS",
      `must be at least MAX_ASSOCIATIONS (${c.MAX_ASSOCIATIONS}): each association is a connection`,
    );
  }
  if (c.LISTENER_MAX_CONNECTIONS_PER_PEER > c.LISTENER_MAX_CONNECTIONS) {
    problem(
      "LISTENER_MAX_CONNECTIONS_PER_PEER",
      `must be at most LISTENER_MAX_CONNECTIONS (${c.LISTENER_MAX_CONNECTIONS})`,
    );
  }
  if (
    c.FHIR_BASE_URL === undefined &&
    (c.FHIR_TOKEN ?? c.FHIR_TLS_CA ?? c.FHIR_TLS_CERT) !== undefined
  ) {
    problem(
      "FHIR_BASE_URL",
      "must be set when FHIR_TOKEN or FHIR_TLS_* are (where should the results go?)",
    );
  }
  if (c.FHIR_BASE_URL?.startsWith("http:")) {
    const host = new URL(c.FHIR_BASE_URL).hostname;
    const loopback = host === "localhost" || host === "[::1]" || host.startsWith("127.");
    if (c.FHIR_TOKEN !== undefined && !loopback) {
      problem(
        "FHIR_BASE_URL",
        "must be https:// when FHIR_TOKEN is set (the token would cross the network in clear)",
      );
    }
    if (c.FHIR_TLS_CERT !== undefined || c.FHIR_TLS_CA !== undefined) {
      problem("FHIR_BASE_URL", "must be https:// when FHIR_TLS_* are set");
    }
  }
  if (!c.HL7_TLS && (c.HL7_TLS_CA ?? c.HL7_TLS_CERT ?? c.HL7_TLS_KEY) !== undefined) {
    problem(
      "HL7_TLS",
      "must be 1 when HL7_TLS_CA, HL7_TLS_CERT or HL7_TLS_KEY is set (else the ORU would go in clear)",
    );
  }
  if (c.HL7_TLS && c.HL7_HOST === undefined) {
    problem("HL7_HOST", "must be set when HL7_TLS is (where should the results go?)");
  }
});

export type Config = z.infer<typeof configSchema>;

/** Thrown when the environment is invalid; the message lists every problem by variable name. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Reads and validates the configuration. Pure: no file, socket or log is touched. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const input = Object.fromEntries(
    Object.keys(configSchema.shape).map((k) => [k, env[k] === "" ? undefined : env[k]]),
  );
  // ALLOWED_CALLING_AETS="" is meaningful (any peer), keep it as given.
  input.ALLOWED_CALLING_AETS = env.ALLOWED_CALLING_AETS;
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => `${i.path.join(".") || "(config)"}: ${i.message}`),
    );
  }
  return parsed.data;
}
