"""rfgraph advise: convolution variants (seed §2.5-2.8) and the alternatives of a standard conv.

Every number is checked against torch: the alternatives are built as real modules, their
parameters counted with ``numel()`` and their MACs with FlopCounterMode (FLOPs / 2), at two
input sizes, against the formulas evaluated there.
"""

from __future__ import annotations

import argparse
import json

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from examples.zoo import GRAPH_ZOO, ZOO
from rfgraph import cli_advise
from rfgraph.advise import (
    DEPTHWISE,
    FLATTENED,
    GROUPED,
    SHUFFLE,
    SHUFFLED,
    SPATIAL,
    advise,
    alternatives,
    build_alternative,
    costs,
    grouped_choices,
    variants,
)
from rfgraph.models import seed_tour


def _macs(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        module(x)
    return fc.get_total_flops() // 2


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- the seed's numbers ---------------------------------------------------------------------
def test_seed_depthwise_separable_576_vs_136():
    """§2.5.2: 8→8 channels, 3×3, no bias: 8·8·3·3 = 576 vs 8·1·3·3 + 8·8 = 136."""
    conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
    a = rfgraph.analyze(conv, (1, 8, "H", "W"))
    adv = alternatives(a, a.nodes[1])
    ds = next(alt for alt in adv.alternatives if alt.name == DEPTHWISE)
    assert adv.params == 576 == _numel(conv)
    assert ds.params == 136 == _numel(build_alternative(conv, DEPTHWISE))
    assert ds.params_ratio == sympy.Rational(17, 72) == sympy.Rational(1, 8) + sympy.Rational(1, 9)
    assert ds.macs_ratio == sympy.Rational(17, 72)  # no size left in the ratio
    H, W = sympy.symbols("H W", integer=True, positive=True)
    assert sympy.expand(ds.macs.subs({s: sympy.Symbol(s.name, integer=True, positive=True)
                                      for s in ds.macs.free_symbols}) - 136 * H * W) == 0
    # the general algebra: 1/C_out + 1/k² (bias-free), for params and MACs
    assert ds.params_ratio_formula == ds.macs_ratio_formula
    ci, co, kh, kw = sympy.symbols("C_in C_out k_h k_w", positive=True)
    assert sympy.simplify(sympy.sympify(ds.params_ratio_formula,
                                        locals={"C_out": co, "k_h": kh, "k_w": kw})
                          - (1 / co + 1 / (kh * kw))) == 0


def test_seed_flattened_formulas():
    """§2.6, per filter (C_out = 1), same padding: params X·Y·C → X+Y+C, MACs M·N·C·X·Y →
    M·N·(C+X+Y)."""
    C, X, Y, M, N = sympy.symbols("C X Y M N", positive=True)
    p0, m0 = costs("standard", C, 1, (Y, X), 1, (M, N), (M, N))
    p1, m1 = costs(FLATTENED, C, 1, (Y, X), 1, (M, N), (M, N))
    assert p0 == X * Y * C and sympy.expand(p1 - (X + Y + C)) == 0
    assert sympy.expand(m0 - M * N * C * X * Y) == 0
    assert sympy.expand(m1 - M * N * (C + X + Y)) == 0
    # and with real modules: 16 channels, 3×3, 'same' padding, C_out = 1
    conv = nn.Conv2d(16, 1, 3, padding=1, bias=False)
    flat = build_alternative(conv, FLATTENED)
    assert _numel(conv) == 16 * 3 * 3 and _numel(flat) == 16 + 3 + 3
    x = torch.zeros(1, 16, 20, 30)
    assert _macs(conv, x) == 20 * 30 * 16 * 3 * 3
    assert _macs(flat, x) == 20 * 30 * (16 + 3 + 3)


def test_seed_spatially_separable_kernel_both_ways():
    """§2.5.1: outer([.5,.7,.8], [.3,.4,.5]) as one 3×3 conv, and as 3×1 then 1×3."""
    v = torch.tensor([0.5, 0.7, 0.8], dtype=torch.float64)
    h = torch.tensor([0.3, 0.4, 0.5], dtype=torch.float64)
    kernel = torch.outer(v, h)
    assert torch.allclose(kernel, torch.tensor([[0.15, 0.20, 0.25], [0.21, 0.28, 0.35],
                                                [0.24, 0.32, 0.40]], dtype=torch.float64))
    full = nn.Conv2d(1, 1, 3, bias=False).double()
    full.weight.data = kernel.view(1, 1, 3, 3)
    pair = build_alternative(full, SPATIAL).double()
    pair[0].weight.data = v.view(1, 1, 3, 1)
    pair[1].weight.data = h.view(1, 1, 1, 3)
    x = torch.randn(2, 1, 17, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(full(x), pair(x))
    assert (_numel(full), _numel(pair)) == (9, 6)
    # the pair is recognised as a spatially separable variant, with the same field
    a = rfgraph.analyze(pair, (1, 1, "H", "W"))
    assert [v.label for v in variants(a).values()] == ["spatially separable (3×1)",
                                                       "spatially separable (1×3)"]
    b = rfgraph.analyze(full, (1, 1, "H", "W"))
    assert _field(a, 17, 23) == _field(b, 17, 23)


# -- every alternative against torch --------------------------------------------------------
CONVS = {
    "3x3 same": (lambda: nn.Conv2d(8, 8, 3, padding=1, bias=False), (1, 8, "H", "W")),
    "5x3 stride 2 bias": (lambda: nn.Conv2d(12, 24, (5, 3), stride=2, padding=(2, 0)),
                          (2, 12, "H", "W")),
    "3x3 dilated": (lambda: nn.Conv2d(16, 8, 3, padding=3, dilation=(3, 2), bias=False),
                    (1, 16, "H", "W")),
    "7x7 s2 reflect": (lambda: nn.Conv2d(4, 16, 7, stride=2, padding=3, padding_mode="reflect"),
                       (1, 4, "H", "W")),
    "padding same": (lambda: nn.Conv2d(6, 6, (4, 3), padding="same", bias=False),
                     (1, 6, "H", "W")),
    "conv1d": (lambda: nn.Conv1d(8, 16, 5, stride=2), (1, 8, "L")),
    "conv3d": (lambda: nn.Conv3d(4, 8, 3, padding=1, stride=(1, 2, 2), bias=False),
               (1, 4, "D", "H", "W")),
}
SIZES = {2: [(19, 23), (40, 33)], 1: [(31,), (64,)], 3: [(5, 9, 11), (7, 12, 10)]}


def _field(a, *sizes):
    b = a.evaluate(**dict(zip(a.symbols, sizes)))
    return [(f.size, f.jump, f.offset) for f in b.field_at(b.nodes[-1])]


def _names(nd):
    return {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}[nd]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("case", sorted(CONVS))
def test_alternatives_against_torch(case):
    make, shape = CONVS[case]
    conv = make()
    nd = len(conv.kernel_size)
    a = rfgraph.analyze(conv, shape)
    adv = alternatives(a, a.nodes[1])
    assert adv is not None
    kinds = {alt.name for alt in adv.alternatives}
    assert DEPTHWISE in kinds and FLATTENED in kinds
    assert (SPATIAL in kinds) == (nd == 2 and all(k > 1 for k in conv.kernel_size))
    gs = grouped_choices(conv.in_channels, conv.out_channels)
    assert {f"grouped g={g}" for g in gs} <= kinds and gs
    for sizes in SIZES[nd]:
        at = dict(zip(_names(nd), sizes))
        x = torch.randn(*[int(s) for s in shape[:2]], *sizes)
        y = conv(x)
        assert int(a.value_of(adv.params)) == _numel(conv)
        b = a.evaluate(**at)
        assert b.int_of(adv.macs) == _macs(conv, x)
        for alt in adv.alternatives:
            module = build_alternative(conv, GROUPED if alt.groups else alt.name,
                                       alt.groups or 1)
            assert module(x).shape == y.shape, alt.name
            assert int(alt.params) == _numel(module), alt.name
            assert b.int_of(alt.macs) == _macs(module, x), (alt.name, sizes)
            assert sympy.nsimplify(b.value_of(alt.params_ratio)) == \
                sympy.Rational(int(alt.params), _numel(conv))
            assert b.value_of(alt.macs_ratio) == \
                sympy.Rational(_macs(module, x), _macs(conv, x)), (alt.name, sizes)
            # "same field": rfgraph's own field of the built alternative
            alt_a = rfgraph.analyze(module, shape)
            assert _field(alt_a, *sizes) == _field(a, *sizes), alt.name


def test_grouped_choices_and_ratio():
    assert grouped_choices(64, 96) == [2, 4, 8, 16, 32]
    assert grouped_choices(3, 16) == []
    a = rfgraph.analyze(nn.Conv2d(3, 16, 3, bias=False), (1, 3, "H", "W"))
    adv = alternatives(a, a.nodes[1])
    assert GROUPED in adv.skipped and SPATIAL not in adv.skipped
    a = rfgraph.analyze(nn.Conv2d(32, 32, 3, bias=False), (1, 32, "H", "W"))
    g4 = next(alt for alt in alternatives(a, a.nodes[1]).alternatives if alt.groups == 4)
    assert g4.params_ratio == g4.macs_ratio == sympy.Rational(1, 4)
    assert "8 of the 32 input channels" in g4.field


def test_no_alternatives_for_pointwise_grouped_transposed():
    for m, shape in [(nn.Conv2d(8, 8, 1), (1, 8, "H", "W")),
                     (nn.Conv2d(8, 8, 3, groups=2), (1, 8, "H", "W")),
                     (nn.ConvTranspose2d(8, 8, 3), (1, 8, "H", "W"))]:
        a = rfgraph.analyze(m, shape)
        assert alternatives(a, a.nodes[1]) is None
        assert advise(a).convs == []


# -- detection ------------------------------------------------------------------------------
def test_seed_tour_variants():
    a = rfgraph.analyze(seed_tour(), (1, 3, "H", "W"))
    labels = {k: v.label for k, v in variants(a).items()}
    assert labels == {
        "spatial_sep_0": "spatially separable (1×3)",
        "spatial_sep_1": "spatially separable (3×1)",
        "depthwise_sep_0": "depthwise-separable (depthwise)",
        "depthwise_sep_1": "depthwise-separable (pointwise)",
        "flattened_0": "flattened (channel)",
        "flattened_1": "flattened (vertical 3×1)",
        "flattened_2": "flattened (horizontal 1×3)",
        "grouped": "shuffled grouped (g=4)",
        "shuffle": "shuffled grouped (shuffle, g=4)",
    }
    v = variants(a)
    assert v["spatial_sep_0"].direct and v["spatial_sep_0"].group == ["spatial_sep_0",
                                                                      "spatial_sep_1"]
    assert not v["grouped"].direct  # BatchNorm + ReLU between the conv and the shuffle
    assert variants(a) is v  # cached on the analysis


def test_zoo_mobilenet_v2_blocks():
    a = rfgraph.analyze(ZOO["mobilenet_v2"](), (1, 3, "H", "W"))
    v = variants(a)
    pairs = {tuple(x.group) for x in v.values() if x.kind == DEPTHWISE}
    assert len(pairs) == 17  # one per inverted residual block
    for dw, pw in pairs:
        mdw, mpw = (a.graph_module.get_submodule(a[n].module) for n in (dw, pw))
        assert mdw.groups == mdw.in_channels > 1 and mpw.kernel_size == (1, 1)
        assert a[dw].module.rsplit(".", 2)[0] == a[pw].module.rsplit(".", 1)[0]  # same block
    assert {x.kind for x in v.values()} == {DEPTHWISE}
    assert [c.node for c in advise(a).convs] == ["features_0_0"]  # the stem only


@pytest.mark.parametrize("name", ["shufflenet_v2_x1_0", "shufflenet_view_small"])
def test_zoo_shufflenet_blocks(name):
    make = ZOO.get(name) or GRAPH_ZOO[name]
    model = make()
    a = rfgraph.analyze(model, (1, 3, "H", "W"))
    v = variants(a)
    n_blocks = sum(1 for _, m in model.named_modules() if type(m).__name__ == "InvertedResidual")
    n_downsample = sum(1 for _, m in model.named_modules()
                       if type(m).__name__ == "InvertedResidual" and m.stride > 1)
    pairs = {tuple(x.group) for x in v.values() if x.kind == DEPTHWISE}
    assert len(pairs) == n_blocks + n_downsample  # branch2 of every unit, branch1 of strided
    shuffles = {tuple(x.group) for x in v.values() if x.kind == SHUFFLE}
    assert len(shuffles) == n_blocks  # one channel shuffle per unit
    if name == "shufflenet_view_small":  # the view → transpose → contiguous → view idiom
        assert all(len(g) == 4 for g in shuffles)
        assert all(v[g[0]].role == "g=2" for g in shuffles)


def test_zoo_resnet50_not_mislabelled():
    a = rfgraph.analyze(ZOO["resnet50"](), (1, 3, "H", "W"))
    assert variants(a) == {}
    d = a.to_dict()
    assert not any("variant" in n for n in d["nodes"])
    convs = advise(a).convs
    assert len(convs) == 17  # the stem 7×7 and the 16 bottleneck 3×3 convs (1×1s are not)


class _ShuffleV1Unit(nn.Module):
    """ShuffleNet (v1): grouped 1×1, BN, ReLU, shuffle, depthwise 3×3, BN, grouped 1×1."""

    def __init__(self, how: str, c: int = 24, g: int = 3) -> None:
        super().__init__()
        self.how, self.g = how, g
        self.gconv1 = nn.Conv2d(c, c, 1, groups=g, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.shuffle = nn.ChannelShuffle(g)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.gconv2 = nn.Conv2d(c, c, 1, groups=g, bias=False)

    def forward(self, x):
        y = F.relu(self.bn1(self.gconv1(x)))
        if self.how == "module":
            y = self.shuffle(y)
        elif self.how == "function":
            y = F.channel_shuffle(y, self.g)
        else:
            n, c, h, w = y.shape
            y = y.view(n, self.g, c // self.g, h, w).transpose(1, 2).reshape(n, c, h, w)
        return x + self.gconv2(self.bn2(self.dw(y)))


@pytest.mark.parametrize("how", ["module", "function", "idiom"])
def test_grouped_conv_then_shuffle(how):
    a = rfgraph.analyze(_ShuffleV1Unit(how), (1, 24, "H", "W"))
    v = variants(a)
    assert v["gconv1"].kind == SHUFFLED and v["gconv1"].role == "g=3"
    shuffle_nodes = v["gconv1"].group[1:]
    assert shuffle_nodes and all(v[n].kind == SHUFFLED for n in shuffle_nodes)
    assert not v["gconv1"].direct  # BN and ReLU between
    assert v["dw"].label == "grouped (depthwise, g=24)"  # its next conv is grouped, not 1×1
    assert v["gconv2"].label == "grouped (g=3)"


def test_pair_through_branching_is_not_a_variant():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.pw = nn.Conv2d(8, 8, 1)

        def forward(self, x):
            y = self.dw(x)
            return self.pw(y) + y  # dw's output is read twice: not a plain pair

    a = rfgraph.analyze(Net(), (1, 8, "H", "W"))
    assert variants(a)["dw"].kind == GROUPED and "pw" not in variants(a)


# -- JSON, table, drawing, CLI --------------------------------------------------------------
def test_json_table_and_drawing_labels():
    a = rfgraph.analyze(seed_tour(), (1, 3, "H", "W"), at="H=64,W=64")
    nodes = {n["name"]: n for n in a.to_dict()["nodes"]}
    assert nodes["depthwise_sep_0"]["variant"] == "depthwise-separable (depthwise)"
    assert "variant" not in nodes["stem_0"]
    table = str(a)
    assert "variant" in table.splitlines()[2]
    assert "flattened (vertical 3×1)" in table
    assert "shuffled grouped (shuffle, g=4)" in a.to_dot()


def _cli(argv, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli_advise.add_parser(sub)
    status = cli_advise.run(parser.parse_args(["advise", *argv]))
    return status, capsys.readouterr().out


def test_cli_text_and_json(capsys):
    status, out = _cli(["--at", "H=224,W=224"], capsys)
    assert status == 0
    assert "depthwise-separable: depthwise_sep_0 (depthwise), depthwise_sep_1 (pointwise)" in out
    assert "stem_0 (stem.0) Conv2d(3→16, 3×3): params 432, MACs 21,676,032" in out
    status, out = _cli(["--json"], capsys)
    d = json.loads(out)
    assert d["at"] is None and len(d["variants"]) == 9
    strided = next(c for c in d["convs"] if c["node"] == "strided")
    ds = next(x for x in strided["alternatives"] if x["name"] == DEPTHWISE)
    assert ds["params"] == 4672 and ds["params_ratio"] == "73/576"
    assert ds["params_ratio_formula"] == "1/C_out + 1/(k_h*k_w)" or \
        sympy.simplify(sympy.sympify(ds["params_ratio_formula"]) -
                       sympy.sympify("1/C_out + 1/(k_h*k_w)")) == 0
    assert ds["field"] == "same field"
    status, out = _cli(["examples.zoo:mobilenet_v2", "--table"], capsys)
    assert "depthwise-separable (pointwise)" in out and out.count("depthwise-separable:") == 17
