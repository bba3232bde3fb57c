"""The numbers docs/make_figures.py draws (docs/concepts.md), checked against independent oracles.

Two oracles that do not use rfgraph:

- a gradient probe: the same layers, fresh random float64 weights, a random float64 input; for
  output element y of a node, the input positions where ``d out[y] / d x`` is non-zero. For a
  live element that set must be rfgraph's interval ``[start, end]`` clipped to the input; a dead
  element (``end = start - 1``) reads nothing; an upper-bound field contains it;
- closed forms, with their arithmetic in the comments.

The dots of the figures (rfgraph's own ERF map, non-zero) must equal the probe too, and every
figure docs/concepts.md shows must exist and the tables it quotes must be what the script prints.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree

import pytest
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAS_DOT = shutil.which("dot") is not None


def _load_script():
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_figures"] = module
    spec.loader.exec_module(module)
    return module


mf = _load_script()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Every figure's numbers; drawn too (into a temporary directory) when matplotlib and
    Graphviz are there, so that the drawing code runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if HAS_MATPLOTLIB and HAS_DOT:
            out = tmp_path_factory.mktemp("figures")
            d = mf.main(out)
            d["_drawn"] = out
        else:  # pragma: no cover - CI has both
            d = mf.all_data()
    finally:
        torch.set_num_threads(threads)
    return d


# -- the gradient probe ---------------------------------------------------------------------------

def _fresh(model: nn.Module, seed: int = 1) -> nn.Module:
    """``model`` in float64 with new random weights (none of them zero), eval mode."""
    torch.manual_seed(seed)
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand_like(p) + 0.5)  # in [0.5, 1.5)
    return model


def _probe(fn: Callable[[torch.Tensor], torch.Tensor], length: int,
           seed: int = 2) -> list[list[int]]:
    """For every output element y of ``fn(x)`` (last dim; batch 0, all channels) the input
    positions with a non-zero gradient, for one random float64 input."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, length, dtype=torch.float64, generator=g, requires_grad=True)
    out = fn(x)
    sets = []
    for y in range(out.shape[-1]):
        (grad,) = torch.autograd.grad(out[0, :, y].sum(), x, retain_graph=True)
        sets.append([int(i) for i in torch.nonzero(grad[0, 0]).flatten()])
    return sets


def _clipped(iv: tuple[int, int], length: int) -> list[int]:
    return list(range(max(iv[0], 0), min(iv[1], length - 1) + 1))


def _check_exact(node: dict, truth: list[list[int]], length: int) -> None:
    """rfgraph's intervals, clipped, are exactly what the probe reads; dead elements read
    nothing; the figure's dots (rfgraph's ERF) are the probe's sets."""
    assert len(node["intervals"]) == len(truth) == node["n"], node["node"]
    for y, ((s, e), read) in enumerate(zip(node["intervals"], truth, strict=True)):
        if node["live"][y]:
            assert _clipped((s, e), length) == read, (node["node"], y, (s, e), read)
        else:
            assert e == s - 1 and read == [], (node["node"], y, (s, e), read)
    assert node["support"] == truth, node["node"]


# -- (a) field, jump, offset ----------------------------------------------------------------------

