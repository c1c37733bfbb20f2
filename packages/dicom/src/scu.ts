/**
 * DICOM SCU operations (C-ECHO, C-STORE) over dcmjs-dimse, as promises with a timeout of their own:
 * dcmjs-dimse gives no response event when a peer accepts no usable transfer syntax.
 */
import dimse from "dcmjs-dimse";
import { collectFiles } from "./files.ts";

const { Client } = dimse;
const { CEchoRequest, CStoreRequest } = dimse.requests;

export interface DicomPeer {
  host: string;
  port: number;
  calledAet: string;
  callingAet: string;
  timeoutMs?: number;
  /** DICOM over TLS: PEM contents (not paths). `ca` verifies the peer; `cert`+`key` identify us. */
  tls?: { ca?: string; cert?: string; key?: string };
}

export interface RequestOutcome {
  /** The file a C-STORE sent, or "echo". */
  item: string;
  status: number | null;
  error?: string;
}

function run(peer: DicomPeer, items: { item: string; request: dimse.requests.Request }[]) {
  return new Promise<RequestOutcome[]>((resolve) => {
    dimse.log.setLevel("silent");
    const client = new Client();
    const outcomes = new Map<string, RequestOutcome>();
    for (const { item, request } of items) {
      outcomes.set(item, { item, status: null, error: "no response" });
      request.on("response", (response: dimse.responses.Response) => {
        outcomes.set(item, { item, status: response.getStatus() });
      });
      client.addRequest(request);
    }
    let failure: string | undefined;
    const finish = () => {
      clearTimeout(timer);
      resolve(
        [...outcomes.values()].map((o) =>
          o.status === null && failure ? { ...o, error: failure } : o,
        ),
      );
    };
    const timer = setTimeout(() => {
      failure = "timed out";
      client.abort();
      finish();
    }, peer.timeoutMs ?? 30_000);
    client.on(
      "associationRejected",
      (reject: { result: number; source: number; reason: number }) => {
        failure = `association rejected (result ${reject.result}, source ${reject.source}, reason ${reject.reason})`;
      },
    );
    client.on("networkError", (error: Error) => {
      failure ??= `network error: ${error.message}`;
      finish();
    });
    client.on("closed", finish);
    client.send(peer.host, peer.port, peer.callingAet, peer.calledAet, {
      connectTimeout: peer.timeoutMs ?? 30_000,
      associationTimeout: peer.timeoutMs ?? 30_000,
      ...(peer.tls
        ? {
            securityOptions: {
              ...peer.tls,
              // Verify the PACS's certificate against the given CA (or the system's).
              rejectUnauthorized: true,
            },
          }
        : {}),
    });
  });
}

export async function cEcho(peer: DicomPeer): Promise<RequestOutcome> {
  const [outcome] = await run(peer, [{ item: "echo", request: new CEchoRequest() }]);
  return outcome!;
}

/** Sends files (directories are walked) in one association; one outcome per file. */
export async function cStoreFiles(peer: DicomPeer, paths: string[]): Promise<RequestOutcome[]> {
  const files = await collectFiles(paths);
  if (files.length === 0) return [];
  return run(
    peer,
    files.map((file) => ({ item: file, request: new CStoreRequest(file) })),
  );
}
