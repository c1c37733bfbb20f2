/**
 * A study result as FHIR R4, following the HL7 "DICOM SR to FHIR Resource Mapping" IG where R4
 * allows it: the SR document → DiagnosticReport (code LOINC 18748-4 like the SR's title,
 * `conclusion` the report text, `imagingStudy` the study by its Study Instance UID), each knee's
 * measurement group → an Observation (identifier = the group's Tracking UID, code and coded value
 * from the SR, `bodySite` the finding site with its laterality, `method` Artificial Intelligence
 * for the AI's, `device` the TID 4019 algorithm as a Device, `derivedFrom` the graded images'
 * study), the patient module → Patient.
 *
 * One transaction Bundle per result, POSTed to the base: the server applies it all or nothing, so
 * a report never appears without its observations or with half of them. Every entry is conditional
 * on a business identifier — Patient, ImagingStudy and Device are created only when absent
 * (`ifNoneExist`: the hospital's own stay as they are), the DiagnosticReport and Observations are
 * conditional updates (`PUT Type?identifier=…`) — so a retry or a `kneegrade redeliver` changes
 * nothing twice, and the signed result updates the same resources from preliminary to final.
 */
import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { KL_GRADE_WORDS } from "@kneegrade/dicom-writers";
import type {
  Bundle,
  BundleEntry,
  CodeableConcept,
  Device,
  DiagnosticReport,
  HumanName,
  Identifier,
  ImagingStudy,
  Observation,
  Patient,
  Practitioner,
  Reference,
} from "@medplum/fhirtypes";
import { fhirDate, type ResultKnee, resultText, type StudyResult } from "./result.ts";

export const SYSTEMS = {
  dicomUid: "urn:dicom:uid",
  dcm: "http://dicom.nema.org/resources/ontology/DCM",
  loinc: "http://loinc.org",
  snomed: "http://snomed.info/sct",
  v2_0074: "http://terminology.hl7.org/CodeSystem/v2-0074",
  v2_0203: "http://terminology.hl7.org/CodeSystem/v2-0203",
  observationCategory: "http://terminology.hl7.org/CodeSystem/observation-category",
  dataAbsentReason: "http://terminology.hl7.org/CodeSystem/data-absent-reason",
  /** The SR's private scheme 99KNEEGRADE (the Kellgren–Lawrence grade has no standard code). */
  kneegrade: "urn:kneegrade:codes",
  /** A model version (the Device of the AI result). */
  kneegradeModel: "urn:kneegrade:model-version",
} as const;

/** The finding site with its laterality, pre-coordinated (R4 Observation.bodySite is one concept). */
const BODY_SITE: Record<ResultKnee["laterality"], CodeableConcept> = {
  R: {
    coding: [{ system: SYSTEMS.snomed, code: "6757004", display: "Right knee joint structure" }],
    text: "Right knee",
  },
  L: {
    coding: [{ system: SYSTEMS.snomed, code: "82169009", display: "Left knee joint structure" }],
    text: "Left knee",
  },
  U: {
    coding: [{ system: SYSTEMS.snomed, code: "49076000", display: "Knee joint structure" }],
    text: "Knee (side not determined)",
  },
};

export const KL_GRADE_CONCEPT: CodeableConcept = {
  coding: [{ system: SYSTEMS.kneegrade, code: "KLG", display: "Kellgren-Lawrence grade" }],
  text: "Kellgren–Lawrence grade",
};

export function klGradeConcept(grade: number): CodeableConcept {
  const display = `Kellgren-Lawrence grade ${grade} (${KL_GRADE_WORDS[grade]})`;
  return { coding: [{ system: SYSTEMS.kneegrade, code: `KL${grade}`, display }], text: display };
}

const DIAGNOSTIC_IMAGING_REPORT: CodeableConcept = {
  coding: [{ system: SYSTEMS.loinc, code: "18748-4", display: "Diagnostic imaging study" }],
  text: "Knee radiograph: Kellgren–Lawrence grading",
};

const AI_METHOD: CodeableConcept = {
  coding: [{ system: SYSTEMS.dcm, code: "123110", display: "Artificial Intelligence" }],
};

const oid = (uid: string): Identifier => ({ system: SYSTEMS.dicomUid, value: `urn:oid:${uid}` });
/** FHIR search escaping (\\ | , $ are separators in parameter values), then URL escaping. */
const searchPart = (v: string) => encodeURIComponent(v.replace(/[\\|,$]/g, (c) => `\\${c}`));
/** The search `identifier=system|value` that finds a resource by its business identifier. */
const token = (i: Identifier) =>
  `identifier=${searchPart(i.system ?? "")}|${searchPart(i.value ?? "")}`;
