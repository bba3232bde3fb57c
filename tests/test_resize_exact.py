"""Resize (interpolate / Upsample) and pad fields at EVERY output position, against torch.

The oracle is torch's gradient: a float64 input with requires_grad, one output element seeded
per batch element (the batch holds one copy of the input per output position, so one backward
gives every position's gradient), the bounding box of the input gradient per axis. Resizing is
linear, so the gradient is the interpolation weight: a tap with weight exactly 0 (a bicubic or
linear tap at an integer source coordinate) is no dependence.

Two things about torch shape the comparison:
* torch clamps resize reads at the border (``min(index, n - 1)``, the source coordinate of the
  linear modes at 0, bicubic taps into ``[0, n - 1]``): a read past the border lands on the
  border pixel. rfgraph's fields are unclipped (a tap at -1 is the virtual pixel -1). Every field
  of a resize contains at least one pixel of the image, so clipping rfgraph's interval to
  ``[0, n - 1]`` gives exactly the pixels torch reads: for a model that ends in the resize (or in
  global pooling after it) we clip and compare at every position. When a padded layer follows
  the resize it reads the resize's *virtual* border outputs, which rfgraph extrapolates and torch
  does not have (zero padding): there we compare exactly at the positions whose unclipped field
  lies inside the image and check containment at the others (``interior=True``).
* torch computes the source coordinate in floating point; where the exact coordinate is an
  integer it can come out a hair above it (fma), giving the next tap a weight of ~1e-17 (linear,
  ``size=10`` from 2 at output 2). That is rounding, not a dependence of the op: gradients below
  ``TOL`` count as zero (real weights here are >= 1e-4).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence

import pytest
import sympy
import torch
import torch.nn.functional as F
from oracles import Expect, check_model
from torch import nn

import rfgraph

pytestmark = pytest.mark.usefixtures("one_thread")

AXES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
TOL = 1e-9
Box = list[tuple[int, int]]


class Fn(nn.Module):
    """A module around a function (F.interpolate with fixed arguments)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def interp(**kw) -> nn.Module:
    return Fn(lambda x: F.interpolate(x, **kw))


# -- oracles ---------------------------------------------------------------------------------------
def _boxes(mask: torch.Tensor, nd: int) -> list[Box | None]:
    """(P, *spatial) bool -> per row, per axis (first, last) True index; None when empty."""
    out: list[Box | None] = []
    for m in mask:
        if not bool(m.any()):
            out.append(None)
            continue
        box = []
        for a in range(nd):
            others = [b for b in range(nd) if b != a]
            idx = torch.nonzero(m.any(dim=others) if others else m).flatten()
            box.append((int(idx[0]), int(idx[-1])))
        out.append(box)
    return out


def gradient_boxes(model: nn.Module, sizes: Sequence[int]) -> tuple[tuple, list[Box | None]]:
    """Torch's gradient: (output spatial shape, per output position in row-major order the
    bounding box of the non-zero input gradient)."""
    nd = len(sizes)
    model = model.double()
    with torch.no_grad():
        osp = tuple(model(torch.ones(1, 1, *sizes, dtype=torch.float64)).shape[2:])
    p = math.prod(osp)
    x = torch.ones(p, 1, *sizes, dtype=torch.float64, requires_grad=True)
    out = model(x)
    seed = torch.zeros_like(out)
    rows = torch.arange(p)
    seed.view(p, out.shape[1], p)[rows, :, rows] = 1.0  # batch element i seeds position i
    (grad,) = torch.autograd.grad(out, x, seed)
    return osp, _boxes((grad.abs() > TOL).any(1), nd)


def forward_boxes(model: nn.Module, sizes: Sequence[int]) -> tuple[tuple, list[Box | None]]:
    """Torch's forward: the model on every one-hot input at once (a batch), the inputs each
    output element responds to. Used only where torch's backward disagrees with its forward."""
    nd = len(sizes)
    n = math.prod(sizes)
    x = torch.eye(n, dtype=torch.float64).view(n, 1, *sizes)
    with torch.no_grad():
        out = model.double()(x)[:, 0]
    osp = tuple(out.shape[1:])
    dep = (out.abs() > TOL).reshape(n, -1).T.reshape(-1, *sizes)
    return osp, _boxes(dep, nd)


