// Runs one ONNX model with onnxruntime-node for the Python toolkit (parity checks, latency,
// evaluation on machines without Python onnxruntime). Argument: a JSON request
// {model, input (raw float32 file), shape, threads, repeats, outdir}; prints one JSON line.
const fs = require("fs");
const path = require("path");
const ort = require("onnxruntime-node");

async function main() {
  const req = JSON.parse(process.argv[2]);
  const buf = fs.readFileSync(req.input);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const session = await ort.InferenceSession.create(req.model, {
    executionProviders: ["cpu"],
    intraOpNumThreads: req.threads || 1,
    interOpNumThreads: 1,
  });
  const feeds = { image: new ort.Tensor("float32", data, req.shape) };
  const out = await session.run(feeds);
  let ms = null;
  if (req.repeats > 0) {
    const ts = [];
    for (let i = 0; i < req.repeats; i++) {
      const t = process.hrtime.bigint();
      await session.run(feeds);
      ts.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    ts.sort((a, b) => a - b);
    ms = ts[Math.floor(ts.length / 2)];
  }
  const outputs = [];
  for (const name of session.outputNames) {
    const t = out[name];
    const file = `out_${outputs.length}.bin`;
    const arr = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
    fs.writeFileSync(path.join(req.outdir, file), Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength));
    outputs.push({ name, file, shape: t.dims });
  }
  process.stdout.write(JSON.stringify({ outputs, ms }) + "\n");
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
