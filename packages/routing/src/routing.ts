/**
 * Knee routing: is this instance a knee radiograph kneegrade should grade?
 * Rules match header attributes with case-insensitive regular expressions. A hospital replaces the
 * defaults with a JSON file (ROUTING_RULES_FILE) of the same shape; see docs/ROUTING.md.
 */
import { readFileSync } from "node:fs";
import { type RadiographHeader, ROUTABLE_ATTRIBUTES } from "@kneegrade/dicom";
import { z } from "zod";

const Rule = z.object({
  name: z.string().min(1),
  attribute: z.enum(ROUTABLE_ATTRIBUTES),
  pattern: z.string().refine((p) => {
    try {
      new RegExp(p, "i");
      return true;
    } catch {
      return false;
    }
  }, "must be a valid regular expression"),
});

export const RoutingRules = z.object({
  /** Any match makes the instance a knee radiograph... */
  knee: z.array(Rule).min(1),
  /** ...unless one of these matches (views that cannot be KL-graded, for instance). */
  exclude: z.array(Rule).default([]),
});
export type RoutingRules = z.infer<typeof RoutingRules>;

const KNEE_WORDS = "knee|knie|genou|rodilla|ginocchio|joelho|kolano|tibiofemoral";

export const DEFAULT_ROUTING_RULES: RoutingRules = {
  knee: [
    { name: "body-part", attribute: "bodyPartExamined", pattern: `^(${KNEE_WORDS})s?$` },
    {
      name: "study-description",
      attribute: "studyDescription",
      pattern: `\\b(${KNEE_WORDS})s?\\b`,
    },
    {
      name: "series-description",
      attribute: "seriesDescription",
      pattern: `\\b(${KNEE_WORDS})s?\\b`,
    },
    { name: "protocol", attribute: "protocolName", pattern: `\\b(${KNEE_WORDS})s?\\b` },
    {
      name: "requested-procedure",
      attribute: "requestedProcedureDescription",
      pattern: `\\b(${KNEE_WORDS})s?\\b`,
    },
  ],
  exclude: [
    // Axial patellar views show the patellofemoral joint only; KL grading needs AP/PA.
    {
      name: "patellar-axial-view",
      attribute: "seriesDescription",
      pattern: "\\b(skyline|merchant|sunrise|axial)\\b",
    },
    {
      name: "patellar-axial-protocol",
      attribute: "protocolName",
      pattern: "\\b(skyline|merchant|sunrise)\\b",
    },
  ],
};

export interface RoutingDecision {
  decision: "KNEE" | "NOT_KNEE";
  /** Rule names and attribute names only: safe to log. */
  reason: string;
}

export function routeInstance(header: RadiographHeader, rules: RoutingRules): RoutingDecision {
  if (!header.hasPixelData) return { decision: "NOT_KNEE", reason: "no pixel data" };
  const matches = (rule: z.infer<typeof Rule>) => {
    const value = header[rule.attribute];
    return value !== undefined && new RegExp(rule.pattern, "i").test(value);
  };
  const excluded = rules.exclude.find(matches);
  if (excluded) {
    return {
      decision: "NOT_KNEE",
      reason: `excluded by rule ${excluded.name} (${excluded.attribute})`,
    };
  }
  const knee = rules.knee.find(matches);
  if (knee) return { decision: "KNEE", reason: `rule ${knee.name} (${knee.attribute})` };
  return { decision: "NOT_KNEE", reason: "no knee rule matched" };
}

/** Loads rules from a JSON file; errors name the file and the offending path. */
export function loadRoutingRules(path: string | undefined): RoutingRules {
  if (!path) return DEFAULT_ROUTING_RULES;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(`ROUTING_RULES_FILE ${path}: ${(error as Error).message}`);
  }
  const parsed = RoutingRules.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    throw new Error(`ROUTING_RULES_FILE ${path}: ${problems.join("; ")}`);
  }
  return parsed.data;
}