def check_fields(a: rfgraph.Analysis, model: nn.Module, sizes: Sequence[int], *,
                 oracle: Callable = gradient_boxes, interior: bool = False,
                 ) -> rfgraph.Analysis:
    """Shapes equal torch's; rfgraph's field == the oracle's box at every output position (see
    the module docstring for the clipping and ``interior``). Returns the evaluated analysis."""
    nd = len(sizes)
    ev = a.evaluate(**dict(zip(AXES[nd], sizes, strict=True)))
    shape = tuple(ev.int_of(s) for s in ev.output.tensor.shape)
    with torch.no_grad():
        want_shape = tuple(model.double()(torch.ones(1, 1, *sizes, dtype=torch.float64)).shape)
    assert shape == want_shape, (sizes, shape, want_shape)
    fields = ev.field(ev.output)
    assert fields is not None and len(fields) == nd, ev.output.notes
    osp, boxes = oracle(model, sizes)
    assert osp == shape[2:]
    spans = [[(ev.int_of(r.start_at(y)), ev.int_of(r.end_at(y))) for y in range(osp[i])]
             for i, r in enumerate(fields)]
    for pos, box in zip(itertools.product(*[range(o) for o in osp]), boxes, strict=True):
        raw = [spans[i][y] for i, y in enumerate(pos)]
        clipped = [(max(s, 0), min(e, n - 1)) for (s, e), n in zip(raw, sizes, strict=True)]
        if any(s > e for s, e in clipped):  # wholly in the padding (of a pad layer): no pixel
            assert box is None, (sizes, pos, box, raw)
            continue
        assert box is not None, (sizes, pos, raw)
        if interior and not all(s >= 0 and e <= n - 1 for (s, e), n in zip(raw, sizes)):
            assert all(w[0] <= b[0] and b[1] <= w[1] for b, w in zip(box, clipped)), \
                (sizes, pos, box, raw)
        else:
            assert box == clipped, (sizes, pos, box, raw)
    return ev


def analyze(model: nn.Module, nd: int) -> rfgraph.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rfgraph.analyze(model, (1, 1, *AXES[nd]))


def runs(model: nn.Module, sizes: Sequence[int]) -> bool:
    """torch runs the model at ``sizes`` and gives a non-empty output."""
    try:
        with torch.no_grad():
            return model(torch.zeros(1, 1, *sizes)).numel() > 0
    except (RuntimeError, ValueError, NotImplementedError):
        return False


def node_of(a: rfgraph.Analysis, kind: str):
    return next(n for n in a.nodes if kind in n.name)


# -- 1. area with a scale factor -------------------------------------------------------------------
AREA_SCALES = [2, 3, 0.5, 0.25, 1.5, 0.75, 1.25]


@pytest.mark.parametrize("scale", AREA_SCALES)
def test_area_scale_factor_1d(scale):
    model = interp(scale_factor=scale, mode="area")
    a = analyze(model, 1)
    for n in range(1, 14):
        if runs(model, (n,)):
            check_fields(a, model, (n,))


@pytest.mark.parametrize("scale", [2, 0.5, (1.5, 0.75), (3, 0.25)])
def test_area_scale_factor_2d_module(scale):
    model = nn.Upsample(scale_factor=scale, mode="area")
    a = analyze(model, 2)
    for hw in [(1, 4), (3, 5), (6, 4), (7, 9), (8, 8)]:
        if runs(model, hw):
            check_fields(a, model, hw)


def test_area_symbolic_shape_and_field():
    a = analyze(interp(scale_factor=2, mode="area"), 2)
    H, W = sympy.symbols("H W", integer=True, positive=True)
    assert list(a.output.tensor.shape) == [1, 1, 2 * H, 2 * W]
    rf = a.field(a.output)
    assert rf is not None and rf[0].size == 1 and rf[0].jump == sympy.Rational(1, 2)
    # a ratio n / floor(n/2) that depends on n: known at concrete sizes only, said so
    down = analyze(interp(scale_factor=0.5, mode="area"), 1)
    node = node_of(down, "interpolate")
    assert down.field(down.output) is None and node.needs_at
    assert any("evaluate" in note for note in node.notes)
    ev = down.evaluate(L=9)
    assert ev.field_at(ev.output) is not None
    # one output element: every element reads the whole input (a global field)
    one = analyze(interp(size=1, mode="area"), 1)
    ev = one.evaluate(L=7)
    assert (ev.int_of(ev.field(ev.output)[0].start_at(0)),
            ev.int_of(ev.field(ev.output)[0].end_at(0))) == (0, 6)


