"""rfgraph on the graph-level zoo (``examples.zoo.GRAPH_ZOO``) and the untraceable model, checked
against independent oracles (tests/zoo_oracles.py):

* shapes: every node of the analysed fx graph run on the meta device, at even, odd and small
  sizes, and a sweep where rfgraph must fail (one line, RfgraphError) exactly where torch fails;
* params: ``sum(p.numel())``; MACs: ``FlopCounterMode`` FLOPs / 2 (total and per module);
* receptive fields: the gradient probe (``rfgraph.probe``) on the graph cut after a node, exact
  where the field lies inside the image, containing the probed box elsewhere (global fields,
  borders); several consecutive positions after up-sampling;
* idioms: channel shuffle by view/transpose/view, ConvNeXt's channels-last block, U-Net's
  pad + cat, DeepLab's image-pooling branch, the untraceable model's leaves.

``zoo_oracles.MODELS`` only holds ``ZOO`` (and tests/test_zoo_analysis.py asserts that at
collection time), so the meta copies and FLOP counts of these models are built here from
``FACTORIES`` with the same helpers.
"""

from __future__ import annotations

import functools
import itertools
import json
import warnings
from collections.abc import Callable

import pytest
import sympy
import torch
from torch import fx, nn
from zoo_oracles import (
    ceil_int,
    copy_graph,
    factory_flop_macs,
    inside_range,
    probe_boxes,
    smallest_accepted,
    torch_node_shapes,
)

import rfgraph
from examples.zoo import GRAPH_ZOO, GRAPH_ZOO_INPUTS, UNTRACEABLE
from examples.zoo.fcn_deeplab import deeplab_small
from examples.zoo.untraceable import DataGate
from rfgraph import InputTooSmall, RfgraphError
from rfgraph.analysis import Analysis
from rfgraph.export import node_to_dict


def deeplab_without_image_pooling() -> nn.Module:
    """DeepLab with ASPP's image-pooling branch removed (1x1 + three atrous branches only):
    its output field is local, so the bilinear up-sampling to the input size can be probed."""
    model = deeplab_small()
    aspp = model.classifier[0]
    del aspp.convs[4]
    aspp.project[0] = nn.Conv2d(4 * 32, 32, 1, bias=False)
    return model


FACTORIES: dict[str, Callable[[], nn.Module]] = {
    **GRAPH_ZOO, "deeplab_no_pool": deeplab_without_image_pooling}
NAMES = sorted(GRAPH_ZOO)
SPEC = (1, 3, "H", "W")
assert all(GRAPH_ZOO_INPUTS[n] == SPEC for n in NAMES)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def shape_of(sizes: dict[str, int]) -> tuple[int, ...]:
    return (1, 3, sizes["H"], sizes["W"])


def size_id(sizes: dict[str, int]) -> str:
    return "x".join(str(v) for v in sizes.values())


def build(name: str) -> nn.Module:
    with torch.random.fork_rng():  # leave the global RNG as other test files expect it
        torch.manual_seed(0)
        return FACTORIES[name]().eval()


