"""ONNX export of a tiny config: graph contract and parity with PyTorch at dynamic batch sizes.

Parity needs an ONNX runtime: Python onnxruntime, or onnxruntime-node (the Node side's runtime,
found in the repo's node_modules or $KNEEGRADE_ORT_NODE_DIR). Debian's onnx 1.12 has no reference
evaluator, so without either runtime the parity tests are skipped (the graph tests still run).
"""
import numpy as np
import onnx
import pytest
import torch

from models.onnx_io import available_runtime, export_onnx, output_names, run_onnx, torch_outputs
from models.pim import PIM

needs_runtime = pytest.mark.skipif(available_runtime() is None,
                                   reason="no ONNX runtime (onnxruntime or onnxruntime-node) on this machine")


@pytest.fixture(scope="module", params=["resnet_tiny", "mobilenet_v3_large"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    m = PIM(request.param, fpn_size=16, num_selects=(32, 16, 8, 2), input_size=64)
    # a few training steps so BatchNorm statistics are not the defaults
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        m(torch.rand(4, 1, 64, 64))["logits"].sum().backward()
        opt.step()
    m.eval()
    path = export_onnx(m, tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx")
    return m, path


def test_graph_contract(exported):
    m, path = exported
    g = onnx.load(str(path))
    onnx.checker.check_model(g)
    assert max(o.version for o in g.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = g.graph.input
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 64, 64]
    outs = {o.name: o for o in g.graph.output}
    assert list(outs) == output_names(m) == ["logits", "tokens_l1", "tokens_l2", "tokens_l3", "tokens_l4"]
    for o in outs.values():
        assert o.type.tensor_type.shape.dim[0].dim_param == "batch"
        assert o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in outs["tokens_l1"].type.tensor_type.shape.dim[1:]] == [5, 16, 16]


@needs_runtime
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_parity_with_pytorch(exported, batch):
    m, path = exported
    x = np.random.RandomState(batch).rand(batch, 1, 64, 64).astype(np.float32)
    want = torch_outputs(m, x)
    got = run_onnx(path, x)["outputs"]
    assert set(got) == set(want)
    for n in want:
        assert got[n].shape == want[n].shape
        np.testing.assert_allclose(got[n], want[n], rtol=1e-4, atol=1e-4, err_msg=n)


def test_token_maps_are_class_specific(exported):
    m, _ = exported
    out = torch_outputs(m, np.random.RandomState(0).rand(2, 1, 64, 64).astype(np.float32))
    assert out["tokens_l1"].shape == (2, 5, 16, 16)
    assert not np.allclose(out["tokens_l1"][:, 0], out["tokens_l1"][:, 1])


@needs_runtime
def test_parity_with_saturated_token_scores(tmp_path):
    """Token logits so large that many tokens tie: PyTorch and ONNX must still pick the same ones."""
    torch.manual_seed(1)
    m = PIM("resnet_tiny", fpn_size=16, num_selects=(256, 128, 64, 32), input_size=224).eval()
    with torch.no_grad():
        for cls in m.token_cls:
            cls[-1].weight.mul_(1e4)
    path = export_onnx(m, tmp_path / "sat.onnx")
    x = np.random.RandomState(0).rand(3, 1, 224, 224).astype(np.float32)
    want = torch_outputs(m, x)
    got = run_onnx(path, x)["outputs"]
    scale = np.abs(want["logits"]).max()
    np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-5 * scale + 1e-4, rtol=1e-4)