/** A stable urn:uuid per seed: the Bundle is the same bytes for the same result. */
const urn = (seed: string) => {
  const h = createHash("sha256").update(seed).digest("hex");
  return `urn:uuid:${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

/** DICOM PN "Family^Given^Middle^Prefix^Suffix" (alphabetic group) → HumanName. */
export function humanName(pn: string): HumanName {
  const [family, given, middle, prefix, suffix] = (pn.split("=")[0] ?? "").split("^");
  const name: HumanName = {
    text: [prefix, given, middle, family, suffix].filter(Boolean).join(" "),
  };
  if (family) name.family = family;
  const givens = [given, middle].filter((g): g is string => !!g);
  if (givens.length > 0) name.given = givens;
  if (prefix) name.prefix = [prefix];
  if (suffix) name.suffix = [suffix];
  return name;
}

const GENDER: Record<string, Patient["gender"]> = { M: "male", F: "female", O: "other" };

export interface FhirOptions {
  /** The identifier system of DICOM's Patient ID (FHIR_PATIENT_ID_SYSTEM). */
  patientIdSystem: string;
}

/** The transaction Bundle of one result. */
export function fhirTransaction(result: StudyResult, options: FhirOptions): Bundle {
  const entries: BundleEntry[] = [];
  const patient = patientEntry(result, options);
  if (patient) entries.push(patient.entry);
  const study = imagingStudyEntry(result, patient?.ref);
  if (study.entry) entries.push(study.entry);
  const device = deviceEntry(result);
  entries.push(device.entry);
  const refs: ResultRefs = {
    patient: patient?.ref,
    study: study.ref,
    device: { reference: device.entry.fullUrl! },
    // The radiologist by name (a Practitioner of the hospital's is not known here).
    radiologist: result.radiologist
      ? { display: humanName(result.radiologist.name).text ?? result.radiologist.name }
      : undefined,
  };
  const observations = result.knees.map((knee) => observationEntry(result, knee, refs));
  entries.push(...observations);
  entries.push(
    reportEntry(
      result,
      refs,
      observations.map((o) => ({ reference: o.fullUrl! })),
    ),
  );
  return { resourceType: "Bundle", type: "transaction", entry: entries };
}

/** What the result's resources refer to. */
interface ResultRefs {
  patient: Reference<Patient> | undefined;
  study: Reference<ImagingStudy>;
  device: Reference<Device>;
  radiologist: Reference<Practitioner> | undefined;
}

/** The accession number as the order's identifier (v2 table 0203 ACSN), when there is one. */
function accessionIdentifier(result: StudyResult): Identifier | undefined {
  return result.context.accessionNumber
    ? {
        type: { coding: [{ system: SYSTEMS.v2_0203, code: "ACSN" }] },
        value: result.context.accessionNumber,
      }
    : undefined;
}

/** The Patient, created unless one with the same identifier exists; none without a Patient ID. */
function patientEntry(
  result: StudyResult,
  options: FhirOptions,
): { entry: BundleEntry; ref: Reference<Patient> } | undefined {
  const ctx = result.context;
  if (!ctx.patientId) return undefined;
  const identifier: Identifier = { system: options.patientIdSystem, value: ctx.patientId };
  const patient: Patient = {
    resourceType: "Patient",
    identifier: [identifier],
    ...(ctx.patientName ? { name: [humanName(ctx.patientName)] } : {}),
    gender: GENDER[ctx.patientSex ?? ""] ?? "unknown",
    ...(fhirDate(ctx.patientBirthDate) ? { birthDate: fhirDate(ctx.patientBirthDate) } : {}),
  };
  const fullUrl = urn(`patient:${result.aiSrSopInstanceUid}`);
  return { entry: createUnlessExists(fullUrl, patient, identifier), ref: { reference: fullUrl } };
}

/**
 * The ImagingStudy with its series and instances, created unless it exists. ImagingStudy needs its
 * subject: with no Patient the study is only referenced, by identifier.
 */
function imagingStudyEntry(
  result: StudyResult,
  patientRef: Reference<Patient> | undefined,
): { entry?: BundleEntry; ref: Reference<ImagingStudy> } {
  const ctx = result.context;
  const studyId = oid(ctx.studyInstanceUid);
  if (!patientRef) {
    return {
      ref: { type: "ImagingStudy", identifier: studyId, display: `Study ${ctx.studyInstanceUid}` },
    };
  }
  const series = new Map<string, NonNullable<ImagingStudy["series"]>[number]>();
  for (const image of result.images) {
    const s = series.get(image.seriesInstanceUid) ?? {
      uid: image.seriesInstanceUid,
      modality: { system: SYSTEMS.dcm, code: image.modality },
      instance: [],
    };
    s.instance?.push({
      uid: image.sopInstanceUid,
      sopClass: { system: "urn:ietf:rfc:3986", code: `urn:oid:${image.sopClassUid}` },
    });
    series.set(image.seriesInstanceUid, s);
  }
  const accession = accessionIdentifier(result);
  const study: ImagingStudy = {
    resourceType: "ImagingStudy",
    identifier: [studyId, ...(accession ? [accession] : [])],
    status: "available",
    subject: patientRef,
    ...(fhirDate(ctx.studyDate) ? { started: fhirDate(ctx.studyDate) } : {}),
    ...(ctx.studyDescription ? { description: ctx.studyDescription } : {}),
    numberOfSeries: series.size,
    numberOfInstances: result.images.length,
    series: [...series.values()],
  };
  const fullUrl = urn(`study:${result.aiSrSopInstanceUid}`);
  return {
    entry: createUnlessExists(fullUrl, study, studyId),
    ref: { reference: fullUrl, display: `Study ${ctx.studyInstanceUid}` },
  };
}

/** The model as a Device, created unless one with its version exists. */
function deviceEntry(result: StudyResult): { entry: BundleEntry } {
  const algorithm = result.algorithm;
  const modelId: Identifier = { system: SYSTEMS.kneegradeModel, value: algorithm.version };
  const device: Device = {
    resourceType: "Device",
    identifier: [modelId],
    status: "active",
    manufacturer: algorithm.manufacturer,
    deviceName: [{ name: algorithm.name, type: "model-name" }],
    type: AI_METHOD,
    version: [
      { type: { text: "model" }, value: algorithm.version },
      { type: { text: "software" }, value: algorithm.softwareVersion },
    ],
    note: [
      {
        text:
          algorithm.modelStatus === "smoke"
            ? "TEST MODEL – NOT FOR CLINICAL USE"
            : `Model status: ${algorithm.modelStatus}. Device Observer UID ${result.deviceObserverUid}.`,
      },
    ],
  };
  return { entry: createUnlessExists(urn(`device:${algorithm.version}`), device, modelId) };
}

/**
 * A conditional create: the server adds `resource` only when none of its type carries
 * `identifier`, so the hospital's own Patient, ImagingStudy and Device stay as they are.
 */
function createUnlessExists(
  fullUrl: string,
  resource: Patient | ImagingStudy | Device,
  identifier: Identifier,
): BundleEntry {
  return {
    fullUrl,
    resource,
    request: { method: "POST", url: resource.resourceType, ifNoneExist: token(identifier) },
  };
}

/** One knee's grade as an Observation, replaced by its tracking UID on each revision. */
function observationEntry(result: StudyResult, knee: ResultKnee, refs: ResultRefs): BundleEntry {
  const signed = result.status !== "preliminary";
  const version = result.algorithm.version;
  const identifier = oid(knee.trackingUid);
  const decision = knee.decision;
  const grade = decision ? decision.grade : knee.aiGrade;
  const observation: Observation = {
    resourceType: "Observation",
    identifier: [identifier],
    status: result.status,
    category: [
      { coding: [{ system: SYSTEMS.observationCategory, code: "imaging", display: "Imaging" }] },
    ],
    code: KL_GRADE_CONCEPT,
    ...(refs.patient ? { subject: refs.patient } : {}),
    ...(fhirDate(result.context.studyDate)
      ? { effectiveDateTime: fhirDate(result.context.studyDate) }
      : {}),
    issued: result.issued.toISOString(),
    ...(refs.radiologist ? { performer: [refs.radiologist] } : {}),
    ...(grade === null
      ? {
          dataAbsentReason: {
            coding: [{ system: SYSTEMS.dataAbsentReason, code: "unknown" }],
            text: "not gradable",
          },
        }
      : { valueCodeableConcept: klGradeConcept(grade) }),
    bodySite: BODY_SITE[knee.laterality],
    ...(signed ? {} : { method: AI_METHOD }),
    device: refs.device,
    derivedFrom: [refs.study],
    note: [
      {
        text: signed
          ? `Radiologist's grade${decision?.grade === null ? `: not gradable${decision.notGradableReason ? ` (${decision.notGradableReason})` : ""}` : ""}. AI result for reference: grade ${knee.aiGrade} (model ${version}). Image ${knee.source.sopInstanceUid}.`
          : `AI result (model ${version}), unverified: requires review and signature by a radiologist. Probabilities KL0–4: ${knee.probabilities.map((p) => p.toFixed(2)).join(", ")}. Image ${knee.source.sopInstanceUid}.`,
      },
    ],
  };
  return {
    fullUrl: urn(`observation:${knee.trackingUid}`),
    resource: observation,
    request: { method: "PUT", url: `Observation?${token(identifier)}` },
  };
}

