"""Padding: ``F.pad`` and the ``nn.*Pad*`` modules (constant, reflect, replicate,
circular; symbolic amounts such as U-Net's ``diff // 2``): the offset moves by ``-left·j``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import sympy
import torch.nn.functional as F
from sympy import Expr
from torch import nn

from ..errors import RuleError
from ..kinds import Family, Kind
from ..symbolic import ceildiv, floordiv
from ..tensor import TensorInfo
from .base import Call, OpResult, known, register


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


def _most(call: Call, left: Expr | int, right: Expr | int) -> tuple[int, bool]:
    """The larger of two paddings as an int, and whether it depends on the input size (a
    symbolic one that may be positive counts as large until the sizes are known)."""
    out, symbolic = 0, False
    for p in (left, right):
        p = call.concrete(p)
        if p.is_Integer:
            out = max(out, int(p))
        elif not p.is_nonpositive:
            out, symbolic = max(out, 10**6), True
    return out, symbolic


def pad_core(call: Call, x: TensorInfo, pad, mode: str) -> OpResult:
    pad = [int(p) if not isinstance(p, Expr) else _int_if_number(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise RuleError(f"{call.where()}: bad pad {pad}")
    shape, rf = list(x.shape), list(x.rf)
    notes = []
    needs_at = False  # a size-dependent pad: whether it pads at all is known at sizes
    for k in range(len(pad) // 2):
        d = x.ndim - 1 - k
        left, right = pad[2 * k], pad[2 * k + 1]
        shape[d] = padded_size(shape[d], left, right)
        axis = x.axes[d]
        if axis is not None and rf[axis] is not None:
            if isinstance(left, int):
                rf[axis] = known(rf[axis]).through_window(1, 1, left)
            else:  # symbolic padding (e.g. U-Net's diff // 2): exact through the map
                old = known(rf[axis])

                def shift(y: Expr, le: Expr = left) -> Expr:
                    return y - le

                rf[axis] = old.compose(shift, shift, old.jump, old.period)
            if mode == "constant":  # the new elements read only padding
                most, symbolic = _most(call, left, right)
                needs_at = needs_at or symbolic
                rf[axis] = known(rf[axis]).with_pad_run(known(x.rf[axis]).pad_run + most)
    min_sizes: list[tuple[Expr, str]] = []
    for k in range(len(pad) // 2):
        d = x.ndim - 1 - k
        left, right = pad[2 * k], pad[2 * k + 1]
        if not (isinstance(left, int) and isinstance(right, int)):
            continue
        crop = -min(left, 0) - min(right, 0)
        grow = max(left, right, 0)
        if mode == "constant" and crop > 0:
            # torch narrows first: a negative pad may not remove more than the input has
            min_sizes.append((x.shape[d] - crop + 1,
                              f"input size - {crop} + 1 (negative padding crops {crop} "
                              f"elements: needs input >= {crop})"))
        if mode == "circular" and crop > 0 and grow > 0:
            # the wrapped copy must not overlap its source (torch refuses overlapping copies)
            min_sizes.append((x.shape[d] - crop - grow + 1,
                              f"input size - {crop + grow} + 1 (pad mode circular with padding "
                              f"({left}, {right}) needs input >= {crop + grow})"))
    if mode != "constant":
        notes.append(f"pad mode {mode}: padded coordinates stand for reflected/replicated/"
                     "wrapped pixels")
        # torch's limits: reflect needs every pad < the input, circular at most the input
        slack = {"reflect": 0, "circular": 1}.get(mode)
        for k in range(len(pad) // 2):
            d = x.ndim - 1 - k
            left, right = pad[2 * k], pad[2 * k + 1]
            if not (isinstance(left, int) and isinstance(right, int)):
                continue
            most = max(left, right)
            if slack is not None and most > 0:
                rel = "<" if slack == 0 else "<="
                min_sizes.append((x.shape[d] - most + slack,
                                  f"input size - {most}{' + 1' if slack else ''} "
                                  f"(pad mode {mode} needs padding {rel} input)"))
    y = x.with_shape(shape, rf=rf)
    min_sizes += [(shape[x.ndim - 1 - k], "padded size") for k in range(len(pad) // 2)]
    return OpResult(y, kind=Kind.LAYER, family=Family.PAD, notes=notes, min_sizes=min_sizes,
                    needs_at=needs_at)


@register(F.pad, family=Family.PAD)
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


@register(*_PAD_MODULES, family=Family.PAD)
def pad_module(call: Call) -> OpResult:
    m = call.mod()
    name = type(m).__name__
    mode = ("reflect" if name.startswith("Reflection") else "replicate"
            if name.startswith("Replication") else "circular" if name.startswith("Circular")
            else "constant")
    # (every torch pad module has a padding tuple; no common base declares it)
    return pad_core(call, call.tensor(), list(cast(Sequence[int], m.padding)), mode)
