/**
 * kneegrade's configuration: environment variables only, validated before anything connects.
 * Every variable, its default and its unit is documented in docs/CONFIGURATION.md.
 */
import { z } from "zod";

const aeTitle = z
  .string()
  .trim()
  .min(1)
  .max(16)
  .regex(/^[\x20-\x5b\x5d-\x7e]+$/, "must be 1-16 printable ASCII characters without backslash");

const port = z.coerce.number().int().min(1).max(65535);
const positive = z.coerce.number().positive();
/** A comma-separated list: items trimmed, empty ones dropped. */
const commaList = (fallback = "") =>
  z
    .string()
    .default(fallback)
    .transform((v) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== ""),
    );
/** An on/off switch: 1, true or yes; 0, false or no. */
const flag = (fallback: "0" | "1") =>
  z
    .enum(["0", "1", "false", "true", "no", "yes"])
    .default(fallback)
    .transform((v) => v === "1" || v === "true" || v === "yes");
const optionalPath = z
  .string()
  .trim()
  .transform((v) => (v === "" ? undefined : v))
  .optional();

const schema = z
  .object({
    DATABASE_URL: z
      .string()
      .url()
      .refine((v) => /^postgres(ql)?:\/\//.test(v), "must be a postgresql:// URL")
      .default("postgresql://postgres@127.0.0.1:5432/kneegrade"),
    REDIS_URL: z
      .string()
      .url()
      .refine((v) => /^rediss?:\/\//.test(v), "must be a redis:// or rediss:// URL")
      .default("redis://127.0.0.1:6379"),
    /** Prefix of every BullMQ key, so several installations (or test runs) can share one Redis. */
    QUEUE_PREFIX: z.string().trim().min(1).default("kneegrade"),
    LISTENER_HOST: z.string().trim().min(1).default("0.0.0.0"),
    /** 0 picks a free port (tests). */
    LISTENER_PORT: z.coerce.number().int().min(0).max(65535).default(11112),
    LISTENER_AET: aeTitle.default("KNEEGRADE"),
    ALLOWED_CALLING_AETS: commaList().pipe(z.array(aeTitle)),
    LISTENER_TLS_KEY: optionalPath,
    LISTENER_TLS_CERT: optionalPath,
    LISTENER_TLS_CA: optionalPath,
    SPOOL_DIR: z.string().trim().min(1).default("./var/spool"),
    STUDY_STABLE_SECONDS: positive.default(10),
    MAX_ASSOCIATIONS: z.coerce.number().int().min(1).default(16),
    /** Open TCP connections at once (associations or not); more are closed on arrival. */
    LISTENER_MAX_CONNECTIONS: z.coerce.number().int().min(1).max(100_000).default(64),
    /** Open TCP connections from one peer address; more are closed on arrival. */
    LISTENER_MAX_CONNECTIONS_PER_PEER: z.coerce.number().int().min(1).default(8),
    /** From TCP connect to accepted association (TLS handshake included), seconds. */
    LISTENER_ASSOCIATION_TIMEOUT_SECONDS: positive
      .max(3600, "must be at most 3600 seconds")
      .default(30),
    /** An accepted association with no byte received or sent for this long is aborted, seconds. */
    LISTENER_IDLE_TIMEOUT_SECONDS: positive
      .max(86_400, "must be at most 86400 seconds")
      .default(30),
    /**
     * Longest PDU (its length field) after the association. dcmjs-dimse announces 262144 bytes as
     * its maximum receive length, which peers must respect; the default allows 4 KiB more.
     */
    LISTENER_MAX_PDU_BYTES: z.coerce
      .number()
      .int()
      .min(262_144, "must be at least 262144, the maximum PDU length kneegrade announces to peers")
      .max(64 * 1024 * 1024, "must be at most 67108864 (64 MiB)")
      .default(266_240),
    /** Longest A-ASSOCIATE-RQ PDU (its length field) before the association is accepted. */
    LISTENER_MAX_ASSOCIATE_RQ_BYTES: z.coerce
      .number()
      .int()
      .min(4096, "must be at least 4096")
      .max(1024 * 1024, "must be at most 1048576 (1 MiB)")
      .default(65_536),
    MAX_INSTANCE_MB: positive.default(512),
    /** Largest Rows or Columns accepted; larger images are refused (bounds decoding memory). */
    MAX_IMAGE_DIMENSION: z.coerce.number().int().min(64).max(65535).default(12288),
    /** Refusals audited per peer address per minute; the rest are counted in one summary row. */
    AUDIT_REFUSALS_PER_MINUTE: z.coerce.number().int().min(1).default(30),
    SPOOL_MIN_FREE_MB: z.coerce.number().min(0).default(1024),
    /** Delete settled studies' spooled images and report files after this many days; 0 keeps all. */
    SPOOL_RETENTION_DAYS: z.coerce.number().min(0).default(0),
    ROUTING_RULES_FILE: optionalPath,
    PACS_HOST: z.string().trim().min(1).default("127.0.0.1"),
    PACS_PORT: port.default(4242),
    PACS_AET: aeTitle.default("ORTHANC"),
    DIMSE_TIMEOUT_SECONDS: positive.default(30),
    /** DICOM over TLS to the PACS: 1 to use it; CA to verify the PACS, cert+key to identify us. */
    PACS_TLS: flag("0"),
    PACS_TLS_CA: optionalPath,
    PACS_TLS_CERT: optionalPath,
    PACS_TLS_KEY: optionalPath,
    /** Delivery attempts of a report before it is dead-lettered, and the first retry's delay. */
    DELIVERY_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(12),
    DELIVERY_BACKOFF_SECONDS: z.coerce.number().min(0).default(10),
    /**
     * The result in the RIS as FHIR R4 (a transaction Bundle POSTed here: DiagnosticReport,
     * Observations, Device, ImagingStudy, Patient). Unset: no FHIR output.
     */
    FHIR_BASE_URL: z
      .string()
      .trim()
      .url(
        "must be an http:// or https:// URL (the FHIR server's base, e.g. https://ehr.example/fhir)",
      )
      .refine((v) => /^https?:\/\//.test(v), "must be an http:// or https:// URL")
      .transform((v) => v.replace(/\/+$/, ""))
      .optional(),
    /** Bearer token sent to the FHIR server (Authorization header). */
    FHIR_TOKEN: z.string().trim().min(1).optional(),
    /** PEM CA that verifies the FHIR server (else the system's) / our client certificate and key (mTLS). */
    FHIR_TLS_CA: optionalPath,
    FHIR_TLS_CERT: optionalPath,
    FHIR_TLS_KEY: optionalPath,
    /** The system of the Patient identifier (the hospital's MRN namespace) the DICOM Patient ID is. */
    FHIR_PATIENT_ID_SYSTEM: z
      .string()
      .trim()
      .regex(/^\S+:\S+$/, "must be a URI, e.g. urn:oid:1.2.3 or https://hospital.example/mrn")
      .default("urn:kneegrade:dicom-patient-id"),
    /** Seconds one FHIR request or one HL7 message (until its ACK) may take. */
    RESULT_TIMEOUT_SECONDS: positive.max(600, "must be at most 600 seconds").default(30),
    /** The result in the RIS as HL7 v2.5.1 ORU^R01 over MLLP to HL7_HOST:HL7_PORT. Unset: none. */
    HL7_HOST: z.string().trim().min(1).optional(),
    HL7_PORT: port.optional(),
    /**
     * MLLP over TLS: 1 to use it; CA to verify the peer (else the system's), cert+key to identify
     * us (mutual TLS).
     */
    HL7_TLS: flag("0"),
    HL7_TLS_CA: optionalPath,
    HL7_TLS_CERT: optionalPath,
    HL7_TLS_KEY: optionalPath,
    /** MSH-3/4 (sending application and facility) and MSH-5/6 (receiving) of the ORU^R01. */
    HL7_SENDING_APPLICATION: z.string().trim().min(1).max(180).default("KNEEGRADE"),
    HL7_SENDING_FACILITY: z.string().trim().max(180).optional(),
    HL7_RECEIVING_APPLICATION: z.string().trim().min(1).max(180).default("RIS"),
    HL7_RECEIVING_FACILITY: z.string().trim().max(180).optional(),
    /** Also send a Secondary Capture (crops, heat maps, grades burned in) for viewers without SR. */
    REPORT_SECONDARY_CAPTURE: flag("1"),
    /** Also send a Basic Text SR with the report text, for dictation systems. */
    REPORT_BASIC_TEXT_SR: flag("0"),
    /** This installation's Device Observer UID in the SR (default: derived from LISTENER_AET). */
    DEVICE_OBSERVER_UID: z
      .string()
      .trim()
      .regex(/^[0-9]+(\.[0-9]+)*$/, "must be a DICOM UID")
      .max(64)
      .optional(),
    INSTITUTION_NAME: z.string().trim().max(64).optional(),
    MODEL_DIR: z.string().trim().min(1).default("./models/dist"),
    /** Execution providers in order of preference; each member falls back to the next. */
    INFERENCE_PROVIDERS: commaList("cpu")
      .transform((list) => list.map((s) => s.toLowerCase()))
      .pipe(z.array(z.enum(["webgpu", "cuda", "cpu"])).min(1, "name at least one provider")),
    /** onnxruntime intra-op threads per session; 0 lets onnxruntime choose. */
    INFERENCE_THREADS: z.coerce.number().int().min(0).default(0),
    /** Knees per model run, gathered across concurrent jobs (micro-batching). */
    INFERENCE_MAX_BATCH: z.coerce.number().int().min(1).max(1024).default(16),
    /** How long the first knee waits for others to join its batch, ms. */
    INFERENCE_MAX_WAIT_MS: z.coerce.number().min(0).max(10_000).default(10),
    /** Attempts of a grading or report job before it is recorded as failed. */
    JOB_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(5),
    /** Delay before a job's first retry, seconds; it doubles with each further retry. */
    JOB_BACKOFF_SECONDS: z.coerce.number().min(0).default(5),
    /** A job whose worker stopped renewing its lock this long ago (crashed) is run again. */
    JOB_LOCK_SECONDS: z.coerce.number().min(1).max(3600).default(30),
    /** grade-study jobs one worker process runs at once. */
    WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
    /**
     * `kneegrade serve` runs the worker service in its own thread when it runs other services too,
     * so grading (onnxruntime runs synchronously, pixel and image work) never delays the
     * listener's C-STORE responses or the review pages. 0: on the main thread, as before.
     */
    SERVE_WORKER_THREAD: flag("1"),
    /** Accept a model with manifest status "smoke" (tests and demos only; results say so). */
    ALLOW_TEST_MODEL: flag("0"),
    /**
     * The ops server (/metrics, /healthz, /readyz, /queues): one per process, for every service
     * the process runs. Loopback by default; a Prometheus elsewhere needs an explicit address
     * (0.0.0.0 in a pod). 0 picks a free port (tests).
     */
    METRICS_HOST: z.string().trim().min(1).default("127.0.0.1"),
    METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9464),
    /** The review pages: loopback by default (they show patient data). 0 picks a free port. */
    REVIEW_HOST: z.string().trim().min(1).default("127.0.0.1"),
    REVIEW_PORT: z.coerce.number().int().min(0).max(65535).default(8484),
    /** PEM certificate and key: the review pages over HTTPS (set both); cookies become Secure. */
    REVIEW_TLS_CERT: optionalPath,
    REVIEW_TLS_KEY: optionalPath,
    /**
     * Secret the CSRF tokens are derived from (at least 32 characters). Unset: a random one per
     * start (open forms then fail once after a restart).
     */
    REVIEW_SESSION_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
    /** A login expires this long after it began, hours. */
    REVIEW_SESSION_HOURS: positive.max(24 * 30, "must be at most 720 hours").default(10),
    /**
     * Login attempts per client address and minute, and failed logins per account and minute;
     * more are answered 429.
     */
    REVIEW_LOGIN_ATTEMPTS_PER_MINUTE: z.coerce.number().int().min(1).default(10),
    /**
     * Reverse proxies in front of the review pages (comma-separated addresses or CIDR ranges):
     * only from these are X-Forwarded-For/-Proto/-Host believed (client address for the audit and
     * the login limits, the origin for the CSRF check). Empty: the socket's peer is the client.
     */
    REVIEW_TRUSTED_PROXIES: commaList().pipe(
      z.array(
        z.union([z.ipv4(), z.ipv6(), z.cidrv4(), z.cidrv6()], {
          error: "an IP address or CIDR range",
        }),
      ),
    ),
    /** Exact AI–radiologist agreement below this (0..1) raises the agreement warning. */
    REVIEW_AGREEMENT_ALERT: z.coerce.number().min(0).max(1).default(0.6),
    /** The agreement window, days (the page can choose another). */
    REVIEW_AGREEMENT_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
    /** Signed knees the window needs before the warning can be raised. */
    REVIEW_AGREEMENT_MIN_KNEES: z.coerce.number().int().min(1).default(20),
    /**
     * The site's image viewer for a study, as a URL template: `{StudyInstanceUID}` (and optionally
     * `{AccessionNumber}`) are replaced, URL-encoded, e.g. OHIF's
     * `https://pacs.example/viewer?StudyInstanceUIDs={StudyInstanceUID}`. Unset: no viewer link.
     */
    REVIEW_VIEWER_URL: z
      .string()
      .trim()
      .refine((v) => /^https?:\/\/[^\s]+$/.test(v), "must be an http:// or https:// URL template")
      .refine((v) => v.includes("{StudyInstanceUID}"), "must contain {StudyInstanceUID}")
      .optional(),
    LOG_LEVEL: z
      .enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"])
      .default("info"),
  })
  .superRefine((c, ctx) => {
    if (c.LISTENER_MAX_CONNECTIONS < c.MAX_ASSOCIATIONS) {
      ctx.addIssue({
        code: "custom",
        path: ["LISTENER_MAX_CONNECTIONS"],
        message: `must be at least MAX_ASSOCIATIONS (${c.MAX_ASSOCIATIONS}): each association is a connection`,
      });
    }
    if (c.LISTENER_MAX_CONNECTIONS_PER_PEER > c.LISTENER_MAX_CONNECTIONS) {
      ctx.addIssue({
        code: "custom",
        path: ["LISTENER_MAX_CONNECTIONS_PER_PEER"],
        message: `must be at most LISTENER_MAX_CONNECTIONS (${c.LISTENER_MAX_CONNECTIONS})`,
      });
    }
    if ((c.PACS_TLS_CERT === undefined) !== (c.PACS_TLS_KEY === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["PACS_TLS_KEY"],
        message: "PACS_TLS_CERT and PACS_TLS_KEY must be set together",
      });
    }
    if ((c.FHIR_TLS_CERT === undefined) !== (c.FHIR_TLS_KEY === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["FHIR_TLS_KEY"],
        message: "FHIR_TLS_CERT and FHIR_TLS_KEY must be set together",
      });
    }
    if (
      c.FHIR_BASE_URL === undefined &&
      (c.FHIR_TOKEN ?? c.FHIR_TLS_CA ?? c.FHIR_TLS_CERT) !== undefined
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["FHIR_BASE_URL"],
        message: "must be set when FHIR_TOKEN or FHIR_TLS_* are (where should the results go?)",
      });
    }
    if (c.FHIR_BASE_URL?.startsWith("http:")) {
      const host = new URL(c.FHIR_BASE_URL).hostname;
      const loopback = host === "localhost" || host === "[::1]" || host.startsWith("127.");
      if (c.FHIR_TOKEN !== undefined && !loopback) {
        ctx.addIssue({
          code: "custom",
          path: ["FHIR_BASE_URL"],
          message:
            "must be https:// when FHIR_TOKEN is set (the token would cross the network in clear)",
        });
      }
      if (c.FHIR_TLS_CERT !== undefined || c.FHIR_TLS_CA !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["FHIR_BASE_URL"],
          message: "must be https:// when FHIR_TLS_* are set",
        });
      }
    }
    if ((c.HL7_HOST === undefined) !== (c.HL7_PORT === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: [c.HL7_HOST === undefined ? "HL7_HOST" : "HL7_PORT"],
        message: "HL7_HOST and HL7_PORT must be set together (or neither: no HL7 output)",
      });
    }
    if ((c.HL7_TLS_CERT === undefined) !== (c.HL7_TLS_KEY === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: [c.HL7_TLS_CERT === undefined ? "HL7_TLS_CERT" : "HL7_TLS_KEY"],
        message: "HL7_TLS_CERT and HL7_TLS_KEY must be set together (mutual TLS)",
      });
    }
    if (!c.HL7_TLS && (c.HL7_TLS_CA ?? c.HL7_TLS_CERT ?? c.HL7_TLS_KEY) !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["HL7_TLS"],
        message:
          "must be 1 when HL7_TLS_CA, HL7_TLS_CERT or HL7_TLS_KEY is set (else the ORU would go in clear)",
      });
    }
    if (c.HL7_TLS && c.HL7_HOST === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["HL7_HOST"],
        message: "must be set when HL7_TLS is (where should the results go?)",
      });
    }
    if ((c.REVIEW_TLS_KEY === undefined) !== (c.REVIEW_TLS_CERT === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["REVIEW_TLS_CERT"],
        message: "REVIEW_TLS_KEY and REVIEW_TLS_CERT must be set together",
      });
    }
    if ((c.LISTENER_TLS_KEY === undefined) !== (c.LISTENER_TLS_CERT === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["LISTENER_TLS_CERT"],
        message: "LISTENER_TLS_KEY and LISTENER_TLS_CERT must be set together",
      });
    }
  });

export type Config = z.infer<typeof schema>;

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
    Object.keys(schema.shape).map((k) => [k, env[k] === "" ? undefined : env[k]]),
  );
  // ALLOWED_CALLING_AETS="" is meaningful (any peer), keep it as given.
  input.ALLOWED_CALLING_AETS = env.ALLOWED_CALLING_AETS;
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => `${i.path.join(".") || "(config)"}: ${i.message}`),
    );
  }
  return parsed.data;
}
