/**
 * The installed model: `<dir>/manifest.json` (format in models/README.md) and the ONNX members it
 * lists, each checked against its sha256. `loadModel` never throws for a bad model: it says what is
 * wrong with a stable code, so a worker without a usable model can report it and take no jobs.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { isAbsolute, join, normalize } from "node:path";
import { z } from "zod";

const TOKENS_OUTPUT = /^tokens_l\d+$/;

const Intensity = z.looseObject({
  /** float = grey * scale + offset (grey 0..255). */
  scale: z.number().positive(),
  offset: z.number().default(0),
});

const MemberInput = z.looseObject({
  name: z.string().min(1),
  dtype: z.literal("float32"),
  layout: z.literal("NCHW"),
  channels: z.int().positive(),
  height: z.int().positive(),
  width: z.int().positive(),
  intensity: Intensity,
});

const MemberOutput = z.looseObject({
  name: z.string().min(1),
  shape: z.array(z.union([z.string(), z.int()])).optional(),
});

const modelFile = z
  .string()
  .min(1)
  .refine(
    (f) => !isAbsolute(f) && !normalize(f).split(/[\\/]/).includes(".."),
    "must be a path inside the model folder",
  );

const Member = z
  .looseObject({
    name: z.string().min(1),
    file: modelFile,
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    input: MemberInput,
    outputs: z
      .array(MemberOutput)
      .min(1)
      .refine((o) => o.some((x) => x.name === "logits"), "needs a `logits` output")
      .refine(
        (o) => o.some((x) => TOKENS_OUTPUT.test(x.name)),
        "needs token maps (`tokens_l1`..) for the heat map",
      ),
    labels: z.array(z.string()).length(5).optional(),
    /** Calibration: probabilities = softmax(logits / temperature). */
    temperature: z.number().positive(),
  })
  .check((ctx) => {
    const input = ctx.value.input;
    const shape = input.shape;
    if (Array.isArray(shape) && shape.length === 4) {
      const [, c, h, w] = shape as unknown[];
      if (c !== input.channels || h !== input.height || w !== input.width) {
        ctx.issues.push({
          code: "custom",
          input: shape,
          path: ["input", "shape"],
          message: `shape ${JSON.stringify(shape)} disagrees with channels/height/width`,
        });
      }
    }
  });

/**
 * The knee localiser's settings that travel with the model (optional; each field has the
 * localiser's default): its thresholds, and its templates — a `models.knee_template` JSON in the
 * model folder — so a retrained model brings its own.
 */
export const LocaliserSection = z.looseObject({
  /** Minimum knee score of the best match (packages/knee DEFAULT_MIN_SCORE). */
  min_score: z.number().min(-1).max(1).default(0.45),
  /** Minimum score of a second knee beside the first (DEFAULT_PAIR_MIN_SCORE). */
  pair_min_score: z.number().min(-1).max(1).default(0.42),
  /** Below this a knee is graded but flagged "low localisation confidence" (LOW_CONFIDENCE_SCORE). */
  low_confidence_score: z.number().min(-1).max(1).default(0.6),
  /** Least probability of "AP/PA knee joint" from the second stage (VERIFIER_MIN_PROBABILITY). */
  verifier_min_probability: z.number().min(0).max(1).default(0.35),
  template: z.optional(z.object({ file: modelFile, sha256: z.string().regex(/^[0-9a-f]{64}$/) })),
});
export type LocaliserSection = z.infer<typeof LocaliserSection>;

/** The localiser settings of a model, ready for @kneegrade/knee (template parsed there). */
export interface LocaliserSettings {
  minScore: number;
  pairMinScore: number;
  lowConfidenceScore: number;
  verifierMinProbability: number;
  /** The model's template document (JSON), when it brings one; else the bundled one is used. */
  template?: unknown;
}