# -- 2. linear modes: an output as long as the input is a copy ------------------------------------
def test_linear_same_length_is_a_copy():
    model = interp(scale_factor=1.25, mode="linear")
    a = analyze(model, 1)
    node = node_of(a, "interpolate")
    # symbolically: floor(5L/4) == L only for L <= 3; the formulas assume L >= 4 and say so
    assert node.needs_at
    assert any("L >= 4" in note and "L <= 3" in note for note in node.notes)
    # the field carries the assumption downstream (here: the output)
    assert any("L >= 4" in note for note in a.field(a.output)[0].notes)
    for n in range(1, 16):
        ev = check_fields(a, model, (n,))
        rf = ev.field(ev.output)[0]
        if n <= 3:  # floor(3.75) = 3: torch copies
            assert ev.int_of(rf.size) == 1 and rf.jump == 1, n
            assert all(ev.int_of(rf.start_at(y)) == y == ev.int_of(rf.end_at(y))
                       for y in range(n))
        else:
            assert rf.jump == sympy.Rational(4, 5)


@pytest.mark.parametrize(("mode", "scale", "sizes"), [
    ("bilinear", (1.25, 2), (3, 5)),  # only H keeps its length: H is copied, W is not
    ("bilinear", (2, 1.5), (4, 1)),
    ("bilinear", 1.125, (7, 8)),  # floor(7·9/8) = 7, floor(8·9/8) = 9
    ("trilinear", (1.25, 1.5, 2), (3, 1, 2)),
])
def test_linear_same_length_per_axis(mode, scale, sizes):
    model = nn.Upsample(scale_factor=scale, mode=mode)
    check_fields(analyze(model, len(sizes)), model, sizes)


