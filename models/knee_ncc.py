"""The knee localiser's correlation operator as an ONNX graph: the feature channels of an image
(intensity, vertical- and horizontal-gradient magnitude) cross-correlated with one template per
channel group, the templates given at run time (so the graph holds no weights, and a retrained
model's own templates need no new graph). The Node localiser (packages/knee/src/ncc.ts) runs it in
onnxruntime-node for its coarse search and refinement maps and divides by each window's norm
itself (from integral images): the numerator is the only O(H·W·n²) part.

    image     float32 [B, 3C, H, W]     3 features, C channels each
    templates float32 [3K, C, m, m]     feature g's K templates at rows gK .. gK+K-1
    corr      float32 [B, 3K, H-m+1, W-m+1]

C = 1 for every position. For every other position (stride 2) the caller splits the image and the
n×n templates into their four polyphase components (C = 4, m = n/2): the same sums with a quarter
of the work, where a strided Conv in onnxruntime costs as much as the full one.

    python3 -m models.knee_ncc [--out packages/knee/assets/knee-ncc.onnx]
"""
import argparse
from pathlib import Path

import onnx
from onnx import TensorProto, helper

OUT = Path(__file__).resolve().parent.parent / "packages" / "knee" / "assets" / "knee-ncc.onnx"


def build() -> onnx.ModelProto:
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", "C3", "H", "W"])
    templates = helper.make_tensor_value_info("templates", TensorProto.FLOAT, ["K3", "C", "m", "m"])
    corr = helper.make_tensor_value_info("corr", TensorProto.FLOAT, ["B", "K3", "h", "w"])
    # ONNX Conv is a cross-correlation (no kernel flip): exactly sum_t T[t] * I[p + t].
    conv = helper.make_node("Conv", ["image", "templates"], ["corr"], group=3, name="ncc_numerator")
    graph = helper.make_graph([conv], "knee_ncc", [image, templates], [corr])
    model = helper.make_model(
        graph,
        producer_name="kneegrade models.knee_ncc",
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    # Deterministic bytes: the same graph gives the same file (and sha256) on every machine.
    Path(args.out).write_bytes(build().SerializeToString(deterministic=True))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