/**
 * The ensemble rules: the arithmetic mean of the members' calibrated probabilities, or their
 * normalised geometric mean (softmax of the mean log-probability, i.e. of the mean
 * temperature-scaled logits). models/metrics.py `pool` is the reference.
 */
export const ENSEMBLE_RULES = [
  "mean_calibrated_probabilities",
  "mean_calibrated_log_probabilities",
] as const;
export type EnsembleRule = (typeof ENSEMBLE_RULES)[number];

/** The parts of the manifest the product relies on (unknown fields are kept as they are). */
export const ManifestSchema = z
  .looseObject({
    schema_version: z.literal(1),
    kind: z.literal("kneegrade-kl-ensemble"),
    /** "smoke" models come from the CI rehearsal: never used to grade a patient's knee. */
    status: z.enum(["smoke", "candidate", "trained", "release"]),
    created_utc: z.iso.datetime(),
    labels: z.array(z.string()).length(5),
    members: z.array(Member).min(1),
    ensemble: z.looseObject({
      /** How the members' calibrated probabilities are pooled (`poolProbabilities`). */
      rule: z.enum(ENSEMBLE_RULES),
      /**
       * The ensemble temperature (fitted on val after the members'): the pooled q of the members'
       * calibrated probabilities becomes q^(1/T), renormalised. Absent: 1 (q as it is).
       */
      temperature: z.number().positive().finite().optional(),
    }),
    localiser: LocaliserSection.optional(),
  })
  .check((ctx) => {
    const { members, labels } = ctx.value;
    const issue = (path: PropertyKey[], message: string) =>
      ctx.issues.push({ code: "custom", input: ctx.value, path, message });
    const names = new Set<string>();
    members.forEach((m, i) => {
      if (names.has(m.name)) issue(["members", i, "name"], `duplicate member name ${m.name}`);
      names.add(m.name);
      if (m.labels && m.labels.join("\n") !== labels.join("\n")) {
        issue(["members", i, "labels"], "differ from the manifest's labels");
      }
    });
    // The ensemble's crop is the largest member input; a smaller member sees it shrunk by a
    // whole factor (block means), the same factor down and across.
    const crop = cropSize(members);
    members.forEach((m, i) => {
      const fy = crop.height / m.input.height;
      const fx = crop.width / m.input.width;
      if (!Number.isInteger(fy) || fy !== fx) {
        issue(
          ["members", i, "input"],
          `input size ${m.input.height}x${m.input.width} is not the ensemble's crop ` +
            `${crop.height}x${crop.width} shrunk by one whole factor: every member takes the ` +
            "crop itself or the crop shrunk 2, 3, … times",
        );
      }
    });
  });

export type ModelManifest = z.infer<typeof ManifestSchema>;

/** The crop an ensemble is given: its largest member input (every other one divides it). */
export function cropSize(members: readonly { input: { height: number; width: number } }[]): {
  height: number;
  width: number;
} {
  return {
    height: Math.max(...members.map((m) => m.input.height)),
    width: Math.max(...members.map((m) => m.input.width)),
  };
}
export type ManifestMember = ModelManifest["members"][number];

export type ModelCheckCode = "MODEL_MISSING" | "MODEL_INVALID" | "MODEL_NOT_FOR_PATIENTS";

export type ModelCheck =
  | {
      ok: true;
      manifest: ModelManifest;
      /** `<status>-<first 12 hex of sha256 over the members' sha256s>`: see {@link modelVersion}. */
      version: string;
    }
  | { ok: false; code: ModelCheckCode; reason: string };

export interface LoadModelOptions {
  /** Accept a status "smoke" model (tests, benchmarks). Never in production. */
  allowTestModel?: boolean;
}

/**
 * The model version: `<status>-<hex>` where hex is the first 12 hex digits of the sha256 of the
 * members' sha256 strings in manifest order, each followed by "\n", then — for any rule but the
 * first, original one — `rule:<ensemble rule>\n`. It changes whenever any member's bytes (or the
 * members' order, the status or the rule, which decide the grades) change, and is the same
 * wherever the same files are installed.
 */
