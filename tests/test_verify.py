"""``rfgraph verify`` (rfgraph/verify/) and its layer references (rfgraph/semantics.py).

* the references against torch on a grid of layers (1-3-D, groups, dilation, stride, asymmetric
  padding, padding modes, ceil_mode, output_padding);
* verify over the whole zoo, the graph zoo and the seed tour: every check passes, timed;
* verify catches wrong formulas (injected into an analysis) and wrong layers;
* the report (table, JSON), the CLI contract (exit 0 / 1 / 2), size selection;
* the rfgraph bugs verify found (regression tests).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import time
import types

import pytest
import torch
import torch.nn.functional as F
from oracles import ExportNet
from torch import nn

import rfgraph
from rfgraph import semantics as ref
from rfgraph.cli import add_verify_parser, cmd_verify
from rfgraph.errors import RfgraphError
from rfgraph.receptive_field import identity_rf
from rfgraph.tensor import TensorInfo
from rfgraph.verify import CHECKS, choose_sizes, verify

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(autouse=True)
def keep_global_rng():
    """Tests here seed torch; other test files expect the global RNG untouched."""
    with torch.random.fork_rng():
        yield


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)),
                       dtype=torch.float64)


# -- references against torch ---------------------------------------------------------------------
CONV_GRID = [
    # nd, groups, kernel, stride, dilation, padding, mode
    (1, 1, 3, 1, 1, 1, "zeros"), (1, 2, 4, 2, 3, 2, "zeros"), (1, 3, 2, 3, 1, 0, "circular"),
    (2, 1, (3, 1), (2, 1), (1, 2), (1, 0), "zeros"), (2, 4, 3, 2, 2, 2, "reflect"),
    (2, 2, (1, 4), 1, (3, 1), (0, 3), "replicate"), (3, 1, 3, 2, 1, 1, "zeros"),
    (3, 3, (2, 3, 1), (1, 2, 3), (2, 1, 1), (1, 0, 0), "zeros"),
]


@pytest.mark.parametrize(("nd", "groups", "k", "s", "d", "p", "mode"), CONV_GRID)
def test_conv_reference_matches_torch(nd, groups, k, s, d, p, mode):
    conv = getattr(nn, f"Conv{nd}d")(groups * 2, groups * 3, k, s, p, d, groups,
                                     padding_mode=mode).double()
    x = rand(2, groups * 2, *([9, 8, 7][:nd]))
    with torch.no_grad():
        want = conv(x)
        got = ref.conv_reference(x, conv.weight, conv.bias, s, p, d, groups, padding_mode=mode)
    assert ref.rel_error(got, want) < 1e-12


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_reference_asymmetric_padding_is_padding_same(nd):
    # padding='same' with an even effective kernel pads one more pixel on the right
    conv = getattr(nn, f"Conv{nd}d")(2, 3, 4, padding="same", dilation=1).double()
    x = rand(1, 2, *([7, 6, 5][:nd]))
    with torch.no_grad():
        got = ref.conv_reference(x, conv.weight, conv.bias, 1, 1, 1, 1, padding_right=[2] * nd)
        assert ref.rel_error(got, conv(x)) < 1e-12


def test_conv_matrix_is_the_conv():
    w = rand(6, 2, 3, 2)
    m = ref.conv_matrix(w, (2, 1), (1, 0), (1, 2), 2, (5, 6))
    x = rand(1, 4, 5, 6)
    y = ref.conv_reference(x, w, None, (2, 1), (1, 0), (1, 2), 2)
    assert ref.rel_error((m @ x.reshape(-1)).reshape(y.shape), y) < 1e-12


CONVT_GRID = [  # nd, groups, kernel, stride, padding, output_padding, dilation
    (1, 1, 3, 2, 1, 1, 1), (1, 2, 4, 3, 2, 2, 1), (2, 1, 3, 1, 0, 0, 1),  # seed §2.3 geometry
    (2, 2, (4, 3), (2, 3), (1, 2), (1, 0), (1, 2)), (2, 1, 3, 2, 1, 0, 3),
    (3, 1, (2, 3, 1), (2, 1, 2), (0, 1, 0), (1, 0, 1), 1),
]


@pytest.mark.parametrize(("nd", "groups", "k", "s", "p", "op", "d"), CONVT_GRID)
def test_transposed_conv_is_the_transposed_matrix(nd, groups, k, s, p, op, d):
    convt = getattr(nn, f"ConvTranspose{nd}d")(groups * 2, groups * 3, k, s, p, op, groups,
                                               True, d).double()
    x = rand(2, groups * 2, *([3, 2, 3][:nd]))
    with torch.no_grad():
        want = convt(x)
    got = ref.conv_transpose_by_matrix(x, convt.weight.detach(), convt.bias.detach(), s, p, op,
                                       groups, d)
    assert ref.rel_error(got, want) < 1e-12


def test_seed_transposed_example_2x2_to_4x4():
    # seed §2.3: 2x2 input, 3x3 kernel, stride 1, "full" padding -> 4x4; the 4x4 -> 2x2 conv's
    # matrix is 4 x 16 and its transpose maps the 2x2 input to the 4x4 output
    w = rand(1, 1, 3, 3)
    m = ref.conv_matrix(w, 1, 0, 1, 1, (4, 4))
    assert m.shape == (4, 16)
    x = rand(1, 1, 2, 2)
    want = F.conv_transpose2d(x, w)
    assert want.shape == (1, 1, 4, 4)
    assert ref.rel_error((m.T @ x.reshape(-1)).reshape(want.shape), want) < 1e-12


def test_dilated_and_grouped_kernels():
    w = rand(4, 1, 3, 2)
    assert ref.dilate_kernel(w, (3, 2)).shape == (4, 1, 7, 3)
    x = rand(1, 4, 12, 10)
    want = F.conv2d(x, w, None, 1, 0, (3, 2), 4)
    assert ref.rel_error(F.conv2d(x, ref.dilate_kernel(w, (3, 2)), groups=4), want) < 1e-12
    dense = ref.block_diagonal(w, 4)
    assert dense.shape == (4, 4, 3, 2)
    assert torch.count_nonzero(dense.sum((2, 3)) * (1 - torch.eye(4, dtype=w.dtype))) == 0
    assert ref.rel_error(F.conv2d(x, dense, dilation=(3, 2)), want) < 1e-12


POOL_GRID = [  # nd, kernel, stride, padding, dilation, ceil_mode
    (1, 3, 2, 1, 1, True), (2, (3, 2), (2, 1), (1, 0), (1, 2), False), (2, 3, 2, 1, 1, True),
    (2, 2, 3, 1, 1, True), (3, 2, 2, 0, 1, True), (3, (3, 1, 2), 1, (1, 0, 1), (2, 1, 1), False),
]


@pytest.mark.parametrize(("nd", "k", "s", "p", "d", "ceil"), POOL_GRID)
def test_pool_references_match_torch(nd, k, s, p, d, ceil):
    x = rand(2, 3, *([9, 8, 7][:nd]))
    want = getattr(F, f"max_pool{nd}d")(x, k, s, p, d, ceil)
    assert ref.rel_error(ref.max_pool_reference(x, nd, k, s, p, d, ceil), want) < 1e-12
    for include in (True, False):
        args = (x, k, s, p, ceil, include) + ((3,) if nd > 1 else ())
        want = getattr(F, f"avg_pool{nd}d")(*args)
        got = ref.avg_pool_reference(x, nd, k, s, p, ceil, include, 3 if nd > 1 else None)
        assert ref.rel_error(got, want) < 1e-12


@pytest.mark.parametrize(("nd", "out"), [(1, 3), (2, (3, None)), (2, 1), (3, (2, 3, 1))])
def test_adaptive_pool_references(nd, out):
    x = rand(2, 3, *([7, 8, 5][:nd]))
    for kind in ("avg", "max"):
        want = getattr(F, f"adaptive_{kind}_pool{nd}d")(x, out)
        assert ref.rel_error(ref.adaptive_pool_reference(x, nd, out, kind), want) < 1e-12


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "linear"])
@pytest.mark.parametrize("kw", [{"scale_factor": 3}, {"scale_factor": 1.5}, {"size": 11},
                                {"scale_factor": 0.5}])
def test_resize_reference(mode, kw):
    x = rand(2, 3, 9)
    for align in ((None,) if mode.startswith("nearest") else (False, True)):
        want = F.interpolate(x, mode=mode, align_corners=align, **kw)
        assert ref.rel_error(ref.resize_reference(x, mode=mode, align_corners=align, **kw),
                             want) < 1e-12


def test_channel_shuffle_is_a_permutation():
    x = rand(2, 12, 3, 3)
    for g in (1, 2, 3, 4, 6, 12):
        perm = ref.channel_shuffle_permutation(12, g)
        assert sorted(perm) == list(range(12))
        assert torch.equal(nn.ChannelShuffle(g)(x), x[:, perm])


def test_seed_spatially_separable_pair_is_the_outer_product():
    # seed §2.5.1: a 1x3 kernel [0.3, 0.4, 0.5] then a 3x1 kernel [0.5, 0.7, 0.8] equal the 3x3
    # kernel [[0.15, 0.2, 0.25], [0.21, 0.28, 0.35], [0.24, 0.32, 0.4]]
    a = torch.tensor([[[[0.3, 0.4, 0.5]]]], dtype=torch.float64)
    b = torch.tensor([[[[0.5], [0.7], [0.8]]]], dtype=torch.float64)
    spec, why = ref.compose_convs(ref.ConvSpec.of(a, None, 1, 0, 1, 1),
                                  ref.ConvSpec.of(b, None, 1, 0, 1, 1))
    assert why == ""
    want = torch.tensor([[0.15, 0.2, 0.25], [0.21, 0.28, 0.35], [0.24, 0.32, 0.4]],
                        dtype=torch.float64)
    assert torch.allclose(spec.weight[0, 0], want)


def test_compose_convs_exact_and_refused():
    # a biased conv folds into the next one only where that one does not pad
    convs = [nn.Conv2d(4, 4, (3, 1), (2, 1), (1, 0), groups=4, bias=False).double(),
             nn.Conv2d(4, 6, 1, (1, 2), bias=False).double(),
             nn.Conv2d(6, 6, (1, 3), 1, (0, 2), (1, 2), groups=3).double()]
    specs = [ref.ConvSpec.of(c.weight.detach(), None if c.bias is None else c.bias.detach(),
                             c.stride, c.padding, c.dilation, c.groups) for c in convs]
    spec, why = ref.compose_chain(specs)
    assert spec is not None, why
    x = rand(2, 4, 11, 13)
    with torch.no_grad():
        want = nn.Sequential(*convs)(x)
    got = spec(x)[(..., slice(0, want.shape[2]), slice(0, want.shape[3]))]
    assert ref.rel_error(got, want) < 1e-12
    biased = nn.Conv2d(6, 6, 1).double()
    b = ref.ConvSpec.of(biased.weight.detach(), biased.bias.detach(), 1, 0, 1, 1)
    assert ref.compose_convs(b, specs[2])[1] == "the first layer has a bias and the second pads"
    # two 3x3 convs with padding do not compose into one conv at the border
    c = nn.Conv2d(1, 1, 3, padding=1).double()
    s = ref.ConvSpec.of(c.weight.detach(), None, 1, 1, 1, 1)
    assert ref.compose_convs(s, s)[0] is None


# -- verify on the zoo ----------------------------------------------------------------------------
def _models() -> dict:
    from examples.zoo import GRAPH_ZOO, GRAPH_ZOO_INPUTS, ZOO, ZOO_INPUTS
    from rfgraph.models import seed_tour

    out = {name: (f, ZOO_INPUTS[name]) for name, f in ZOO.items()}
    out.update({name: (f, GRAPH_ZOO_INPUTS[name]) for name, f in GRAPH_ZOO.items()})
    out["seed_tour"] = (seed_tour, (1, 3, "H", "W"))
    return out


MODELS = _models()
TIMINGS: dict[str, float] = {}


@functools.cache
def analysed(name: str) -> rfgraph.Analysis:
    factory, spec = MODELS[name]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = factory().eval()
    return rfgraph.analyze(model, spec, name=name)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_verify_zoo(name):
    """Default sizes (typical, odd/prime, smallest valid), every check, no mismatch."""
    a = analysed(name)
    start = time.perf_counter()
    report = verify(a)
    TIMINGS[name] = time.perf_counter() - start
    assert report.ok, "\n".join(f"{r.node} {r.check} {r.what} {r.at}: {r.detail}"
                                for r in report.failures)
    assert len(report.sizes) >= 2
    checked = {(r.node, r.check) for r in report.rows if r.status == "pass"}
    for node in a.nodes:  # every node's shape and MACs are checked at every size
        assert (node.name, "shape") in checked and (node.name, "macs") in checked, node.name
    assert ("(total)", "params") in checked and ("(total)", "macs") in checked
    assert any(r.check == "rf" and r.status == "pass" and r.at is None for r in report.rows)
    assert any(r.check == "semantics" and r.status == "pass" for r in report.rows)
    # skips are explained, and only for these reasons
    allowed = ("integer tensor", "field unknown", "reads no input pixel", "not probed")
    for r in report.skipped:
        if r.reason == "upper-bound" and name == "unet_small" and r.at and r.at["H"] % 2:
            # at odd sizes U-Net pads the up-sampled map by a row before the cat: a merge
            # with padding-only elements, an upper bound (docs/conventions.md)
            continue
        assert r.detail and any(k in r.detail for k in allowed), (r.node, r.check, r.detail)


def test_zoo_timings_report():
    """Not a check: prints the per-model verify times of test_verify_zoo (run with -s)."""
    if TIMINGS:
        total = sum(TIMINGS.values())
        print("\nverify timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in
                                                sorted(TIMINGS.items())) + f"; total {total:.1f}s")


def test_seed_tour_semantics_rows():
    report = verify(analysed("seed_tour"), at=[{"H": 33, "W": 47}], checks=["semantics"])
    whats = {r.what for r in report.rows if r.status == "pass"}
    for expected in ("conv == im2col matmul",
                     "dilated conv == conv with the zero-dilated kernel",
                     "grouped conv == block-diagonal conv",
                     "transposed conv == transpose of the conv's matrix",
                     "channel shuffle == a permutation (4 groups)",
                     "pooling acts per channel",
                     "max pool == window reference", "avg pool == window reference"):
        assert expected in whats, expected
    assert any(w.startswith("spatially separable pair") for w in whats)
    assert any(w.startswith("depthwise-separable pair") for w in whats)
    assert any(w.startswith("flattened triple") for w in whats)


def test_view_transpose_view_shuffle_is_checked():
    report = verify(analysed("shufflenet_view_small"), at=[{"H": 64, "W": 64}],
                    checks=["semantics"])
    rows = [r for r in report.rows if r.what.startswith("view/transpose/view == channel shuffle")]
    assert rows and all(r.status == "pass" for r in rows)


def test_rf_every_phase_after_transposed_conv():
    report = verify(analysed("seed_tour"), at=[{"H": 40, "W": 40}], checks=["rf"])
    (row,) = [r for r in report.rows if r.node == "up" and r.what == "H"]
    assert row.status == "pass"
    boxes = row.measured["boxes"]
    assert {y % 2 for y in boxes} == {0, 1} and len(boxes) == 3  # both phases + one period
    assert row.measured["jump"] == row.expected["jump"] == 4


def test_global_field_checked_at_each_size():
    report = verify(analysed("seed_tour"), at=[{"H": 41, "W": 27}, {"H": 20, "W": 33}],
                    checks=["rf"])
    rows = [r for r in report.rows if r.node == "head_2"]
    assert {tuple(sorted(r.at.items())) for r in rows} == {(("H", 41), ("W", 27)),
                                                          (("H", 20), ("W", 33))}
    assert all(r.status == "pass" for r in rows)


# -- verify catches wrong formulas and wrong layers -----------------------------------------------
def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.Conv2d(8, 4, 3, dilation=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))


def failing(report, check: str) -> set[str]:
    return {r.node for r in report.failures if r.check == check}


def test_clean_small_net_passes():
    report = verify(rfgraph.analyze(small_net(), (1, 3, "H", "W")))
    assert report.ok, report.format()


def test_wrong_macs_formula_is_caught():
    a = rfgraph.analyze(small_net(), (1, 3, "H", "W"))
    a["_4"].macs = a["_4"].macs + 1
    report = verify(a, at=[{"H": 32, "W": 29}], checks=["macs"])
    assert not report.ok
    assert failing(report, "macs") == {"_4", "(total)"}


def test_wrong_shape_is_caught():
    a = rfgraph.analyze(small_net(), (1, 3, "H", "W"))
    t = a["_3"].tensor
    a["_3"].value = TensorInfo((*t.shape[:-1], t.shape[-1] + 1), t.axes, t.rf)
    report = verify(a, at=[{"H": 32, "W": 29}], checks=["shape"])
    assert failing(report, "shape") == {"_3"}
    (row,) = report.failures
    assert row.error == 1


def test_wrong_params_are_caught():
    a = rfgraph.analyze(small_net(), (1, 3, "H", "W"))
    a["_0"].params += 3
    report = verify(a, at=[{"H": 32, "W": 29}], checks=["params"])
    assert failing(report, "params") == {"_0", "(total)"}


def test_wrong_field_is_caught():
    a = rfgraph.analyze(small_net(), (1, 3, "H", "W"))
    t = a["_4"].tensor
    a["_4"].value = TensorInfo(t.shape, t.axes, (identity_rf(), t.rf[1]))
    report = verify(a, at=[{"H": 32, "W": 29}], checks=["rf"])
    assert {(r.node, r.what) for r in report.failures} == {("_4", "H")}
    (row,) = report.failures
    assert "size" in row.detail and row.measured["size"] > row.expected["size"] == 1
    assert row.error > 0 and "FAIL" in report.format()


def slightly_wrong_conv(*args: int) -> nn.Conv2d:
    """A Conv2d (by class, so rfgraph applies the conv rule) whose forward is not a convolution:
    verify must say so. (A subclass overriding forward is traced through instead, so the
    override is patched on the instance.)"""
    conv = nn.Conv2d(*args)
    conv.forward = types.MethodType(lambda self, x: nn.Conv2d.forward(self, x) * 1.001, conv)
    return conv


def test_wrong_layer_semantics_are_caught():
    torch.manual_seed(0)
    model = nn.Sequential(slightly_wrong_conv(2, 2, 3), nn.ReLU())
    report = verify(rfgraph.analyze(model, (1, 2, "H", "W")), at=[{"H": 9, "W": 9}],
                    checks=["semantics"])
    assert failing(report, "semantics") == {"_0"}


# -- report, options, sizes -----------------------------------------------------------------------
def test_report_table_json_and_determinism():
    a = rfgraph.analyze(small_net(), (1, 3, "H", "W"))
    r1 = verify(a, at=[{"H": 32, "W": 29}])
    r2 = verify(a, at=[{"H": 32, "W": 29}])
    assert r1.format() == r2.format()
    assert json.dumps(r1.to_dict()) == json.dumps(r2.to_dict())
    text = r1.format()
    assert text.splitlines()[1].split() == ["node", "module/target", *CHECKS]
    assert "result: OK" in text and "ran in eval mode (BatchNorm2d" in text
    d = json.loads(json.dumps(r1.to_dict()))
    assert d["ok"] is True and d["sizes"] == [{"H": 32, "W": 29}]
    assert d["summary"]["fail"] == 0 and d["summary"]["pass"] == len(
        [r for r in r1.rows if r.status == "pass"])
    assert {"node", "check", "status", "at", "what", "expected", "measured", "error",
            "detail"} <= set(d["rows"][0])


def test_checks_subset_and_bad_checks():
    a = rfgraph.analyze(small_net(), (1, 3, "H", "W"))
    report = verify(a, at=[{"H": 32, "W": 29}], checks=["params", "macs"])
    assert {r.check for r in report.rows} == {"params", "macs"}
    with pytest.raises(RfgraphError, match="unknown check"):
        verify(a, checks=["shapes"])
    with pytest.raises(rfgraph.InputTooSmall):
        verify(a, at=[{"H": 2, "W": 2}])


def test_train_mode_is_restored_and_progress_reported():
    model = small_net().train()
    a = rfgraph.analyze(model, (1, 3, "H", "W"))
    calls = []
    rng = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    verify(a, at={"H": 20, "W": 20}, progress=lambda done, total, label: calls.append(
        (done, total)))
    assert torch.equal(rng, torch.random.get_rng_state())  # verify leaves the RNG alone
    assert torch.get_num_threads() == threads
    assert all(m.training for m in a.graph_module.modules())
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(d <= t for d, t in calls)


def test_choose_sizes():
    sizes = choose_sizes(analysed("seed_tour"))
    assert sizes == [{"H": 224, "W": 224}, {"H": 97, "W": 131}, {"H": 2, "W": 2}]
    assert choose_sizes(analysed("small_conv3d"))[:2] == [{"D": 16, "H": 112, "W": 112},
                                                         {"D": 13, "H": 61, "W": 67}]
    alex = choose_sizes(analysed("alexnet"))
    assert alex[-1] == {"H": 63, "W": 63}  # Araujo/torch: AlexNet needs 63
    fixed = rfgraph.analyze(nn.Conv2d(3, 4, 3), (1, 3, 8, 8))
    assert choose_sizes(fixed) == [{}]
    assert verify(fixed).ok


def test_unknown_fields_are_skipped_not_passed():
    from examples.zoo import UNTRACEABLE

    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        a = rfgraph.analyze(UNTRACEABLE["untraceable_net"]().eval(), (1, 3, "H", "W"))
    report = verify(a, at=[{"H": 40, "W": 44}])
    assert report.ok
    skipped = {r.node for r in report.skipped if r.check == "rf"}
    assert {"gate", "maybe_pool", "head_2"} <= skipped
    assert "skipped:" in report.format() and "field unknown" in report.format()


def test_functional_layers_are_checked():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 2, 3, 3))

        def forward(self, x):
            x = F.conv2d(x, self.w, None, 1, 1, 1, 2)
            x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
            x = F.channel_shuffle(x, 3)
            x = F.interpolate(x, scale_factor=2, mode="bilinear")
            return F.avg_pool2d(x, 2)

    torch.manual_seed(0)
    report = verify(rfgraph.analyze(Functional(), (1, 4, "H", "W")), at=[{"H": 21, "W": 18}])
    assert report.ok, report.format()
    whats = {(r.node, r.what) for r in report.rows if r.check == "semantics"
             and r.status == "pass"}
    assert ("conv2d", "conv == im2col matmul") in whats
    assert ("max_pool2d", "max pool == window reference") in whats
    assert ("channel_shuffle", "channel shuffle == a permutation (3 groups)") in whats
    assert ("interpolate", "bilinear resize == exact-coordinate reference") in whats


def test_exported_program_is_verified(tmp_path):
    """A .pt2 graph is made of ATen ops: the probe copy gets ATen stand-ins (linear max pool,
    identity activations and norms, constant weights read from attributes)."""
    from rfgraph.loader import load_model

    torch.manual_seed(0)
    auto = torch.export.Dim.AUTO
    program = torch.export.export(ExportNet().eval(), (torch.zeros(1, 3, 38, 50),),
                                  dynamic_shapes={"x": {2: auto, 3: auto}})
    torch.export.save(program, tmp_path / "net.pt2")
    gm = load_model(str(tmp_path / "net.pt2"))
    a = rfgraph.analyze(gm, tuple(gm.meta["rfgraph_input_shape"]))
    report = verify(a, at=[{"H": 38, "W": 50}, {"H": 21, "W": 17}])
    assert report.ok, report.format()
    probed = {r.node for r in report.rows if r.check == "rf" and r.status == "pass"}
    assert {"max_pool2d", "conv_transpose2d", "upsample_bilinear2d", "linear"} <= probed
    checked = {r.node for r in report.rows if r.check == "semantics" and r.status == "pass"}
    assert {"conv2d", "max_pool2d", "conv_transpose2d", "channel_shuffle"} <= checked


def test_meta_device_model_is_verified():
    with torch.device("meta"):
        model = ExportNet().eval()
    report = verify(rfgraph.analyze(model, (1, 3, "H", "W")), at=[{"H": 30, "W": 26}])
    assert report.ok, report.format()
    assert not report.skipped


# -- the command ----------------------------------------------------------------------------------
def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``rfgraph verify ...`` through rfgraph.cli once the subcommand is wired in, else through
    the same parser and handler (cmd_verify) with the CLI's error contract."""
    from rfgraph import cli

    parser = cli._build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "verify" in sub.choices:
        code = cli.main(["verify", *argv])
    else:
        add_verify_parser(sub)
        args = parser.parse_args(["verify", *argv])
        try:
            code = cmd_verify(args)
        except RfgraphError as exc:
            print(f"rfgraph: error: {exc}", file=__import__("sys").stderr)
            code = 2
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_ok_table(capsys):
    code, out, err = run_cli(capsys, "--at", "H=33,W=47", "--at", "H=20,W=21", "--no-progress")
    assert code == 0, err
    assert "rfgraph verify: seed_tour" in out and "H=33,W=47 | H=20,W=21" in out
    assert out.rstrip().endswith("result: OK")


