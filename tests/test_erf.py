"""The effective receptive field: exact maps on linear nets, the theoretical box, the statistics."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch
from torch import nn

import rfgraph
from rfgraph.erf import ERF, default_node, effective_receptive_field, plot_erf
from rfgraph.models import seed_tour

# matplotlib is the optional [plot] extra, not in [dev]: without it test_plot is skipped (an
# environment skip) and the tests below check the error path instead.
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _ones_stack(n: int, k: int = 3, channels: int = 1) -> nn.Module:
    convs = [nn.Conv2d(channels, channels, k, padding=k // 2, bias=False) for _ in range(n)]
    for c in convs:
        nn.init.ones_(c.weight)
    return nn.Sequential(*convs)


def _poly_power(n: int, k: int) -> list[int]:
    """Coefficients of (1 + x + ... + x^(k-1))^n: the n-fold box filter, by repeated product."""
    coeffs = [1]
    for _ in range(n):
        out = [0] * (len(coeffs) + k - 1)
        for i, c in enumerate(coeffs):
            for j in range(k):
                out[i + j] += c
        coeffs = out
    return coeffs


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small float64 maps: one thread is fastest, and immune to a loaded machine (intra-op
    threads spinning against other processes made these tests 100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def seed_96():
    return rfgraph.analyze(seed_tour(), (1, 3, "H", "W"), at="H=96,W=96")


def test_linear_stack_is_the_box_filter_power():
    """All-ones 3×3 convs: |grad| is the outer product of (1+x+x²)^n, exactly."""
    n, size = 4, 21
    a = rfgraph.analyze(_ones_stack(n), (1, 1, "H", "W"), at=f"H={size},W={size}")
    e = effective_receptive_field(a, "_3")
    assert e.centre == (10, 10)
    assert e.field == ((6, 14), (6, 14))
    c = torch.tensor(_poly_power(n, 3), dtype=torch.float64)
    expected = torch.zeros(size, size, dtype=torch.float64)
    expected[6:15, 6:15] = torch.outer(c, c)
    assert torch.equal(e.map, expected)
    assert e.inside == 1.0


@pytest.mark.parametrize("mass", [0.5, 0.9, 0.95, 0.99])
def test_box_for_mass_matches_brute_force(mass):
    """The map is separable, so the 2-D box holding ``mass`` has the side where the 1-D mass
    squared reaches it; checked against a brute force over sides."""
    n, size = 6, 31
    a = rfgraph.analyze(_ones_stack(n), (1, 1, "H", "W"), at=f"H={size},W={size}")
    e = effective_receptive_field(a, "_5")
    coeffs = _poly_power(n, 3)
    total = sum(coeffs)
    r = len(coeffs)
    expected = next(side for side in range(1, r + 2, 2)
                    if (sum(coeffs[(r - side) // 2:(r - side) // 2 + side]) / total) ** 2
                    >= mass * (1 - 1e-12))
    box = e.box_for(mass)
    assert box is not None
    assert [hi - lo + 1 for lo, hi in box] == [expected, expected]
    assert box == e.centred_box(expected) and expected < r


def test_summary_numbers():
    a = rfgraph.analyze(_ones_stack(4), (1, 1, "H", "W"), at="H=21,W=21")
    text = effective_receptive_field(a, "_3").summary(0.95)
    # (1+x+x²)^4 = 1 4 10 16 19 16 10 4 1 (81): the central 7 hold 79/81, squared 95.1%
    assert "theoretical field: 9×9 input pixels (6..14, 6..14, unclipped)" in text
    assert "inside the theoretical field: 100.00%" in text
    assert "95% of the ERF mass lies in the central 7×7 box: 78%, 78% of the field's sides, " \
           f"{100 * 49 / 81:.1f}% of its area" in text


def test_mass_never_leaves_the_theoretical_field(seed_96):
    """Real weights and ReLUs, strides, dilation, transposed conv: gradient only inside the box,
    and the box is rfgraph's field of the centre element."""
    for node in ("dilated", "flattened_3", "grouped", "cat", "up_act_1"):
        e = effective_receptive_field(seed_96, node)
        assert e.inside == pytest.approx(1.0, abs=1e-12)
        nz = e.map.nonzero()
        for axis, (lo, hi) in enumerate(e.field or ()):
            assert lo <= int(nz[:, axis].min()) and int(nz[:, axis].max()) <= hi
        fields = seed_96.field(node)
        assert fields is not None
        dims = [seed_96[node].tensor.dim_of_axis(ax) for ax in range(2)]
        assert all(d is not None for d in dims)
        for rf, y, (lo, hi) in zip(fields, e.centre, e.field or (), strict=True):
            assert (lo, hi) == (int(rf.start_at(y)), int(rf.end_at(y)))


