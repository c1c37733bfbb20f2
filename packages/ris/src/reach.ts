/**
 * Start-up (and readiness) checks of the result outputs, the counterpart of the PACS's C-ECHO: a
 * misconfigured or unreachable FHIR server or HL7 peer is visible from the first minute instead
 * of at the first result. Each check resolves when the peer answers as it should and throws with
 * a reason that names the peer (base URL, host:port) and what is wrong, never a token or
 * anything a server's text says. Nothing is sent: the FHIR check reads the CapabilityStatement,
 * the HL7 check opens a connection (TLS handshake included) and closes it.
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { CapabilityStatement } from "@medplum/fhirtypes";
import type { ResultOutputs } from "./deliver.ts";
import { type FhirPeer, fhirRequest } from "./fhir.ts";
import type { Hl7Peer } from "./hl7.ts";

/** At most this long per check: start-up and `/readyz` must not wait for RESULT_TIMEOUT_SECONDS. */
const CHECK_TIMEOUT_MS = 5_000;

/**
 * GET `[base]/metadata`: the server must answer a CapabilityStatement for FHIR 4.0.x (R4) whose
 * server side supports the `transaction` interaction (each result is one transaction Bundle).
 */
export async function checkFhir(peer: FhirPeer): Promise<void> {
  const where = `FHIR server ${peer.baseUrl}`;
  const limited = { ...peer, timeoutMs: Math.min(peer.timeoutMs, CHECK_TIMEOUT_MS) };
  let answer: { status: number; text: string };
  try {
    answer = await fhirRequest(limited, "GET", "metadata");
  } catch (error) {
    throw new Error(`${where} is not reachable: ${(error as Error).message}`);
  }
  if (answer.status < 200 || answer.status >= 300) {
    throw new Error(`${where} answered ${answer.status} to GET metadata`);
  }
  let capability: CapabilityStatement;
  try {
    capability = JSON.parse(answer.text);
  } catch {
    throw new Error(`${where} answered GET metadata without JSON`);
  }
  if (capability?.resourceType !== "CapabilityStatement") {
    throw new Error(`${where} answered GET metadata without a CapabilityStatement`);
  }
  const version = String(capability.fhirVersion ?? "none");
  if (!/^4\.0\.\d+$/.test(version)) {
    throw new Error(`${where} speaks FHIR ${version}, not R4 (4.0.x)`);
  }
  const transaction = (capability.rest ?? []).some(
    (rest) =>
      rest.mode === "server" && (rest.interaction ?? []).some((i) => i.code === "transaction"),
  );
  if (!transaction) {
    throw new Error(
      `${where} does not declare the transaction interaction in its CapabilityStatement`,
    );
  }
}

/** Opens a connection to the MLLP port (with the TLS handshake when configured) and closes it. */
export function checkHl7(peer: Hl7Peer): Promise<void> {
  const where = `HL7 peer ${peer.host}:${peer.port}${peer.tls ? " (TLS)" : ""}`;
  const timeoutMs = Math.min(peer.timeoutMs, CHECK_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    const socket: Socket = peer.tls
      ? tlsConnect({ host: peer.host, port: peer.port, ...peer.tls })
      : netConnect({ host: peer.host, port: peer.port });
    let settled = false;
    const done = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on("error", () => {}); // a late reset after we closed is not news
      socket.destroy();
      if (error) reject(new Error(`${where} is not reachable: ${error.message}`));
      else resolve();
    };
    const timer = setTimeout(
      () => done(new Error(`no connection within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once(peer.tls ? "secureConnect" : "connect", () => {
      // With TLS 1.3 a server that refuses our client certificate says so only after the
      // handshake: give it a moment to close the connection before calling it reachable.
      if (!peer.tls) return done();
      setTimeout(() => done(), 200);
    });
    socket.once("error", (error) => done(error));
    socket.once("close", () => done(new Error("the peer closed the connection")));
  });
}

export interface OutputCheck {
  /** Where it goes, for logs and `kneegrade status` (no credentials). */
  target: string;
  check(): Promise<void>;
}

/** The checks of the configured outputs (none for an output that is off). */
export function outputChecks(outputs: ResultOutputs): { fhir?: OutputCheck; hl7?: OutputCheck } {
  const { fhir, hl7 } = outputs;
  return {
    ...(fhir ? { fhir: { target: fhir.baseUrl, check: () => checkFhir(fhir) } } : {}),
    ...(hl7
      ? {
          hl7: {
            target: `${hl7.host}:${hl7.port}${hl7.tls ? " (TLS)" : ""}`,
            check: () => checkHl7(hl7),
          },
        }
      : {}),
  };
}
