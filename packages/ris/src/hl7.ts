/**
 * A study result as an HL7 v2.5.1 ORU^R01 (unsolicited observation result), sent over MLLP with
 * original-mode acknowledgement. `node-hl7-client` builds the message (delimiters in values are
 * escaped as \F\ \S\ \R\ \E\ \T\) and frames and unframes MLLP; the socket around it is ours, so
 * one call is one connection, one message and its ACK or an error — the outbox decides about
 * retries, not an in-memory queue.
 *
 *   MSH  ORU^R01^ORU_R01, control ID fixed per delivery (a resend is recognisable as such)
 *   PID  Patient ID (with its issuer), name, birth date, sex — from the image's DICOM header
 *   OBR  accession number (OBR-3 filler order number and OBR-18), LOINC 18748-4, study date,
 *        OBR-25 P (AI result) / F (signed) / C (amended), OBR-32 the signing radiologist
 *   OBX  per knee: CWE Kellgren–Lawrence grade (99KNEEGRADE, as in the SR), side in OBX-3's text,
 *        OBX-11 P/F/C (X: not gradable), OBX-17 Artificial Intelligence (AI result), OBX-18 model
 *   OBX  the findings (LOINC 59776-5) and the impression (19005-8): TX, one OBX per line
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { KL_GRADE_WORDS } from "@kneegrade/dicom-writers";
import { Message, MLLPCodec } from "node-hl7-client";
import { HL7_2_5_1 } from "node-hl7-client/hl7";
import type { ResultKnee, StudyResult } from "./result.ts";

const SIDE_TEXT = { R: "right knee", L: "left knee", U: "knee, side not determined" } as const;
/** OBR-25 / OBX-11 result status for each FHIR-style status. */
export const HL7_RESULT_STATUS = { preliminary: "P", final: "F", amended: "C" } as const;

export interface Hl7Options {
  sendingApplication: string;
  sendingFacility?: string;
  receivingApplication: string;
  receivingFacility?: string;
  /** MSH-10: unique per message, at most 20 characters. */
  controlId: string;
  /** MSH-7; default now. */
  now?: Date;
}

/** YYYYMMDDHHMMSS+ZZZZ in UTC. */
export const hl7Timestamp = (d: Date) =>
  `${d.toISOString().replace(/[-:T]/g, "").slice(0, 14)}+0000`;

/** DICOM PN "Family^Given^Middle^Prefix^Suffix" → HL7 XPN components 1–5 (Family^Given^Middle^Suffix^Prefix). */
function xpn(pn: string): string[] {
  const [family = "", given = "", middle = "", prefix = "", suffix = ""] = (
    pn.split("=")[0] ?? ""
  ).split("^");
  return [family, given, middle, suffix, prefix];
}

