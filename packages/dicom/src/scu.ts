/**
 * DICOM SCU operations (C-ECHO, C-STORE) over dcmjs-dimse, as promises with a timeout of their own:
 * dcmjs-dimse gives no response event when a peer accepts no usable transfer syntax.
 *
 * C-STORE puts each file's data set on the wire exactly as it is in the file. Left to itself,
 * dcmjs-dimse 0.3.3 parses the file with its bundled dcmjs 0.50 and writes it out again, and that
 * round trip is lossy: text inside sequence items is decoded without the data set's Specific
 * Character Set (as Latin-1) and every string is written back as UTF-8 under "ISO_IR 192", so the
 * UTF-8 text in kneegrade's SR content items reached the PACS double-encoded ("Kellgren–Lawrence"
 * as C3 A2 C2 80 C2 93), other character sets were relabelled or garbled, and more changed on
 * the way (empty trailing name components, an encapsulated image's offset table). The library
 * still does the association, negotiation and PDUs; only the data set's bytes come from the file
 * (VerbatimDataset).
 */
import { readFileSync } from "node:fs";
import dimse from "dcmjs-dimse";
import { collectFiles } from "./files.ts";
import { LONG_LENGTH_VRS, TRANSFER_SYNTAXES } from "./uids.ts";

const { Client, Dataset } = dimse;
const { PresentationContext } = dimse.association;
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

/**
 * Where a Part 10 file's data set starts (after the File Meta group, which a C-STORE does not
 * carry) and the transfer syntax it is encoded in. The meta group is always explicit VR little
 * endian (PS3.10 7.1); its elements are walked rather than trusting (0002,0000).
 */
function part10DataSet(file: Uint8Array): { transferSyntaxUid: string; offset: number } {
  const bytes = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (bytes.length < 132 || bytes.toString("latin1", 128, 132) !== "DICM") {
    throw new Error('not a DICOM Part 10 file (no "DICM" after the preamble)');
  }
  let offset = 132;
  let transferSyntaxUid = "";
  while (offset + 8 <= bytes.length && bytes.readUInt16LE(offset) === 0x0002) {
    const element = bytes.readUInt16LE(offset + 2);
    const vr = bytes.toString("latin1", offset + 4, offset + 6);
    const long = LONG_LENGTH_VRS.has(vr);
    if (long && offset + 12 > bytes.length) throw new Error("File Meta Information is truncated");
    const length = long ? bytes.readUInt32LE(offset + 8) : bytes.readUInt16LE(offset + 6);
    const start = offset + (long ? 12 : 8);
    if (start + length > bytes.length) throw new Error("File Meta Information is truncated");
    if (element === 0x0010) {
      transferSyntaxUid = bytes.toString("latin1", start, start + length).replace(/[\0 ]+$/, "");
    }
    offset = start + length;
  }
  if (!transferSyntaxUid) throw new Error("File Meta Information has no Transfer Syntax UID");
  return { transferSyntaxUid, offset };
}

/**
 * A C-STORE data set whose wire encoding is the file's own bytes.
 *
 * dcmjs-dimse encodes a request's data set for the wire in exactly one place: it calls
 * `getDenaturalizedDataset()` on it, which by default writes the parsed elements out again with
 * dcmjs. Overriding that one method makes the PDUs carry the file's bytes. The elements this
 * object holds are only the head of the file (up to SOP Instance UID), which the request needs
 * for its command; the rest of the file is read when it is sent, as dcmjs-dimse does for a file
 * path, so a long list of files is not held in memory at once.
 */
class VerbatimDataset extends Dataset {
  constructor(
    private readonly path: string,
    head: Record<string, unknown>,
    transferSyntaxUid: string,
  ) {
    super(head, transferSyntaxUid);
  }

  override getDenaturalizedDataset(): Buffer {
    const file = readFileSync(this.path);
    const { transferSyntaxUid, offset } = part10DataSet(file);
    if (transferSyntaxUid !== this.getTransferSyntaxUid()) {
      throw new Error(`${this.path} changed its transfer syntax while queued`);
    }
    return file.subarray(offset);
  }

  /**
   * dcmjs-dimse asks for the elements only to transcode, when the peer accepted a transfer syntax
   * other than the file's. That would re-encode (the very fault above), and from the head alone:
   * so refuse; dcmjs-dimse then skips the request (logging only), and run() reports why.
   */
  override getElements(): Record<string, unknown> {
    throw new Error(`${this.path} is sent as it is, never transcoded`);
  }
}

const TRANSFER_SYNTAX_NAMES = new Map<string, string>(
  Object.entries(dimse.constants.TransferSyntax).map(([name, uid]) => [uid, `${name} (${uid})`]),
);
const transferSyntaxName = (uid: string) => TRANSFER_SYNTAX_NAMES.get(uid) ?? uid;

