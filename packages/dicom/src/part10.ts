/**
 * DICOM Part 10 file framing (PS3.10 7.1): 128-byte preamble, "DICM", File Meta Information.
 * The listener streams a C-STORE data set straight to disk behind this header, so the spool holds
 * exactly the bytes the peer sent, in the transfer syntax it sent them.
 */
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from "./uids.ts";

export interface FileMetaInformation {
  mediaStorageSopClassUid: string;
  mediaStorageSopInstanceUid: string;
  transferSyntaxUid: string;
  /** The calling AE title the object came from (0002,0016). */
  sourceAeTitle?: string;
}

function element(group: number, elem: number, vr: string, value: Buffer): Buffer {
  const longForm = vr === "OB";
  const header = Buffer.alloc(longForm ? 12 : 8);
  header.writeUInt16LE(group, 0);
  header.writeUInt16LE(elem, 2);
  header.write(vr, 4, "latin1");
  if (longForm) header.writeUInt32LE(value.length, 8);
  else header.writeUInt16LE(value.length, 6);
  return Buffer.concat([header, value]);
}

function padded(value: string, pad: "\0" | " "): Buffer {
  const text = value.length % 2 === 0 ? value : value + pad;
  return Buffer.from(text, "latin1");
}

/** Preamble, prefix and File Meta Information group, explicit VR little endian. */
export function encodeFileMetaInformation(meta: FileMetaInformation): Buffer {
  const elements = [
    element(0x0002, 0x0001, "OB", Buffer.from([0x00, 0x01])),
    element(0x0002, 0x0002, "UI", padded(meta.mediaStorageSopClassUid, "\0")),
    element(0x0002, 0x0003, "UI", padded(meta.mediaStorageSopInstanceUid, "\0")),
    element(0x0002, 0x0010, "UI", padded(meta.transferSyntaxUid, "\0")),
    element(0x0002, 0x0012, "UI", padded(IMPLEMENTATION_CLASS_UID, "\0")),
    element(0x0002, 0x0013, "SH", padded(IMPLEMENTATION_VERSION_NAME, " ")),
  ];
  if (meta.sourceAeTitle) {
    elements.push(element(0x0002, 0x0016, "AE", padded(meta.sourceAeTitle, " ")));
  }
  const body = Buffer.concat(elements);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(body.length, 0);
  return Buffer.concat([
    Buffer.alloc(128),
    Buffer.from("DICM", "latin1"),
    element(0x0002, 0x0000, "UL", groupLength),
    body,
  ]);
}
