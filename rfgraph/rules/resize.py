"""Resizing ops: interpolate/Upsample, padding, pixel (un)shuffle.

Index maps follow PyTorch's kernels (aten/src/ATen/native/UpSample.h), with the input-per-output
scale kept as an exact fraction p/q:
- nearest:            src = floor(y·p/q)
- nearest-exact:      src = floor((y + 1/2)·p/q)
- linear modes, align_corners=False: src = (y + 1/2)·p/q − 1/2, reads floor(src) and, when src is
  not an integer, floor(src) + 1 (a zero weight is no dependence)
- align_corners=True: src = y·(n_in − 1)/(n_out − 1), same two taps
Fields are unclipped (border clamping is ignored), like padding elsewhere.
"""

from __future__ import annotations

from fractions import Fraction

import sympy
import torch.nn.functional as F
from sympy import Expr, Integer
from torch import nn

from ..errors import RuleError
from ..receptive_field import AxisRF
from ..symbolic import ceildiv, floordiv
from ..tensor import TensorInfo
from .base import Call, OpResult, ntuple, register
from .conv import Window, apply_window

LINEAR_MODES = {"linear", "bilinear", "trilinear"}


def _fraction(value: float | int, call: Call) -> Fraction:
    f = Fraction(value)
    if f.denominator > 1024:
        raise RuleError(f"{call.where()}: scale factor {value} is not an exact small fraction "
                        "(use size= or a dyadic factor such as 0.5, 1.5, 2)")
    if f <= 0:
        raise RuleError(f"{call.where()}: scale factor must be positive")
    return f


def _ratio(call: Call, num: Expr, den: Expr) -> Fraction | None:
    """num/den as an exact fraction: symbolically when constant, else at the ``at`` sizes."""
    r = sympy.nsimplify(sympy.sympify(num) / sympy.sympify(den))
    if r.is_Rational:
        return Fraction(int(r.p), int(r.q))
    n, d = call.concrete(num), call.concrete(den)
    if n.is_Integer and d.is_Integer and int(d) > 0:
        return Fraction(int(n), int(d))
    return None


def _index_maps(mode: str, scale: Fraction, align: bool):
    """(first(y), last(y)) input indices read by output y, for in-per-out ``scale`` = p/q."""
    p, q = scale.numerator, scale.denominator
    if mode == "nearest":
        return (lambda y: floordiv(y * p, q)), (lambda y: floordiv(y * p, q))
    if mode == "nearest-exact":
        return (lambda y: floordiv((2 * y + 1) * p, 2 * q)), \
               (lambda y: floordiv((2 * y + 1) * p, 2 * q))
    if mode in LINEAR_MODES and not align:
        return (lambda y: floordiv((2 * y + 1) * p - q, 2 * q)), \
               (lambda y: ceildiv((2 * y + 1) * p - q, 2 * q))
    if mode in LINEAR_MODES and align:
        return (lambda y: floordiv(y * p, q)), (lambda y: ceildiv(y * p, q))
    return None


def resize_core(call: Call, x: TensorInfo, size, scale_factor, mode: str,
                align_corners: bool | None, recompute: bool | None) -> OpResult:
    nd = x.ndim - 2
    if nd < 1:
        raise RuleError(f"{call.where()}: interpolate needs a (N, C, *spatial) input")
    dims = list(range(2, x.ndim))
    if (size is None) == (scale_factor is None):
        raise RuleError(f"{call.where()}: give exactly one of size and scale_factor")
    shape, rf = list(x.shape), list(x.rf)
    notes: list[str] = []
    needs_at = False
    align = bool(align_corners)
    if mode == "area":
        from .conv import adaptive_core

        outs = ntuple(size, nd) if size is not None else [
            floordiv(x.shape[d] * _fraction(s, call).numerator, _fraction(s, call).denominator)
            for d, s in zip(dims, ntuple(scale_factor, nd))]
        res = adaptive_core(call, x, nd, tuple(outs))
        res.family = "resize"
        return res
    for i, d in enumerate(dims):
        n = x.shape[d]
        if size is not None:
            out = sympy.sympify(ntuple(size, nd)[i])
            scale = _ratio(call, n - 1, out - 1) if align else _ratio(call, n, out)
        else:
            s = _fraction(ntuple(scale_factor, nd)[i], call)
            out = floordiv(n * s.numerator, s.denominator)
            if align:
                scale = _ratio(call, n - 1, out - 1)
            elif recompute:
                scale = _ratio(call, n, out)
            else:
                scale = 1 / s
        shape[d] = out
        axis = x.axes[d]
        if axis is None or rf[axis] is None:
            continue
        maps = _index_maps(mode, scale, align) if scale is not None else None
        if maps is None:
            rf[axis] = None
            if scale is None:
                needs_at = True
                notes.append("field depends on the input size through the resize ratio: "
                             "known at concrete sizes (evaluate)")
            else:
                notes.append(f"field of mode {mode!r} not modelled")
            continue
        old: AxisRF = rf[axis]
        first, last = maps
        rf[axis] = old.compose(first, last, old.jump * sympy.Rational(scale.numerator,
                                                                        scale.denominator),
                               old.period * scale.denominator)
    y = x.with_shape(shape, rf=rf)
    return OpResult(y, family="resize", notes=notes, needs_at=needs_at,
                    min_sizes=[(shape[d], "output size") for d in dims])


