// Decodes one compressed frame per message: JPEG-LS with CharLS (@cornerstonejs/codec-charls),
// everything else with dcmjs-codecs (libjpeg, OpenJPEG and its RLE decoder), all compiled to
// WebAssembly. Plain JavaScript on purpose: Node 20 cannot load a .ts file as a worker outside
// tsx (e.g. under Vitest). The parent (codecs.ts) terminates this worker when a decode traps,
// hangs past its deadline or the worker dies, so a malformed stream can cost at most one worker,
// never the process.
import { parentPort } from "node:worker_threads";
import charlsModule from "@cornerstonejs/codec-charls/decodewasmjs";
import dcmjsCodecs from "dcmjs-codecs";
import { storedFromDecoded } from "./samples.mjs";

const { Context, NativeCodecs } = dcmjsCodecs;

/** Each WebAssembly module is compiled on its first frame only, then kept for the worker's life. */
function once(load) {
  let loaded;
  return () => {
    loaded ??= load();
    return loaded;
  };
}

const loadDcmjs = once(async () => {
  await NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false });
  return NativeCodecs;
});
const loadCharls = once(() => charlsModule());

/** CharLS reports a bad stream as a C++ exception, which reaches JavaScript as a pointer. */
function charlsError(charls, thrown) {
  if (typeof thrown !== "number") return thrown;
  let message;
  try {
    const described = charls.getExceptionMessage(thrown);
    message = Array.isArray(described) ? described.filter(Boolean).join(": ") : String(described);
  } catch {
    message = "invalid JPEG-LS stream";
  }
  return new Error(message);
}

function layoutOf(request) {
  return {
    rows: request.height,
    columns: request.width,
    bitsStored: request.bitsStored,
    pixelRepresentation: request.pixelRepresentation,
  };
}

/**
 * CharLS 2.4, as OHIF uses it: about twice as fast as the CharLS inside dcmjs-codecs on RG3 and
 * bit-identical. CharLS keeps every sample below 2^(its bits per sample), which lets
 * storedFromDecoded skip masking when that is within Bits Stored: the samples are then copied out
 * of the WebAssembly memory once, and that copy is what the caller gets.
 */
async function decodeJpegLs(request) {
  const charls = await loadCharls();
  const decoder = new charls.JpegLSDecoder();
  try {
    const encoded = new Uint8Array(request.encoded);
    decoder.getEncodedBuffer(encoded.length).set(encoded);
    decoder.decode();
    const { width, height, componentCount, bitsPerSample } = decoder.getFrameInfo();
    if (width !== request.width || height !== request.height || componentCount !== 1) {
      throw new Error(
        `the stream holds ${width}x${height} pixels of ${componentCount} component(s); ` +
          `the data set declares ${request.width}x${request.height} of 1`,
      );
    }
    const samples = decoder.getDecodedBuffer();
    const options = { sampleBits: bitsPerSample }; // a view of the WebAssembly memory: copied
    return storedFromDecoded(samples, layoutOf(request), request.lossy, options).buffer;
  } catch (error) {
    throw charlsError(charls, error);
  } finally {
    try {
      decoder.delete();
    } catch {
      // after a trap the module may be unusable; the parent discards this worker anyway
    }
  }
}

const DCMJS_DECODERS = {
  jpeg: (codecs, ctx) => codecs.decodeJpeg(ctx, { convertColorspaceToRgb: false }),
  jpeg2000: (codecs, ctx) => codecs.decodeJpeg2000(ctx, {}),
  rle: (codecs, ctx) => codecs.decodeRle(ctx, {}),
};

async function decodeWithDcmjs(request) {
  const decode = DCMJS_DECODERS[request.codec];
  if (!decode) throw new Error(`no decoder named ${request.codec}`);
  const codecs = await loadDcmjs();
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
  const decoded = decode(codecs, context).getDecodedBuffer();
  if (!decoded) throw new Error("the decoder returned no pixels");
  // dcmjs-codecs hands over a copy of its output: converted in place, if it owns its buffer.
  return storedFromDecoded(decoded, layoutOf(request), request.lossy, { owned: true }).buffer;
}

parentPort.on("message", async (request) => {
  const { id } = request;
  try {
    const stored =
      request.codec === "jpegls" ? await decodeJpegLs(request) : await decodeWithDcmjs(request);
    parentPort.postMessage({ id, ok: true, stored }, [stored]);
  } catch (error) {
    parentPort.postMessage({
      id,
      ok: false,
      message: error instanceof Error ? error.message : String(error),
      trap: error instanceof WebAssembly.RuntimeError,
    });
  }
});
