"""Resizing: ``F.interpolate`` and ``nn.Upsample`` (padding is in ``pad.py``, pixel
(un)shuffle in ``shuffle.py``).

Index maps follow PyTorch's kernels (aten/src/ATen/native/UpSample.h), with the input-per-output
scale kept as an exact fraction (``1/scale_factor`` when a scale factor is given and not
recomputed, else ``n_in/n_out``; ``(n_in - 1)/(n_out - 1)`` with align_corners, 0 when
``n_out == 1``):
- nearest:            src = floor(y·scale)
- nearest-exact:      src = floor((y + 1/2)·scale)
- linear modes: src = (y + 1/2)·scale − 1/2 (align_corners: y·scale); reads floor(src) and, when
  src is not an integer, floor(src) + 1 (a zero weight is no dependence)
- bicubic: the same src; reads floor(src) − 1 .. floor(src) + 2 (cubic convolution, A = −0.75),
  only src itself when src is an integer (the other three weights are exactly 0)
- area: adaptive average pooling to the output size: bin y reads
  floor(y·n/o) .. ceil((y+1)·n/o) − 1
- nearest and the linear modes copy when the output is as long as the input, whatever the scale
  factor (nearest_idx, compute_source_index_and_lambda); nearest reads floor(y/2) when the
  output is twice as long. Symbolically (floor(n·5/4) == n only for n <= 3) the formulas take
  the long-input branch, say so in a note, and evaluating re-decides (``needs_at``).
Fields are unclipped (border clamping is ignored), like padding elsewhere: clipped to the image
they are what torch reads.

Bicubic fields alternate narrow (one pixel where src is an integer) and wide (four): they are
not monotone in y, so the field is built with explicit taps (``regular_taps=False``) and the
layers after it take the union over the elements they read.

Where torch's own kernels disagree, the field follows torch's index functions in UpSample.h
(what its backward, i.e. a gradient probe, sees) for nearest, and the forward for bicubic:
- nearest with an output 1x or 2x as long as the input but another scale factor: nearest_idx
  copies (reads y // 2); the generic CPU forward kernel (1-D, 3-D, 2-D outputs with H + W > 128
  unless channels-last with C > 3) reads floor(y/scale_factor). A note says so.
- bicubic with every spatial size unchanged but a scale factor != 1: the forward interpolates,
  the backward copies. A note says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from math import ceil
from typing import cast

import sympy
import torch.nn.functional as F
from sympy import Expr, Integer
from torch import nn

from ..errors import RuleError, Unsupported
from ..kinds import Family
from ..receptive_field import IndexMap, TapMap
from ..symbolic import ceildiv, floordiv, format_expr
from ..tensor import TensorInfo
from .base import Call, OpResult, known, ntuple, register

LINEAR_MODES = {"linear", "bilinear", "trilinear"}
MODES = LINEAR_MODES | {"nearest", "nearest-exact", "area", "bicubic", "lanczos"}


#: modes torch implements for one number of spatial dims only
_MODE_ND = {"linear": 1, "bilinear": 2, "trilinear": 3, "bicubic": 2, "lanczos": 2}


def _fraction(value: float | int, call: Call) -> Fraction:
    f = Fraction(value)
    if f.denominator > 1024:
        raise RuleError(f"{call.where()}: scale factor {value} is not an exact small fraction "
                        "(use size= or a dyadic factor such as 0.5, 1.5, 2)")
    if f <= 0:
        raise RuleError(f"{call.where()}: scale factor must be positive")
    return f


def _scale(call: Call, num: Expr, den: Expr) -> tuple[Expr, int] | None:
    """num/den as (a, b) with a/b == num/den exactly, b a positive int and a an integer-valued
    expression of the sizes (a number when the ratio is constant); at the ``at`` sizes when the
    ratio depends on the input size non-linearly. None when it does and there are none."""
    num, den = sympy.sympify(num), sympy.sympify(den)
    r = num / den
    if not r.is_Rational and not (den.is_Integer and int(den) > 0):
        r = sympy.cancel(r)
    if r.is_Rational:
        return Integer(r.p), int(r.q)
    if den.is_Integer and int(den) > 0:
        return num, int(den)
    n, d = call.concrete(num), call.concrete(den)
    if n.is_Integer and d.is_Integer and int(d) > 0:
        f = Fraction(int(n), int(d))
        return Integer(f.numerator), f.denominator
    return None


def _decide_le(call: Call, n: Expr, bound: int) -> bool | None:
    """n <= bound: by SymPy, else at the ``at`` sizes; None when undecided."""
    rel = sympy.Le(sympy.sympify(n), bound)
    if rel in (sympy.true, sympy.false):
        return bool(rel)
    value = call.concrete(n)
    if value.is_Integer:
        return int(value) <= bound
    return None


def _multiple_length(call: Call, n: Expr, s: Fraction, k: int) -> tuple[bool | None, int]:
    """Is floor(n·s) == k·n (the output exactly k times as long as the input) with s != k?
    (answer or None when it depends on the input size and no sizes are given, largest n
    for which it holds). floor(n·p/q) == k·n  <=>  p >= k·q and n·(p − k·q) < q."""
    p, q = s.numerator, s.denominator
    if p <= k * q:  # s < k: never; s == k: the scale is exactly 1/k, the maps already say so
        return False, 0
    most = ceil(Fraction(q, p - k * q)) - 1
    if most < 1:
        return False, 0
    return _decide_le(call, n, most), most


@dataclass
class _AxisPlan:
    """How output y of one axis reads the input axis: elements first(y) .. last(y), or every
    element (``collapse``), or unknown (first is None)."""

    first: IndexMap | None = None
    last: IndexMap | None = None
    jump: Expr = Integer(1)  # in input elements per output element
    period: int = 1
    collapse: bool = False
    notes: list[str] = field(default_factory=list)
    needs_at: bool = False
    #: the elements y really reads, when some of first(y) .. last(y) have zero weight
    taps: TapMap | None = None
    #: a note the field carries downstream (an assumption it holds under)
    field_note: str | None = None


def _copy_plan(notes: list[str]) -> _AxisPlan:
    return _AxisPlan(lambda y: y, lambda y: y, Integer(1), 1, notes=notes)


def _area_plan(call: Call, n: Expr, out: Expr) -> _AxisPlan:
    """interpolate(mode='area') is adaptive average pooling to ``out``: bin y reads
    floor(y·n/o) .. ceil((y+1)·n/o) − 1."""
    if sympy.sympify(out) == 1:
        return _AxisPlan(collapse=True)
    scale = _scale(call, n, out)
    if scale is None:
        return _AxisPlan(notes=["field depends on the input size through the resize ratio: "
                                "known at concrete sizes (evaluate)"], needs_at=True)
    a, b = scale
    widths = ({ceildiv((y + 1) * a, b) - floordiv(y * a, b) for y in range(b)}
              if a.is_Integer else {None, 0})
    note = "area bins vary in width: the field size is the widest" if len(widths) > 1 else None
    return _AxisPlan(lambda y: floordiv(y * a, b), lambda y: ceildiv((y + 1) * a, b) - 1,
                     a / b, b, field_note=note)


def _axis_plan(call: Call, mode: str, n: Expr, out: Expr, s: Fraction | None, align: bool,
               recompute: bool, all_same: bool | None) -> _AxisPlan:
    """The index maps of one axis of a nearest/linear/bicubic resize from n to out elements
    (``s``: the scale factor when one is given)."""
    notes: list[str] = []
    needs_at = False
    assumption = None
    symbol = format_expr(n)
    if s is not None and not align and not recompute and mode in LINEAR_MODES | {"nearest"}:
        # torch ignores the scale factor where the output has the input's length (and nearest
        # where it has twice that): decided at the sizes, else the formulas assume long inputs
        for k in ((1, 2) if mode == "nearest" else (1,)):
            same, most = _multiple_length(call, n, s, k)
            if same:
                caveat = (" (torch's nearest index, which its backward uses; its generic CPU "
                          "forward kernel, used for 1-D, 3-D and large 2-D outputs, reads "
                          "floor(y/scale_factor) instead)" if mode == "nearest" else "")
                if k == 2:
                    return _AxisPlan(lambda y: floordiv(y, 2), lambda y: floordiv(y, 2),
                                     sympy.Rational(1, 2), 2,
                                     notes=["output twice as long as the input: torch reads "
                                            f"y // 2 whatever the scale factor{caveat}"])
                return _copy_plan([f"output as long as the input: torch copies it{caveat}"])
            if same is None:
                needs_at = True
                assumption = (f"field assumes {symbol} >= {most + 1}: for {symbol} <= {most} "
                              f"the output is {'as long as' if k == 1 else 'twice as long as'}"
                              " the input and torch ignores the scale factor (evaluating "
                              "re-decides)")
                notes.append(assumption)
    if mode == "bicubic" and all_same and s is not None and not align and not recompute:
        notes.append("every spatial size unchanged: torch's bicubic backward copies, so a "
                     "gradient probe sees one pixel; the forward reads the cubic taps")
    # the input-per-output scale a/b
    if mode in ("nearest", "nearest-exact") or not align:
        scale = ((Integer(s.denominator), s.numerator) if s is not None and not recompute
                 else _scale(call, n, out))
    else:  # align_corners: (n - 1)/(out - 1), 0 (read element 0) for one output element
        one = _decide_le(call, out, 1)
        scale = (Integer(0), 1) if one else _scale(call, sympy.sympify(n) - 1,
                                                    sympy.sympify(out) - 1)
    if scale is None:
        return _AxisPlan(notes=notes + ["field depends on the input size through the resize "
                                        "ratio: known at concrete sizes (evaluate)"],
                         needs_at=True)
    a, b = scale
    # src(y) = (ca*y + cb) / d
    if mode == "nearest" or (mode in LINEAR_MODES | {"bicubic"} and align):
        ca, cb, d = a, Integer(0), b
    elif mode == "nearest-exact":
        ca, cb, d = 2 * a, a, 2 * b
    else:  # half-pixel centres
        ca, cb, d = 2 * a, a - b, 2 * b

    def lo(y: Expr) -> Expr:
        return floordiv(ca * y + cb, d)

    def hi(y: Expr) -> Expr:
        return ceildiv(ca * y + cb, d)

    if mode in ("nearest", "nearest-exact"):
        return _AxisPlan(lo, lo, a / b, b, notes=notes, needs_at=needs_at,
                         field_note=assumption)
    if mode != "bicubic":
        return _AxisPlan(lo, hi, a / b, b, notes=notes, needs_at=needs_at,
                         field_note=assumption)

    # reads floor(src) - 1 .. floor(src) + 2, or src alone when it is an integer (the other
    # weights are exactly 0): from 2·floor − ceil to 2·ceil − floor
    def first(y: Expr) -> Expr:
        return 2 * lo(y) - hi(y)

    def last(y: Expr) -> Expr:
        return 2 * hi(y) - lo(y)

    if a.is_Integer and (int(a) >= b or all((int(ca) * y + int(cb)) % d for y in range(b))):
        # down-sampling (src steps by >= 1) or no integer src (half-pixel up-sampling by an
        # even factor): the fields never step back, the maps are monotone
        return _AxisPlan(first, last, a / b, b, notes=notes, needs_at=needs_at)

    def taps(y: Expr) -> list[Expr]:
        """The elements output y reads; where src is symbolic, the two ends."""
        num = sympy.expand(ca * sympy.sympify(y) + cb)
        if num.is_Integer:
            f, rest = divmod(int(num), d)
            return [Integer(f)] if rest == 0 else [Integer(f + t) for t in (-1, 0, 1, 2)]
        return [first(y), last(y)]

    # up-sampling with integer srcs: fields alternate narrow and wide (not monotone in y), so
    # the next layer takes the union over the elements it reads
    return _AxisPlan(lambda y: lo(y) - 1, lambda y: lo(y) + 2, a / b, b, taps=taps,
                     notes=notes, needs_at=needs_at)


def resize_core(call: Call, x: TensorInfo, size, scale_factor, mode: str,
                align_corners: bool | None, recompute: bool | None,
                antialias: bool = False) -> OpResult:
    nd = x.ndim - 2
    if nd < 1:
        raise RuleError(f"{call.where()}: interpolate needs a (N, C, *spatial) input")
    if mode not in MODES:
        raise Unsupported(f"{call.where()}: interpolation mode {mode!r} is not modelled")
    dims = list(range(2, x.ndim))
    if (size is None) == (scale_factor is None):
        raise RuleError(f"{call.where()}: give exactly one of size and scale_factor")
    if align_corners is not None and mode not in LINEAR_MODES | {"bicubic", "lanczos"}:
        raise RuleError(f"{call.where()}: align_corners can only be set with the "
                        "interpolating modes (linear, bilinear, bicubic, trilinear, lanczos), "
                        f"not {mode!r}")
    if recompute and size is not None:
        raise RuleError(f"{call.where()}: recompute_scale_factor is not meaningful with an "
                        "explicit size")
    if antialias and not (mode in ("bilinear", "bicubic", "lanczos") and nd == 2):
        raise RuleError(f"{call.where()}: antialias=True needs mode bilinear, bicubic or "
                        "lanczos and a 4-D input")
    if mode == "lanczos" and not antialias:
        raise RuleError(f"{call.where()}: mode 'lanczos' needs antialias=True")
    shape, rf = list(x.shape), list(x.rf)
    notes: list[str] = []
    needs_at = False
    align = bool(align_corners)
    recompute = bool(recompute)
    factors = ([_fraction(s, call) for s in ntuple(scale_factor, nd)]
               if scale_factor is not None else [None] * nd)
    outs = ([sympy.sympify(o) for o in ntuple(size, nd)] if size is not None else
            [floordiv(x.shape[d] * f.numerator, f.denominator)  # (no size: a scale factor)
             for d, f in zip(dims, cast(list[Fraction], factors))])
    if mode == "area":  # torch pools to the output size: the scale factor plays no part
        factors = [None] * nd
    same = [None if f is None else _multiple_length(call, x.shape[d], f, 1)[0]
            for d, f in zip(dims, factors)]
    all_same = all(same) if mode == "bicubic" else None
    for i, d in enumerate(dims):
        n, out = x.shape[d], outs[i]
        shape[d] = out
        axis = x.axes[d]
        if axis is None or rf[axis] is None:
            continue
        if antialias:  # a wider, normalised kernel when down-sampling (lanczos: 6 taps)
            rf[axis] = None
            note = f"field of mode {mode!r} with antialias=True not modelled"
            if note not in notes:
                notes.append(note)
            continue
        plan = (_area_plan(call, n, out) if mode == "area" else
                _axis_plan(call, mode, n, out, factors[i], align, recompute, all_same))
        notes += [t for t in plan.notes if t not in notes]
        needs_at = needs_at or plan.needs_at
        old = known(rf[axis])
        if plan.collapse:
            rf[axis] = old.collapsed(n)
        elif plan.first is None or plan.last is None:  # (both None or neither)
            rf[axis] = None
        else:
            extra = {} if plan.taps is None else {"taps": plan.taps, "regular_taps": False}
            rf[axis] = old.resampled(plan.first, plan.last, plan.jump, plan.period,
                                     plan.field_note, **extra)
    y = x.with_shape(shape, rf=rf)
    return OpResult(y, family=Family.RESIZE, notes=notes, needs_at=needs_at,
                    min_sizes=[(shape[d], "output size") for d in dims])


def _checked_mode(call: Call, x: TensorInfo, mode: str) -> str:
    """torch implements linear, bilinear, trilinear and bicubic for one input rank each (the
    ATen rules pass "bilinear" for every linear mode, so only the Python entry points check)."""
    if mode in _MODE_ND and _MODE_ND[mode] != x.ndim - 2:
        raise RuleError(f"{call.where()}: mode {mode!r} needs a {_MODE_ND[mode] + 2}-D input, "
                        f"got {x.ndim}-D")
    return mode


@register(F.interpolate, family=Family.RESIZE)
def interpolate(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    return resize_core(call, x, call.arg(1, "size"), call.arg(2, "scale_factor"),
                       _checked_mode(call, x, call.arg(3, "mode", "nearest")),
                       call.arg(4, "align_corners"), call.arg(5, "recompute_scale_factor"),
                       bool(call.arg(6, "antialias", False)))


@register(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, family=Family.RESIZE)
def upsample_module(call: Call) -> OpResult:
    m = call.mod(nn.Upsample)
    x = call.tensor()
    return resize_core(call, x, m.size, m.scale_factor, _checked_mode(call, x, m.mode),
                       m.align_corners, getattr(m, "recompute_scale_factor", None))
