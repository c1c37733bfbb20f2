/**
 * The result outputs in the reporter's outbox. Each SR a revision has (the AI's, every signed
 * revision) gets one `Delivery` row per configured channel (FHIR, HL7) beside its C-STORE to the
 * PACS, in PostgreSQL; the report job sends what is pending, records each outcome, and throws when
 * anything is left, so BullMQ retries with the delivery backoff and the last attempt dead-letters
 * (FAILED, `kneegrade status`, `kneegrade redeliver`) exactly like the PACS deliveries.
 */
import { readFileSync } from "node:fs";
import type { Config } from "@kneegrade/config";
import type { Db } from "@kneegrade/db";
import { reportUids, SR_SOP_CLASSES } from "@kneegrade/dicom-writers";
import { type FhirPeer, fhirTransaction, postTransaction } from "./fhir.ts";
import { type Hl7Peer, oruR01, sendMllp } from "./hl7.ts";
import { buildStudyResult } from "./result.ts";

export type ResultChannel = "FHIR" | "HL7";

export interface ResultOutputs {
  fhir?: FhirPeer & { patientIdSystem: string };
  hl7?: Hl7Peer & {
    sendingApplication: string;
    sendingFacility?: string;
    receivingApplication: string;
    receivingFacility?: string;
  };
}

type OutputsConfig = Pick<
  Config,
  | "FHIR_BASE_URL"
  | "FHIR_TOKEN"
  | "FHIR_TLS_CA"
  | "FHIR_TLS_CERT"
  | "FHIR_TLS_KEY"
  | "FHIR_PATIENT_ID_SYSTEM"
  | "RESULT_TIMEOUT_SECONDS"
  | "HL7_HOST"
  | "HL7_PORT"
  | "HL7_TLS"
  | "HL7_TLS_CA"
  | "HL7_TLS_CERT"
  | "HL7_TLS_KEY"
  | "HL7_SENDING_APPLICATION"
  | "HL7_SENDING_FACILITY"
  | "HL7_RECEIVING_APPLICATION"
  | "HL7_RECEIVING_FACILITY"
>;

/**
 * The configured outputs (none when FHIR_BASE_URL and HL7_HOST are unset); TLS files read now, so
 * a wrong path stops the start with the variable's name.
 */
export function resultOutputs(config: OutputsConfig): ResultOutputs {
  const tlsFiles = (prefix: "FHIR" | "HL7") => {
    const files = {
      ca: config[`${prefix}_TLS_CA`],
      cert: config[`${prefix}_TLS_CERT`],
      key: config[`${prefix}_TLS_KEY`],
    };
    const tls: { ca?: string; cert?: string; key?: string } = {};
    for (const [part, path] of Object.entries(files) as [keyof typeof tls, string | undefined][]) {
      if (!path) continue;
      try {
        tls[part] = readFileSync(path, "utf8");
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
        throw new Error(`${prefix}_TLS_${part.toUpperCase()}: cannot read ${path} (${code})`);
      }
    }
    return tls;
  };
  const timeoutMs = config.RESULT_TIMEOUT_SECONDS * 1000;
  const outputs: ResultOutputs = {};
  if (config.FHIR_BASE_URL) {
    const tls = tlsFiles("FHIR");
    outputs.fhir = {
      baseUrl: config.FHIR_BASE_URL,
      timeoutMs,
      patientIdSystem: config.FHIR_PATIENT_ID_SYSTEM,
      ...(config.FHIR_TOKEN ? { token: config.FHIR_TOKEN } : {}),
      ...(Object.keys(tls).length > 0 ? { tls } : {}),
    };
  }
  if (config.HL7_HOST && config.HL7_PORT) {
    outputs.hl7 = {
      host: config.HL7_HOST,
      port: config.HL7_PORT,
      timeoutMs,
      ...(config.HL7_TLS ? { tls: tlsFiles("HL7") } : {}),
      sendingApplication: config.HL7_SENDING_APPLICATION,
      receivingApplication: config.HL7_RECEIVING_APPLICATION,
      ...(config.HL7_SENDING_FACILITY ? { sendingFacility: config.HL7_SENDING_FACILITY } : {}),
      ...(config.HL7_RECEIVING_FACILITY
        ? { receivingFacility: config.HL7_RECEIVING_FACILITY }
        : {}),
    };
  }
  return outputs;
}