@register(F.interpolate, family="resize")
def interpolate(call: Call) -> OpResult:
    return resize_core(call, call.tensor(0, "input"), call.arg(1, "size"),
                       call.arg(2, "scale_factor"), call.arg(3, "mode", "nearest"),
                       call.arg(4, "align_corners"), call.arg(5, "recompute_scale_factor"))


@register(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, family="resize")
def upsample_module(call: Call) -> OpResult:
    m = call.module
    return resize_core(call, call.tensor(), m.size, m.scale_factor, m.mode, m.align_corners,
                       getattr(m, "recompute_scale_factor", None))


# -- padding ---------------------------------------------------------------------------------------
def _int_if_number(value: Expr) -> Expr | int:
    return int(value) if value.is_Integer else value


def padded_size(n: Expr, left: Expr | int, right: Expr | int) -> Expr:
    """Memoised :func:`_padded_size` (every Swin block pads the same sizes: the proof is the
    costly part)."""
    key = (sympy.sympify(n), sympy.sympify(left), sympy.sympify(right))
    if key not in _PADDED:
        _PADDED[key] = _padded_size(*key)
    return _PADDED[key]


_PADDED: dict[tuple, Expr] = {}


def _padded_size(n: Expr, left: Expr | int, right: Expr | int) -> Expr:
    """n + left + right, written as m·ceiling(n/m) (or m·floor(n/m)) when the padding is the
    usual "round up to a multiple" amount: ``W % 2``, ``(ws - W % ws) % ws`` (a SymPy ``Mod``).

    The closed form is proved, not guessed: with the size n replaced by L·t + r (L the lcm of the
    moduli, t an integer symbol), both sides are compared for every remainder r.
    """
    n = sympy.sympify(n)
    total = sympy.expand(n + left + right)
    mods = [m for m in sympy.sympify(total).atoms(sympy.Mod)]
    if not mods or n.is_Integer:
        return total
    moduli = [m.args[1] for m in mods]
    if not all(q.is_Integer and int(q) > 0 for q in moduli):
        return total
    z = sympy.Dummy("z", integer=True, nonnegative=True)
    as_z = total.xreplace({n: z})
    if n in as_z.free_symbols or as_z.free_symbols - {z}:
        return total  # the padding depends on something other than this size
    period = 1
    for q in moduli:
        period = period * int(q) // _gcd(period, int(q))
    t = sympy.Dummy("t", integer=True, nonnegative=True)
    for m in sorted({int(q) for q in moduli}):
        for form, make in ((lambda v, m=m: m * sympy.ceiling(v / m), ceildiv),
                           (lambda v, m=m: m * sympy.floor(v / m), floordiv)):
            if all(sympy.expand(as_z.xreplace({z: period * t + r})
                                - form(period * t + r)) == 0 for r in range(period)):
                return sympy.expand(m * make(n, m))
    return total


def _gcd(a: int, b: int) -> int:
    from math import gcd

    return gcd(a, b)