/** The ORU^R01 of one result, as the string sent (segments separated by CR). */
export function oruR01(result: StudyResult, options: Hl7Options): string {
  const ctx = result.context;
  const status = HL7_RESULT_STATUS[result.status];
  const message = new Message({
    specification: new HL7_2_5_1(),
    messageHeader: {
      msh_9_1: "ORU",
      msh_9_2: "R01",
      msh_9_3: "ORU_R01",
      msh_10: options.controlId,
      msh_11_1: "P",
    },
  } as ConstructorParameters<typeof Message>[0]);
  message.set("MSH.3.1", options.sendingApplication);
  if (options.sendingFacility) message.set("MSH.4.1", options.sendingFacility);
  message.set("MSH.5.1", options.receivingApplication);
  if (options.receivingFacility) message.set("MSH.6.1", options.receivingFacility);
  message.set("MSH.7", hl7Timestamp(options.now ?? new Date()));
  message.set("MSH.18", "UNICODE UTF-8");

  const pid = message.addSegment("PID");
  pid.set("1", "1");
  if (ctx.patientId) {
    pid.set("3.1", ctx.patientId);
    if (ctx.issuerOfPatientId) pid.set("3.4.1", ctx.issuerOfPatientId);
    pid.set("3.5", "MR");
  }
  if (ctx.patientName) {
    xpn(ctx.patientName).forEach((part, i) => {
      if (part) pid.set(`5.${i + 1}`, part);
    });
  }
  if (ctx.patientBirthDate && /^\d{8}$/.test(ctx.patientBirthDate)) {
    pid.set("7", ctx.patientBirthDate);
  }
  pid.set("8", { M: "M", F: "F", O: "O" }[ctx.patientSex ?? ""] ?? "U");

  const obr = message.addSegment("OBR");
  obr.set("1", "1");
  if (ctx.accessionNumber) {
    obr.set("3.1", ctx.accessionNumber);
    obr.set("18", ctx.accessionNumber);
  }
  obr.set("4.1", "18748-4");
  obr.set("4.2", "Diagnostic imaging study");
  obr.set("4.3", "LN");
  if (ctx.studyDate && /^\d{8}$/.test(ctx.studyDate)) {
    obr.set("7", `${ctx.studyDate}${/^\d{4,6}/.exec(ctx.studyTime ?? "")?.[0] ?? ""}`);
  }
  obr.set("22", hl7Timestamp(result.issued));
  obr.set("24", "RAD");
  obr.set("25", status);
  if (result.radiologist) {
    const [family, given] = xpn(result.radiologist.name);
    if (family) obr.set("32.1.2", family);
    if (given) obr.set("32.1.3", given);
  }

  let setId = 0;
  const obx = () => {
    const segment = message.addSegment("OBX");
    segment.set("1", String(++setId));
    return segment;
  };
  result.knees.forEach((knee: ResultKnee, i) => {
    const grade = knee.decision ? knee.decision.grade : knee.aiGrade;
    const s = obx();
    s.set("2", "CWE");
    s.set("3.1", "KLG");
    s.set("3.2", `Kellgren-Lawrence grade, ${SIDE_TEXT[knee.laterality]}`);
    s.set("3.3", "99KNEEGRADE");
    s.set("4", String(i + 1));
    if (grade !== null) {
      s.set("5.1", `KL${grade}`);
      s.set("5.2", `Kellgren-Lawrence grade ${grade} (${KL_GRADE_WORDS[grade]})`);
      s.set("5.3", "99KNEEGRADE");
    }
    s.set("11", grade === null ? "X" : status);
    s.set("14", hl7Timestamp(result.issued));
    if (result.status === "preliminary") {
      s.set("17.1", "123110");
      s.set("17.2", "Artificial Intelligence");
      s.set("17.3", "DCM");
    }
    s.set("18.1", result.algorithm.version);
    s.set("18.2", "KNEEGRADE");
  });
  const text = (code: string, name: string, body: string) => {
    const lines = body.split("\n").map((l) => l.trimEnd());
    for (const line of lines.length > 0 ? lines : [""]) {
      const s = obx();
      s.set("2", "TX");
      s.set("3.1", code);
      s.set("3.2", name);
      s.set("3.3", "LN");
      s.set("4", String(result.knees.length + 1));
      if (line) s.set("5", line);
      s.set("11", status);
    }
  };
  text("59776-5", "Findings", result.findings);
  text("19005-8", "Impressions", result.impression);
  return message.toString();
}

export interface Hl7Peer {
  host: string;
  port: number;
  timeoutMs: number;
  tls?: { ca?: string; cert?: string; key?: string };
}

export interface Hl7Ack {
  /** MSA-1: AA, AE, AR (or CA, CE, CR). */
  code: string;
  /** MSA-2: the control ID acknowledged. */
  controlId: string;
  /** ERR-3 (error code and its words), when the peer gave one. */
  text: string;
}

/**
 * Sends one message over MLLP and waits for its acknowledgement. Resolves with the ACK whatever
 * its code (the caller decides); rejects when the peer cannot be reached, closes, or does not
 * answer within the timeout.
 */
export function sendMllp(peer: Hl7Peer, message: string): Promise<Hl7Ack> {
  return new Promise((resolve, reject) => {
    const codec = new MLLPCodec("utf-8");
    let settled = false;
    const socket: Socket = peer.tls
      ? tlsConnect({ host: peer.host, port: peer.port, ...peer.tls })
      : netConnect({ host: peer.host, port: peer.port });
    const done = (error: Error | null, ack?: Hl7Ack) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(ack as Hl7Ack);
    };
    const timer = setTimeout(
      () => done(new Error(`no HL7 acknowledgement within ${peer.timeoutMs} ms`)),
      peer.timeoutMs,
    );
    socket.once(peer.tls ? "secureConnect" : "connect", () =>
      codec.sendMessage(socket, message, "utf-8"),
    );
    socket.on("data", (chunk: Buffer) => {
      if (!codec.receiveData(chunk)) return;
      try {
        const ack = new Message({ text: codec.getLastMessage() ?? "" });
        done(null, {
          code: ack.get("MSA.1").toString(),
          controlId: ack.get("MSA.2").toString(),
          // ERR-3 (an HL7 table 0357 code and its words) only: MSA-3's free text may quote the
          // message, i.e. patient data.
          text: ack.exists("ERR")
            ? [ack.get("ERR.3.1").toString(), ack.get("ERR.3.2").toString()]
                .filter(Boolean)
                .join(" ")
            : "",
        });
      } catch {
        done(new Error("the HL7 peer answered something that is not an acknowledgement"));
      }
    });
    socket.on("error", (error) => done(error));
    socket.on("close", () => done(new Error("the HL7 peer closed the connection without an ACK")));
  });
}