def test_cli_json_and_checks(capsys):
    code, out, _ = run_cli(capsys, "rfgraph.models:seed_tour", "--input", "1,3,H,W", "--at",
                           "H=40,W=40", "--json", "--checks", "shape,params", "--no-progress")
    assert code == 0
    d = json.loads(out)
    assert d["ok"] and d["checks"] == ["shape", "params"]
    assert {r["check"] for r in d["rows"]} == {"shape", "params"}


@pytest.mark.parametrize("argv", [["--checks", "shape,fields"], ["--at", "H=1,W=1"],
                                  ["--at", "H=x"], ["--at", "Q=40"]])
def test_cli_user_errors_exit_2(capsys, argv):
    code, out, err = run_cli(capsys, *argv, "--no-progress")
    assert code == 2 and out == ""
    assert err.startswith("rfgraph: error:") and len(err.strip().splitlines()) == 1


def test_cli_mismatch_exits_1(capsys, tmp_path):
    path = tmp_path / "wrong.py"
    path.write_text(
        "import types\nimport torch\nfrom torch import nn\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    conv = nn.Conv2d(3, 4, 3)\n"
        "    conv.forward = types.MethodType(\n"
        "        lambda self, x: nn.Conv2d.forward(self, x) * 1.001, conv)\n"
        "    return nn.Sequential(conv, nn.ReLU())\n")
    code, out, _ = run_cli(capsys, f"{path}:build", "--at", "H=12,W=12", "--no-progress")
    assert code == 1
    assert "FAIL" in out and out.rstrip().endswith("result: MISMATCH")