/** The report of the whole study, replaced by the AI SR's UID on each revision. */
function reportEntry(
  result: StudyResult,
  refs: ResultRefs,
  observations: Reference<Observation>[],
): BundleEntry {
  const ctx = result.context;
  const reportId = oid(result.aiSrSopInstanceUid);
  const accession = accessionIdentifier(result);
  const report: DiagnosticReport = {
    resourceType: "DiagnosticReport",
    identifier: [reportId],
    ...(accession
      ? { basedOn: [{ type: "ServiceRequest", identifier: accession, display: "Order" }] }
      : {}),
    status: result.status,
    category: [{ coding: [{ system: SYSTEMS.v2_0074, code: "RAD", display: "Radiology" }] }],
    code: DIAGNOSTIC_IMAGING_REPORT,
    ...(refs.patient ? { subject: refs.patient } : {}),
    ...(fhirDate(ctx.studyDate) ? { effectiveDateTime: fhirDate(ctx.studyDate) } : {}),
    issued: result.issued.toISOString(),
    ...(result.institutionName ? { performer: [{ display: result.institutionName }] } : {}),
    ...(refs.radiologist ? { resultsInterpreter: [refs.radiologist] } : {}),
    result: observations,
    imagingStudy: [refs.study],
    conclusion: resultText(result),
  };
  return {
    fullUrl: urn(`report:${result.aiSrSopInstanceUid}`),
    resource: report,
    request: { method: "PUT", url: `DiagnosticReport?${token(reportId)}` },
  };
}