@functools.cache
def analysed(name: str) -> tuple[nn.Module, Analysis, tuple[str, ...]]:
    """(model, symbolic analysis, warnings issued by analyze), once per session."""
    model = build(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = rfgraph.analyze(model, SPEC)
    return model, a, tuple(str(w.message) for w in caught)


@functools.cache
def meta_gm(name: str) -> fx.GraphModule:
    """rfgraph's graph on a meta-device instance of the model (no weights copied)."""
    with torch.device("meta"):
        root = FACTORIES[name]().eval()
    return fx.GraphModule(root, copy_graph(analysed(name)[1].graph_module.graph), "meta_copy")


@functools.cache
def torch_shapes(name: str, shape: tuple[int, ...]) -> dict:
    return torch_node_shapes(meta_gm(name), shape)


@functools.cache
def flop_macs(name: str, shape: tuple[int, ...]) -> tuple[int, dict[str, int]]:
    """(total MACs, MACs per module) of the eager model on meta, FlopCounterMode FLOPs / 2."""
    return factory_flop_macs(FACTORIES[name], shape)


def rf_shapes(ev: Analysis) -> dict[str, tuple[int, ...] | None]:
    out = {}
    for node in [*ev.nodes, ev.output]:
        t = node.tensor
        out[node.name] = None if t is None else tuple(ev.int_of(s) for s in t.shape)
    return out


def last_node_of(a: Analysis, prefix: str) -> str:
    names = [n.name for n in a.nodes if n.module == prefix or n.module.startswith(prefix + ".")]
    return names[-1]


# -- symbolic analysis --------------------------------------------------------------------------
def test_symbolic_analysis_is_complete():
    for name in [*NAMES, "deeplab_no_pool"]:
        _, a, caught = analysed(name)
        assert not a.unknown_nodes, (name, [n.name for n in a.unknown_nodes])
        assert not a.unknown_ops and not a.warnings and not caught, name
        assert a.symbols == ["H", "W"]
        assert a.output.tensor is not None
        # no forced leaves: every model traces with plain fx
        assert not any("kept as a leaf" in note for n in a.nodes for note in n.notes), name


def test_symbolic_output_shapes():
    h, w = sympy.Symbol("H", integer=True, positive=True), sympy.Symbol("W", integer=True,
                                                                         positive=True)
    for name in NAMES:
        _, a, _ = analysed(name)
        shape = a.output.tensor.shape
        if name in ("unet_small", "deeplab_small"):
            n_classes = 2 if name == "unet_small" else 21
            assert [sympy.simplify(s) for s in shape] == [1, n_classes, h, w], (name, shape)
        else:
            assert tuple(shape) == (1, 10), (name, shape)


def test_deeplab_output_is_a_dict_and_field_needs_sizes():
    _, a, _ = analysed("deeplab_small")
    assert isinstance(a.output.value, dict) and list(a.output.value) == ["out"]
    # the image-pooling branch's up-sampling ratio (1 / ceil(H/8)) depends on H: its field and
    # every field downstream are known only at concrete sizes
    interp = a["interpolate"]
    assert interp.needs_at and a.field(interp) is None
    assert any("evaluate" in note for note in interp.notes)
    assert a.field(a.output) is None
    assert a.field(last_node_of(a, "backbone")) is not None
    ev = a.evaluate(H=97, W=131)
    assert ev.field(ev.output) is not None and ev.field("interpolate") is not None


# -- shapes -------------------------------------------------------------------------------------
SIZES: dict[str, list[dict[str, int]]] = {
    name: [{"H": 224, "W": 224}, {"H": 97, "W": 131}, {"H": 65, "W": 65}, {"H": 33, "W": 47}]
    for name in NAMES}
# near the smallest valid sizes (tests/test_zoo_graph_models + the sweep below)
SMALLEST = {"densenet_small": 13, "inception_small": 15, "se_resnet_small": 1,
            "unet_small": 8, "deeplab_small": 1, "convnext_small_block_net": 8,
            "shufflenet_view_small": 1}
for _name, _n in SMALLEST.items():
    SIZES[_name].append({"H": _n, "W": _n + 6})
    SIZES[_name].append({"H": _n + 3, "W": _n + 1})
SHAPE_CASES = [pytest.param(n, s, id=f"{n}-{size_id(s)}") for n in NAMES for s in SIZES[n]]


@pytest.mark.parametrize(("name", "sizes"), SHAPE_CASES)
def test_every_node_shape_matches_torch(name, sizes):
    _, a, _ = analysed(name)
    ev = a.evaluate(**sizes)
    expected = torch_shapes(name, shape_of(sizes))
    got = rf_shapes(ev)
    assert list(got) == list(expected)
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not wrong, f"(rfgraph, torch) shapes differ at {len(wrong)} nodes: {wrong}"


def torch_runs(name: str, shape: tuple[int, ...]) -> dict | None:
    try:
        shapes = torch_node_shapes(meta_gm(name), shape)
    except RuntimeError:
        return None
    if any(0 in s for s in shapes.values() if s is not None):
        return None
    return shapes


@pytest.mark.parametrize("name", NAMES)
def test_shape_sweep_and_failures(name):
    """Every size 1..24 (H odd and even, W = H + 3 and W = H): rfgraph accepts exactly the
    sizes torch runs with no empty tensor, raising a one-line RfgraphError otherwise."""
    _, a, _ = analysed(name)
    wrong = []
    rejected = 0
    for n, extra in itertools.product(range(1, 25), (3, 0)):
        sizes = {"H": n, "W": n + extra}
        expected = torch_runs(name, shape_of(sizes))
        try:
            got = rf_shapes(a.evaluate(**sizes))
        except RfgraphError as exc:
            got = None
            rejected += 1
            message = str(exc)
            if "\n" in message or not message.strip():
                wrong.append((sizes, f"not one line: {message!r}"))
        if (got is None) != (expected is None):
            wrong.append((sizes, "rfgraph accepts" if expected is None else "rfgraph rejects"))
        elif got is not None and got != expected:
            wrong.append((sizes, [k for k in expected if got[k] != expected[k]]))
    assert not wrong, wrong
    assert (rejected > 0) == (SMALLEST[name] > 1)


@pytest.mark.parametrize("name", NAMES)
def test_smallest_valid_size_matches_torch(name):
    _, a, _ = analysed(name)
    for axis, other in (("H", "W"), ("W", "H")):
        def make(n: int, axis=axis, other=other) -> tuple[int, ...]:
            return shape_of({axis: n, other: 64})

        smallest = smallest_accepted(meta_gm(name), make, hi=256)
        assert smallest == SMALLEST[name], (axis, smallest)
        a.evaluate(**{axis: smallest, other: 64})
        if smallest > 1:
            with pytest.raises(InputTooSmall) as info:
                a.evaluate(**{axis: smallest - 1, other: 64})
            message = str(info.value)
            assert "\n" not in message and f"{axis} >= {smallest}" in message, message


def test_unet_cat_and_pad():
    """U-Net pads the up-sampled map to the skip's size (diff // 2, diff - diff // 2), so the
    cat needs no condition: sizes match symbolically. At every H torch runs, rfgraph's pads
    are torch's (checked node by node in the sweep); below 8 torch's max pool fails and
    rfgraph raises InputTooSmall naming the pool."""
    _, a, _ = analysed("unet_small")
    cats = [n for n in a.nodes if n.target == "torch.cat"]
    pads = [n for n in a.nodes if n.family == "pad"]
    assert len(cats) == 3 and len(pads) == 3
    for cat in cats:
        assert cat.conditions == []
        shapes = [a[i].tensor.shape for i in cat.inputs if a[i].tensor is not None]
        assert len(shapes) == 2
        assert all(sympy.expand(x - y) == 0 for x, y in zip(shapes[0][2:], shapes[1][2:],
                                                             strict=True))
    for h in (7, 5, 1):
        with pytest.raises(InputTooSmall) as info:
            a.evaluate(H=h, W=64)
        assert "\n" not in str(info.value) and "MaxPool2d" in str(info.value)
        with pytest.raises(RuntimeError):
            torch_node_shapes(meta_gm("unet_small"), (1, 3, h, 64))
    # odd sizes: the pads are asymmetric; 8·k + 7 loses a row at each of the three pools
    ev = a.evaluate(H=31, W=30)
    assert rf_shapes(ev) == torch_shapes("unet_small", (1, 3, 31, 30))
    assert ev.int_of(ev.output.tensor.shape[2]) == 31


# -- params and MACs ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_params_total_and_per_module(name):
    model, a, _ = analysed(name)
    assert a.total_params == sum(p.numel() for p in model.parameters())
    wrong = {}
    for prefix, module in model.named_modules():
        if not prefix:
            continue
        expected = sum(p.numel() for p in module.parameters())
        got = sum(n.params for n in a.nodes
                  if n.module == prefix or n.module.startswith(prefix + "."))
        if got != expected:
            wrong[prefix] = (got, expected)
    assert not wrong, f"(rfgraph, numel) differ: {wrong}"


MAC_CASES = [pytest.param(n, s, id=f"{n}-{size_id(s)}") for n in NAMES
             for s in (SIZES[n][0], SIZES[n][1], SIZES[n][-1])]


@pytest.mark.parametrize(("name", "sizes"), MAC_CASES)
def test_macs_match_flop_counter(name, sizes):
    model, a, _ = analysed(name)
    ev = a.evaluate(**sizes)
    total, per_module = flop_macs(name, shape_of(sizes))
    assert ev.int_of(ev.total_macs) == total
    assert ev.int_of(a.total_macs) == total  # the symbolic total, substituted
    node_macs = [(n.module, ev.int_of(n.macs)) for n in ev.nodes]

    def expected(prefix: str, module: nn.Module) -> int:
        # a container that is never called (ModuleList) has no entry: sum its children
        if isinstance(module, nn.ModuleList):
            return sum(expected(f"{prefix}.{k}", m) for k, m in module.named_children())
        return per_module.get(prefix, 0)

    wrong = {}
    for prefix, module in model.named_modules():
        if not prefix:
            continue
        got = sum(m for mod, m in node_macs if mod == prefix or mod.startswith(prefix + "."))
        if got != expected(prefix, module):
            wrong[prefix] = (got, expected(prefix, module))
    assert not wrong, f"(rfgraph, FlopCounterMode/2) differ: {wrong}"


# -- JSON -----------------------------------------------------------------------------------------
# DeepLab is kept at 32x40 to keep the file fast: its evaluated fields are sized over every
# output row of the up-sampled maps (field_at limits the positions to those that exist).
JSON_SIZES = {name: SIZES[name][1] for name in NAMES} | {"deeplab_small": {"H": 32, "W": 40}}


@pytest.mark.parametrize("name", NAMES)
def test_json_dict(name):
    model, a, _ = analysed(name)
    sizes = JSON_SIZES[name]
    ev = a.evaluate(**sizes)
    d = json.loads(json.dumps(ev.to_dict()))
    assert d["at"] == sizes
    assert d["totals"]["params"] == sum(p.numel() for p in model.parameters())
    assert d["totals"]["macs_at"] == flop_macs(name, shape_of(sizes))[0]
    assert d["totals"]["unknown_nodes"] == [] and d["totals"]["unknown_ops"] == {}
    expected = torch_shapes(name, shape_of(sizes))
    assert [n["name"] for n in d["nodes"]] == list(expected)[:-1]
    for node in d["nodes"]:
        assert node["out_shape_at"] == (None if expected[node["name"]] is None
                                        else list(expected[node["name"]])), node["name"]
    assert d["output"]["out_shape_at"] == list(expected["output"])
    assert d["output"]["rf_at"] is not None
    json.dumps(a.to_dict())  # the symbolic one too


# -- receptive fields -----------------------------------------------------------------------------
def consecutive(lo: int, hi: int, period: int, cap: int = 17) -> list[int]:
    """Output indices in [lo, hi] to probe: a full period plus one (at most ``cap``
    consecutive ones) around the middle when the field varies with y mod period, else 3."""
    if period > 1:
        n = min(period + 1, hi - lo + 1, cap)
        first = max(lo, (lo + hi) // 2 - n // 2)
        return list(range(first, first + n))
    if hi - lo + 1 <= 3:
        return list(range(lo, hi + 1))
    return sorted({lo, (lo + hi) // 2, hi})


def check_rf(name: str, node_name: str, sizes: dict[str, int], axes: tuple[int, ...] = (0,),
             borders: bool = True, expect_exact: bool = False) -> list[str]:
    """Probe node ``node_name`` at ``sizes``. Along each axis in ``axes``: output positions
    whose field is inside the image (compared exactly, plus jump / size over a full period),
    and with ``borders`` the first and last position (the probed box must lie in the field).
    Other axes use the centre (containment). A node without spatial dims is probed as a whole
    (containment). ``expect_exact``: at least two positions per axis in ``axes`` must have
    their field inside the image. Returns mismatches."""
    _, a, _ = analysed(name)
    ev = a.evaluate(**sizes)
    node = ev[node_name]
    t = node.tensor
    fields = ev.field(node)
    assert fields is not None, (node_name, "no field")
    n_in = [sizes["H"], sizes["W"]]
    spatial = all(t.dim_of_axis(i) is not None for i in range(2))
    inside_any = False
    if spatial:
        per_axis: dict[int, list[int]] = {}
        centre = {}
        for i in range(2):
            n_out = ev.int_of(t.shape[t.dim_of_axis(i)])
            centre[i] = n_out // 2
            if i not in axes:
                continue
            rf = fields[i]
            inside = inside_range(lambda y, rf=rf: ev.int_of(rf.start_at(y)),
                                  lambda y, rf=rf: ev.int_of(rf.end_at(y)), n_out, n_in[i])
            ys = consecutive(*inside, rf.period) if inside else []
            inside_any = inside_any or bool(ys)
            if borders or not ys:
                ys = sorted({*ys, 0, n_out - 1, centre[i]})
            per_axis[i] = ys
        count = max(len(v) for v in per_axis.values())
        cycles = {i: itertools.cycle(v) for i, v in per_axis.items()}
        positions = [[next(cycles[i]) if i in cycles else centre[i] for i in range(2)]
                     for _ in range(count)]
    else:
        positions = [None]
    boxes = probe_boxes(ev.graph_module, node_name, shape_of(sizes), positions)
    wrong = []
    exact: dict[int, dict[int, tuple[int, int]]] = {0: {}, 1: {}}
    for pos, box in zip(positions, boxes, strict=True):
        for i in range(2):
            y = 0 if pos is None else pos[i]
            lo, hi = ev.int_of(fields[i].start_at(y)), ev.int_of(fields[i].end_at(y))
            if pos is not None and i in axes and lo >= 0 and hi <= n_in[i] - 1:
                exact[i][y] = tuple(box[i])
                if tuple(box[i]) != (lo, hi):
                    wrong.append(f"{node_name} {'HW'[i]}[{y}] at {sizes}: probe {box[i]} "
                                 f"!= rfgraph {(lo, hi)}")
            # clipped to the image the field contains the probed box (it can be larger: a
            # padded element past a floor-mode layer's last one stands for unread pixels)
            elif not (lo <= box[i][0] and box[i][1] <= hi):
                wrong.append(f"{node_name} {'HW'[i]}[{y}] at {sizes}: probe {box[i]} not in "
                             f"rfgraph {(lo, hi)}")
    for i in axes:
        measured = exact[i]
        if expect_exact:
            assert len(measured) >= 2, (node_name, "HW"[i], sizes, "too few fields inside")
        if len(measured) < 2:
            continue
        rf, period = fields[i], fields[i].period
        ys = sorted(measured)
        span = ys[-1] - ys[0]
        if span % period == 0:
            step = measured[ys[-1]][0] - measured[ys[0]][0]
            if step != span * ev.value_of(rf.jump):
                wrong.append(f"{node_name} {'HW'[i]}: probed jump {step}/{span} != {rf.jump}")
        if len({y % period for y in ys}) == period:
            sizes_seen = [hi - lo + 1 for lo, hi in measured.values()]
            got = (ev.int_of(rf.size), ev.int_of(rf.min_size))
            if got != (max(sizes_seen), min(sizes_seen)):
                wrong.append(f"{node_name} {'HW'[i]}: probed (max, min) field size "
                             f"{(max(sizes_seen), min(sizes_seen))} != rfgraph {got}")
    return wrong


def strip_height(name: str, node_name: str) -> int:
    """An H leaving room for >= 5 local fields inside (r, j, period measured at 512x512)."""
    _, a, _ = analysed(name)
    ev = a.evaluate(H=512, W=512)
    rf = ev.field(node_name)[0]
    return ev.int_of(rf.size) + (4 + rf.period) * ceil_int(ev.value_of(rf.jump)) + 2


# Probed nodes per model, by module prefix (the last node of that module) or node name ('@').
PROBES = {
    "densenet_small": ["features.pool0", "features.denseblock1", "features.transition1",
                       "features.denseblock2", "features.transition2", "features.denseblock3",
                       "@output"],
    "inception_small": ["maxpool1", "conv3", "maxpool2", "inception3a", "inception3b",
                        "maxpool3", "inception4a", "@output"],
    # SE: x * sigmoid(f(mean(x))): after the first SE multiply every field is global
    "se_resnet_small": ["maxpool", "layer1.0.bn2", "layer1.0.se", "layer1.0", "layer2.0.se",
                        "@output"],
    "unet_small": ["inc", "down1", "down3", "up1.up", "up1", "up2", "up3.up", "up3", "@output"],
    "convnext_small_block_net": ["downsample_layers.0", "stages.0.0.dwconv", "stages.0.0",
                                 "stages.0", "downsample_layers.1", "stages.1", "@output"],
    "shufflenet_view_small": ["maxpool", "stage2.0", "stage2.1", "stage3.0", "stage3",
                              "stage4", "conv5", "@output"],
    "deeplab_small": ["backbone", "classifier.0.convs.3", "@cat", "classifier", "@output"],
}
STRIP_W = {"densenet_small": 32, "inception_small": 32, "se_resnet_small": 16,
           "unet_small": 16, "convnext_small_block_net": 16, "shufflenet_view_small": 16,
           "deeplab_small": 16}
# bilinear up-sampling clamps at the border: only interior positions are compared exactly
NO_BORDERS = {"unet_small", "deeplab_small"}


def probe_target(name: str, spec: str) -> str:
    _, a, _ = analysed(name)
    if spec.startswith("@"):
        return spec[1:]
    return last_node_of(a, spec)


RF_CASES = [pytest.param(m, s, id=f"{m}-{s.lstrip('@')}") for m, ss in PROBES.items()
            for s in ss]


@pytest.mark.parametrize(("name", "spec"), RF_CASES)
def test_rf_matches_probe(name, spec):
    node_name = probe_target(name, spec)
    _, a, _ = analysed(name)
    ev = a.evaluate(H=512, W=512)
    t = ev[node_name].tensor
    local = (all(t.dim_of_axis(i) is not None for i in range(2))
             and not any(r.end_at(0).free_symbols for r in a.field(node_name) or [])
             and a.field(node_name) is not None)
    if local:
        height = strip_height(name, node_name)
        sizes = {"H": height, "W": STRIP_W[name]}
    else:  # global (classifier output, after SE / image pooling): any size, containment
        sizes = {"H": 77, "W": 45}
    wrong = check_rf(name, node_name, sizes, borders=name not in NO_BORDERS, expect_exact=local)
    assert not wrong, wrong


@pytest.mark.parametrize("name", sorted(set(NAMES) - {"unet_small", "deeplab_small"}))
def test_classifier_output_sees_the_image(name):
    """A classifier's output: at 93x67 the probed box lies in rfgraph's field; at 64x96
    (multiples of 32: no floor-mode layer drops a row) the box is the whole image, which
    rfgraph's (unclipped) field contains."""
    assert not check_rf(name, "output", {"H": 93, "W": 67})
    _, a, _ = analysed(name)
    ev = a.evaluate(H=64, W=96)
    (box,) = probe_boxes(ev.graph_module, "output", (1, 3, 64, 96), [None])
    assert box == [(0, 63), (0, 95)]
    for rf, n in zip(ev.field(ev.output), (64, 96), strict=True):
        assert ev.int_of(rf.start_at(0)) <= 0 and ev.int_of(rf.end_at(0)) >= n - 1


# U-Net and DeepLab without image pooling: the output field after bilinear up-sampling (and,
# for U-Net, two stride-2 transposed convs) depends on the position modulo the scale.
UPSAMPLED = [
    pytest.param("unet_small", {"H": 140, "W": 16}, (0,), id="unet-140x16-H"),
    pytest.param("unet_small", {"H": 141, "W": 17}, (0,), id="unet-141x17-H"),
    pytest.param("unet_small", {"H": 16, "W": 143}, (1,), id="unet-16x143-W"),
    pytest.param("unet_small", {"H": 123, "W": 125}, (0, 1), id="unet-123x125-HW"),
    # 488 = 8·61: ratio 1/8 (period 8); 491: ratio 62/491 (consecutive positions only)
    pytest.param("deeplab_no_pool", {"H": 488, "W": 16}, (0,), id="deeplab-488x16-H"),
    pytest.param("deeplab_no_pool", {"H": 491, "W": 17}, (0,), id="deeplab-491x17-H"),
    pytest.param("deeplab_no_pool", {"H": 9, "W": 500}, (1,), id="deeplab-9x500-W"),
]


@pytest.mark.parametrize(("name", "sizes", "axes"), UPSAMPLED)
def test_rf_after_upsampling_consecutive_positions(name, sizes, axes):
    _, a, _ = analysed(name)
    ev = a.evaluate(**sizes)
    for i in axes:
        rf = ev.field(ev.output)[i]
        if name == "unet_small":
            assert rf.period == 8 and ev.value_of(rf.jump) == 1
            assert ev.int_of(rf.size) > ev.int_of(rf.min_size)  # varies with y mod 8
    wrong = check_rf(name, "output", sizes, axes=axes, borders=False, expect_exact=True)
    assert not wrong, wrong


def test_deeplab_no_pool_period_and_jump():
    _, a, _ = analysed("deeplab_no_pool")
    ev = a.evaluate(H=488, W=488)
    rf = ev.field(ev.output)[0]
    assert rf.period == 8 and ev.value_of(rf.jump) == 1
    ev = a.evaluate(H=491, W=491)
    rf = ev.field(ev.output)[0]
    assert ev.value_of(rf.jump) == sympy.Rational(8 * 62, 491)
    # inside the dilated stack, the atrous branches are centred on the 1x1 one: aligned
    cat = ev["cat"]
    assert all(r.aligned for r in ev.field(cat))


# -- DeepLab's image-pooling branch ----------------------------------------------------------------
@pytest.mark.parametrize("sizes", [{"H": 160, "W": 48}, {"H": 97, "W": 61}, {"H": 250, "W": 9}])
def test_deeplab_output_is_global(sizes):
    """Every output element sees the whole image: the probe box is the image at interior and
    border positions alike, and rfgraph's (unclipped) field contains it."""
    _, a, _ = analysed("deeplab_small")
    ev = a.evaluate(**sizes)
    fields = ev.field(ev.output)
    n = (sizes["H"], sizes["W"])
    ys = sorted({0, 1, n[0] // 3, n[0] // 2, n[0] // 2 + 1, n[0] - 2, n[0] - 1})
    positions = [[y, (k * 7) % n[1]] for k, y in enumerate(ys)]
    boxes = probe_boxes(ev.graph_module, "output", shape_of(sizes), positions)
    for pos, box in zip(positions, boxes, strict=True):
        assert box == [(0, n[0] - 1), (0, n[1] - 1)], (pos, box)
        for i in range(2):
            assert ev.int_of(fields[i].start_at(pos[i])) <= 0
            assert ev.int_of(fields[i].end_at(pos[i])) >= n[i] - 1


def test_deeplab_aspp_merge_report():
    """The ASPP cat joins four local branches (centred on each other) with the up-sampled
    image-pooling branch, whose field is the same for every element: the merge's field is the
    union; like a broadcast operand, the global branch takes no part in the alignment check, so
    the merge is aligned (the four local branches are centred on each other)."""
    _, a, _ = analysed("deeplab_small")
    ev = a.evaluate(H=32, W=40)
    cat = ev["cat"]
    branches = [ev[i] for i in cat.inputs if ev[i].tensor is not None]
    assert len(branches) == 5
    pooled = ev["interpolate"]
    assert pooled.name in cat.inputs
    for i in range(2):
        n_feat = ev.int_of(cat.tensor.shape[2 + i])
        rf = ev.field(cat)[i]
        assert rf.aligned and not rf.reason
        assert ev.field(pooled)[i].is_global
        prf = ev.field(pooled)[i]
        # the pooled branch: one field for all, the union of the backbone's fields
        back = ev.field(last_node_of(a, "backbone"))[i]
        union = (ev.int_of(back.start_at(0)), ev.int_of(back.end_at(n_feat - 1)))
        for y in range(n_feat):
            assert (ev.int_of(prf.start_at(y)), ev.int_of(prf.end_at(y))) == union
            lo = min(ev.int_of(ev.field(b)[i].start_at(y)) for b in branches)
            hi = max(ev.int_of(ev.field(b)[i].end_at(y)) for b in branches)
            assert (ev.int_of(rf.start_at(y)), ev.int_of(rf.end_at(y))) == (lo, hi), y
    d = json.loads(json.dumps(node_to_dict(ev, cat)))
    assert d["rf"]["aligned"] is True and "unaligned_reason" not in d["rf"]
    assert "conditions" not in d  # the five branches match symbolically
    assert cat.conditions == []


def test_deeplab_aspp_unaligned_reason_holds_at_the_evaluated_size():
    _, a, _ = analysed("deeplab_small")
    ev = a.evaluate(H=32, W=40)
    jumps = {ev.value_of(ev.field(i)[0].jump) for i in ev["cat"].inputs
             if ev[i].tensor is not None}
    assert jumps == {8}
    assert "jumps differ" not in ev.field("cat")[0].reason


# -- idioms ----------------------------------------------------------------------------------------
def same_field(a: Analysis, x: str, y: str) -> bool:
    fx_, fy = a.field(x), a.field(y)
    if fx_ is None or fy is None:
        return False
    for rx, ry in zip(fx_, fy, strict=True):
        if rx.period != ry.period or sympy.expand(rx.jump - ry.jump) != 0:
            return False
        for k in range(max(rx.period, 1) + 2):
            if sympy.expand(rx.start_at(k) - ry.start_at(k)) != 0:
                return False
            if sympy.expand(rx.end_at(k) - ry.end_at(k)) != 0:
                return False
    return True


def test_channel_shuffle_view_keeps_fields():
    """view(b, g, c/g, h, w) -> transpose(1, 2) -> contiguous -> view(b, -1, h, w): the field of
    the node after the shuffle equals the one before (the cat), symbolically; the spatial dims
    stay spatial through the 5-D view."""
    _, a, _ = analysed("shufflenet_view_small")
    gm = a.graph_module
    checked = 0
    for node in gm.graph.nodes:
        if node.op != "call_method" or node.target != "view":
            continue
        src = node.args[0]
        if src.op == "call_function" and src.target is torch.cat:  # the first view
            chain = [node]
            user = node
            while len(chain) < 4:
                (user,) = user.users
                chain.append(user)
            assert [c.target for c in chain[1:]] == [torch.transpose, "contiguous", "view"]
            five = a[node.name].tensor
            assert five.ndim == 5 and five.axes[3:] == (0, 1)
            for c in chain:
                assert same_field(a, src.name, c.name), (src.name, c.name)
            after = a[chain[-1].name].tensor
            assert after.axes == (None, None, 0, 1)
            assert [sympy.expand(s - t) for s, t in zip(after.shape, a[src.name].tensor.shape,
                                                        strict=True)] == [0] * 4
            checked += 1
    assert checked == 7  # one shuffle per unit: 2 + 3 + 2


def test_convnext_channels_last_block_keeps_dwconv_field():
    """dwconv -> permute(0, 2, 3, 1) -> LayerNorm -> Linear -> GELU -> Linear -> gamma * x ->
    permute(0, 3, 1, 2) keeps the depthwise conv's field; the residual add (input field inside
    it, centred) too; the LayerNorm2d permute/norm/permute keeps the stem's."""
    _, a, _ = analysed("convnext_small_block_net")
    blocks = [p for p, _ in build("convnext_small_block_net").named_modules()
              if p.count(".") == 2 and p.startswith("stages.")]
    assert blocks == ["stages.0.0", "stages.0.1", "stages.1.0", "stages.1.1"]
    for block in blocks:
        names = [n.name for n in a.nodes if n.module == block or n.module.startswith(block + ".")]
        dw = f"{block.replace('.', '_')}_dwconv"
        assert names[0] == dw
        for name in names[1:]:
            if a[name].tensor is None or a[name].tensor.const:
                continue
            assert same_field(a, dw, name), (block, name)
        permuted = [n for n in names if a[n].target == "permute"]
        assert len(permuted) == 2
        assert a[permuted[0]].tensor.axes == (None, 0, 1, None)
        assert a[permuted[1]].tensor.axes == (None, None, 0, 1)
        assert all(r.aligned for r in a.field(names[-1]))
    for ds in ("downsample_layers.0", "downsample_layers.1"):
        names = [n.name for n in a.nodes if n.module.startswith(ds + ".") or n.module == ds]
        norm_nodes = [n for n in names if a[n].target in ("permute", "LayerNorm")]
        assert len(norm_nodes) == 3
        before = a[norm_nodes[0]].inputs[0]
        for n in norm_nodes:
            assert same_field(a, before, n), (ds, n)
    # by hand: stem k4 s4 -> r 4, j 4; dwconv k7 p3 -> r 4 + 6*4 = 28, offset -12
    rf = a.field("stages_0_0_dwconv")[0]
    assert (rf.size, rf.jump, rf.offset) == (28, 4, -12)


def test_densenet_and_inception_concat_fields():
    """DenseNet's cat of all previous maps: the union, centred (aligned). Inception's four
    branches (1x1, 3x3, 5x5, pool 3x3 + 1x1) are centred too: union = the 5x5 branch."""
    _, a, _ = analysed("densenet_small")
    for block in ("features.denseblock1", "features.denseblock2", "features.denseblock3"):
        last = last_node_of(a, block)
        assert a[last].target == "torch.cat"
        assert all(r.aligned for r in a.field(last))
    _, a, _ = analysed("inception_small")
    for mod in ("inception3a", "inception3b", "inception4a"):
        last = last_node_of(a, mod)
        assert a[last].target == "torch.cat" and all(r.aligned for r in a.field(last))
        five = last_node_of(a, f"{mod}.branch3")
        assert same_field(a, five, last), mod


def test_se_multiply_makes_fields_global():
    """x * w with w (N, C, 1, 1) from global pooling: every element's field is the union of its
    local field and the whole map's (both SE styles)."""
    _, a, _ = analysed("se_resnet_small")
    for se in ("layer1.0.se", "layer2.0.se"):
        mul = last_node_of(a, se)
        for r in a.field(mul):
            assert r.end_at(0).free_symbols  # grows with the input: global
    ev = a.evaluate(H=64, W=64)
    for r in ev.field(last_node_of(a, "layer1.0.se")):
        assert ev.int_of(r.start_at(5)) <= 0 and ev.int_of(r.end_at(5)) >= 63


# -- the untraceable model -------------------------------------------------------------------------
@functools.cache
def untraceable() -> tuple[nn.Module, Analysis, tuple[str, ...]]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = UNTRACEABLE["untraceable_net"]().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = rfgraph.analyze(model, SPEC)
    return model, a, tuple(str(w.message) for w in caught)


LEAVES = {"gate": "DataGate", "maybe_pool": "ShapeBranchPool"}


def test_untraceable_kept_as_leaves_and_unknown():
    model, a, caught = untraceable()
    leaves = {n.module: n for n in a.nodes if any("kept as a leaf" in x for x in n.notes)}
    assert set(leaves) == set(LEAVES)
    for module, node in leaves.items():
        assert node.op == "call_module" and node.module_type == LEAVES[module]
        assert node.unknown and a.field(node) is None and node.tensor is None
    # the gate is the first op without a rule: one warning naming it, listed in unknown_ops
    assert sum("no rule for DataGate" in w for w in caught) == 1
    assert all("no rule" in w for w in caught)
    assert a.unknown_ops["DataGate"] == {"gate": 1}
    assert a.warnings[0].startswith("1 node(s) with op 'DataGate' have no rule")
    # the stem is known; everything after the gate depends on an unknown
    names = [n.name for n in a.nodes]
    gate_at = names.index(leaves["gate"].name)
    for node in a.nodes[1:gate_at]:
        assert not node.unknown and a.field(node) is not None, node.name
    for node in a.nodes[gate_at:]:
        assert node.unknown and a.field(node) is None and node.tensor is None, node.name
    assert a.output.tensor is None
    d = json.loads(json.dumps(a.to_dict()))
    assert set(d["totals"]["unknown_nodes"]) == set(names[gate_at:])
    # the leaves' own parameters are counted (measured from the module)
    assert a[leaves["gate"].name].params == sum(p.numel() for p in model.gate.parameters())


def test_untraceable_symbolic_params_downstream_of_unknown():
    model, a, _ = untraceable()
    assert a.total_params == sum(p.numel() for p in model.parameters())


def test_untraceable_every_rule_less_leaf_is_reported():
    _, a, caught = untraceable()
    assert sum("no rule for ShapeBranchPool" in w for w in caught) == 1
    assert a.unknown_ops == {"DataGate": {"gate": 1}, "ShapeBranchPool": {"maybe_pool": 1}}


def test_untraceable_downstream_notes_name_the_unknown_once():
    _, a, _ = untraceable()
    for node in a.nodes:
        for note in node.notes:
            if note.startswith("unknown: depends"):
                assert note.count("depends on") == 1 and "'gate'" in note, note


def test_untraceable_evaluated_reports_both_leaves():
    _, a, _ = untraceable()
    ev = a.evaluate(H=20, W=40)
    assert ev.unknown_ops == {"DataGate": {"gate": 1}, "ShapeBranchPool": {"maybe_pool": 1}}


class ParallelGates(nn.Module):
    """Three data-dependent leaves of one type, side by side (each sees a known input)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.g1, self.g2, self.g3 = DataGate(8), DataGate(8), DataGate(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.g1(x) + self.g2(x) + self.g3(x)


def test_untraceable_warns_once_per_op_type():
    with pytest.warns(UserWarning, match="no rule for DataGate") as record:
        a = rfgraph.analyze(ParallelGates(), SPEC)
    assert sum("no rule" in str(w.message) for w in record) == 1
    assert a.unknown_ops == {"DataGate": {"g1": 1, "g2": 1, "g3": 1}}
    assert a.warnings == ["3 node(s) with op 'DataGate' have no rule: marked unknown "
                          "(evaluate at concrete sizes to measure them)"]
    for g in ("g1", "g2", "g3"):
        node = next(n for n in a.nodes if n.module == g)
        assert any("kept as a leaf" in x for x in node.notes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # evaluate measures silently
        ev = a.evaluate(H=20, W=21)
    assert tuple(ev.int_of(s) for s in ev.output.tensor.shape) == (1, 8, 20, 21)
    assert ev.field(ev.output) is None


def eager_module_shapes(model: nn.Module, shape: tuple[int, ...]) -> dict[str, tuple]:
    """Output shape of every submodule in an eager forward (forward hooks)."""
    shapes: dict[str, tuple] = {}
    handles = [m.register_forward_hook(
        lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
        for name, m in model.named_modules() if name]
    try:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(1)
            out = model(torch.randn(shape))
    finally:
        for h in handles:
            h.remove()
    shapes[""] = tuple(out.shape)
    return shapes


# W after the stem decides ShapeBranchPool's `x.shape[-1] > 32`
UNTRACEABLE_SIZES = [{"H": 20, "W": 32}, {"H": 21, "W": 33}, {"H": 47, "W": 31},
                     {"H": 64, "W": 64}, {"H": 9, "W": 97}, {"H": 2, "W": 3}]


@pytest.mark.parametrize("sizes", UNTRACEABLE_SIZES, ids=size_id)
def test_untraceable_evaluated_shapes_match_eager(sizes):
    model, a, _ = untraceable()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = a.evaluate(**sizes)
    eager = eager_module_shapes(model, shape_of(sizes))
    for node in ev.nodes:
        if node.op == "call_module":
            assert tuple(ev.int_of(s) for s in node.tensor.shape) == eager[node.module], \
                node.name
    assert tuple(ev.int_of(s) for s in ev.output.tensor.shape) == eager[""]
    pool = next(n for n in ev.nodes if n.module == "maybe_pool")
    pooled = sizes["W"] > 32
    assert ev.int_of(pool.tensor.shape[3]) == (sizes["W"] // 2 if pooled else sizes["W"])
    for module in LEAVES:
        node = next(n for n in ev.nodes if n.module == module)
        assert node.unknown and any("numeric only" in x for x in node.notes)
        assert any("kept as a leaf" in x for x in node.notes)
    assert {n.module for n in ev.unknown_nodes} >= set(LEAVES)
    assert all("numeric only" in w for w in ev.warnings) and len(ev.warnings) == 2
    # fields: known before the gate, None (never a number) from the gate on
    names = [n.name for n in ev.nodes]
    gate_at = next(i for i, n in enumerate(ev.nodes) if n.module == "gate")
    assert all(ev.field(n) is not None for n in ev.nodes[1:gate_at])
    for node in [*ev.nodes[gate_at:], ev.output]:
        assert ev.field(node) is None and ev.field_at(node) is None, node.name
        t = node.tensor
        assert t is not None and all(r is None for r in t.rf), node.name
    d = json.loads(json.dumps(ev.to_dict()))
    rows = {n["name"]: n for n in [*d["nodes"], d["output"]]}
    for name in [*names[gate_at:], "output"]:
        assert rows[name]["rf"] is None and rows[name]["rf_at"] is None, name
        assert rows[name]["out_shape_at"] is not None
    assert d["output"]["out_shape_at"] == list(eager[""])
    assert d["totals"]["params"] == sum(p.numel() for p in model.parameters())


class PooledBranchThenUpsample(nn.Module):
    """The ASPP pattern in miniature: a local map plus its global mean up-sampled to the map's
    size, the sum up-sampled to the input size (two resize ratios)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 1, 3, stride=2, padding=1)
        self.conv = nn.Conv2d(1, 1, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(self.down(x))
        g = torch.nn.functional.interpolate(f.mean((2, 3), keepdim=True), size=f.shape[-2:],
                                            mode="bilinear", align_corners=False)
        return torch.nn.functional.interpolate(f + g, size=x.shape[-2:], mode="bilinear",
                                               align_corners=False)


def size_range_over_rows(ev: Analysis, rf, n: int) -> tuple[int, int]:
    sizes = [ev.int_of(rf.end_at(y)) - ev.int_of(rf.start_at(y)) + 1 for y in range(n)]
    return max(sizes), min(sizes)


def test_field_size_over_rows_when_period_fits():
    """When the period is at most the output length the reported (size, min_size) are the
    max / min over the output rows (H even here: period = H)."""
    a = rfgraph.analyze(PooledBranchThenUpsample(), (1, 1, "H", "W"))
    for h in (4, 6, 8):
        ev = a.evaluate(H=h, W=4)
        rf = ev.field(ev.output)[0]
        assert rf.period <= h
        assert (ev.int_of(rf.size), ev.int_of(rf.min_size)) == size_range_over_rows(ev, rf, h)


@pytest.mark.parametrize("h", [3, 5])
def test_field_size_counts_only_existing_positions(h):
    # (DeepLab at 33x8 shows it too, but takes ~5 s: field_at sums 165 SymPy Max chains)
    a = rfgraph.analyze(PooledBranchThenUpsample(), (1, 1, "H", "W"))
    ev = a.evaluate(H=h, W=4)
    rf = ev.field(ev.output)[0]
    fat = ev.field_at(ev.output)[0]  # sizes over the rows that exist at this size
    assert (fat.size, fat.min_size) == size_range_over_rows(ev, rf, h)
