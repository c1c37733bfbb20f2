"""The localiser's correlation graph (the committed asset is what `models.knee_ncc` builds) and its
settings in the manifest."""
from models import knee_ncc


def test_committed_graph_is_reproducible():
    built = knee_ncc.build().SerializeToString(deterministic=True)
    assert knee_ncc.OUT.read_bytes() == built


def test_graph_takes_templates_as_an_input():
    graph = knee_ncc.build().graph
    assert [i.name for i in graph.input] == ["image", "templates"]
    assert len(graph.initializer) == 0
    (conv,) = graph.node
    assert conv.op_type == "Conv"
    assert {a.name: a.i for a in conv.attribute} == {"group": 3}


def test_manifest_carries_the_localiser(tmp_path):
    import json

    from models import export

    path = export.write_manifest([], tmp_path, "smoke")
    section = json.loads(path.read_text())["localiser"]
    assert {k: section[k] for k in export.LOCALISER_THRESHOLDS} == export.LOCALISER_THRESHOLDS
    copied = tmp_path / section["template"]["file"]
    assert copied.read_bytes() == export.KNEE_TEMPLATE.read_bytes()
    assert section["template"]["sha256"] == export.sha256(copied)
