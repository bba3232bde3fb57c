"""The Graphviz drawing: golden DOT text, structure, exact numbers, and life without `dot`.

Golden files live in tests/golden/*.gv; regenerate them (after checking the drawings) with
``RFGRAPH_REGEN_GOLDEN=1 python -m pytest tests/test_render.py``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from oracles import torch_macs

import rfgraph
from examples.zoo import GRAPH_ZOO, UNTRACEABLE, ZOO
from rfgraph import render as rr
from rfgraph.models import seed_tour
from rfgraph.render import GraphvizNotFound, auto_depth, render, to_dot, to_svg

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("RFGRAPH_REGEN_GOLDEN") == "1"
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot is not installed")


# -- analyses, built once ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def seed_sym():
    return rfgraph.analyze(seed_tour(), (1, 3, "H", "W"))


@pytest.fixture(scope="module")
def seed_224(seed_sym):
    return seed_sym.evaluate(H=224, W=224)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = ZOO["resnet50"]()
    return model, rfgraph.analyze(model, (1, 3, "H", "W"), at="H=224,W=224")


@pytest.fixture(scope="module")
def unet():
    return rfgraph.analyze(GRAPH_ZOO["unet_small"](), (1, 3, "H", "W"), at="H=256,W=256")


@pytest.fixture(scope="module")
def untraceable():
    with pytest.warns(UserWarning):
        return rfgraph.analyze(UNTRACEABLE["untraceable_net"](), (1, 3, "H", "W"),
                               at="H=64,W=64")


def _statements(dot: str) -> dict[str, str]:
    """Node id -> its attribute text (the legend excluded)."""
    out = {}
    for m in re.finditer(r'^\t+"([^"]+)" \[label=(<<TABLE.*?</TABLE>>[^\n]*)\]$', dot,
                         flags=re.M | re.S):
        out[m.group(1)] = m.group(2)
    return out


def _edges(dot: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r'^\s*"([^"]+)" -> "([^"]+)"(?! \[style="invis"\])', dot, flags=re.M)]


# -- golden text ------------------------------------------------------------------------------

CASES = {
    "seed_tour_symbolic": ("seed_sym", {}),
    "seed_tour_224_depth1_offset": ("seed_224", {"depth": 1, "show_offset": True}),
    "resnet50_224_depth2": ("resnet", {"depth": 2}),
    "unet_small_256_depth1": ("unet", {"depth": 1}),
    "untraceable_64": ("untraceable", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_dot(case, request):
    fixture, kwargs = CASES[case]
    a = request.getfixturevalue(fixture)
    if isinstance(a, tuple):
        a = a[1]
    text = to_dot(a, **kwargs)
    path = GOLDEN / f"{case}.gv"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}: run with RFGRAPH_REGEN_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"{path.name} differs; if the new drawing is right, regenerate with "
        "RFGRAPH_REGEN_GOLDEN=1")


def test_same_input_same_bytes(seed_224):
    again = rfgraph.analyze(seed_tour(), (1, 3, "H", "W"), at="H=224,W=224")
    for depth in (None, 1):
        assert to_dot(seed_224, depth=depth) == to_dot(again, depth=depth)
    assert "0x" not in to_dot(seed_224)  # no object ids


# -- structure --------------------------------------------------------------------------------

def test_every_node_and_tensor_edge_is_drawn(resnet):
    _, a = resnet
    dot = to_dot(a)
    drawn = set(_statements(dot))
    names = [n.name for n in a.nodes] + [a.output.name]
    assert drawn == set(names)
    expected = {(src, n.name) for n in [*a.nodes, a.output] for src in n.inputs}
    assert set(_edges(dot)) == expected
    assert dot.count("subgraph") > 16  # layers and bottlenecks as clusters
    assert 'subgraph "cluster_layer1.0"' in dot and 'subgraph "cluster_layer1"' in dot


def test_shape_arithmetic_hidden_unless_asked(unet):
    names = set(_statements(to_dot(unet)))
    assert "cat" in names and "pad" in names
    assert not any(n.startswith("size") or n.startswith("floordiv") for n in names)
    shown = set(_statements(to_dot(unet, show_shape_ops=True)))
    assert {"size", "floordiv", "sub"} <= shown


def test_depth_collapses_modules(resnet):
    _, a = resnet
    d1 = to_dot(a, depth=1)
    boxes = _statements(d1)
    assert {f"mod:layer{i}" for i in range(1, 5)} <= set(boxes)
    assert all('shape="box3d"' in boxes[f"mod:layer{i}"] for i in range(1, 5))
    assert "conv1" in boxes and "fc" in boxes  # single layers stay nodes
    assert "subgraph" not in d1
    d2 = to_dot(a, depth=2)
    boxes2 = _statements(d2)
    assert "mod:layer3.5" in boxes2 and "mod:layer3" not in boxes2
    assert 'subgraph "cluster_layer3"' in d2 and "cluster_layer3.5" not in d2
    # 16 bottlenecks + input, conv1, bn1, relu, maxpool, avgpool, flatten, fc, output
    assert len(boxes2) == 16 + 9
    assert ("mod:layer1.2", "mod:layer2.0") in _edges(d2)
    d0 = to_dot(a, depth=0)
    assert set(_statements(d0)) == {"x", "mod:", "output"}


def test_collapsed_boxes_sum_exactly(resnet):
    """Params against p.numel(), MACs against FlopCounterMode: independent oracles."""
    model, a = resnet
    _, per_module = torch_macs(model, (1, 3, 224, 224))
    boxes = _statements(to_dot(a, depth=1))
    for name in ("layer1", "layer2", "layer3", "layer4"):
        params = sum(p.numel() for p in getattr(model, name).parameters())
        label = boxes[f"mod:{name}"]
        assert f"params {params:,} " in label
        assert f"MACs {per_module[name]:,} (" in label
    total = sum(p.numel() for p in model.parameters())
    assert f"params {total:,}<" in to_dot(a, depth=1)  # the legend


def test_node_numbers_exact(resnet):
    model, a = resnet
    _, per_module = torch_macs(model, (1, 3, 224, 224))
    boxes = _statements(to_dot(a))
    modules = dict(model.named_modules())
    convs = [n for n in a.nodes
             if n.op == "call_module" and isinstance(modules[n.module], torch.nn.Conv2d)]
    assert len(convs) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 53
    for n in convs:
        params = sum(p.numel() for p in modules[n.module].parameters())
        assert f"params {params:,}  MACs {per_module[n.module]:,} (" in boxes[n.name]
    # torchvision ResNet-50's field, r += (k-1)·j over conv1, maxpool and the 16 3x3 convs:
    # 7, 11, +3·2·4, +2·4+3·2·8, +2·8+5·2·16, +2·16+2·2·32 = 427 (jump 32); a ReLU box shows no RF
    assert "RF 427×427  jump 32×32" in boxes["layer4_2_conv2"]
    assert "RF 427×427  jump 32×32" in boxes["add_15"]
    assert "RF 427×427  jump 32×32" in _statements(to_dot(a, depth=1))["mod:layer4"]


def test_formula_and_value(seed_224, seed_sym):
    boxes = _statements(to_dot(seed_224))
    assert "1×16×(floor(H/2) + 1)×(floor(W/2) + 1) = 1×16×113×113" in boxes["pool_ceil"]
    assert "MACs 58,839,552 (25.5%)" in boxes["dilated"]
    sym = _statements(to_dot(seed_sym))
    assert "MACs 432*H*W (" in sym["stem_0"] and "%*)" in sym["stem_0"]  # share at 224, marked
    assert "* at H=224, W=224" in to_dot(seed_sym)


def test_offset_on_request(seed_224):
    assert "offset" not in to_dot(seed_224)
    assert "offset -8×-8" in _statements(to_dot(seed_224, show_offset=True))["dilated"]


def test_marks(unet, untraceable, seed_224):
    boxes = _statements(to_dot(unet))
    assert 'color="#d62728" penwidth="2.5"' in boxes["cat"]  # where the fields stop aligning
    assert "unaligned: field centres differ" in boxes["cat"]
    assert 'peripheries="2"' in boxes["cat_1"] and "penwidth" not in boxes["cat_1"]
    assert " !" in boxes["cat_1"]  # unaligned upstream
    seed = _statements(to_dot(seed_224))
    assert 'peripheries="2"' in seed["add"] and 'peripheries="2"' in seed["cat"]
    bad = _statements(to_dot(untraceable))
    assert 'style="filled,dashed"' in bad["gate"] and "no rule for DataGate" in bad["gate"]
    assert "RF unknown" in bad["body_0"] and "dashed" not in bad["body_0"]  # measured at 64
    assert "dashed red border" in to_dot(untraceable)
    with pytest.warns(UserWarning):
        symbolic = rfgraph.analyze(UNTRACEABLE["untraceable_net"](), (1, 3, "H", "W"))
    downstream = _statements(to_dot(symbolic))["body_0"]
    assert "depends on &#x27;gate&#x27;" in downstream and "dashed" in downstream


def test_legend(seed_224):
    dot = to_dot(seed_224)
    assert '"rfgraph:legend" [' in dot and "params 130,554" in dot
    assert "MACs share of the total" in dot
    assert "legend" not in to_dot(seed_224, legend=False)


def test_edge_labels_auto(resnet, seed_224):
    _, a = resnet
    assert "label=\"1×" not in to_dot(a)  # 178 boxes: edges unlabelled
    assert '"x" -> "conv1" [label="1×3×224×224"]' in to_dot(a, edge_labels=True)
    assert '"stem_0" -> "stem_1" [label="1×16×224×224"]' in to_dot(seed_224)


def test_columns_for_long_collapsed_chains(resnet, unet):
    _, a = resnet
    d2 = to_dot(a, depth=2)
    assert 'rank="same"' in d2 and 'constraint="false"' in d2
    assert 'rank="same"' not in to_dot(a)  # the full drawing stays one column
    assert 'rank="same"' not in to_dot(unet, depth=2)  # skips across columns: one column
    assert 'rank="same"' not in to_dot(a, depth=2, wrap=False)


def test_auto_depth(resnet, seed_sym):
    _, a = resnet
    depth = auto_depth(a)
    assert depth is not None and len(_statements(to_dot(a, depth=depth))) <= 100
    assert auto_depth(seed_sym) is None


def test_bad_arguments(seed_224, tmp_path):
    with pytest.raises(rfgraph.RfgraphError, match="depth"):
        to_dot(seed_224, depth=-1)
    with pytest.raises(rfgraph.RfgraphError, match=r"\.svg, \.png, \.pdf or \.dot"):
        render(seed_224, tmp_path / "x.jpg")


# -- files ------------------------------------------------------------------------------------

def test_dot_and_gv_need_no_graphviz(seed_224, tmp_path, monkeypatch):
    monkeypatch.setattr(rr.shutil, "which", lambda name: None)
    for ext in ("dot", "gv"):
        out = render(seed_224, tmp_path / f"g.{ext}", depth=1)
        assert out.read_text(encoding="utf-8") == to_dot(seed_224, depth=1)


@needs_dot
def test_formats(seed_224, tmp_path):
    magic = {"svg": b"<?xml", "png": b"\x89PNG", "pdf": b"%PDF"}
    for ext, head in magic.items():
        out = render(seed_224, tmp_path / "sub" / f"seed.{ext}", depth=1)
        assert out.read_bytes().startswith(head)
    svg = to_svg(seed_224)
    assert svg is not None and "<svg" in svg


@needs_dot
@pytest.mark.parametrize("name", ["mobilenet_v2", "inception_small", "convnext_small_block_net",
                                  "deeplab_small", "small_conv3d"])
def test_graphviz_accepts_zoo_drawings(name, tmp_path):
    from examples.zoo import GRAPH_ZOO_INPUTS, ZOO_INPUTS

    factory = ZOO.get(name) or GRAPH_ZOO[name]
    shape = ZOO_INPUTS.get(name) or GRAPH_ZOO_INPUTS[name]
    a = rfgraph.analyze(factory(), shape)
    for depth in (None, 1, 2):
        render(a, tmp_path / f"{name}_{depth}.svg", depth=depth)


def _missing_dot(seed_224, tmp_path):
    target = tmp_path / "out" / "seed.svg"
    with pytest.raises(GraphvizNotFound) as info:
        render(seed_224, target)
    message = str(info.value)
    assert "\n" not in message and "apt-get install graphviz" in message
    written = tmp_path / "out" / "seed.dot"
    assert info.value.dot_path == written and str(written) in message
    assert written.read_text(encoding="utf-8") == to_dot(seed_224)
    assert not target.exists()
    assert to_svg(seed_224) is None


def test_missing_dot_which(seed_224, tmp_path, monkeypatch):
    monkeypatch.setattr(rr.shutil, "which", lambda name: None)
    _missing_dot(seed_224, tmp_path)


def test_missing_dot_path(seed_224, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    _missing_dot(seed_224, tmp_path)
    assert isinstance(GraphvizNotFound("x", tmp_path), rfgraph.RfgraphError)


# -- the integration points: Analysis.render/to_dot and `analyze --render` --------------------

def test_analysis_methods(seed_224, tmp_path, monkeypatch):
    assert seed_224.to_dot(depth=1, show_offset=True) == to_dot(seed_224, depth=1,
                                                                 show_offset=True)
    assert seed_224.render(tmp_path / "a.dot").read_text(encoding="utf-8") == to_dot(seed_224)
    bundle = seed_224._repr_mimebundle_()
    assert bundle["text/plain"] == repr(seed_224)
    assert ("image/svg+xml" in bundle) == HAS_DOT
    monkeypatch.setattr(rr.shutil, "which", lambda name: None)
    assert set(seed_224._repr_mimebundle_()) == {"text/plain"}


def test_cli_render(tmp_path, capsys, monkeypatch):
    from rfgraph.cli import main

    out = tmp_path / "seed.svg"
    assert main(["analyze", "--at", "H=64,W=64", "--depth", "1", "--render", str(out)]) == 0
    captured = capsys.readouterr()
    assert "params: 130,554" in captured.out
    if HAS_DOT:
        assert out.read_bytes().startswith(b"<?xml") and "wrote" in captured.err
    else:  # no Graphviz here: the .dot source and a one-line warning, still exit 0
        assert not out.exists() and out.with_suffix(".dot").exists()
        assert "apt-get install graphviz" in captured.err
    monkeypatch.setattr(rr.shutil, "which", lambda name: None)
    assert main(["analyze", "--render", str(tmp_path / "x.png"), "--show-offset"]) == 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "apt-get install graphviz" in err
    assert "offset" in (tmp_path / "x.dot").read_text(encoding="utf-8")
    assert main(["analyze", "--render", str(tmp_path / "x.jpg")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "use a .svg, .png, .pdf or .dot file" in captured.err