# -- rfgraph bugs found by verify (regression tests) ----------------------------------------------
@pytest.mark.parametrize(("layer", "smallest"), [(nn.ReflectionPad1d(2), 3),  # pad < n
                                                 (nn.CircularPad1d(3), 3)])  # pad <= n
def test_pad_min_size_matches_torch(layer, smallest):
    """Found by verify: reflect/circular padding accepted inputs torch rejects."""
    for n in range(1, smallest):
        with pytest.raises(RuntimeError):
            layer(torch.zeros(1, 1, n))
    layer(torch.zeros(1, 1, smallest))
    a = rfgraph.analyze(layer, (1, 1, "L"))
    with pytest.raises(rfgraph.InputTooSmall, match=f"it needs L >= {smallest}"):
        a.evaluate(L=smallest - 1)
    report = verify(a, at=[{"L": smallest}], checks=["shape"])
    assert report.ok, report.format()


def test_odd_pixel_unshuffle_is_a_one_line_error():
    """Found by verify: 2H + 1 rows never split into pairs; this used to crash check_sizes."""
    with pytest.raises(RfgraphError, match="divisible by 2") as info:
        rfgraph.analyze(nn.Sequential(nn.ConvTranspose2d(1, 1, 3, stride=2),
                                      nn.PixelUnshuffle(2)), (1, 1, "H", "W"))
    assert "\n" not in str(info.value)