export interface FhirPeer {
  baseUrl: string;
  token?: string;
  tls?: { ca?: string; cert?: string; key?: string };
  timeoutMs: number;
}

/**
 * POSTs a transaction to the base. Resolves on a 2xx transaction-response whose entries all
 * succeeded; throws otherwise, with the HTTP status as `status` when there was one and the
 * OperationOutcome's issue codes and paths (never its text, nor the Bundle's contents).
 */
export async function postTransaction(peer: FhirPeer, bundle: Bundle): Promise<Bundle> {
  const body = Buffer.from(JSON.stringify(bundle), "utf8");
  const { status, text } = await fhirRequest(peer, "POST", "", body);
  let answer: Bundle & { issue?: { code?: string; expression?: string[] }[] };
  try {
    answer = JSON.parse(text);
  } catch {
    throw Object.assign(new Error(`FHIR server answered ${status} without JSON`), { status });
  }
  if (status < 200 || status >= 300) {
    // The issues' codes and paths only: a server's text may quote a value, i.e. patient data.
    const why = (answer.issue ?? [])
      .map((i) => [i.code, i.expression?.join(",")].filter(Boolean).join(" at "))
      .filter(Boolean)
      .slice(0, 3)
      .join("; ");
    throw Object.assign(
      new Error(`FHIR server answered ${status}${why ? `: ${why.slice(0, 300)}` : ""}`),
      { status },
    );
  }
  const failed = (answer.entry ?? []).filter((e) => !/^2\d\d/.test(e.response?.status ?? ""));
  if (answer.resourceType !== "Bundle" || failed.length > 0) {
    throw new Error(
      `FHIR server did not apply the transaction (${failed.map((e) => e.response?.status).join(", ") || "no transaction-response"})`,
    );
  }
  return answer;
}

/**
 * One HTTP exchange with the FHIR server: `path` relative to the base (the bearer token and the
 * TLS material of the peer); resolves with the status and the body whatever the status.
 */
export function fhirRequest(
  peer: FhirPeer,
  method: "GET" | "POST",
  path: string,
  body?: Buffer,
): Promise<{ status: number; text: string }> {
  const base = new URL(peer.baseUrl.endsWith("/") ? peer.baseUrl : `${peer.baseUrl}/`);
  const url = new URL(path, base);
  const https = url.protocol === "https:";
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(
      url,
      {
        method,
        headers: {
          accept: "application/fhir+json",
          ...(body
            ? {
                "content-type": "application/fhir+json; charset=utf-8",
                "content-length": body.length,
              }
            : {}),
          ...(peer.token ? { authorization: `Bearer ${peer.token}` } : {}),
        },
        timeout: peer.timeoutMs,
        // A connection per exchange, as for HL7: no pooled socket the server may have closed
        // meanwhile, so a failure says what the server does now.
        agent: false,
        ...(https && peer.tls ? peer.tls : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${peer.timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}
