"""The knee localiser's correlation operator as an ONNX graph: the feature channels of an image
(intensity, vertical- and horizontal-gradient magnitude) cross-correlated with one template per
channel, the templates given at run time (so the graph holds no weights, and a retrained model's
own templates need no new graph). The Node localiser (packages/knee/src/ncc.ts) runs it in
onnxruntime-node for its coarse search and refinement maps and divides by each window's norm
itself (from integral images): the numerator is the only O(H·W·n²) part.

    image     float32 [1, 3, H, W]        the 3 features
    templates float32 [3, 1, n, n]        feature g's template
    corr      float32 [1, 3, h, X]        the window at (s·k, s·x) at (k, x); h, X: every s-th
                                          position, h = ⌈(H-n+1)/s⌉, X = ⌈(W-n+1)/s⌉

Computed row by row, as a matrix product rather than a matrix–vector one: a 1×n `Conv` with the
template's n rows as n output channels gives each image row's correlation with each template row
(R[t](y, x) = Σ_u T[t, u] · I[y, x + u]), and the window at (y, x) is the sum of R[t](y + t, x)
over t — a diagonal of R, read by viewing R's flat data with a row stride one image row longer
(pad, reshape, slice, sum). Same sums as the direct n×n correlation (float32 rounding aside), but
onnxruntime's convolution kernels run n output channels at matrix–matrix speed, where one output
channel ran as a memory-bound matrix–vector product. Two graphs, as ONNX fixes a Conv's stride in
the graph: s = 1, every position; s = 2 (n even), every other position — every other x by the
Conv's stride, every other y by correlating the even template rows with the even image rows and
the odd with the odd (a quarter of s = 1's products).

    python3 -m models.knee_ncc [--out-dir packages/knee/assets]
"""
import argparse
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ASSETS = Path(__file__).resolve().parent.parent / "packages" / "knee" / "assets"
STRIDES = (1, 2)


def out_path(stride: int, out_dir: Path = ASSETS) -> Path:
    return Path(out_dir) / f"knee-ncc-s{stride}.onnx"