def test_field_jump_offset_against_probe_and_closed_form(data):
    f = data["field"]
    length = f["L"]  # 15
    m = _fresh(mf.stack_model())
    _check_exact(f["nodes"]["conv1"], _probe(m.conv1, length), length)
    _check_exact(f["nodes"]["conv2"], _probe(m, length), length)
    c1, c2 = f["nodes"]["conv1"], f["nodes"]["conv2"]
    # conv1 (k=3, s=2, p=1): r = 1 + (3-1)*1 = 3, j = 1*2 = 2, o = 0 - 1*1 = -1;
    # n = floor((15 + 2 - 3)/2) + 1 = 8, element y: [2y - 1, 2y + 1]
    assert (c1["size"], c1["jump"], c1["offset"], c1["n"]) == (3, 2, -1, 8)
    assert c1["intervals"] == [(2 * y - 1, 2 * y + 1) for y in range(8)]
    # conv2: r = 3 + (3-1)*2 = 7, j = 2*2 = 4, o = -1 - 1*2 = -3;
    # n = floor((8 + 2 - 3)/2) + 1 = 4, element y: [4y - 3, 4y + 3]
    assert (c2["size"], c2["jump"], c2["offset"], c2["n"]) == (7, 4, -3, 4)
    assert c2["intervals"] == [(4 * y - 3, 4 * y + 3) for y in range(4)]
    # the ERF with all-ones weights counts the paths x[i] -> conv1[u] -> conv2[1]: u in
    # 2*1-1 .. 2*1+1 = 1..3, and x[i] feeds conv1[u] when 2u-1 <= i <= 2u+1
    paths = [sum(1 for u in (1, 2, 3) if 2 * u - 1 <= i <= 2 * u + 1) for i in range(length)]
    assert paths == [0, 1, 1, 2, 1, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert f["erf"] == paths


# -- (b) alignment --------------------------------------------------------------------------------

def test_alignment_against_probe_and_closed_form(data):
    al = data["alignment"]
    length = al["L"]  # 8
    m = _fresh(mf.Misaligned())
    _check_exact(al["nodes"]["centred"], _probe(m.centred, length), length)
    _check_exact(al["nodes"]["shifted"], _probe(lambda x: m.shifted(m.shift(x)), length),
                 length)
    _check_exact(al["nodes"]["add"], _probe(m, length), length)
    a, b, add = (al["nodes"][k] for k in ("centred", "shifted", "add"))
    # centred (k=3, p=1): [y - 1, y + 1], centre y. shifted: pad 2 on the left, then k=3,
    # p=0: o = -2, [y - 2, y], centre y - 1. The centres differ by 1 at every y.
    assert a["intervals"] == [(y - 1, y + 1) for y in range(length)]
    assert b["intervals"] == [(y - 2, y) for y in range(length)]
    # the add is the union: [y - 2, y + 1], size 4
    assert add["intervals"] == [(y - 2, y + 1) for y in range(length)]
    assert add["size"] == 4 and not add["aligned"]
    assert add["reason"] == "field centres differ (element 0: [-1, 1], [-2, 0])"
    assert a["aligned"] and b["aligned"]


# -- (c) transposed convolutions ------------------------------------------------------------------

def _transposed_reads(y: int, k: int, s: int) -> list[int]:
    """Inputs of output y of a transposed conv (padding 0): i with s*i <= y <= s*i + k - 1,
    i.e. ceil((y - k + 1)/s) .. floor(y/s)."""
    return list(range(-((k - 1 - y) // s), y // s + 1))


def _transposed_fields(layers: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Closed-form fields (unclipped; ``end = start - 1`` for a dead element) of a chain of
    transposed convs ``(k, s)``, padding 0, on an input of ``length``: the union of the fields
    of the elements read. The input's elements outside 0..length-1 are virtual, field (i, i)."""
    fields: list[tuple[int, int] | None] = [(i, i) for i in range(length)]
    n = length
    for layer, (k, s) in enumerate(layers):
        n_out = (n - 1) * s + k  # (n - 1)*s - 2p + (k - 1) + 1 with p = 0
        new: list[tuple[int, int] | None] = []
        for y in range(n_out):
            reads = _transposed_reads(y, k, s)
            if layer:  # after the first layer every read is a real element, and live
                assert all(0 <= i < n and fields[i] is not None for i in reads)
            got = [fields[i] if 0 <= i < n else (i, i) for i in reads]
            live = [g for g in got if g is not None]
            new.append((min(g[0] for g in live), max(g[1] for g in live)) if live else None)
        fields, n = new, n_out
    out = []
    for y, f in enumerate(fields):
        if f is None:  # dead: its start is the next live element's (docs/conventions.md)
            nxt = next(g for g in fields[y:] if g is not None)
            out.append((nxt[0], nxt[0] - 1))
        else:
            out.append(f)
    return out


@pytest.mark.parametrize("name,layers", [("k3s2", [(3, 2)]), ("k3s2_k2s2", [(3, 2), (2, 2)]),
                                         ("k2s3", [(2, 3)])])
def test_transposed_against_probe_and_closed_form(data, name, layers):
    t = data["transposed"]
    length = t["L"]  # 4
    d = t["models"][name]
    m = _fresh(mf.transposed_models()[name])
    _check_exact(d, _probe(m, length), length)
    assert d["intervals"] == _transposed_fields(layers, length)
    jump = Fraction(1, math.prod(s for _, s in layers))
    assert d["jump"] == jump
    if name == "k3s2":
        # n = (4 - 1)*2 + 3 = 9; y reads ceil((y - 2)/2) .. floor(y/2): 2 inputs for even y,
        # 1 for odd y: period 2, sizes 2 1 2 1 ...; offset ceil(-2/2) = -1 (a virtual input)
        assert d["n"] == 9 and d["period"] == 2 and d["offset"] == -1
        assert [e - s + 1 for s, e in d["intervals"]] == [2, 1] * 4 + [2]
        assert (d["size_formula"], d["min_size_formula"]) == ("2", "1")
        assert d["length_formula"] == "2*L + 1"
    elif name == "k3s2_k2s2":
        # n = (9 - 1)*2 + 2 = 18; z reads up1 element ceil((z - 1)/2) .. floor(z/2) =
        # floor(z/2) alone, so the sizes are up1's doubled: 2 2 1 1 ..., period 2*2 = 4
        assert d["n"] == 18 and d["period"] == 4
        assert [e - s + 1 for s, e in d["intervals"]] == [2, 2, 1, 1] * 4 + [2, 2]
        assert d["length_formula"] == "4*L + 2"
    else:
        # n = (4 - 1)*3 + 2 = 11; y reads ceil((y - 1)/3) .. floor(y/3): empty when
        # y = 3m + 2 (ceil((3m + 1)/3) = m + 1 > m): elements 2, 5, 8 are dead
        assert d["n"] == 11 and d["period"] == 3
        assert [y for y, live in enumerate(d["live"]) if not live] == [2, 5, 8]
        assert (d["size"], d["min_size"]) == (1, 0)


# -- (d) global fields ----------------------------------------------------------------------------

def test_global_fields_against_probe_and_closed_form(data):
    g = data["global"]
    length = g["L"]  # 13
    m = _fresh(mf.SqueezeExcite())

    def mul(x: torch.Tensor) -> torch.Tensor:
        h = m.conv(x)
        return h * m.gate(m.excite(m.squeeze(h)))

    oracles = {"conv": m.conv, "bins": lambda x: m.bins(m.conv(x)),
               "squeeze": lambda x: m.squeeze(m.conv(x)), "mul": mul,
               "head": lambda x: m(x)[0]}
    for name, fn in oracles.items():
        _check_exact(g["nodes"][name], _probe(fn, length), length)
    nodes = g["nodes"]
    # conv (k=3, s=2, p=1): n = floor((13 + 2 - 3)/2) + 1 = 7, element y: [2y - 1, 2y + 1]
    assert nodes["conv"]["intervals"] == [(2 * y - 1, 2 * y + 1) for y in range(7)]
    # global: the union over the 7 elements, [-1, 2*6 + 1] = [-1, 13]: 15 = 2*ceil(13/2) + 1
    # pixels, one of padding at either end
    for name in ("squeeze", "mul", "head"):
        d = nodes[name]
        assert d["global"] and d["intervals"] == [(-1, 13)] * d["n"], name
        assert d["size"] == 15 == 2 * math.ceil(13 / 2) + 1
        assert d["size_formula"] == "2*ceiling(L/2) + 1"
        assert d["extent"] == ("-1", "2*ceiling(L/2) - 1")
    assert nodes["mul"]["n"] == 7 and nodes["mul"]["jump"] == 2
    assert nodes["squeeze"]["jump"] == 14  # 7 elements * jump 2
    # 3 adaptive bins of 7: bin y reads floor(7y/3) .. ceil(7(y + 1)/3) - 1 = 0..2, 2..4,
    # 4..6, i.e. [2*0 - 1, 2*2 + 1], [2*2 - 1, 2*4 + 1], [2*4 - 1, 2*6 + 1]
    bins = [(7 * y // 3, -(-7 * (y + 1) // 3) - 1) for y in range(3)]
    assert bins == [(0, 2), (2, 4), (4, 6)]
    assert nodes["bins"]["intervals"] == [(2 * a - 1, 2 * b + 1) for a, b in bins]
    assert not nodes["bins"]["global"]


# -- upper bounds ---------------------------------------------------------------------------------

def test_upper_bound_contains_the_probe(data):
    u = data["upper"]
    length = u["L"]  # 8
    m = _fresh(mf.PaddedBranch())
    pad, add = u["nodes"]["pad"], u["nodes"]["add"]
    # pad = F.pad(conv3(x), (2, 0)): element y >= 2 is conv[y - 2], field [y - 2, y]; elements
    # 0, 1 read only padding (nothing), their virtual fields [-2, 0], [-1, 1] continue the map
    truth_pad = _probe(lambda x: F.pad(m.conv(x), (2, 0)), length)
    assert pad["intervals"] == [(y - 2, y) for y in range(length)]
    assert truth_pad[:2] == [[], []]
    assert truth_pad[2:] == [_clipped((y - 2, y), length) for y in range(2, length)]
    # add = pad + x: the union [y - 2, y]; what it reads: x[0] at 0, x[1] at 1 (pad reads
    # nothing there), [y - 2, y] from y = 2 on. Element 1's bound [0, 1] is one pixel too wide.
    truth = _probe(m, length)
    assert truth == [[0], [1]] + [list(range(y - 2, y + 1)) for y in range(2, length)]
    assert add["upper"] and add["intervals"] == [(y - 2, y) for y in range(length)]
    assert any("upper bound" in n for n in add["notes"])
    for y, (s, e) in enumerate(add["intervals"]):
        assert set(truth[y]) <= set(_clipped((s, e), length))
    assert _clipped(add["intervals"][1], length) == [0, 1] != truth[1]
    assert add["support"] == truth  # the figure's dots


# -- (e) the seed tour ----------------------------------------------------------------------------

def test_seed_tour_numbers(data):
    s = data["seed_tour"]
    rows = s["rows"]
    # along H at 224, (size, jump, offset) by the layer rule r' = r + (k_eff - 1)j, j' = js,
    # o' = o - pj:
    expected = {
        "stem_0": (3, 1, -1),  # k3 p1
        "pool_ceil": (3 + 2 * 1, 2, -1 - 1),  # k3 s2 p1
        "dilated": (5 + 6 * 2, 2, -2 - 3 * 2),  # k_eff = 3*(3 - 1) + 1 = 7, p3
        "pool_idx": (17 + 1 * 2, 4, -8),  # k2 s2 p0
        # (3,1) conv +8, depthwise 3x3 +8, flattened (3,1) +8; each o - 1*4
        "add": (19 + 3 * 8, 4, -8 - 3 * 4),
        "cat": (43 + 8 + 2 * 4, 8, -20 - 4 - 4),  # grouped 3x3, then k3 s2 p1
        # transposed k4 s2 p1: output y reads inputs ceil((y + 1 - 3)/2) .. floor((y + 1)/2),
        # two of them at every y: r = 59 + 8 = 67, j = 8/2 = 4, o = -28 - 8 (input -1)
        "up": (67, 4, -36),
        # global pool over the 56 outputs: from start(0) = -36 to end(55) = the end of cat
        # element floor(56/2) = 28 (virtual: cat has 0..27) = -28 + 28*8 + 59 - 1 = 254;
        # 254 + 36 + 1 = 291 = 8*floor((224 + 6)/8) + 67; jump 56*4 = 224
        "head_0": (291, 224, -36),
    }
    assert rows == {k: (r, Fraction(j), o) for k, (r, j, o) in expected.items()}
    assert s["head_formula"] == "8*floor((H + 6)/8) + 67"
    assert 8 * ((224 + 6) // 8) + 67 == 291


# -- the page and its figures ---------------------------------------------------------------------

def test_concepts_page_figures_exist_and_tables_match(data):
    page = (DOCS / "concepts.md").read_text()
    figures = re.findall(r"\]\((figures/[^)\s]+)\)", page)
    assert figures, "concepts.md shows no figure"
    for f in figures:
        assert (DOCS / f).is_file(), f"{f} is referenced by concepts.md but missing"
    assert {Path(f).name for f in figures} == set(mf.FIGURE_FILES)
    assert "conventions.md" in page
    for name, text in mf.tables(data).items():
        assert text in page, f"concepts.md does not quote the current '{name}' table:\n{text}"


@pytest.mark.skipif(not (HAS_MATPLOTLIB and HAS_DOT), reason="needs matplotlib and Graphviz")
def test_drawn_figures(data):
    out = data["_drawn"]
    assert sorted(p.name for p in out.iterdir()) == sorted(mf.FIGURE_FILES)
    for name in mf.FIGURE_FILES:
        text = (out / name).read_text()
        ElementTree.fromstring(text.encode())  # well-formed SVG
        assert len(text) < 120_000, name  # small files
    for name in ("alignment.svg", "alignment_graph.svg"):  # the reason, from the analysis
        assert "field centres differ" in (out / name).read_text(), name
    assert "2*ceiling(L/2) + 1" in (out / "global.svg").read_text()
    committed = {p.name for p in (DOCS / "figures").iterdir()}
    assert committed == set(mf.FIGURE_FILES)
