"""rfgraph's formulas for the zoo and the seed tour, checked against independent oracles.

* shapes: every node of the analysed fx graph, run on the meta device (tests/zoo_oracles.py);
* params: ``sum(p.numel())`` of the model (and of every submodule);
* MACs: ``FlopCounterMode`` FLOPs / 2 of the eager model on the meta device (total and per
  module);
* receptive fields: the gradient probe (``rfgraph.probe``) on the graph cut after a node, at
  output positions whose field lies inside the image; published / hand-derived numbers.

Each model is analysed symbolically once (``analysed``) and evaluated at several sizes.
"""

from __future__ import annotations

import functools
import itertools
import json

import pytest
import torch
from torch import nn
from zoo_oracles import (
    MODELS,
    ceil_int,
    flop_macs,
    input_shape,
    inside_range,
    meta_graph_module,
    probe_boxes,
    smallest_accepted,
    spread,
    torch_node_shapes,
)

import rfgraph
from rfgraph import InputTooSmall
from rfgraph.analysis import Analysis

# Sizes per model: 224x224, odd sizes, and small ones (each valid for the model).
SIZES: dict[str, list[dict[str, int]]] = {
    "alexnet": [{"H": 224, "W": 224}, {"H": 97, "W": 131}, {"H": 65, "W": 65},
                {"H": 63, "W": 100}],
    "vgg16": [{"H": 224, "W": 224}, {"H": 97, "W": 131}, {"H": 65, "W": 65},
              {"H": 32, "W": 47}],
    "resnet50": [{"H": 224, "W": 224}, {"H": 97, "W": 131}, {"H": 65, "W": 65},
                 {"H": 17, "W": 33}],
    "mobilenet_v2": [{"H": 224, "W": 224}, {"H": 97, "W": 131}, {"H": 65, "W": 65},
                     {"H": 17, "W": 33}],
    "shufflenet_v2_x1_0": [{"H": 224, "W": 224}, {"H": 97, "W": 131}, {"H": 65, "W": 65},
                           {"H": 17, "W": 33}],
    "small_conv3d": [{"D": 16, "H": 112, "W": 112}, {"D": 9, "H": 31, "W": 45},
                     {"D": 5, "H": 17, "W": 23}, {"D": 3, "H": 6, "W": 7}],
    # divisible by 8 (output = input size) and not
    "encoder_decoder": [{"H": 64, "W": 64}, {"H": 96, "W": 128}, {"H": 97, "W": 131},
                        {"H": 65, "W": 33}, {"H": 31, "W": 45}],
    "seed_tour": [{"H": 224, "W": 224}, {"H": 97, "W": 131}, {"H": 65, "W": 97},
                  {"H": 33, "W": 47}],
}
assert set(SIZES) == set(MODELS)
NAMES = sorted(MODELS)


def size_id(sizes: dict[str, int]) -> str:
    return "x".join(str(v) for v in sizes.values())


SHAPE_CASES = [pytest.param(n, s, id=f"{n}-{size_id(s)}") for n in NAMES for s in SIZES[n]]
# MACs at 224 (or the first size) and at one odd size.
MAC_CASES = [pytest.param(n, s, id=f"{n}-{size_id(s)}") for n in NAMES for s in SIZES[n][:2]]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the probes are small, and with other processes on the two cores
    several OpenMP threads spin against each other (4x slower in practice)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def analysed(name: str) -> tuple[nn.Module, Analysis]:
    """(model, symbolic analysis), built and analysed once per test session."""
    factory, spec = MODELS[name]
    with torch.random.fork_rng():  # leave the global RNG as other test files expect it
        torch.manual_seed(0)
        model = factory().eval()
    return model, rfgraph.analyze(model, spec)


@functools.cache
def meta_gm(name: str) -> torch.fx.GraphModule:
    return meta_graph_module(name, analysed(name)[1].graph_module)


@functools.cache
def torch_shapes(name: str, sizes: tuple[tuple[str, int], ...]) -> dict:
    return torch_node_shapes(meta_gm(name), input_shape(name, dict(sizes)))