/** Where a channel's deliveries go, as the Delivery row records it. */
function destination(outputs: ResultOutputs, channel: ResultChannel) {
  if (channel === "FHIR" && outputs.fhir) {
    const url = new URL(outputs.fhir.baseUrl);
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    return { destinationAet: "FHIR", host: url.hostname, port };
  }
  if (channel === "HL7" && outputs.hl7) {
    const { host, port, receivingApplication } = outputs.hl7;
    return { destinationAet: receivingApplication, host, port };
  }
  return undefined;
}

/**
 * Adds the missing result deliveries of a revision's SRs (the AI's and the signed ones): one per
 * SR and configured channel. Idempotent (unique per report and channel), so every run of the
 * report job can call it. Returns how many it added.
 */
export async function ensureResultDeliveries(
  db: Db,
  gradingJobId: string,
  outputs: ResultOutputs,
): Promise<number> {
  const channels = (["FHIR", "HL7"] as const).filter((c) => destination(outputs, c));
  if (channels.length === 0) return 0;
  const aiSr = reportUids(gradingJobId).aiSr;
  const reports = await db.report.findMany({
    where: { gradingJobId, sopClassUid: SR_SOP_CLASSES.comprehensive },
  });
  const rows = reports
    .filter((r) => r.verified || r.sopInstanceUid === aiSr)
    .flatMap((r) =>
      channels.map((channel) => ({
        reportId: r.id,
        channel,
        ...(destination(outputs, channel) as NonNullable<ReturnType<typeof destination>>),
      })),
    );
  if (rows.length === 0) return 0;
  const created = await db.delivery.createMany({ data: rows, skipDuplicates: true });
  return created.count;
}

/**
 * A refusal that a retry cannot change: an HL7 AR (the message was rejected: type, version or
 * content the receiver does not take), a FHIR 4xx other than 408/429 (the transaction is invalid
 * for that server). The delivery is dead-lettered at once; the others carry on.
 */
export class PermanentDeliveryError extends Error {
  override name = "PermanentDeliveryError";
}

/** MSH-10 of a delivery: fixed, so the receiver sees a resend as the same message. */
export const hl7ControlId = (deliveryId: string) => deliveryId.replace(/-/g, "").slice(0, 20);

/**
 * Sends one result delivery. Resolves when the destination accepted it (FHIR: the transaction
 * applied; HL7: AA or CA); throws with a reason that carries no patient data otherwise.
 */
export async function sendResult(
  db: Db,
  delivery: { id: string; channel: ResultChannel },
  report: { gradingJobId: string | null; sopInstanceUid: string; verified: boolean },
  outputs: ResultOutputs,
  config: Pick<Config, "DEVICE_OBSERVER_UID" | "LISTENER_AET" | "INSTITUTION_NAME">,
): Promise<void> {
  const result = await buildStudyResult(db, report, config);
  if (delivery.channel === "FHIR") {
    if (!outputs.fhir) throw new Error("FHIR output is not configured (FHIR_BASE_URL)");
    try {
      await postTransaction(
        outputs.fhir,
        fhirTransaction(result, { patientIdSystem: outputs.fhir.patientIdSystem }),
      );
    } catch (error) {
      const status = (error as { status?: number }).status;
      if (status && status >= 400 && status < 500 && status !== 408 && status !== 429) {
        throw new PermanentDeliveryError((error as Error).message);
      }
      throw error;
    }
    return;
  }
  const hl7 = outputs.hl7;
  if (!hl7) throw new Error("HL7 output is not configured (HL7_HOST, HL7_PORT)");
  const controlId = hl7ControlId(delivery.id);
  const ack = await sendMllp(hl7, oruR01(result, { ...hl7, controlId }));
  if (ack.controlId !== controlId) {
    throw new Error(`HL7 ACK ${ack.code} acknowledges message ${ack.controlId}, not ${controlId}`);
  }
  if (ack.code !== "AA" && ack.code !== "CA") {
    const message = `HL7 peer answered ${ack.code || "no MSA-1"}${ack.text ? ` (${ack.text})` : ""}`;
    throw ack.code === "AR" || ack.code === "CR"
      ? new PermanentDeliveryError(message)
      : new Error(message);
  }
}