def test_inits_sum_and_determinism(seed_96):
    one = effective_receptive_field(seed_96, "grouped", inits=1, seed=3).map
    two = effective_receptive_field(seed_96, "grouped", inits=2, seed=3).map
    nxt = effective_receptive_field(seed_96, "grouped", inits=1, seed=4).map
    # init i uses weights seeded seed + i, inputs drawn in order from one generator seeded seed
    assert torch.equal(one, effective_receptive_field(seed_96, "grouped", inits=1, seed=3).map)
    assert not torch.equal(one, nxt)
    assert two.sum() > one.sum()
    samples = effective_receptive_field(seed_96, "grouped", samples=3)
    assert samples.samples == 3 and samples.inside == pytest.approx(1.0, abs=1e-12)


def test_model_left_untouched(seed_96):
    gm = seed_96.graph_module
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    effective_receptive_field(seed_96, "grouped", inits=2)
    after = gm.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(v.dtype != torch.float64 for v in after.values())


def test_global_node_and_position(seed_96):
    e = effective_receptive_field(seed_96, "head_2")
    assert e.centre == ()  # a linear output has no spatial dims: every output element
    assert e.field is not None and e.field[0][0] < 0  # unclipped: reaches into the padding
    assert e.inside == pytest.approx(1.0, abs=1e-12)
    corner = effective_receptive_field(seed_96, "grouped", position=(0, 0))
    assert corner.centre == (0, 0) and corner.field is not None and corner.field[0][0] < 0
    assert default_node(seed_96) == "head_0"


def test_errors(seed_96):
    with pytest.raises(rfgraph.RfgraphError, match="did you mean grouped"):
        effective_receptive_field(seed_96, "groupd")
    symbolic = rfgraph.analyze(seed_tour(), (1, 3, "H", "W"))
    with pytest.raises(rfgraph.RfgraphError, match="concrete sizes"):
        effective_receptive_field(symbolic, "grouped")
    with pytest.raises(rfgraph.RfgraphError, match="outside"):
        effective_receptive_field(seed_96, "grouped", position=(99, 0))
    e = effective_receptive_field(seed_96, "grouped")
    with pytest.raises(rfgraph.RfgraphError, match="mass"):
        e.box_for(1.5)


def test_one_and_three_dimensional():
    m1 = nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.ReLU(), nn.Conv1d(4, 4, 3, stride=2))
    a1 = rfgraph.analyze(m1, (1, 2, "L"), at="L=40")
    e1 = effective_receptive_field(a1)
    assert e1.map.shape == (40,) and e1.field is not None and len(e1.field) == 1
    assert e1.inside == pytest.approx(1.0, abs=1e-12)
    m3 = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.MaxPool3d(2), nn.Conv3d(2, 2, 3))
    a3 = rfgraph.analyze(m3, (1, 1, "D", "H", "W"), at="D=12,H=12,W=12")
    e3 = effective_receptive_field(a3)
    assert e3.map.shape == (12, 12, 12) and e3.inside == pytest.approx(1.0, abs=1e-12)
    assert math.prod(e3.field_sizes or ()) == 8 ** 3  # 3, pool 4, then 4 + 2·2


def test_plot_without_matplotlib(seed_96, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    e = effective_receptive_field(seed_96, "grouped")
    with pytest.raises(rfgraph.RfgraphError, match="needs matplotlib"):
        plot_erf(e, tmp_path / "erf.png")
    assert not (tmp_path / "erf.png").exists()


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib (the [plot] extra) is not installed")
def test_plot(seed_96, tmp_path):
    e = effective_receptive_field(seed_96, "grouped")
    out = plot_erf(e, tmp_path / "erf.png")
    assert out.read_bytes().startswith(b"\x89PNG")
    plot_erf(effective_receptive_field(seed_96, "head_2"), tmp_path / "g.svg")
    m1 = nn.Sequential(nn.Conv1d(1, 1, 5, padding=2))
    a1 = rfgraph.analyze(m1, (1, 1, "L"), at="L=30")
    plot_erf(effective_receptive_field(a1), tmp_path / "l.png")
    assert isinstance(e, ERF)


# -- the integration points: Analysis.erf and `rfgraph erf` ---------------------------------------

def test_analysis_erf(seed_96):
    m = seed_96.erf("grouped", inits=1, seed=2)
    assert torch.equal(m, effective_receptive_field(seed_96, "grouped", inits=1, seed=2).map)


def test_cli_erf(tmp_path, capsys):
    from rfgraph.cli import main

    assert main(["erf", "--at", "H=64,W=64", "--node", "grouped", "-o",
                 str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "ERF mass inside the theoretical field: 100.00%" in out
    assert "95% of the ERF mass lies in the central" in out
    assert torch.load(tmp_path / "m.pt").shape == (64, 64)
    assert main(["erf", "--node", "grouped"]) == 2  # symbolic: needs --at
    assert "concrete sizes" in capsys.readouterr().err
    drew = main(["erf", "--at", "H=64,W=64", "-o", str(tmp_path / "e.png"), "--log"])
    if HAS_MATPLOTLIB:
        assert drew == 0 and (tmp_path / "e.png").read_bytes().startswith(b"\x89PNG")
    else:  # the optional extra is missing: a one-line user error naming it, no file
        assert drew == 2 and not (tmp_path / "e.png").exists()
        assert "needs matplotlib" in capsys.readouterr().err