# -- 3. output or input of length 1 ---------------------------------------------------------------
@pytest.mark.parametrize("align", [True, False])
def test_linear_to_one_element(align):
    model = interp(size=1, mode="linear", align_corners=align)
    a = analyze(model, 1)
    rf = a.field(a.output)
    assert rf is not None, node_of(a, "interpolate").notes  # known symbolically
    for n in range(1, 12):
        ev = check_fields(a, model, (n,))
        f = ev.field(ev.output)[0]
        got = (ev.int_of(f.start_at(0)), ev.int_of(f.end_at(0)))
        # align_corners: src = 0; else src = (n - 1)/2
        assert got == ((0, 0) if align else ((n - 1) // 2, n // 2)), (n, got)


@pytest.mark.parametrize("mode", ["linear", "nearest", "nearest-exact", "area"])
def test_from_one_element(mode):
    aligns = [True, False] if mode == "linear" else [None]
    for align, kw in itertools.product(aligns, [dict(scale_factor=s) for s in (1.5, 2, 3, 4)]
                                       + [dict(size=s) for s in (1, 2, 5)]):
        model = interp(mode=mode, align_corners=align, **kw)
        check_fields(analyze(model, 1), model, (1,))


@pytest.mark.parametrize("align", [True, False])
def test_bilinear_to_one_row(align):
    model = interp(size=(1, 5), mode="bilinear", align_corners=align)
    a = analyze(model, 2)
    for hw in [(1, 1), (4, 3), (5, 7)]:
        check_fields(a, model, hw)


# -- 4. bicubic ------------------------------------------------------------------------------------
BICUBIC = [dict(scale_factor=s) for s in (2, 0.5, 1.5, 3, 0.75, (2, 0.5), (1.5, 3))] + [
    dict(size=s) for s in (7, (3, 9), 1, (1, 4))] + [
    dict(scale_factor=s, recompute_scale_factor=True) for s in (1.5, 0.75)]


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("kw", BICUBIC, ids=str)
def test_bicubic_every_position(kw, align):
    model = interp(mode="bicubic", align_corners=align, **kw)
    a = analyze(model, 2)
    assert a.field(a.output) is not None or node_of(a, "interpolate").needs_at
    for hw in [(5, 5), (1, 3), (4, 7), (6, 2)]:
        if runs(model, hw):
            check_fields(a, model, hw)


def test_bicubic_integer_source_reads_one_pixel():
    # align_corners, 5 -> 9: src = y/2, an integer at even y: weights (0, 1, 0, 0)
    model = interp(size=9, mode="bicubic", align_corners=True)
    a = analyze(model, 2)
    ev = check_fields(a, model, (5, 5))
    rf = ev.field(ev.output)[0]
    sizes = [ev.int_of(rf.end_at(y)) - ev.int_of(rf.start_at(y)) + 1 for y in range(9)]
    assert sizes == [1, 4] * 4 + [1]
    assert ev.int_of(rf.size) == 4 and ev.int_of(rf.min_size) == 1
    # half-pixel centres, scale 3: src = (y - 1)/3, an integer at y = 1, 4, 7, ...
    model = interp(scale_factor=3, mode="bicubic")
    ev = check_fields(analyze(model, 2), model, (4, 4))
    rf = ev.field(ev.output)[1]
    assert [ev.int_of(rf.end_at(y) - rf.start_at(y)) + 1 for y in range(6)] == [4, 1, 4] * 2


def test_bicubic_same_size_follows_the_forward():
    """Every spatial size unchanged (floor(3·1.25) = 3) with a scale factor != 1: torch's
    forward still interpolates at src = (y + 1/2)·0.8 − 1/2, but its bicubic backward copies,
    so the gradient would see one pixel. The field is what the forward reads."""
    model = interp(scale_factor=1.25, mode="bicubic")
    a = analyze(model, 2)
    check_fields(a, model, (3, 3), oracle=forward_boxes)
    ev = a.evaluate(H=3, W=3)
    assert ev.int_of(ev.field(ev.output)[0].size) > 1
    check_fields(a, model, (2, 5))  # W changes: forward and backward agree


@pytest.mark.parametrize("align", [False, True])
def test_bicubic_then_windows_and_pooling(align):
    """Bicubic fields alternate narrow and wide (not monotone in y): a conv after it must take
    the union over its taps, global pooling the union over every position."""
    up = nn.Upsample(scale_factor=3, mode="bicubic", align_corners=align)
    for tail, interior in ((nn.Conv2d(1, 1, 3, padding=1), True),
                           (nn.Conv2d(1, 1, 2, stride=2), False),
                           (nn.AdaptiveAvgPool2d(1), False)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), up, tail)
        a = analyze(model, 2)
        for hw in [(4, 5), (7, 3)]:
            check_fields(a, model, hw, interior=interior)


def test_bicubic_fields_monotone_where_they_can_be():
    """Down-sampling, and half-pixel up-sampling by an even factor (src never an integer), give
    fields that never step back: the ordinary monotone maps, so any layer may follow."""
    for kw in (dict(scale_factor=2), dict(scale_factor=4), dict(scale_factor=0.5),
               dict(scale_factor=0.75), dict(scale_factor=0.5, align_corners=True)):
        ev = analyze(interp(mode="bicubic", **kw), 2).evaluate(H=9, W=8)
        assert all(r.monotone for r in ev.field(ev.output)), kw
    for kw in (dict(scale_factor=3), dict(scale_factor=2, align_corners=True)):
        ev = analyze(interp(mode="bicubic", **kw), 2).evaluate(H=9, W=8)
        assert not any(r.monotone for r in ev.field(ev.output)), kw
    # so a size-dependent layer after a monotone bicubic field is exact too
    model = nn.Sequential(nn.Upsample(scale_factor=2, mode="bicubic"), nn.AdaptiveAvgPool2d(3),
                          nn.Upsample(size=4, mode="bilinear"))
    a = analyze(model, 2)
    for hw in [(5, 6), (8, 7)]:
        check_fields(a, model, hw)


def test_non_monotone_bicubic_then_adaptive_pool():
    # bicubic x3 reads one pixel at integer source coordinates and four elsewhere (fields
    # alternate narrow/wide); adaptive pooling's bins depend on the input size, so the field
    # is decided at concrete sizes (the symbolic analysis measures the node)
    model = nn.Sequential(nn.Upsample(scale_factor=3, mode="bicubic"), nn.AdaptiveAvgPool2d(2))
    a = analyze(model, 2)
    for hw in [(5, 6), (4, 4)]:
        check_fields(a, model, hw)
    model = nn.Sequential(nn.Upsample(scale_factor=3, mode="bicubic", align_corners=True),
                          nn.Upsample(size=7, mode="bilinear"))
    check_fields(analyze(model, 2), model, (5, 6))


# -- 5. nearest, nearest-exact, linear: a grid of scales and sizes ---------------------------------
GRID_SCALES = [2, 3, 0.5, 0.25, 1.5, 1.25, 0.75, 2.25, 2.5, 1.0, 1.125]
GRID_1D = [(mode, align) for mode in ("nearest", "nearest-exact") for align in (None,)] + [
    ("linear", False), ("linear", True)]


@pytest.mark.parametrize(("mode", "align"), GRID_1D)
def test_grid_1d_every_position(mode, align):
    for kw in ([dict(scale_factor=s) for s in GRID_SCALES]
               + [dict(scale_factor=s, recompute_scale_factor=True) for s in (1.5, 0.75)]
               + [dict(size=s) for s in (1, 2, 3, 7, 10)]):
        model = interp(mode=mode, align_corners=align, **kw)
        a = analyze(model, 1)
        for n in (1, 2, 3, 4, 5, 7, 8, 11):
            if runs(model, (n,)):
                check_fields(a, model, (n,))


@pytest.mark.parametrize(("mode", "align"), [("nearest", None), ("nearest-exact", None),
                                             ("bilinear", False), ("bilinear", True)])
def test_grid_2d_every_position(mode, align):
    for kw in [dict(scale_factor=s) for s in (2, 0.5, (1.5, 0.75), (1.25, 3), (2.5, 1))] + [
            dict(size=s) for s in ((7, 3), (1, 4))]:
        model = nn.Upsample(mode=mode, align_corners=align, **kw)
        a = analyze(model, 2)
        for hw in [(1, 1), (2, 3), (5, 4), (7, 9)]:
            if runs(model, hw):
                check_fields(a, model, hw)


def test_nearest_twice_as_long_reads_y_div_2():
    """floor(3·2.25) = 6 = 2·3: torch's nearest index reads y >> 1, not floor(y/2.25)."""
    model = interp(scale_factor=2.25, mode="nearest")
    a = analyze(model, 1)
    assert any("L <= 3" in note for note in node_of(a, "interpolate").notes)
    ev = check_fields(a, model, (3,))
    rf = ev.field(ev.output)[0]
    assert [ev.int_of(rf.start_at(y)) for y in range(6)] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_resize_between_convs(nd):
    """Composition with non-trivial fields on both sides, every mode of this dimensionality."""
    conv = getattr(nn, f"Conv{nd}d")
    modes = ["nearest", "nearest-exact", "area", {1: "linear", 2: "bilinear",
                                                  3: "trilinear"}[nd]]
    for mode, kw in itertools.product(modes, [dict(scale_factor=1.5), dict(scale_factor=0.5),
                                              dict(size=5)]):
        for align in ([False, True] if mode.endswith("linear") else [None]):
            torch.manual_seed(0)
            model = nn.Sequential(conv(1, 1, 3, stride=2, padding=1),
                                  nn.Upsample(mode=mode, align_corners=align, **kw),
                                  conv(1, 1, 3, padding=1))
            a = analyze(model, nd)
            for n in ((6, 9) if nd < 3 else (6,)):
                sizes = (n,) + (5,) * (nd - 1)
                if runs(model, sizes):
                    check_fields(a, model, sizes, interior=True)


# -- other resize variants -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "lanczos"])
def test_antialias_field_is_unknown_not_wrong(mode):
    """antialias=True widens the kernel when down-sampling (lanczos: 6 taps): not modelled, so
    the field is unknown (with a note), never the plain mode's."""
    model = interp(scale_factor=0.5, mode=mode, antialias=True)
    a = analyze(model, 2)
    assert a.field(a.output) is None
    assert any("antialias" in note for note in node_of(a, "interpolate").notes)
    ev = a.evaluate(H=8, W=6)
    assert [ev.int_of(s) for s in ev.output.tensor.shape] == list(model(torch.zeros(1, 1, 8, 6))
                                                                  .shape)


@pytest.mark.parametrize(("kw", "nd"), [
    (dict(scale_factor=2, mode="bicubic"), 1), (dict(scale_factor=2, mode="bilinear"), 3),
    (dict(scale_factor=2, mode="nearest", align_corners=False), 1),
    (dict(size=4, mode="linear", recompute_scale_factor=True), 1),
    (dict(scale_factor=0.5, mode="lanczos"), 2),  # lanczos needs antialias=True
    (dict(scale_factor=0.5, mode="linear", antialias=True), 1)])
def test_arguments_torch_rejects_are_refused(kw, nd):
    model = interp(**kw)
    with pytest.raises((ValueError, NotImplementedError, RuntimeError)):
        model(torch.zeros(1, 1, *[4] * nd))
    with pytest.raises(rfgraph.RfgraphError):
        analyze(model, nd)


# -- 6. negative padding (cropping) ----------------------------------------------------------------
def test_negative_pad_too_small_is_refused():
    model = Fn(lambda x: F.pad(x, (0, 0, -2, 3)))
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 1, 1, 4))
    assert tuple(model(torch.zeros(1, 1, 2, 4)).shape) == (1, 1, 3, 4)
    a = analyze(model, 2)
    with pytest.raises(rfgraph.InputTooSmall) as info:
        a.evaluate(H=1, W=4)
    msg = str(info.value)
    assert "\n" not in msg and "node 'pad'" in msg and "H >= 2" in msg, msg
    ev = check_fields(a, model, (2, 4))
    assert ev.int_of(ev.field(ev.output)[0].start_at(0)) == 2  # y reads y - left = y + 2