interface Item {
  item: string;
  request?: dimse.requests.Request;
  /** A file sent as it is: what the accepted presentation context must carry. */
  verbatim?: { sopClassUid: string; transferSyntaxUid: string };
  /** Why the item is not sent at all. */
  error?: string;
}

const NO_RESPONSE = "no response";
const UNCOMPRESSED_LITTLE_ENDIAN = new Set<string>([
  TRANSFER_SYNTAXES.implicitVrLittleEndian,
  TRANSFER_SYNTAXES.explicitVrLittleEndian,
]);

function run(peer: DicomPeer, items: Item[]) {
  return new Promise<RequestOutcome[]>((resolve) => {
    dimse.log.setLevel("silent");
    const outcomes = new Map<string, RequestOutcome>();
    const client = new Client();
    const proposed = new Set<string>();
    for (const { item, request, verbatim, error } of items) {
      outcomes.set(item, { item, status: null, error: error ?? NO_RESPONSE });
      if (!request) continue;
      request.on("response", (response: dimse.responses.Response) => {
        outcomes.set(item, { item, status: response.getStatus() });
      });
      client.addRequest(request);
      // dcmjs-dimse offers both uncompressed little endian syntaxes in one presentation context
      // and the peer picks one of them; a second context with only the file's own syntax lets a
      // peer that picks the other accept the file's too. (It already does this for every other
      // transfer syntax.)
      const syntax = verbatim?.transferSyntaxUid;
      const key = `${verbatim?.sopClassUid} ${syntax}`;
      if (verbatim && UNCOMPRESSED_LITTLE_ENDIAN.has(syntax ?? "") && !proposed.has(key)) {
        proposed.add(key);
        client.addAdditionalPresentationContext(
          new PresentationContext(0, verbatim.sopClassUid, verbatim.transferSyntaxUid),
          true,
        );
      }
    }
    if (!items.some((i) => i.request)) {
      resolve([...outcomes.values()]);
      return;
    }
    let failure: string | undefined;
    const finish = () => {
      clearTimeout(timer);
      resolve(
        // An association-level failure explains the items still waiting, not those refused.
        [...outcomes.values()].map((o) =>
          o.status === null && failure && o.error === NO_RESPONSE ? { ...o, error: failure } : o,
        ),
      );
    };
    const timer = setTimeout(() => {
      failure = "timed out";
      client.abort();
      finish();
    }, peer.timeoutMs ?? 30_000);
    // Emitted before dcmjs-dimse sends anything: say here why a file will not go (it skips such
    // requests with only a log line; VerbatimDataset makes sure none is re-encoded instead).
    client.on("associationAccepted", (association: dimse.association.Association) => {
      for (const { item, request, verbatim } of items) {
        if (!request || !verbatim) continue;
        const accepted = association
          .getAcceptedPresentationContextFromRequest(request)
          ?.getAcceptedTransferSyntaxUid();
        if (!accepted) {
          outcomes.set(item, {
            item,
            status: null,
            error: `not sent: the peer accepted no presentation context for SOP class ${verbatim.sopClassUid}`,
          });
        } else if (accepted !== verbatim.transferSyntaxUid) {
          outcomes.set(item, {
            item,
            status: null,
            error:
              `not sent: the peer accepts SOP class ${verbatim.sopClassUid} only as ` +
              `${transferSyntaxName(accepted)}, the file is ` +
              `${transferSyntaxName(verbatim.transferSyntaxUid)} and is sent as it is, not transcoded`,
          });
        }
      }
    });
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

/** A C-STORE request that carries the file's data set as it is (see VerbatimDataset). */
function verbatimStore(file: string): Item {
  try {
    const { transferSyntaxUid } = part10DataSet(readFileSync(file));
    // The head only, read by dcmjs-dimse the way its own file-path constructor reads it.
    const head = Dataset.fromFile(file, undefined, {
      untilTag: "00080018",
      includeUntilTagValue: true,
    })!.getElements();
    const sopClassUid = head.SOPClassUID;
    if (typeof sopClassUid !== "string" || !sopClassUid || !head.SOPInstanceUID) {
      throw new Error("the data set has no SOP Class UID or SOP Instance UID");
    }
    const dataset = new VerbatimDataset(file, head, transferSyntaxUid);
    return {
      item: file,
      request: new CStoreRequest(dataset),
      verbatim: { sopClassUid, transferSyntaxUid },
    };
  } catch (error) {
    return { item: file, error: `not sent: ${(error as Error).message}` };
  }
}

/**
 * Sends files (directories are walked) in one association, each data set byte for byte as it is
 * in its file and in the file's own transfer syntax; one outcome per file, in order. A file the
 * peer accepts only in another transfer syntax, or that is not a readable Part 10 file, is not
 * sent and its outcome says why.
 */
export async function cStoreFiles(peer: DicomPeer, paths: string[]): Promise<RequestOutcome[]> {
  const files = await collectFiles(paths);
  if (files.length === 0) return [];
  return run(peer, files.map(verbatimStore));
}
