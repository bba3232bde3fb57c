"""rfgraph.solve and ``rfgraph solve``: every answer checked against torch or a closed form.

Oracles: torch runs the model (it runs at the smallest valid size and raises one below), forward
pre-hooks record the real input size of every conv/pooling module (a window tiles its padded
input when (n + 2p - k_eff) % s == 0, from the module's own attributes), the real output shape
of a node, and the gradient probe (rfgraph.probe) for the input box an output element sees.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

import rfgraph
from rfgraph import cli, cli_solve
from rfgraph.cli_solve import format_answer
from rfgraph.erf import _cut
from rfgraph.models import seed_tour
from rfgraph.probe import probe_rf
from rfgraph.solve import (
    min_input,
    no_drop,
    parse_sizes,
    reach,
    region,
    sizes_for_output,
)

# -- oracles ----------------------------------------------------------------------------------

_WINDOWS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
            nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def _tup(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def remainders(model: nn.Module, shape) -> dict[str, tuple[int, ...]]:
    """Per conv/pooling module: (n + 2p - k_eff) % s per spatial axis at the real input size n
    torch sees (0 everywhere: the windows tile the padded input, no pixel dropped)."""
    out: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if not isinstance(mod, _WINDOWS):
            continue

        def hook(m, args, name=name):
            x = args[0]
            nd = x.dim() - 2
            k = _tup(m.kernel_size, nd)
            s = _tup(m.stride if m.stride is not None else m.kernel_size, nd)
            p = _tup(m.padding, nd)
            d = _tup(getattr(m, "dilation", 1), nd)
            out[name] = tuple((int(x.shape[2 + i]) + 2 * p[i] - d[i] * (k[i] - 1) - 1) % s[i]
                              for i in range(nd))
        hooks.append(mod.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(shape))
    finally:
        for h in hooks:
            h.remove()
    return out


def drops_nothing(model: nn.Module, shape) -> bool:
    return all(all(r == 0 for r in v) for v in remainders(model, shape).values())


def runs(model: nn.Module, shape) -> bool:
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(shape))
    except RuntimeError:
        return False
    return True


def module_output_shape(model: nn.Module, module: str, shape) -> tuple[int, ...]:
    got = {}

    def hook(m, args, out) -> None:  # returns None: the output is kept
        got["shape"] = tuple(out.shape)

    h = model.get_submodule(module).register_forward_hook(hook)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(shape))
    finally:
        h.remove()
    return got["shape"]


# -- hand-built models with closed forms --------------------------------------------------------

def two_strided() -> nn.Module:
    # two stride-2 convs k=3 p=1: n1 = floor((H - 1)/2) + 1, n2 = floor((n1 - 1)/2) + 1
    # = floor((H - 1)/4) + 1 (>= 1 for every H >= 1); drop no pixel: H - 1 and n1 - 1 even,
    # i.e. H = 4t + 1
    return nn.Sequential(nn.Conv2d(1, 2, 3, 2, 1), nn.Conv2d(2, 2, 3, 2, 1))


def unpadded() -> nn.Module:
    # conv k=3 (n1 = H - 2), maxpool 2 (n2 = floor((H - 2)/2)), conv k=3 (n3 = n2 - 2):
    # n3 >= 1 <=> n2 >= 3 <=> H >= 8; no pixel dropped <=> H - 2 even <=> H = 2t, t >= 4
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 1, 3))


def ceil_pool() -> nn.Module:
    # maxpool k=3 s=2 ceil_mode (n1 = ceil((H - 3)/2) + 1, H >= 3), then maxpool k=2 s=2
    # (n2 = floor(n1/2), n1 >= 2 <=> H >= 4); full windows: H odd (then n1 = (H - 1)/2) and
    # n1 even <=> H = 4t + 1 (t >= 1 since H >= 4)
    return nn.Sequential(nn.MaxPool2d(3, 2, ceil_mode=True), nn.MaxPool2d(2))


class Functional(nn.Module):
    # F.conv2d k=3 s=2 p=1 then F.max_pool2d k=2 (stride = kernel): n1 = floor((H - 1)/2) + 1,
    # n2 = floor(n1/2); no drop <=> H odd and n1 even <=> H = 4t + 3
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1, 1, 3, 3))

    def forward(self, x):
        y = torch.nn.functional.conv2d(x, self.w, None, 2, 1)
        return torch.nn.functional.max_pool2d(y, 2)


def test_no_drop_functional_ops():
    h = no_drop(rfgraph.analyze(Functional(), (1, 1, "H", "W"))).axes[0]
    assert (h.period, h.residues, h.first[:3]) == (4, [3], [3, 7, 11])
    # the same geometry as modules, checked with torch's hooks
    model = nn.Sequential(nn.Conv2d(1, 1, 3, 2, 1), nn.MaxPool2d(2))
    assert h.min_valid == 3  # n2 = floor((floor((H - 1)/2) + 1)/2) >= 1 <=> H >= 3
    for n in range(3, 20):
        assert h.contains(n) == drops_nothing(model, (1, 1, n, 3)), n


@pytest.fixture(scope="module")
def resnet():
    from examples.zoo import resnet50

    model = resnet50().eval()
    return model, rfgraph.analyze(model, (1, 3, "H", "W"))


@pytest.fixture(scope="module")
def tour():
    return seed_tour().eval()


@pytest.fixture(scope="module")
def tour_analysis(tour):
    return rfgraph.analyze(tour, (1, 3, "H", "W"))


# -- smallest valid input ---------------------------------------------------------------------

def test_min_closed_forms():
    a = rfgraph.analyze(unpadded(), (1, 1, "H", "W"))
    m = min_input(a)
    assert m.sizes() == {"H": 8, "W": 8}
    assert m.axes[0].limited_by == "_2" and m.axes[0].limit_what == "output h"
    assert min_input(rfgraph.analyze(two_strided(), (1, 1, "H", "W"))).sizes() == {"H": 1, "W": 1}
    assert min_input(rfgraph.analyze(ceil_pool(), (1, 1, "H", "W"))).sizes() == {"H": 4, "W": 4}


@pytest.mark.parametrize("factory", [unpadded, ceil_pool, seed_tour])
def test_min_runs_at_n_and_raises_below(factory):
    model = factory().eval()
    a = rfgraph.analyze(model, (1, 3 if factory is seed_tour else 1, "H", "W"))
    m = min_input(a).sizes()
    c = 3 if factory is seed_tour else 1
    assert runs(model, (1, c, m["H"], m["W"]))
    assert not runs(model, (1, c, m["H"] - 1, m["W"]))
    assert not runs(model, (1, c, m["H"], m["W"] - 1))


def test_min_seed_tour(tour_analysis):
    m = min_input(tour_analysis)
    assert m.sizes() == {"H": 2, "W": 2}
    assert m.axes[0].limited_by == "pool_idx"
    assert "H >= 2" in format_answer(m)


def test_min_one_axis_given():
    model = unpadded().eval()
    m = min_input(rfgraph.analyze(model, (1, 1, "H", 20)))
    assert m.sizes() == {"H": 8} and m.axes[1].fixed == 20
    assert runs(model, (1, 1, 8, 20)) and not runs(model, (1, 1, 7, 20))


def test_min_zoo_resnet50(resnet):
    model, a = resnet
    m = min_input(a).sizes()
    assert m == {"H": 1, "W": 1}  # every padded stride-2 layer keeps >= 1 element
    assert runs(model, (1, 3, 1, 1))


# -- sizes that drop no pixel -----------------------------------------------------------------

@pytest.mark.parametrize("factory, period, residues, first", [
    (two_strided, 4, [1], [1, 5, 9, 13]),
    (unpadded, 2, [0], [8, 10, 12, 14]),
    (ceil_pool, 4, [1], [5, 9, 13, 17]),
])
def test_no_drop_closed_forms(factory, period, residues, first):
    model = factory().eval()
    a = rfgraph.analyze(model, (1, 1, "H", "W"))
    nd = no_drop(a, count=4)
    h = nd.axes[0]
    assert (h.period, h.residues, h.first) == (period, residues, first)
    assert nd.unchecked == [] and nd.mixed == []
    lo = min_input(a).sizes()["H"]
    for n in range(lo, lo + 3 * period):  # the set is exactly the sizes torch tiles exactly
        assert h.contains(n) == drops_nothing(model, (1, 1, n, first[0])), n


def test_no_drop_seed_tour(tour, tour_analysis):
    nd = no_drop(tour_analysis)
    h = nd.axes[0]
    assert h.congruence() == "H = 8·t + 3 (t >= 0)"
    assert h.first == [3, 11, 19, 27, 35, 43]
    for n in range(2, 44):
        assert h.contains(n) == drops_nothing(tour, (1, 3, n, 3)), n
    # ... and the strided windows found are exactly torch's strided windows
    assert sorted(w.split(":")[0] for w in h.windows) == [
        "avgpool", "pool_ceil", "pool_idx", "strided"]


def test_no_drop_resnet50(resnet):
    model, a = resnet
    h = no_drop(a, count=3).axes[0]
    assert (h.period, h.residues) == (32, [1])  # H = 32t + 1
    assert h.first == [1, 33, 65]
    for n in (33, 65):
        assert drops_nothing(model, (1, 3, n, 33))
    for n in (32, 34, 49, 64):
        assert not drops_nothing(model, (1, 3, n, 33))


def test_no_drop_never():
    model = nn.Sequential(nn.MaxPool2d(2, 2), nn.MaxPool2d(3, 2, padding=1))
    # n1 = floor(H/2) (H even), second: (n1 + 2 - 3) % 2 = 0 <=> n1 odd: H = 4t + 2
    h = no_drop(rfgraph.analyze(model, (1, 1, "H", "W"))).axes[0]
    assert (h.period, h.residues) == (4, [2])
    model = nn.Sequential(nn.MaxPool2d(2, 2), nn.Upsample(scale_factor=2), nn.MaxPool2d(3, 2))
    # n1 = 2 floor(H/2) is even, (n1 - 3) % 2 = 0 never: no size
    nd = no_drop(rfgraph.analyze(model, (1, 1, "H", "W")))
    h = nd.axes[0]
    assert h.residues == [] and h.always_drops == ["_2"]
    assert "none" in format_answer(nd)


# -- input sizes for a wanted output size -------------------------------------------------------

def test_output_closed_form():
    # two_strided: floor((H - 1)/4) + 1 = 7 <=> 25 <= H <= 28
    a = rfgraph.analyze(two_strided(), (1, 1, "H", "W"))
    ans = sizes_for_output(a, [7, 3])
    assert (ans.axes[0].lo, ans.axes[0].hi) == (25, 28)
    assert (ans.axes[1].lo, ans.axes[1].hi) == (9, 12)
    model = two_strided().eval()
    for n in range(20, 34):
        got = module_output_shape(model, "1", (1, 1, n, 9))[2]
        assert (got == 7) == (25 <= n <= 28)


def test_output_seed_tour_against_torch(tour, tour_analysis):
    ans = sizes_for_output(tour_analysis, [14, 14])
    assert ans.node == "up_act_1"
    h = ans.axes[0]
    assert (h.lo, h.hi) == (50, 57)
    for n in range(44, 64):
        got = module_output_shape(tour, "up_act.1", (1, 3, n, 3))[2]
        assert (got == 14) == (h.lo <= n <= h.hi), n
    with pytest.raises(rfgraph.RfgraphError, match="no size of H gives 7 at node 'up_act_1'"):
        sizes_for_output(tour_analysis, [7, 7])  # the transposed conv doubles: always even


def test_output_other_node_and_valid_cut():
    a = rfgraph.analyze(unpadded(), (1, 1, "H", "W"))
    # node _1 (pool): floor((H - 2)/2) = 1 for H in 4..5, but the model needs H >= 8
    with pytest.raises(rfgraph.RfgraphError, match="needs H >= 8"):
        sizes_for_output(a, [1, 3], node="_1")
    ans = sizes_for_output(a, [3, 4], node="_1")
    assert (ans.axes[0].lo, ans.axes[0].hi) == (8, 9)
    assert (ans.axes[1].lo, ans.axes[1].hi) == (10, 11)
    model = unpadded().eval()
    for n in range(8, 14):  # below 8 torch raises (test_min_runs_at_n_and_raises_below)
        assert (module_output_shape(model, "1", (1, 1, n, 10))[2] == 3) == (n in (8, 9))


def test_output_errors(tour_analysis):
    with pytest.raises(rfgraph.RfgraphError, match="did you mean strided"):
        sizes_for_output(tour_analysis, [7, 7], node="stridd")
    with pytest.raises(rfgraph.RfgraphError, match="no H axis"):
        sizes_for_output(tour_analysis, [1, 1], node="head_2")
    with pytest.raises(rfgraph.RfgraphError, match="needs 2 sizes"):
        sizes_for_output(tour_analysis, [7])
    # a global field: head_0 is 1x1 at every size
    ans = sizes_for_output(tour_analysis, [1, 1], node="head_0")
    assert ans.axes[0].lo == 2 and ans.axes[0].hi is None
    assert parse_sizes("7x5") == [7, 5] and parse_sizes("7") == [7]
    with pytest.raises(rfgraph.RfgraphError, match="bad --output"):
        parse_sizes("7xa")


# -- region -------------------------------------------------------------------------------------

def _probe(model_or_gm, shape, position):
    return probe_rf(model_or_gm, shape, position)


def test_region_positive_conv_stack_is_the_gradient_box():
    # conv-only, positive weights, no ReLU: the nonzero gradient box is the field, clipped
    model = nn.Sequential(nn.Conv2d(1, 1, 3, 2, 1), nn.Conv2d(1, 1, 5, 1, 2),
                          nn.Conv2d(1, 1, 3, 2, 0)).double().eval()
    for p in model.parameters():
        nn.init.constant_(p, 0.5)
    a = rfgraph.analyze(model, (1, 1, "H", "W")).evaluate(H=37, W=30)
    n_out = module_output_shape(model.float(), "2", (1, 1, 37, 30))[2:]
    model.double()
    for y, x in [(0, 0), (3, 2), (n_out[0] - 1, n_out[1] - 1)]:
        r = region(a, "_2", [y, x])
        xin = torch.zeros(1, 1, 37, 30, dtype=torch.float64, requires_grad=True)
        out = model(xin)
        out[0, 0, y, x].backward()
        nz = torch.nonzero(xin.grad[0, 0])
        box = [(int(nz[:, i].min()), int(nz[:, i].max())) for i in range(2)]
        assert [ax.clipped for ax in r.axes] == box
        # unclipped: size 3 + 4·2 + 2·2 = 15, jump 4, offset -1 - 2·2 = -5
        assert r.axes[0].start == 4 * y - 5 and r.axes[0].size == 15


def test_region_seed_tour_gradient_probe(tour, tour_analysis):
    b = tour_analysis.evaluate(H=45, W=38)
    gm = tour_analysis.graph_module
    for node, positions in [("strided", [(0, 0), (2, 3), (5, 4)]),
                            ("flattened_2", [(0, 9), (6, 4), (10, 9)]),
                            ("up", [(0, 0), (3, 5), (11, 9)])]:
        cut = _cut(gm, node)
        for pos in positions:
            r = region(b, node, list(pos))
            assert [ax.clipped for ax in r.axes] == _probe(cut, (1, 3, 45, 38), pos), (node, pos)


def test_region_values_and_errors(tour_analysis):
    b = tour_analysis.evaluate(H=64, W=64)
    r = region(b, "strided", [3, 4])
    h, w = r.axes
    # strided: field 59, jump 8, offset -28: start = -28 + 8y
    assert (h.start, h.end, h.clipped, h.centre) == (-4, 54, (0, 54), 25)
    assert (w.start, w.end, w.clipped, w.centre) == (4, 62, (4, 62), 33)
    d = r.to_dict()
    assert d["axes"][0]["clipped"] == [0, 54] and d["axes"][0]["centre"] == 25
    g = region(b, "head_2", [])  # no spatial dims: the global field
    assert g.axes[0].position is None and g.axes[0].clipped == (0, 63)
    with pytest.raises(rfgraph.RfgraphError, match="out of range.*0..7"):
        region(b, "strided", [3, 8])
    with pytest.raises(rfgraph.RfgraphError, match="give 2 coordinates"):
        region(b, "strided", [3])
    with pytest.raises(rfgraph.RfgraphError, match="did you mean"):
        region(b, "strided_", [0, 0])
    with pytest.raises(rfgraph.RfgraphError, match="needs concrete sizes"):
        region(tour_analysis, "strided", [0, 0])


# -- reach ----------------------------------------------------------------------------------------

def test_reach_seed_tour(tour_analysis):
    r = reach(tour_analysis, 40)
    # flattened_1 is the (3, 1) conv: 43 rows x 35 columns; flattened_2 makes it 43x43
    assert r.first == {"H": "flattened_1", "W": "flattened_2"}
    r = reach(tour_analysis, 100)
    # only the global field after pooling grows: 8*floor((H + 6)/8) + 67 >= 100 <=> H >= 34
    assert r.first == {"H": None, "W": None}
    assert r.conditional["H"] == [("head_0", 34)]
    assert reach(tour_analysis.evaluate(H=34, W=26), 100).first == {"H": "head_0", "W": None}


def test_reach_covers_whole_input():
    # 3x3 convs on a 9-pixel input: after 4 convs (field 9, offset -4) only the centre sees
    # everything; after 8 convs (field 17) every element does; convs 9 and 10 cannot see more
    model = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(10)])
    a = rfgraph.analyze(model, (1, 1, "H", "W")).evaluate(H=9, W=9)
    r = reach(a, 9)
    assert r.first == {"H": "_3", "W": "_3"}
    assert r.covers_all == "_7" and r.covers == {"H": "_7", "W": "_7"}
    assert r.cannot_see_more == ["_8", "_9"]
    # the gradient probe agrees: at _6 a corner element misses the far pixel, at _7 it does not
    gm = a.graph_module
    assert probe_rf(_cut(gm, "_6"), (1, 1, 9, 9), (0, 0)) == [(0, 7), (0, 7)]
    assert probe_rf(_cut(gm, "_7"), (1, 1, 9, 9), (0, 0)) == [(0, 8), (0, 8)]
    assert "cannot see more" in format_answer(r)


# -- the command --------------------------------------------------------------------------------

def _main(capsys, *argv):
    """``rfgraph *argv`` through cli.main once solve is wired in, else the same plumbing."""
    parser = cli._build_parser()
    sub = parser._subparsers._group_actions[0]
    if "solve" in sub.choices:
        code = cli.main(list(argv))
    else:
        cli_solve.add_parser(sub)
        try:
            code = cli_solve.run(parser.parse_args(list(argv)))
        except rfgraph.RfgraphError as exc:
            print(f"rfgraph: error: {cli.one_line(str(exc))}", file=sys.stderr)
            code = 2
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_default(capsys):
    code, out, err = _main(capsys, "solve")
    assert code == 0, err
    assert "H >= 2: at H = 1 node 'pool_idx' would give output h = 0" in out
    assert "H = 8·t + 3 (t >= 0)" in out and "first: 3, 11, 19, 27, 35, 43" in out


def test_cli_json(capsys):
    code, out, _ = _main(capsys, "solve", "--min", "--no-drop", "--output", "14x14",
                         "--region", "strided", "3,4", "--reach", "40", "--at", "H=64,W=64",
                         "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["min_input"]["axes"][0]["min"] == 2
    assert doc["no_drop"]["axes"][0]["congruence"] == "H = 8·t + 3 (t >= 0)"
    assert doc["output"]["axes"][0]["min"] == 50 and doc["output"]["axes"][0]["max"] == 57
    assert doc["region"]["axes"][0]["clipped"] == [0, 54]
    assert doc["reach"]["first"] == {"H": "flattened_1", "W": "flattened_2"}
    assert doc["reach"]["covers_all"] == "head_0"


def test_cli_errors_are_one_line(capsys):
    for argv, text in [(("--output", "7x7"), "no size of H gives 7"),
                       (("--region", "strided", "3,4"), "needs concrete sizes"),
                       (("--region", "strided", "3,9", "--at", "H=64,W=64"), "out of range"),
                       (("--output", "7x7", "--node", "up_ac"), "did you mean"),
                       (("--node", "up"), "--node goes with --output")]:
        code, out, err = _main(capsys, "solve", *argv)
        assert code == 2 and err.count("\n") == 1 and text in err, (argv, err)


def test_cli_zoo_model(capsys):
    code, out, err = _main(capsys, "solve", "examples.zoo:vgg16", "--no-drop", "--count", "3")
    assert code == 0, err
    # five 2x2 max pools: H = 32t
    assert "H = 32·t (t >= 1)" in out and "first: 32, 64, 96" in out