@pytest.mark.parametrize("pad", [(0, 0, -2, 3), (-1, -2), (2, -3), (-3, 1, 1, -1), (-1, 0, -2, -2),
                                 (0, 0, 0, -1)])
def test_negative_pad_boundary_and_fields(pad):
    """The smallest valid size (brute force against torch) is what rfgraph names, every size
    around it is accepted or refused as torch does, and the cropped fields are exact."""
    nd = 2
    check_model(lambda: Fn(lambda x: F.pad(x, pad)), nd, 1, Expect(), n_sizes=2)
    model = Fn(lambda x: F.pad(x, pad))
    a = analyze(model, nd)
    for hw in [(5, 6), (8, 5)]:
        ev = check_fields(a, model, hw)
        lefts = [pad[2] if len(pad) > 2 else 0, pad[0]]  # (H, W) left pads
        fields = ev.field(ev.output)
        for i, rf in enumerate(fields):
            for y in range(ev.int_of(ev.output.tensor.shape[2 + i])):
                assert ev.int_of(rf.start_at(y)) == ev.int_of(rf.end_at(y)) == y - lefts[i]


@pytest.mark.parametrize("pad", [(-2, 3), (3, -2), (-1, 1), (1, -1), (-3, 2)])
def test_circular_mixed_pad_needs_its_copy_source(pad):
    """Circular padding that crops one side and wraps the other copies the wrapped part out of
    the cropped input; below ``crop + grow`` elements torch either refuses (overlapping copy) or
    returns uninitialised memory. rfgraph asks for at least crop + grow."""
    crop, grow = -min(pad), max(pad)
    need = crop + grow
    layer = nn.CircularPad1d(pad)
    for n in range(need, need + 4):  # from there on torch wraps the cropped input
        x = torch.arange(1.0, n + 1).view(1, 1, n)
        kept = x[..., max(-pad[0], 0): n - max(-pad[1], 0)]
        want = torch.cat([kept[..., kept.shape[-1] - max(pad[0], 0):], kept,
                          kept[..., :max(pad[1], 0)]], -1)
        assert torch.equal(layer(x), want), (n, layer(x), want)
    a = analyze(layer, 1)
    a.evaluate(L=need)
    with pytest.raises(rfgraph.InputTooSmall, match=f"L >= {need}"):
        a.evaluate(L=need - 1)