export function modelVersion(
  manifest: Pick<ModelManifest, "status" | "members"> & {
    ensemble?: Pick<ModelManifest["ensemble"], "rule">;
  },
): string {
  const hash = createHash("sha256");
  for (const m of manifest.members) hash.update(`${m.sha256}\n`);
  const rule = manifest.ensemble?.rule ?? ENSEMBLE_RULES[0];
  if (rule !== ENSEMBLE_RULES[0]) hash.update(`rule:${rule}\n`);
  return `${manifest.status}-${hash.digest("hex").slice(0, 12)}`;
}

/** A checked model plus the verified bytes of each member (the runtime loads exactly these). */
export type LoadedModel =
  | (Extract<ModelCheck, { ok: true }> & {
      files: Map<string, Uint8Array>;
      localiser: LocaliserSettings;
    })
  | Extract<ModelCheck, { ok: false }>;

/** @internal `loadModel` that also hands back the member bytes it verified. */
export async function readModel(dir: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const manifestPath = join(dir, "manifest.json");
  let json: unknown;
  try {
    json = JSON.parse(await readFile(manifestPath, "utf8"));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
    return {
      ok: false,
      code: missing ? "MODEL_MISSING" : "MODEL_INVALID",
      reason: missing
        ? `no model manifest at ${manifestPath}`
        : `${manifestPath}: ${(error as Error).message}`,
    };
  }
  const parsed = ManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      code: "MODEL_INVALID",
      reason: `${manifestPath}: ${issue?.path.join(".")}: ${issue?.message}`,
    };
  }
  const manifest = parsed.data;
  if (manifest.status === "smoke" && !options.allowTestModel) {
    return {
      ok: false,
      code: "MODEL_NOT_FOR_PATIENTS",
      reason: `${manifestPath} is a smoke-test model (status "smoke"): it must never grade patients`,
    };
  }
  const files = new Map<string, Uint8Array>();
  for (const member of manifest.members) {
    const path = join(dir, member.file);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch {
      return {
        ok: false,
        code: "MODEL_MISSING",
        reason: `member ${member.name}: ${path} not found`,
      };
    }
    if (createHash("sha256").update(bytes).digest("hex") !== member.sha256) {
      return { ok: false, code: "MODEL_INVALID", reason: `member ${member.name}: sha256 mismatch` };
    }
    files.set(member.name, bytes);
  }
  const section = manifest.localiser ?? LocaliserSection.parse({});
  const localiser: LocaliserSettings = {
    minScore: section.min_score,
    pairMinScore: section.pair_min_score,
    lowConfidenceScore: section.low_confidence_score,
    verifierMinProbability: section.verifier_min_probability,
  };
  if (section.template) {
    const path = join(dir, section.template.file);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch {
      return { ok: false, code: "MODEL_MISSING", reason: `localiser template: ${path} not found` };
    }
    if (createHash("sha256").update(bytes).digest("hex") !== section.template.sha256) {
      return { ok: false, code: "MODEL_INVALID", reason: "localiser template: sha256 mismatch" };
    }
    try {
      localiser.template = JSON.parse(bytes.toString("utf8"));
    } catch (error) {
      return {
        ok: false,
        code: "MODEL_INVALID",
        reason: `localiser template: ${(error as Error).message}`,
      };
    }
  }
  return { ok: true, manifest, version: modelVersion(manifest), files, localiser };
}

/**
 * Checks the model in `dir`: the manifest parses, the status is usable (status "smoke" only with
 * `allowTestModel`), and every member file exists with its sha256. Never throws for a bad model.
 */
export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<ModelCheck> {
  const loaded = await readModel(dir, options);
  if (!loaded.ok) return loaded;
  const { files: _files, localiser: _localiser, ...check } = loaded;
  return check;
}
