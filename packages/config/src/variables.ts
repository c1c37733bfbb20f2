/**
 * Every environment variable kneegrade reads: its type, validation, default and description.
 * docs/CONFIGURATION.md is generated from these (`npm run docs:config`); the rules that relate
 * several variables are in config.ts.
 */
import { z } from "zod";
import { deliveryVariables } from "./delivery-variables.ts";

const aeTitle = z
  .string()
  .trim()
  .min(1)
  .max(16)
  .regex(/^[\x20-\x5b\x5d-\x7e]+$/, "must be 1-16 printable ASCII characters without backslash")
  .meta({ accepts: "AE title: 1–16 printable ASCII characters, no backslash" });

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
  .optional()
  .meta({ accepts: "a file path" });

export const variables = {
  DATABASE_URL: z
    .string()
    .url()
    .refine((v) => /^postgres(ql)?:\/\//.test(v), "must be a postgresql:// URL")
    .meta({ accepts: "`postgresql://` URL" })
    .default("postgresql://postgres@127.0.0.1:5432/kneegrade")
    .describe("PostgreSQL, where every service keeps its state"),
  REDIS_URL: z
    .string()
    .url()
    .refine((v) => /^rediss?:\/\//.test(v), "must be a redis:// or rediss:// URL")
    .meta({ accepts: "`redis://` or `rediss://` URL" })
    .default("redis://127.0.0.1:6379")
    .describe("Redis, which carries the job queues"),
  QUEUE_PREFIX: z
    .string()
    .trim()
    .min(1)
    .default("kneegrade")
    .describe(
      "prefix of every BullMQ key in Redis, so several installations (or test runs) can share one Redis",
    ),
  LISTENER_HOST: z
    .string()
    .trim()
    .min(1)
    .default("0.0.0.0")
    .describe("address the DICOM listener binds"),
  LISTENER_PORT: z.coerce
    .number()
    .int()
    .min(0)
    .max(65535)
    .default(11112)
    .describe("the listener's DICOM port (`0`: any free port)"),
  LISTENER_AET: aeTitle
    .default("KNEEGRADE")
    .describe("the listener's AE title; associations calling another title are rejected"),
  ALLOWED_CALLING_AETS: commaList()
    .pipe(z.array(aeTitle))
    .describe("comma-separated AE titles allowed to send; empty means any (warned at start-up)"),
  LISTENER_TLS_KEY: optionalPath.describe(
    "PEM private key: DICOM over TLS (set with `LISTENER_TLS_CERT`)",
  ),
  LISTENER_TLS_CERT: optionalPath.describe(
    "PEM certificate: DICOM over TLS (set with `LISTENER_TLS_KEY`)",
  ),
  LISTENER_TLS_CA: optionalPath.describe(
    "PEM CA: with TLS, also require and verify client certificates",
  ),
  SPOOL_DIR: z
    .string()
    .trim()
    .min(1)
    .default("./var/spool")
    .describe("where received instances and report files are kept"),
  STUDY_STABLE_SECONDS: positive
    .default(10)
    .describe("a study is complete, and graded, when nothing arrived for it for this long"),
  MAX_ASSOCIATIONS: z.coerce
    .number()
    .int()
    .min(1)
    .default(16)
    .describe("concurrent associations; more are rejected (transient, local limit)"),
  LISTENER_MAX_CONNECTIONS: z.coerce
    .number()
    .int()
    .min(1)
    .max(100_000)
    .default(64)
    .describe(
      "open TCP connections at once, associated or not (at least `MAX_ASSOCIATIONS`); more are closed on arrival",
    ),
  LISTENER_MAX_CONNECTIONS_PER_PEER: z.coerce
    .number()
    .int()
    .min(1)
    .default(8)
    .describe(
      "open TCP connections from one peer address (at most `LISTENER_MAX_CONNECTIONS`); more are closed on arrival. Peers behind one NAT or proxy share an address",
    ),
  LISTENER_ASSOCIATION_TIMEOUT_SECONDS: positive
    .max(3600, "must be at most 3600 seconds")
    .default(30)
    .describe(
      "a connection whose association is not accepted this long after it opened is closed (with TLS: the handshake, then the association, each within it)",
    ),
  LISTENER_IDLE_TIMEOUT_SECONDS: positive
    .max(86_400, "must be at most 86400 seconds")
    .default(30)
    .describe(
      "an association with no byte received or sent for this long is aborted (A-ABORT), giving its `MAX_ASSOCIATIONS` slot back",
    ),
  LISTENER_MAX_PDU_BYTES: z.coerce
    .number()
    .int()
    .min(262_144, "must be at least 262144, the maximum PDU length kneegrade announces to peers")
    .max(64 * 1024 * 1024, "must be at most 67108864 (64 MiB)")
    .default(266_240)
    .describe(
      "longest PDU after the association (its length field); kneegrade announces 262144 bytes as its maximum receive length, which peers must respect, and the default allows 4 KiB more",
    ),
  LISTENER_MAX_ASSOCIATE_RQ_BYTES: z.coerce
    .number()
    .int()
    .min(4096, "must be at least 4096")
    .max(1024 * 1024, "must be at most 1048576 (1 MiB)")
    .default(65_536)
    .describe("longest A-ASSOCIATE-RQ PDU (its length field) before the association is accepted"),
  MAX_INSTANCE_MB: positive
    .default(512)
    .describe('larger instances are refused with "out of resources"'),
  MAX_IMAGE_DIMENSION: z.coerce
    .number()
    .int()
    .min(64)
    .max(65535)
    .default(12288)
    .describe("images with more Rows or Columns are refused (0xA900); bounds decoding memory"),
  AUDIT_REFUSALS_PER_MINUTE: z.coerce
    .number()
    .int()
    .min(1)
    .default(30)
    .describe(
      "refusals audited per peer address and minute; the rest are counted in one `audit.suppressed` row",
    ),
  SPOOL_MIN_FREE_MB: z.coerce
    .number()
    .min(0)
    .default(1024)
    .describe('below this much free disk, stores are refused with "out of resources"'),
  SPOOL_RETENTION_DAYS: z.coerce
    .number()
    .min(0)
    .default(0)
    .describe(
      "delete a settled study's spooled images and report files (never its database rows) this many days after it last changed; `0` keeps everything",
    ),
  ROUTING_RULES_FILE: optionalPath.describe(
    "JSON rules for what counts as a knee radiograph ([ROUTING.md](ROUTING.md)); unset: the built-in rules",
  ),
  PACS_HOST: z
    .string()
    .trim()
    .min(1)
    .default("127.0.0.1")
    .describe("the PACS that receives the report objects: its host name or address"),
  PACS_PORT: port.default(4242).describe("the PACS's DICOM port"),
  PACS_AET: aeTitle.default("ORTHANC").describe("the PACS's AE title"),
  DIMSE_TIMEOUT_SECONDS: positive
    .default(30)
    .describe("timeout of kneegrade's own DICOM requests (each delivery to the PACS included)"),
  PACS_TLS: flag("0").describe("`1`: deliver to the PACS over DICOM TLS"),
  PACS_TLS_CA: optionalPath.describe("PEM CA that verifies the PACS (else the system's)"),
  PACS_TLS_CERT: optionalPath.describe(
    "our PEM client certificate for the PACS (set with `PACS_TLS_KEY`)",
  ),
  PACS_TLS_KEY: optionalPath.describe("our PEM client key for the PACS (set with `PACS_TLS_CERT`)"),
  // The retry schedule of report deliveries and the PACS probe (delivery-variables.ts).
  ...deliveryVariables,
  FHIR_BASE_URL: z
    .string()
    .trim()
    .url(
      "must be an http:// or https:// URL (the FHIR server's base, e.g. https://ehr.example/fhir)",
    )
    .refine((v) => /^https?:\/\//.test(v), "must be an http:// or https:// URL")
    .meta({ accepts: "`http://` or `https://` URL" })
    .transform((v) => v.replace(/\/+$/, ""))
    .optional()
    .describe(
      "FHIR R4 server base (`https://…/fhir`): each result (AI: `preliminary`, signed: `final`) also goes there as one transaction Bundle — DiagnosticReport, an Observation per knee, Device, ImagingStudy, Patient ([INTEGRATION.md](INTEGRATION.md)); must be `https://` when `FHIR_TOKEN` (off loopback) or `FHIR_TLS_*` are set; unset: no FHIR output",
    ),
  FHIR_TOKEN: z
    .string()
    .trim()
    .min(1)
    .optional()
    .describe("bearer token for the FHIR server (Authorization header; needs `FHIR_BASE_URL`)"),
  FHIR_TLS_CA: optionalPath.describe("PEM CA that verifies the FHIR server (else the system's)"),
  FHIR_TLS_CERT: optionalPath.describe(
    "our PEM client certificate for the FHIR server, mutual TLS (set with `FHIR_TLS_KEY`)",
  ),
  FHIR_TLS_KEY: optionalPath.describe(
    "our PEM client key for the FHIR server, mutual TLS (set with `FHIR_TLS_CERT`)",
  ),
  FHIR_PATIENT_ID_SYSTEM: z
    .string()
    .trim()
    .regex(/^\S+:\S+$/, "must be a URI, e.g. urn:oid:1.2.3 or https://hospital.example/mrn")
    .meta({ accepts: "URI" })
    .default("urn:kneegrade:dicom-patient-id")
    .describe(
      "identifier system of the DICOM Patient ID in FHIR (set it to your MRN namespace, e.g. `urn:oid:…`): the Patient is matched on it, created only when absent",
    ),
  RESULT_TIMEOUT_SECONDS: positive
    .max(600, "must be at most 600 seconds")
    .default(30)
    .describe(
      "how long one FHIR request, or one HL7 message until its ACK, may take; FHIR and HL7 deliveries retry and dead-letter on the PACS's schedule (`DELIVERY_BACKOFF_SECONDS`, `DELIVERY_BACKOFF_MAX_SECONDS`, `DELIVERY_GIVE_UP_HOURS`)",
    ),
  HL7_HOST: z
    .string()
    .trim()
    .min(1)
    .optional()
    .describe(
      "the RIS's HL7 v2 MLLP listener: each result also goes there as an ORU^R01 (v2.5.1; result status P, then F after signing); set with `HL7_PORT`; unset: no HL7 output",
    ),
  HL7_PORT: port
    .optional()
    .describe("the port of `HL7_HOST`'s MLLP listener (set with `HL7_HOST`)"),
  HL7_TLS: flag("0").describe(
    "`1`: MLLP over TLS to `HL7_HOST:HL7_PORT` (required when any `HL7_TLS_*` is set, so the ORU never goes in clear by a forgotten switch)",
  ),
  HL7_TLS_CA: optionalPath.describe("PEM CA that verifies the HL7 peer (else the system's)"),
  HL7_TLS_CERT: optionalPath.describe(
    "our PEM client certificate for the HL7 peer, mutual TLS (set with `HL7_TLS_KEY`)",
  ),
  HL7_TLS_KEY: optionalPath.describe(
    "our PEM client key for the HL7 peer, mutual TLS (set with `HL7_TLS_CERT`)",
  ),
  HL7_SENDING_APPLICATION: z
    .string()
    .trim()
    .min(1)
    .max(180)
    .default("KNEEGRADE")
    .describe("MSH-3 of the ORU^R01, the sending application"),
  HL7_SENDING_FACILITY: z
    .string()
    .trim()
    .max(180)
    .optional()
    .describe("MSH-4, the sending facility (empty when unset)"),
  HL7_RECEIVING_APPLICATION: z
    .string()
    .trim()
    .min(1)
    .max(180)
    .default("RIS")
    .describe("MSH-5, the receiving application"),
  HL7_RECEIVING_FACILITY: z
    .string()
    .trim()
    .max(180)
    .optional()
    .describe("MSH-6, the receiving facility (empty when unset)"),
  REPORT_SECONDARY_CAPTURE: flag("1").describe(
    "also send a Secondary Capture image (crops, heat maps, grades burned in) for viewers that cannot show SR",
  ),
  REPORT_BASIC_TEXT_SR: flag("0").describe(
    "`1`: also send the report text as a Basic Text SR, for dictation systems",
  ),
  REPORTER_CONCURRENCY: z.coerce
    .number()
    .int()
    .min(1)
    .max(64)
    .default(2)
    .describe(
      "`report-study` jobs one reporter process runs at once (each writes its objects and C-STOREs them to the PACS); where the reporter and the PACS share a core, 4 did no better than 2 (`npm run bench:e2e -- --reporter-concurrency N`, docs/PERFORMANCE.md)",
    ),
  DEVICE_OBSERVER_UID: z
    .string()
    .trim()
    .regex(/^[0-9]+(\.[0-9]+)*$/, "must be a DICOM UID")
    .max(64)
    .meta({ accepts: "DICOM UID: digits and dots, ≤ 64 characters" })
    .optional()
    .meta({
      description: "this installation's Device Observer UID in the SR",
      unset: "derived from `LISTENER_AET`",
    }),
  INSTITUTION_NAME: z
    .string()
    .trim()
    .max(64)
    .optional()
    .describe("written into the objects kneegrade creates"),
  MODEL_DIR: z
    .string()
    .trim()
    .min(1)
    .default("./models/dist")
    .describe("the installed model: `manifest.json` and its ONNX members"),
  ALLOW_TEST_MODEL: flag("0").describe(
    '`1`: accept a model whose manifest says `status: "smoke"` — tests and demos only; every result carries the model\'s status',
  ),
  INFERENCE_PROVIDERS: commaList("cpu")
    .transform((list) => list.map((s) => s.toLowerCase()))
    .pipe(z.array(z.enum(["webgpu", "cuda", "cpu"])).min(1, "name at least one provider"))
    .describe(
      "comma-separated execution providers in order of preference, of `webgpu`, `cuda`, `cpu`; each member falls back to the next (logged)",
    ),
  INFERENCE_THREADS: z.coerce
    .number()
    .int()
    .min(0)
    .default(0)
    .describe("onnxruntime intra-op threads per session (`0`: onnxruntime's choice)"),
  INFERENCE_MAX_BATCH: z.coerce
    .number()
    .int()
    .min(1)
    .max(1024)
    .default(16)
    .describe("knees per model run, gathered across concurrent jobs (micro-batching)"),
  INFERENCE_MAX_WAIT_MS: z.coerce
    .number()
    .min(0)
    .max(10_000)
    .default(10)
    .describe("how long the first knee of a batch waits for others to join it, milliseconds"),
  JOB_ATTEMPTS: z.coerce
    .number()
    .int()
    .min(1)
    .max(100)
    .default(5)
    .describe(
      "attempts of a grading job (report deliveries have their own schedule, `DELIVERY_*`); after the last one the study is marked `FAILED` with the reason",
    ),
  JOB_BACKOFF_SECONDS: z.coerce
    .number()
    .min(0)
    .default(5)
    .describe("delay before a grading job's first retry; it doubles with each further retry"),
  JOB_LOCK_SECONDS: z.coerce
    .number()
    .min(1)
    .max(3600)
    .default(30)
    .describe(
      "a job whose worker died (stopped renewing its lock) this long ago is taken again by another worker",
    ),
  WORKER_CONCURRENCY: z.coerce
    .number()
    .int()
    .min(1)
    .max(64)
    .default(2)
    .describe("`grade-study` jobs one worker process runs at once"),
  WORKER_PREPARE_THREADS: z.coerce
    .number()
    .int()
    .min(0)
    .max(16)
    .default(0)
    .describe(
      "threads of a worker process that read, decode and localise radiographs (each with its own knee localiser) while its own thread runs the ensemble and records results, so studies arriving together overlap on a host with cores to spare; keep `WORKER_CONCURRENCY` above it (threads + 2). `0`: all on the worker's thread, one radiograph after another — measure with `npm run bench:e2e` before raising it (on a host whose cores are already busy it gained nothing: docs/PERFORMANCE.md)",
    ),
  SERVE_WORKER_THREAD: flag("1").describe(
    "`kneegrade serve` with other services runs the worker service in its own thread, so grading (onnxruntime runs synchronously) never delays C-STORE responses or the review pages (`npm run bench:cstore`); `0`: on the main thread",
  ),
  METRICS_HOST: z
    .string()
    .trim()
    .min(1)
    .default("127.0.0.1")
    .describe(
      "address the ops server binds (`/metrics`, `/healthz`, `/readyz`, `/queues`); set `0.0.0.0` explicitly where a Prometheus elsewhere scrapes it (the Kubernetes manifests do)",
    ),
  METRICS_PORT: z.coerce
    .number()
    .int()
    .min(0)
    .max(65535)
    .default(9464)
    .describe(
      "the ops server's port: one per process, for every service the process runs (`0`: any free port)",
    ),
  REVIEW_HOST: z
    .string()
    .trim()
    .min(1)
    .default("127.0.0.1")
    .describe(
      "address the review pages listen on; they show patient data: keep them on loopback or an internal address",
    ),
  REVIEW_PORT: z.coerce
    .number()
    .int()
    .min(0)
    .max(65535)
    .default(8484)
    .describe("the review pages' port (`0`: any free port)"),
  REVIEW_TLS_CERT: optionalPath.describe(
    "PEM certificate: the review pages over HTTPS (set with `REVIEW_TLS_KEY`); cookies are then Secure and HSTS is sent",
  ),
  REVIEW_TLS_KEY: optionalPath.describe("PEM private key of `REVIEW_TLS_CERT`"),
  REVIEW_SESSION_SECRET: z.string().min(32, "must be at least 32 characters").optional().meta({
    description:
      "key the forms' CSRF tokens are derived from; unset, open forms fail once after a restart",
    unset: "random per start",
  }),
  REVIEW_SESSION_HOURS: positive
    .max(24 * 30, "must be at most 720 hours")
    .default(10)
    .describe("a login expires this long after it began, hours"),
  REVIEW_LOGIN_ATTEMPTS_PER_MINUTE: z.coerce
    .number()
    .int()
    .min(1)
    .default(10)
    .describe(
      "login attempts per client address, and failed logins per account, per minute; more are answered 429",
    ),
  REVIEW_TRUSTED_PROXIES: commaList()
    .pipe(
      z.array(
        z.union([z.ipv4(), z.ipv6(), z.cidrv4(), z.cidrv6()], {
          error: "an IP address or CIDR range",
        }),
      ),
    )
    .describe(
      "comma-separated reverse proxies (IP addresses or CIDR ranges) in front of the review pages: only from these are `X-Forwarded-For/-Proto/-Host` believed (the client's address for the audit and the login limits, the origin for the CSRF check); empty: the socket's peer is the client",
    ),
  REVIEW_AGREEMENT_ALERT: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(0.6)
    .describe("exact AI–radiologist agreement (0..1) below this raises a warning (page, `status`)"),
  REVIEW_AGREEMENT_DAYS: z.coerce
    .number()
    .int()
    .min(1)
    .max(3650)
    .default(30)
    .describe("the agreement window, days (the page can choose another)"),
  REVIEW_AGREEMENT_MIN_KNEES: z.coerce
    .number()
    .int()
    .min(1)
    .default(20)
    .describe("signed knees the window needs before that warning can be raised"),
  REVIEW_VIEWER_URL: z
    .string()
    .trim()
    .refine((v) => /^https?:\/\/[^\s]+$/.test(v), "must be an http:// or https:// URL template")
    .refine((v) => v.includes("{StudyInstanceUID}"), "must contain {StudyInstanceUID}")
    .meta({ accepts: "`http://` or `https://` URL template containing `{StudyInstanceUID}`" })
    .optional()
    .describe(
      "the site's viewer as a URL template: `{StudyInstanceUID}` (and optionally `{AccessionNumber}`) are replaced, URL-encoded, e.g. OHIF's `https://pacs.example/viewer?StudyInstanceUIDs={StudyInstanceUID}`; the study page links to it; unset: no viewer link",
    ),
  LOG_LEVEL: z
    .enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"])
    .default("info")
    .describe("the least severe log level written"),
};