def test_unshuffle_then_shuffle_field():
    """Found by verify (fixed in issue 9: channels are followed through the shuffles):
    PixelShuffle after PixelUnshuffle is the identity, a field of one pixel."""
    a = rfgraph.analyze(nn.Sequential(nn.PixelUnshuffle(2), nn.PixelShuffle(2)),
                        (1, 1, "H", "W"))
    report = verify(a, at=[{"H": 8, "W": 8}], checks=["rf"])
    assert report.ok, report.format()


def test_grid_of_single_layers_all_dims():
    """A deterministic companion of the fuzz: every layer kind in 1-, 2- and 3-D."""
    layers = {
        "conv": lambda nd: getattr(nn, f"Conv{nd}d")(4, 6, 3, 2, 1, 2, 2),
        "convt": lambda nd: getattr(nn, f"ConvTranspose{nd}d")(4, 2, 3, 2, 1, 1, 2),
        "maxpool": lambda nd: getattr(nn, f"MaxPool{nd}d")(3, 2, 1, 2, ceil_mode=True),
        "avgpool": lambda nd: getattr(nn, f"AvgPool{nd}d")(3, 2, 1, True, False),
        "adaptive": lambda nd: getattr(nn, f"AdaptiveMaxPool{nd}d")(3),
        "pad": lambda nd: getattr(nn, f"ZeroPad{nd}d")(tuple(range(2 * nd))),
        "shuffle": lambda nd: nn.ChannelShuffle(2),
        "upsample": lambda nd: nn.Upsample(scale_factor=2, mode="nearest"),
    }
    for (kind, build), nd in itertools.product(layers.items(), (1, 2, 3)):
        torch.manual_seed(0)
        model = nn.Sequential(build(nd))
        axes = ("L",) if nd == 1 else ("H", "W") if nd == 2 else ("D", "H", "W")
        a = rfgraph.analyze(model, (1, 4, *axes))
        report = verify(a, at=[dict(zip(axes, (11, 9, 7)[:nd]))])
        assert report.ok, (kind, nd, report.format())
