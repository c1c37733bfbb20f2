// Decodes one compressed frame per message with dcmjs-codecs (libjpeg, CharLS, OpenJPEG and its
// RLE decoder compiled to WebAssembly). Plain JavaScript on purpose: Node 20 cannot load a .ts
// file as a worker outside tsx (e.g. under Vitest). The parent (codecs.ts) terminates this worker
// when a decode traps, hangs past its deadline or the worker dies, so a malformed stream can cost
// at most one worker, never the process.
import { parentPort } from "node:worker_threads";
import dcmjsCodecs from "dcmjs-codecs";

const { Context, NativeCodecs } = dcmjsCodecs;
const ready = NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false });

const DECODERS = {
  jpeg: (ctx) => NativeCodecs.decodeJpeg(ctx, { convertColorspaceToRgb: false }),
  jpegls: (ctx) => NativeCodecs.decodeJpegLs(ctx, {}),
  jpeg2000: (ctx) => NativeCodecs.decodeJpeg2000(ctx, {}),
  rle: (ctx) => NativeCodecs.decodeRle(ctx, {}),
};

parentPort.on("message", async (request) => {
  const { id } = request;
  try {
    await ready;
    const decode = DECODERS[request.codec];
    if (!decode) throw new Error(`no decoder named ${request.codec}`);
    const context = new Context({
      width: request.width,
      height: request.height,
      bitsAllocated: request.bitsAllocated,
      bitsStored: request.bitsStored,
      samplesPerPixel: 1,
      pixelRepresentation: request.pixelRepresentation,
      planarConfiguration: 0,
      photometricInterpretation: request.photometric,
      encodedBuffer: new Uint8Array(request.encoded),
    });
    const decoded = decode(context).getDecodedBuffer();
    if (!decoded) throw new Error("the decoder returned no pixels");
    // Never transfer a view of the WebAssembly memory: copy unless the array owns its buffer.
    const owned =
      decoded.byteOffset === 0 &&
      decoded.byteLength === decoded.buffer.byteLength &&
      decoded.buffer instanceof ArrayBuffer;
    const buffer = owned ? decoded.buffer : new Uint8Array(decoded).buffer;
    parentPort.postMessage({ id, ok: true, decoded: buffer }, [buffer]);
  } catch (error) {
    parentPort.postMessage({
      id,
      ok: false,
      message: error instanceof Error ? error.message : String(error),
      trap: error instanceof WebAssembly.RuntimeError,
    });
  }
});