def _const(name: str, values: list[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


CONSTS = [_const("i0", [0]), _const("i2", [2]), _const("i3", [3]), _const("one", [1]),
          _const("minus1", [-1]), _const("three", [3]), _const("zeros3", [0, 0, 0]),
          _const("shape_rows", [-1, 1, 1]), _const("shape_flat", [3, -1]), _const("ax2", [2]),
          _const("i1", [1]), _const("big", [2**31 - 1]), _const("step2", [2])]


def _correlate(p: str, image: str, templates: str, stride: int) -> list[onnx.NodeProto]:
    """Nodes giving `{p}corr` [1, 3, H-n+1, X]: the correlation of each of `image`'s 3 planes
    [1, 3, H, W] with its template in `templates` [3, 1, n, n], every `stride`-th x."""
    return [
        # n, the template's side (rows); H and X, the row correlations' height and width.
        helper.make_node("Shape", [templates], [f"{p}t_shape"]),
        helper.make_node("Gather", [f"{p}t_shape", "i2"], [f"{p}n"], axis=0),
        # The templates' rows as output channels: [3n, 1, 1, w] (feature g's rows at gn .. gn+n-1).
        helper.make_node("Gather", [f"{p}t_shape", "i3"], [f"{p}w"], axis=0),
        helper.make_node("Concat", ["shape_rows", f"{p}w"], [f"{p}rows_shape"], axis=0),
        helper.make_node("Reshape", [templates, f"{p}rows_shape"], [f"{p}rows"]),
        helper.make_node("Conv", [image, f"{p}rows"], [f"{p}R"], group=3, strides=[1, stride],
                         name=f"{p}row_correlations"),
        helper.make_node("Shape", [f"{p}R"], [f"{p}r_shape"]),
        helper.make_node("Gather", [f"{p}r_shape", "i2"], [f"{p}H"], axis=0),
        helper.make_node("Gather", [f"{p}r_shape", "i3"], [f"{p}X"], axis=0),
        # The diagonals: per feature, R's flat data [n·H·X] padded by n·X and viewed as
        # [n, H·X + X]; row t, column y·X + x is then R[t](y + t, x).
        helper.make_node("Reshape", [f"{p}R", "shape_flat"], [f"{p}flat"]),
        helper.make_node("Mul", [f"{p}n", f"{p}X"], [f"{p}nX"]),
        helper.make_node("Concat", ["zeros3", f"{p}nX"], [f"{p}pads"], axis=0),
        helper.make_node("Pad", [f"{p}flat", f"{p}pads"], [f"{p}padded"]),
        helper.make_node("Concat", ["three", f"{p}n", "minus1"], [f"{p}skew_shape"], axis=0),
        helper.make_node("Reshape", [f"{p}padded", f"{p}skew_shape"], [f"{p}skewed"]),
        # The sums over t; of those, the windows whose n rows fit: y = 0 .. H-n, i.e. the first
        # (H-n+1)·X columns (sliced after the sum: the large tensor is read once, not copied).
        helper.make_node("ReduceSum", [f"{p}skewed", "one"], [f"{p}all_sums"], keepdims=0),
        helper.make_node("Sub", [f"{p}H", f"{p}n"], [f"{p}h0"]),
        helper.make_node("Add", [f"{p}h0", "one"], [f"{p}h"]),
        helper.make_node("Mul", [f"{p}h", f"{p}X"], [f"{p}hX"]),
        helper.make_node("Slice", [f"{p}all_sums", "i0", f"{p}hX", "one"], [f"{p}sums"]),
        helper.make_node("Concat", ["one", "three", f"{p}h", f"{p}X"], [f"{p}out_shape"], axis=0),
        helper.make_node("Reshape", [f"{p}sums", f"{p}out_shape"], [f"{p}corr"]),
    ]


def _rows(name: str, source: str, first: str) -> onnx.NodeProto:
    """Every other row (axis 2) of `source` from row `first`."""
    return helper.make_node("Slice", [source, first, "big", "ax2", "step2"], [name])


def build(stride: int = 1) -> onnx.ModelProto:
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "H", "W"])
    templates = helper.make_tensor_value_info("templates", TensorProto.FLOAT, [3, 1, "n", "n"])
    corr = helper.make_tensor_value_info("corr", TensorProto.FLOAT, [1, 3, "h", "X"])
    if stride == 1:
        nodes = _correlate("", "image", "templates", 1)
        nodes[-1].output[0] = "corr"
    else:
        # Every other y as well, from the even and the odd rows (polyphase in y, n even): the
        # window at y = 2k is the even template rows over the even image rows from k plus the odd
        # ones over the odd ones — half the products of all rows.
        nodes = [_rows("image_even", "image", "i0"), _rows("image_odd", "image", "i1"),
                 _rows("templates_even", "templates", "i0"), _rows("templates_odd", "templates", "i1")]
        nodes += _correlate("even_", "image_even", "templates_even", stride)
        nodes += _correlate("odd_", "image_odd", "templates_odd", stride)
        nodes += [
            # The odd rows give no more windows than the even ones (H - n + 1 rounded up, halved).
            helper.make_node("Shape", ["odd_corr"], ["odd_shape"]),
            helper.make_node("Gather", ["odd_shape", "i2"], ["k"], axis=0),
            helper.make_node("Slice", ["even_corr", "i0", "k", "ax2"], ["even_k"]),
            helper.make_node("Add", ["even_k", "odd_corr"], ["corr"], name="ncc_numerator"),
        ]
    used = {name for node in nodes for name in node.input}
    consts = [c for c in CONSTS if c.name in used]  # onnxruntime warns of unused initializers
    graph = helper.make_graph(nodes, f"knee_ncc_s{stride}", [image, templates], [corr], initializer=consts)
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
    ap.add_argument("--out-dir", default=str(ASSETS))
    args = ap.parse_args(argv)
    for stride in STRIDES:
        # Deterministic bytes: the same graph gives the same file (and sha256) on every machine.
        path = out_path(stride, Path(args.out_dir))
        path.write_bytes(build(stride).SerializeToString(deterministic=True))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