def pad_core(call: Call, x: TensorInfo, pad, mode: str) -> OpResult:
    pad = [int(p) if not isinstance(p, Expr) else _int_if_number(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise RuleError(f"{call.where()}: bad pad {pad}")
    shape, rf = list(x.shape), list(x.rf)
    notes = []
    for k in range(len(pad) // 2):
        d = x.ndim - 1 - k
        left, right = pad[2 * k], pad[2 * k + 1]
        shape[d] = padded_size(shape[d], left, right)
        axis = x.axes[d]
        if axis is not None and rf[axis] is not None:
            if isinstance(left, int):
                rf[axis] = rf[axis].through_window(1, 1, left)
            else:  # symbolic padding (e.g. U-Net's diff // 2): exact through the map
                old = rf[axis]
                rf[axis] = old.compose(lambda y, le=left: y - le, lambda y, le=left: y - le,
                                       old.jump, old.period)
    min_sizes: list[tuple[Expr, str]] = []
    if mode != "constant":
        notes.append(f"pad mode {mode}: padded coordinates stand for reflected/replicated/"
                     "wrapped pixels")
        # torch's limits: reflect needs every pad < the input, circular at most the input
        slack = {"reflect": 0, "circular": 1}.get(mode)
        for k in range(len(pad) // 2):
            d = x.ndim - 1 - k
            most = max(pad[2 * k], pad[2 * k + 1])
            if slack is not None and isinstance(most, int) and most > 0:
                rel = "<" if slack == 0 else "<="
                min_sizes.append((x.shape[d] - most + slack,
                                  f"input size - {most}{' + 1' if slack else ''} "
                                  f"(pad mode {mode} needs padding {rel} input)"))
    y = x.with_shape(shape, rf=rf)
    min_sizes += [(shape[x.ndim - 1 - k], "padded size") for k in range(len(pad) // 2)]
    return OpResult(y, kind="layer", family="pad", notes=notes, min_sizes=min_sizes)


@register(F.pad, family="pad")
def pad_functional(call: Call) -> OpResult:
    return pad_core(call, call.tensor(0, "input"), call.arg(1, "pad"),
                    call.arg(2, "mode", "constant"))


_PAD_MODULES = []
for _mode, _names in (("constant", ("ZeroPad", "ConstantPad")), ("reflect", ("ReflectionPad",)),
                      ("replicate", ("ReplicationPad",)), ("circular", ("CircularPad",))):
    for _name in _names:
        for _nd in (1, 2, 3):
            _cls = getattr(nn, f"{_name}{_nd}d", None)
            if _cls is not None:
                _PAD_MODULES.append(_cls)


@register(*_PAD_MODULES, family="pad")
def pad_module(call: Call) -> OpResult:
    m = call.module
    name = type(m).__name__
    mode = ("reflect" if name.startswith("Reflection") else "replicate"
            if name.startswith("Replication") else "circular" if name.startswith("Circular")
            else "constant")
    return pad_core(call, call.tensor(), list(m.padding), mode)


# -- pixel shuffle ---------------------------------------------------------------------------------
def pixel_shuffle_core(call: Call, x: TensorInfo, r: int, inverse: bool) -> OpResult:
    if x.ndim < 3:
        raise RuleError(f"{call.where()}: needs a (N, C, H, W) input")
    c_dim = x.ndim - 3
    shape, rf = list(x.shape), list(x.rf)
    c = shape[c_dim]
    conditions = []
    if not inverse:
        if c.is_Integer and int(c) % (r * r):
            raise RuleError(f"{call.where()}: {c} channels are not divisible by {r}²")
        shape[c_dim] = sympy.expand(c / (r * r)) if c.is_Integer else floordiv(c, r * r)
    else:
        shape[c_dim] = sympy.expand(c * r * r)
    for d in (x.ndim - 2, x.ndim - 1):
        n = shape[d]
        if inverse:
            shape[d] = floordiv(n, r)
            cond = sympy.Eq(sympy.Mod(n, r), 0)
            if cond is sympy.false:
                raise RuleError(f"{call.where()}: needs sizes divisible by {r}, but the size "
                                f"here is {n} for every input")
            if cond is not sympy.true:
                conditions.append(cond)
        else:
            shape[d] = sympy.expand(n * r)
        axis = x.axes[d]
        if axis is None or rf[axis] is None:
            continue
        old = rf[axis]
        if inverse:
            rf[axis] = old.through_window(r, r, 0)
        else:
            rf[axis] = old.compose(lambda y: floordiv(y, r), lambda y: floordiv(y, r),
                                   old.jump / r, old.period * r)
    y = x.with_shape(shape, rf=rf)
    if inverse:
        y2, min_sizes = apply_window(call, x, Window(2, (r, r), (r, r), (0, 0), (0, 0), (1, 1)),
                                     None)
    else:
        min_sizes = []
    return OpResult(y, family="shuffle", conditions=conditions, min_sizes=min_sizes)


@register(nn.PixelShuffle, F.pixel_shuffle, family="shuffle")
def pixel_shuffle(call: Call) -> OpResult:
    r = call.module.upscale_factor if call.module is not None else call.arg(1, "upscale_factor")
    return pixel_shuffle_core(call, call.tensor(0, "input"), int(r), False)


@register(nn.PixelUnshuffle, F.pixel_unshuffle, family="shuffle")
def pixel_unshuffle(call: Call) -> OpResult:
    r = (call.module.downscale_factor if call.module is not None
         else call.arg(1, "downscale_factor"))
    return pixel_shuffle_core(call, call.tensor(0, "input"), int(r), True)


__all__ = ["Integer", "pad_core", "resize_core"]
