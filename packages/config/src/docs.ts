/**
 * docs/CONFIGURATION.md, written from the variables' schema (variables.ts): each variable's default,
 * the values it accepts and its description. `npm run docs:config` rewrites the file;
 * docs.unit.test.ts fails when the committed file differs from what this writes.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { variables } from "./variables.ts";

/** The generated file, from the repository root. */
export const CONFIGURATION_DOC = fileURLToPath(
  new URL("../../../docs/CONFIGURATION.md", import.meta.url),
);

/** The part of a JSON Schema the variables use. */
interface Json {
  type?: string;
  format?: string;
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  items?: Json;
  anyOf?: Json[];
  minItems?: number;
  description?: string;
  /** What an optional variable without a default means when unset (`.meta({ unset })`). */
  unset?: string;
  /** The accepted values in words, where a pattern or refinement says it badly (`.meta({ accepts })`). */
  accepts?: string;
}

const FLAG = ["0", "1", "false", "true", "no", "yes"];
const FORMATS: Record<string, string> = {
  uri: "URL",
  ipv4: "IPv4 address",
  ipv6: "IPv6 address",
  cidrv4: "IPv4 CIDR range",
  cidrv6: "IPv6 CIDR range",
};

const code = (value: unknown) => `\`${String(value)}\``;

function range(json: Json, low: string | undefined): string {
  const high = json.maximum;
  const top = high !== undefined && high < Number.MAX_SAFE_INTEGER ? high : undefined;
  if (json.minimum !== undefined && top !== undefined) return `${json.minimum}–${top}`;
  if (low !== undefined && top !== undefined) return `${low}, ≤ ${top}`;
  if (low !== undefined) return low;
  return top !== undefined ? `≤ ${top}` : "";
}

/** The values a variable accepts, in words, from its JSON Schema. */
function accepted(json: Json): string {
  if (json.accepts) return json.accepts;
  if (json.anyOf) return json.anyOf.map(accepted).join(" or ");
  if (json.enum) {
    if (FLAG.every((v) => json.enum?.includes(v))) return "`1`, `true`, `yes` / `0`, `false`, `no`";
    return json.enum.map(code).join(", ");
  }
  if (json.type === "integer" || json.type === "number") {
    const low =
      json.exclusiveMinimum !== undefined
        ? `> ${json.exclusiveMinimum}`
        : json.minimum !== undefined
          ? `≥ ${json.minimum}`
          : undefined;
    return [json.type, range(json, low)].filter(Boolean).join(" ");
  }
  if (json.type === "array" && json.items) {
    const atLeast = json.minItems ? `, at least ${json.minItems}` : "";
    return `comma-separated${atLeast}; each ${accepted(json.items)}`;
  }
  const parts = [json.format ? (FORMATS[json.format] ?? json.format) : "text"];
  if (json.minLength !== undefined && json.maxLength !== undefined) {
    parts.push(`${json.minLength}–${json.maxLength} characters`);
  } else if (json.maxLength !== undefined) {
    parts.push(`≤ ${json.maxLength} characters`);
  } else if (json.minLength !== undefined && json.minLength > 1) {
    parts.push(`≥ ${json.minLength} characters`);
  } else if (json.minLength === 1) {
    parts.push("not empty");
  }
  // A format's own pattern (zod writes both) says nothing the format's name does not.
  if (json.pattern && !json.format) parts.push(`matching ${code(json.pattern)}`);
  return parts.join(", ");
}

function defaultOf(json: Json): string {
  if (json.default === undefined) return json.unset ?? "unset";
  return json.default === "" ? "empty" : code(json.default);
}

/** A table cell: one line, and a `|` that does not end the cell. */
const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ");

/** The text of docs/CONFIGURATION.md. */
export function configurationMarkdown(): string {
  const schema = z.object(variables);
  const options = { unrepresentable: "any", reused: "inline" } as const;
  const input = z.toJSONSchema(schema, { ...options, io: "input" }).properties ?? {};
  // A list is given as text and validated item by item after the split: its output tells how.
  const output = z.toJSONSchema(schema, { ...options, io: "output" }).properties ?? {};
  const rows = Object.keys(variables).map((name) => {
    const given = input[name] as Json;
    const parsed = output[name] as Json;
    const accepts = parsed.type === "array" ? accepted(parsed) : accepted(given);
    const description = given.description ?? parsed.description;
    if (!description) throw new Error(`${name} has no description in variables.ts`);
    return `| \`${name}\` | ${cell(defaultOf(given))} | ${cell(accepts)} | ${cell(description)} |`;
  });
  return [
    "# Configuration",
    "",
    "<!-- Generated from packages/config/src/variables.ts by `npm run docs:config`: edit there. -->",
    "",
    "Environment variables only, validated before anything connects; every problem is reported with",
    "its variable name and the process exits with status 78. An empty variable counts as unset.",
    "Variables that work together are checked together: a certificate needs its key, TLS settings need",
    "their switch and their destination, `HL7_HOST` needs `HL7_PORT`.",
    "",
    "| variable | default | accepts | meaning |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
    "Kubernetes: every variable that is not a secret is in `infra/k8s/base/config.yaml`; see",
    "[DEPLOYMENT.md](DEPLOYMENT.md).",
    "",
  ].join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(CONFIGURATION_DOC, configurationMarkdown());
  console.log(`wrote ${CONFIGURATION_DOC}`);
}