def rf_shapes(ev: Analysis) -> dict[str, tuple[int, ...] | None]:
    """rfgraph's evaluated (first) output shape per node name ('output' for the output)."""
    out = {}
    for node in [*ev.nodes, ev.output]:
        t = node.tensor
        out[node.name] = None if t is None else tuple(ev.int_of(s) for s in t.shape)
    return out


# -- shapes ---------------------------------------------------------------------------------------
def test_symbolic_analysis_is_complete():
    for name in NAMES:
        _, a = analysed(name)
        assert not a.unknown_nodes, (name, [n.name for n in a.unknown_nodes])
        assert not a.warnings, (name, a.warnings)
        assert a.symbols == sorted(d for d in MODELS[name][1] if isinstance(d, str))


@pytest.mark.parametrize(("name", "sizes"), SHAPE_CASES)
def test_every_node_shape_matches_torch(name, sizes):
    _, a = analysed(name)
    ev = a.evaluate(**sizes)
    expected = torch_shapes(name, tuple(sizes.items()))
    got = rf_shapes(ev)
    assert list(got) == list(expected)  # same nodes, same order
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not wrong, f"(rfgraph, torch) shapes differ at {len(wrong)} nodes: {wrong}"


# Every size in a range (both axes odd and even): rfgraph accepts exactly the sizes torch runs
# without an empty tensor, and gets every node's shape right.
SWEEPS = {
    "seed_tour": range(1, 41),
    "encoder_decoder": range(1, 41),
    "small_conv3d": range(1, 41),
    "alexnet": range(58, 98),
    "vgg16": range(28, 68),
}


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_shape_sweep(name):
    _, a = analysed(name)
    gm = meta_gm(name)
    letters = a.axis_names
    wrong = []
    for n in SWEEPS[name]:
        values = (n, n + 3) if len(letters) == 2 else (max(1, n // 4), n, n + 2)
        sizes = dict(zip(letters, values, strict=True))
        shape = input_shape(name, sizes)
        try:
            expected = torch_node_shapes(gm, shape)
        except RuntimeError:
            expected = None
        if expected is not None and any(0 in s for s in expected.values() if s is not None):
            expected = None
        try:
            got = rf_shapes(a.evaluate(**sizes))
        except InputTooSmall:
            got = None
        if (got is None) != (expected is None):
            wrong.append((sizes, "rfgraph accepts" if expected is None else "rfgraph rejects"))
        elif got != expected:
            wrong.append((sizes, [k for k in expected if got[k] != expected[k]]))
    assert not wrong, wrong


# -- smallest valid input -------------------------------------------------------------------------
# The axis whose smallest valid size is searched, with the other sizes held fixed.
MIN_CASES = {
    "alexnet": ("H", {"W": 224}),
    "vgg16": ("H", {"W": 224}),
    "resnet50": ("H", {"W": 224}),
    "mobilenet_v2": ("W", {"H": 64}),
    "shufflenet_v2_x1_0": ("H", {"W": 64}),
    "small_conv3d": ("D", {"H": 32, "W": 32}),
    "encoder_decoder": ("H", {"W": 64}),
    "seed_tour": ("W", {"H": 64}),
}


@pytest.mark.parametrize("name", NAMES)
def test_smallest_valid_size_matches_torch(name):
    """torch (meta device, binary search) finds the smallest size that gives no empty tensor;
    rfgraph must accept it and reject one less with InputTooSmall naming that size."""
    axis, fixed = MIN_CASES[name]
    _, a = analysed(name)

    def make(n: int) -> tuple[int, ...]:
        return input_shape(name, {**fixed, axis: n})

    smallest = smallest_accepted(meta_gm(name), make, hi=256)
    a.evaluate(**fixed, **{axis: smallest})
    if smallest > 1:
        with pytest.raises(InputTooSmall) as info:
            a.evaluate(**fixed, **{axis: smallest - 1})
        message = str(info.value)
        assert "\n" not in message
        assert f"{axis} >= {smallest}" in message


def test_smallest_sizes_by_hand():
    # AlexNet: every k3 s2 pool needs an input of >= 3 and gives floor((m - 3)/2) + 1; the k3/k5
    # convs keep the size. pool5 needs 3 <- pool2 gives 3 <- needs 7 <- pool1 gives 7 <- needs 15
    # <- conv1 (k11 s4 p2) gives floor((n - 7)/4) + 1 >= 15 <- n >= 63.
    # VGG-16: five 2x2 pools halve (floor) the size: n >= 2**5 = 32.
    assert smallest_accepted(meta_gm("alexnet"), lambda n: (1, 3, n, 224), 256) == 63
    assert smallest_accepted(meta_gm("vgg16"), lambda n: (1, 3, n, 224), 256) == 32


# -- params ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_params_total_and_per_module(name):
    model, a = analysed(name)
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


# -- MACs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "sizes"), MAC_CASES)
def test_macs_match_flop_counter(name, sizes):
    model, a = analysed(name)
    ev = a.evaluate(**sizes)
    total, per_module = flop_macs(name, input_shape(name, sizes))
    assert ev.int_of(a.total_macs) == total
    node_macs = [(n.module, ev.int_of(n.macs)) for n in ev.nodes]
    wrong = {}
    for prefix, _ in model.named_modules():
        if not prefix:
            continue
        got = sum(m for mod, m in node_macs if mod == prefix or mod.startswith(prefix + "."))
        if got != per_module.get(prefix, 0):
            wrong[prefix] = (got, per_module.get(prefix, 0))
    assert not wrong, f"(rfgraph, FlopCounterMode/2) differ: {wrong}"


# -- JSON -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_json_dict(name):
    model, a = analysed(name)
    sizes = SIZES[name][0]
    ev = a.evaluate(**sizes)
    d = json.loads(json.dumps(ev.to_dict()))
    assert d["totals"]["params"] == sum(p.numel() for p in model.parameters())
    assert d["totals"]["macs_at"] == flop_macs(name, input_shape(name, sizes))[0]
    assert d["at"] == sizes
    expected = torch_shapes(name, tuple(sizes.items()))
    assert [n["name"] for n in d["nodes"]] == list(expected)[:-1]
    for node in d["nodes"]:
        assert node["out_shape_at"] == list(expected[node["name"]]), node["name"]
    assert d["output"]["out_shape_at"] == list(expected["output"])


# -- receptive fields: helpers --------------------------------------------------------------------
def spatial_nodes(a: Analysis) -> list[str]:
    """Nodes with a known, local field along every input axis (a tensor dim for each axis and
    a field that does not grow with the input, i.e. not after global pooling)."""
    names = []
    for node in [*a.nodes, a.output]:
        t = node.tensor
        fields = a.field(node)
        if t is None or t.const or fields is None:
            continue
        if any(t.dim_of_axis(i) is None for i in range(a.n_spatial)):
            continue
        if any(rf.end_at(0).free_symbols for rf in fields):
            continue
        names.append(node.name)
    return names


def check_node_rf(name: str, node_name: str, axes: list[int], sizes: dict[str, int],
                  ) -> list[str]:
    """Probe node ``node_name`` at input ``sizes``; along each axis in ``axes``, at output
    positions whose field is inside the image, compare the probed box with
    (start_at(y), end_at(y)). Other axes use the centre position. Returns mismatches."""
    _, a = analysed(name)
    ev = a.evaluate(**sizes)
    node = ev[node_name]
    t = node.tensor
    fields = ev.field(node)
    letters = ev.axis_names
    per_axis: dict[int, list[int]] = {}
    centre = {}
    for i in range(ev.n_spatial):
        n_out = ev.int_of(t.shape[t.dim_of_axis(i)])
        centre[i] = n_out // 2
        if i not in axes:
            continue
        rf = fields[i]

        def start(y, rf=rf):
            return ev.int_of(rf.start_at(y))

        def end(y, rf=rf):
            return ev.int_of(rf.end_at(y))

        inside = inside_range(start, end, n_out, sizes[letters[i]])
        assert inside is not None, (node_name, letters[i], "no field inside the image")
        ys = spread(*inside, rf.period)
        assert len(ys) >= min(2, n_out), (node_name, letters[i], inside)
        per_axis[i] = ys
    count = max(len(v) for v in per_axis.values())
    cycles = {i: itertools.cycle(v) for i, v in per_axis.items()}
    positions = [[next(cycles[i]) if i in cycles else centre[i] for i in range(ev.n_spatial)]
                 for _ in range(count)]
    shape = input_shape(name, sizes)
    boxes = probe_boxes(ev.graph_module, node_name, shape, positions)
    wrong = []
    for pos, box in zip(positions, boxes, strict=True):
        for i in axes:
            want = (ev.int_of(fields[i].start_at(pos[i])), ev.int_of(fields[i].end_at(pos[i])))
            if tuple(box[i]) != want:
                wrong.append(f"{node_name} {letters[i]}[{pos[i]}] at {sizes}: "
                             f"probe {box[i]} != rfgraph {want}")
    # jump, size and min_size against the probed boxes
    for i in axes:
        rf, period = fields[i], fields[i].period
        measured = {pos[i]: box[i] for pos, box in zip(positions, boxes, strict=True)}
        ys = sorted(measured)
        span = ys[-1] - ys[0]
        if span and span % period == 0:
            step = measured[ys[-1]][0] - measured[ys[0]][0]
            if step != span * ev.value_of(rf.jump):
                wrong.append(f"{node_name} {letters[i]}: probed jump {step}/{span} != "
                             f"rfgraph {rf.jump}")
        sizes_seen = [hi - lo + 1 for lo, hi in measured.values()]
        if len({y % period for y in ys}) == period:  # a full period was probed
            got = (ev.int_of(rf.size), ev.int_of(rf.min_size))
            if got != (max(sizes_seen), min(sizes_seen)):
                wrong.append(f"{node_name} {letters[i]}: probed (max, min) field size "
                             f"{(max(sizes_seen), min(sizes_seen))} != rfgraph {got}")
    return wrong


def strip_size(a: Analysis, node_name: str, axis: int, big: dict[str, int]) -> int:
    """Input length along ``axis`` leaving room for >= 5 fields inside: r + 4*j + 2 (r, j and
    the period measured from rfgraph at a big size; they do not depend on it for these nodes)."""
    ev = a.evaluate(**big)
    rf = ev.field(node_name)[axis]
    r = ev.int_of(rf.size)
    j = ceil_int(ev.value_of(rf.jump))
    return r + (4 + rf.period) * j + 2


# -- receptive fields: every node of the small models, along every axis ---------------------------
SMALL = ["seed_tour", "encoder_decoder", "small_conv3d"]
SMALL_NODES = [pytest.param(m, n, id=f"{m}-{n}") for m in SMALL
               for n in spatial_nodes(analysed(m)[1])
               if n != "getitem_1"]  # pool_idx's indices: integers, no gradient


@pytest.mark.parametrize(("name", "node_name"), SMALL_NODES)
def test_rf_every_node_small_models(name, node_name):
    _, a = analysed(name)
    letters = a.axis_names
    big = dict.fromkeys(letters, 512 if len(letters) == 2 else 128)
    sizes = {letters[i]: strip_size(a, node_name, i, big) for i in range(a.n_spatial)}
    assert not check_node_rf(name, node_name, list(range(a.n_spatial)), sizes)


# -- receptive fields: selected nodes of the ImageNet models, on narrow strips --------------------
STRIP_W = {"alexnet": 64}  # AlexNet needs W >= 63; the others W >= 32
PROBE_MODULES = {
    # pool2; the adaptive pool (6x6) after pool5, probed at H = 325 where pool5 has 9 rows:
    # bins of width 2, rows [0,1] [1,2] [3,4] [4,5] [6,7] [7,8] -> bins 2 and 3 lie inside.
    "alexnet": ["features.5", "avgpool"],
    "vgg16": ["features.16", "features.23"],  # pool3, pool4
    "resnet50": ["maxpool", "layer1", "layer2.0", "layer3.0"],
    "mobilenet_v2": ["features.3", "features.7", "features.14"],
    "shufflenet_v2_x1_0": ["maxpool", "stage2", "stage3.0"],
}


STRIP_H = {("alexnet", "avgpool"): 325}  # the field of an adaptive pool depends on H


def last_node_of(a: Analysis, prefix: str) -> str:
    """The last node in module ``prefix`` (the output of that block)."""
    names = [n.name for n in a.nodes if n.module == prefix or n.module.startswith(prefix + ".")]
    return names[-1]


STRIP_CASES = [pytest.param(m, p, id=f"{m}-{p}") for m, ps in PROBE_MODULES.items() for p in ps]


@pytest.mark.parametrize(("name", "prefix"), STRIP_CASES)
def test_rf_selected_nodes_on_strips(name, prefix):
    _, a = analysed(name)
    node_name = last_node_of(a, prefix)
    width = STRIP_W.get(name, 32)
    height = STRIP_H.get((name, prefix)) or strip_size(a, node_name, 0, {"H": 1024, "W": 1024})
    sizes = {"H": height, "W": width}
    assert not check_node_rf(name, node_name, [0], sizes)


# -- receptive fields of global outputs -----------------------------------------------------------
# (VGG-16 and AlexNet are left out: the probe's float64 copy of their classifiers is ~1 GB.)
GLOBAL_CASES = {
    "resnet50": {"H": 96, "W": 32},
    "mobilenet_v2": {"H": 96, "W": 32},
    "shufflenet_v2_x1_0": {"H": 96, "W": 32},
    "seed_tour": {"H": 41, "W": 27},
    # D a multiple of 4 and H, W of 8: no trailing row is dropped by a floor-mode pool (at
    # H = 20 the output never sees rows 17..19, so the probe box would not be the image)
    "small_conv3d": {"D": 8, "H": 24, "W": 16},
}


@pytest.mark.parametrize("name", sorted(GLOBAL_CASES))
def test_rf_global_output_covers_the_image(name):
    """A classifier's output sees every pixel (at these sizes): the probe box is the whole image,
    and rfgraph's (unclipped) field contains it."""
    _, a = analysed(name)
    sizes = GLOBAL_CASES[name]
    ev = a.evaluate(**sizes)
    shape = input_shape(name, sizes)
    (box,) = probe_boxes(ev.graph_module, "output", shape, [None])
    assert box == [(0, n - 1) for n in shape[2:]]
    for rf, n in zip(ev.field(ev.output), shape[2:], strict=True):
        assert ev.int_of(rf.start_at(0)) <= 0 and ev.int_of(rf.end_at(0)) >= n - 1


# -- published and hand-derived numbers -----------------------------------------------------------
def probed_triple(name: str, node_name: str, sizes: dict[str, int], y: int) -> tuple:
    """(r, j, offset) along H measured by the probe at output rows y and y + 1."""
    _, a = analysed(name)
    ev = a.evaluate(**sizes)
    t = ev[node_name].tensor
    x = ev.int_of(t.shape[3]) // 2
    b0, b1 = probe_boxes(ev.graph_module, node_name, input_shape(name, sizes),
                         [(y, x), (y + 1, x)])
    (lo0, hi0), (lo1, hi1) = b0[0], b1[0]
    assert hi0 - lo0 == hi1 - lo1
    jump = lo1 - lo0
    return hi0 - lo0 + 1, jump, lo0 - y * jump


def test_vgg16_pool5_published():
    # Araujo, Norris, Sim, "Computing Receptive Fields of Convolutional Neural Networks",
    # Distill 2019, table: VGG-16 pool5 r = 212, effective stride 32, effective padding 90.
    # By hand: 13 convs k3 and 5 pools k2 s2; r = 1 + 2*(2*1 + 2*2 + 3*4 + 3*8 + 3*16) + 1 + 2
    # + 4 + 8 + 16 = 1 + 180 + 31 = 212; offset = -(2*1 + 2*2 + 3*4 + 3*8 + 3*16) = -90.
    _, a = analysed("vgg16")
    pool5 = last_node_of(a, "features")
    assert a[pool5].module == "features.30" and a[pool5].module_type == "MaxPool2d"
    ev = a.evaluate(H=224, W=224)
    for f in ev.field_at(pool5):
        assert (f.size, f.jump, f.offset) == (212, 32, -90)
    (row,) = [n for n in ev.to_dict()["nodes"] if n["name"] == pool5]
    assert row["rf_at"] == {"size": [212, 212], "jump": ["32", "32"], "offset": [-90, -90]}
    # At 224 pool5 is 7x7; the adaptive pool to 7x7 is the identity and the classifier sees
    # the union of the 7 fields: 212 + 6*32 = 404, still starting at -90.
    for f in ev.field_at(ev.output):
        assert (f.size, f.offset) == (404, -90)
    # The formula stays exact at an odd size: pool5 at 97 is floor(97/32) = 3 rows.
    ev = a.evaluate(H=97, W=131)
    assert [(f.size, f.offset) for f in ev.field_at(ev.output)] == [(212 + 2 * 32, -90),
                                                                     (212 + 3 * 32, -90)]


@pytest.mark.parametrize(("h", "rows"), [(97, 3), (65, 2), (224, 7), (351, 10)])
def test_vgg16_adaptive_pool_bins_by_hand(h, rows):
    # pool5 has floor(h/32) rows (five floor-mode 2x2 pools); AdaptiveAvgPool2d(7) bin y covers
    # pool5 rows floor(rows*y/7) .. ceil(rows*(y+1)/7) - 1 (PyTorch's adaptive pooling), and
    # pool5 row i sees input rows -90 + 32i .. -90 + 32i + 211.
    _, a = analysed("vgg16")
    ev = a.evaluate(H=h, W=224)
    pool = ev[last_node_of(a, "avgpool")]
    assert pool.module_type == "AdaptiveAvgPool2d"
    rf = ev.field(pool)[0]
    for y in range(7):
        first, last = rows * y // 7, -(-rows * (y + 1) // 7) - 1
        want = (-90 + 32 * first, -90 + 32 * last + 211)
        assert (ev.int_of(rf.start_at(y)), ev.int_of(rf.end_at(y))) == want, y


def test_alexnet_pool5_probe_and_by_hand():
    # By hand (Araujo recurrences r' = r + (k-1)j, j' = js, o' = o - pj), torchvision layout:
    # conv1 k11 s4 p2: r 11, j 4, o -2;  pool1 k3 s2: r 19, j 8;  conv2 k5 p2: r 51, o -18;
    # pool2 k3 s2: r 67, j 16;  conv3/4/5 k3 p1: r 99/131/163, o -34/-50/-66;
    # pool5 k3 s2: r 195, j 32, o -66.
    _, a = analysed("alexnet")
    pool5 = last_node_of(a, "features")
    assert a[pool5].module == "features.12"
    sizes = {"H": 195 + 4 * 32 + 2, "W": 64}
    ev = a.evaluate(**sizes)
    rf = ev.field_at(pool5)[0]
    assert (rf.size, rf.jump, rf.offset) == (195, 32, -66)
    # rows 3, 4: fields [30, 224], [62, 256] are inside the 325-row image
    assert probed_triple("alexnet", pool5, sizes, 3) == (195, 32, -66)
    # At 224 pool5 is 6x6 -> adaptive pool to 6x6 is the identity -> 195 + 5*32 = 355.
    ev = a.evaluate(H=224, W=224)
    assert [(f.size, f.offset) for f in ev.field_at(ev.output)] == [(355, -66)] * 2


def test_resnet50_layer4_probe_and_by_hand():
    # ResNet-50 v1.5 (stride on the 3x3 conv), by hand: conv1 k7 s2 p3: r 7, j 2, o -3;
    # maxpool k3 s2 p1: r 11, j 4, o -5; every 3x3 adds 2j to r and subtracts j from o
    # (its stride applies after): layer1 3 blocks at j 4: r 35, o -17; layer2 first at j 4 then
    # 3 at j 8: r 91, o -45; layer3 first at j 8 then 5 at j 16: r 267, o -133; layer4 first at
    # j 16 then 2 at j 32: r 427, j 32, o -213. The 1x1 shortcut fields are centred inside.
    # The one expensive probe of this file (~600x32 float64 strip).
    _, a = analysed("resnet50")
    last = last_node_of(a, "layer4")
    sizes = {"H": 427 + 4 * 32 + 2, "W": 32}
    ev = a.evaluate(**sizes)
    rf = ev.field_at(last)[0]
    assert (rf.size, rf.jump, rf.offset) == (427, 32, -213)
    # rows 7, 8: fields [11, 437], [43, 469] are inside the 557-row image
    assert probed_triple("resnet50", last, sizes, 7) == (427, 32, -213)
    # At 224 the last map is 7x7 and global pooling takes the union: 427 + 6*32 = 619
    # (= 32*7 + 395), from -213.
    ev = a.evaluate(H=224, W=224)
    assert [(f.size, f.offset) for f in ev.field_at(ev.output)] == [(619, -213)] * 2
