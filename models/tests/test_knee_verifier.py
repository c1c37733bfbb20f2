"""The knee verifier's training data and the committed network (no training here: it takes minutes)."""
import json

import numpy as np
import onnx

from models import knee_verifier as kv


def _crop():
    rng = np.random.default_rng(0)
    return (rng.random((224, 224)) * 255).astype(np.uint8)


def test_batches_have_every_class_at_the_networks_input_size():
    rng = np.random.default_rng(1)
    wg04 = (np.random.default_rng(2).random((880, 880)) * 255).astype(np.uint8)
    x, y = kv.make_batch(np.stack([_crop()] * 4), wg04, rng, 96)
    assert x.shape == (96, 1, kv.SIZE, kv.SIZE)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert set(y.tolist()) == {0, 1, 2}
    assert kv.Verifier()(x).shape == (96, len(kv.CLASSES))


def test_upside_down_and_narrowed_knees_are_not_ap_views():
    c = _crop()
    rng = np.random.default_rng(3)
    for _ in range(10):
        assert kv.not_ap(c, rng).shape == (224, 224)
    assert np.array_equal(kv.rotate(c[::-1].copy(), 0), c[::-1])


def test_committed_network_and_its_figures():
    model = onnx.load(str(kv.OUT))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert kv.OUT.stat().st_size < 1 << 20
    figures = json.loads(kv.OUT.with_suffix(".json").read_text())
    assert figures["classes"] == kv.CLASSES
    assert figures["val"]["knees_accepted"] >= 0.99
    assert figures["val"]["no_knee_refused"] >= 0.95
    assert figures["val"]["not_ap_refused"] >= 0.95
