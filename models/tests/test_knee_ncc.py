"""The localiser's correlation graphs (the committed assets are what `models.knee_ncc` builds) and its
settings in the manifest. What the graphs compute is checked in onnxruntime-node against the
JavaScript reference (packages/knee/src/ncc.test.ts)."""
import pytest

from models import knee_ncc


@pytest.mark.parametrize("stride", knee_ncc.STRIDES)
def test_committed_graphs_are_reproducible(stride):
    built = knee_ncc.build(stride).SerializeToString(deterministic=True)
    assert knee_ncc.out_path(stride).read_bytes() == built


@pytest.mark.parametrize("stride", knee_ncc.STRIDES)
def test_graph_takes_templates_as_an_input(stride):
    graph = knee_ncc.build(stride).graph
    assert [i.name for i in graph.input] == ["image", "templates"]
    # Only the index constants of the reshaping, each used (onnxruntime warns of unused ones); no weights.
    assert all(t.data_type == 7 and len(t.int64_data) <= 3 for t in graph.initializer)
    used = {name for node in graph.node for name in node.input}
    assert {t.name for t in graph.initializer} <= used
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == stride  # s = 2: the even rows and the odd rows
    for conv in convs:
        attrs = {a.name: list(a.ints) if a.ints else a.i for a in conv.attribute}
        assert attrs == {"group": 3, "strides": [1, stride]}


def test_manifest_carries_the_localiser(tmp_path):
    import json

    from models import export

    path = export.write_manifest([], tmp_path, "smoke")
    section = json.loads(path.read_text())["localiser"]
    assert {k: section[k] for k in export.LOCALISER_THRESHOLDS} == export.LOCALISER_THRESHOLDS
    copied = tmp_path / section["template"]["file"]
    assert copied.read_bytes() == export.KNEE_TEMPLATE.read_bytes()
    assert section["template"]["sha256"] == export.sha256(copied)
