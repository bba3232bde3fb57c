"""Shape plumbing: view/reshape, permute/transpose, (un)squeeze, slicing, size()/shape, stack.

A reshape is split into groups of consecutive dims whose sizes multiply to the same value. A
group that keeps one spatial dim passes its field through; a group that merges a spatial dim with
others makes that axis global (its field becomes the union over positions); a group that splits a
non-spatial dim (the channel-shuffle idiom ``view(N, g, C/g, H, W)``) changes no field.
"""

from __future__ import annotations

import builtins
import operator

import sympy
import torch
from sympy import Expr, Integer

from ..errors import RuleError
from ..receptive_field import merge_rfs
from ..symbolic import ceildiv, floordiv
from ..tensor import TensorInfo
from .base import Call, OpResult, prod, register


def _eq(a: Expr, b: Expr) -> bool:
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def _as_dims(call: Call, values) -> list:
    if len(values) == 1 and isinstance(values[0], (tuple, list, torch.Size)):
        values = values[0]
    return list(values)


def reshape_core(call: Call, x: TensorInfo, target: list) -> OpResult:
    target = [sympy.sympify(t) for t in target]
    minus = [i for i, t in enumerate(target) if t == -1]
    if len(minus) > 1:
        raise RuleError(f"{call.where()}: more than one -1 in {target}")
    if minus:
        known = prod([t for i, t in enumerate(target) if i != minus[0]])
        target[minus[0]] = sympy.cancel(x.numel() / known)
    if not _eq(prod(target), x.numel()):
        total = call.concrete(prod(target) - x.numel())
        if total.is_Integer and int(total) != 0:
            raise RuleError(f"{call.where()}: cannot view {tuple(x.shape)} as {tuple(target)}")
    target = [sympy.expand(t) for t in target]
    # group dims: advance on both sides until the running products agree
    axes: list[int | None] = [None] * len(target)
    rf = list(x.rf)
    notes: list[str] = []
    i = j = 0
    while i < x.ndim or j < len(target):
        gi, gj = [i] if i < x.ndim else [], [j] if j < len(target) else []
        pi = x.shape[i] if i < x.ndim else Integer(1)
        pj = target[j] if j < len(target) else Integer(1)
        i, j = i + len(gi), j + len(gj)
        guard = 0
        while not _eq(pi, pj):
            guard += 1
            if guard > 64:
                raise RuleError(f"{call.where()}: cannot match {tuple(x.shape)} to {target}")
            # grow the side with the smaller known product (numbers) or the shorter group
            grow_in = j >= len(target) or (i < x.ndim and _smaller(call, pi, pj))
            if grow_in and i < x.ndim:
                gi.append(i)
                pi = pi * x.shape[i]
                i += 1
            elif j < len(target):
                gj.append(j)
                pj = pj * target[j]
                j += 1
            else:
                raise RuleError(f"{call.where()}: cannot match {tuple(x.shape)} to {target}")
        # absorb size-1 dims on either side into the group (they carry no data)
        spatial = [x.axes[d] for d in gi if x.axes[d] is not None and x.shape[d] != 1]
        real_out = [d for d in gj if target[d] != 1]
        real_in = [d for d in gi if x.shape[d] != 1]
        if len(spatial) == 1 and len(real_out) == 1 and len(real_in) == 1:
            axes[real_out[0]] = spatial[0]
        else:
            for d in gi:
                a = x.axes[d]
                if a is None or rf[a] is None:
                    continue
                if x.shape[d] == 1:
                    continue
                rf[a] = rf[a].collapsed(x.shape[d])
                notes.append("reshape merges a spatial axis: its field becomes global")
    if not notes and x.rf and list(axes).count(None) != len(axes) and (
            len(target) != x.ndim or any(not _eq(a, b) for a, b in zip(x.shape, target))):
        notes.append("regroups non-spatial dims only (e.g. the channel-shuffle idiom): "
                     "fields unchanged")
    y = TensorInfo(tuple(target), tuple(axes), tuple(rf), x.const)
    return OpResult(y, kind="shape", family="shape", notes=list(dict.fromkeys(notes)))


def _smaller(call: Call, a: Expr, b: Expr) -> bool:
    """Should the group on the input side grow (its product a is a proper factor of b)?"""
    ca, cb = call.concrete(a), call.concrete(b)
    if ca.is_Integer and cb.is_Integer:
        return int(ca) < int(cb)
    if sympy.fraction(sympy.cancel(sympy.sympify(b) / sympy.sympify(a)))[1] == 1:
        return True
    if sympy.fraction(sympy.cancel(sympy.sympify(a) / sympy.sympify(b)))[1] == 1:
        return False
    return True


@register("view", "reshape", torch.reshape, family="shape")
def reshape(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    rest = call.args[1:] if len(call.args) > 1 else [call.kwargs.get("shape")]
    return reshape_core(call, x, _as_dims(call, rest))


@register("view_as", "reshape_as", family="shape")
def reshape_as(call: Call) -> OpResult:
    return reshape_core(call, call.tensor(0, "input"), list(call.tensor(1, "other").shape))


def permute_core(x: TensorInfo, order: list[int]) -> TensorInfo:
    order = [int(o) % x.ndim for o in order]
    return TensorInfo(tuple(x.shape[o] for o in order), tuple(x.axes[o] for o in order), x.rf,
                      x.const)


@register("permute", torch.permute, family="shape")
def permute(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    order = _as_dims(call, call.args[1:] if len(call.args) > 1 else [call.kwargs.get("dims")])
    return OpResult(permute_core(x, order), kind="shape", family="shape")


@register("transpose", torch.transpose, torch.swapaxes, "swapaxes", family="shape")
def transpose(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    a, b = int(call.arg(1, "dim0")) % x.ndim, int(call.arg(2, "dim1")) % x.ndim
    order = list(range(x.ndim))
    order[a], order[b] = order[b], order[a]
    return OpResult(permute_core(x, order), kind="shape", family="shape")


@register("unsqueeze", torch.unsqueeze, family="shape")
def unsqueeze(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    d = int(call.arg(1, "dim"))
    d = d % (x.ndim + 1)
    y = TensorInfo((*x.shape[:d], Integer(1), *x.shape[d:]), (*x.axes[:d], None, *x.axes[d:]),
                   x.rf, x.const)
    return OpResult(y, kind="shape", family="shape")


@register("squeeze", torch.squeeze, family="shape")
def squeeze(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dim = call.arg(1, "dim")
    if dim is None:
        dims = [d for d, s in enumerate(x.shape) if s == 1]
        unknown = [d for d, s in enumerate(x.shape) if not s.is_Integer]
        if unknown:
            raise RuleError(f"{call.where()}: squeeze() of symbolic dims; give dim=")
    else:
        dims = [int(d) % x.ndim for d in (dim if isinstance(dim, (tuple, list)) else [dim])]
        dims = [d for d in dims if x.shape[d] == 1]
    keep = [d for d in range(x.ndim) if d not in dims]
    y = TensorInfo(tuple(x.shape[d] for d in keep), tuple(x.axes[d] for d in keep), x.rf,
                   x.const)
    return OpResult(y, kind="shape", family="shape")


@register("expand", "expand_as", family="shape")
def expand(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    if call.target == "expand_as":
        sizes = list(call.tensor(1, "other").shape)
    else:
        sizes = _as_dims(call, call.args[1:])
    sizes = [x.shape[d - (len(sizes) - x.ndim)] if sympy.sympify(s) == -1 else sympy.sympify(s)
             for d, s in enumerate(sizes)]
    lead = len(sizes) - x.ndim
    axes = (None,) * lead + x.axes
    return OpResult(TensorInfo(tuple(sizes), axes, x.rf, x.const), kind="shape", family="shape")


# -- sizes as values -----------------------------------------------------------------------------
@register("size", family="shape")
def size(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    d = call.arg(1, "dim")
    value = tuple(x.shape) if d is None else x.shape[int(d) % x.ndim]
    return OpResult(value, kind="shape", family="shape")


@register(builtins.getattr, family="shape")
def get_attribute(call: Call) -> OpResult:
    obj, name = call.args[0], call.args[1]
    if isinstance(obj, TensorInfo) and name == "shape":
        return OpResult(tuple(obj.shape), kind="shape", family="shape")
    if isinstance(obj, TensorInfo) and name in ("ndim",):
        return OpResult(obj.ndim, kind="shape", family="shape")
    if isinstance(obj, TensorInfo) and name in ("T", "mT"):
        order = list(range(obj.ndim))[::-1] if name == "T" else [
            *range(obj.ndim - 2), obj.ndim - 1, obj.ndim - 2]
        return OpResult(permute_core(obj, order), kind="shape", family="shape")
    raise RuleError(f"{call.where()}: attribute {name!r} is not supported")


@register("dim", family="shape")
def ndim(call: Call) -> OpResult:
    return OpResult(call.tensor(0, "input").ndim, kind="shape", family="shape")


def _int_arith(op):
    def rule(call: Call) -> OpResult:
        a, b = (sympy.sympify(v) for v in call.args[:2])
        if op is operator.mod:
            return OpResult(sympy.Mod(a, b), kind="shape", family="shape")
        if op is operator.floordiv:
            if b.is_Integer and int(b) > 0:
                return OpResult(floordiv(a, int(b)), kind="shape", family="shape")
            return OpResult(sympy.floor(a / b), kind="shape", family="shape")
        return OpResult(sympy.expand(op(a, b)), kind="shape", family="shape")

    return rule


for _op in (operator.floordiv, operator.mod):
    register(_op, family="shape")(_int_arith(_op))


# -- tensor indexing -----------------------------------------------------------------------------
def _slice_dim(call: Call, x: TensorInfo, d: int, sl: slice, shape: list, rf: list) -> None:
    n = x.shape[d]
    step = 1 if sl.step is None else int(sl.step)
    if step <= 0:
        raise RuleError(f"{call.where()}: slice step must be positive")

    def norm(v, default):
        if v is None:
            return default
        v = sympy.sympify(v)
        if v.is_Integer and int(v) < 0:
            return sympy.expand(n + v)
        return v

    start, stop = norm(sl.start, Integer(0)), norm(sl.stop, n)
    if stop.is_Integer and n.is_Integer:
        stop = Integer(min(int(stop), int(n)))
    elif sl.stop is not None and not (sympy.sympify(sl.stop).is_Integer
                                      and int(sl.stop) < 0):
        stop = sympy.Min(stop, n)
    shape[d] = ceildiv(stop - start, step)
    a = x.axes[d]
    if a is not None and rf[a] is not None:
        old = rf[a]
        rf[a] = old.compose(lambda y: step * y + start, lambda y: step * y + start,
                            old.jump * step, max(1, old.period // _gcd(old.period, step)))


def _gcd(a: int, b: int) -> int:
    import math

    return math.gcd(a, b)


def index_tensor(call: Call, x: TensorInfo, index) -> OpResult:
    items = list(index) if isinstance(index, tuple) else [index]
    if any(it is Ellipsis for it in items):
        e = items.index(Ellipsis)
        fill = x.ndim - (len(items) - 1 - sum(1 for it in items if it is None))
        items = items[:e] + [slice(None)] * fill + items[e + 1:]
    shape, axes, rf = [], [], list(x.rf)
    d = 0
    for it in items:
        if it is None:
            shape.append(Integer(1))
            axes.append(None)
            continue
        if d >= x.ndim:
            raise RuleError(f"{call.where()}: too many indices")
        if isinstance(it, slice):
            tmp = list(x.shape)
            _slice_dim(call, x, d, it, tmp, rf)
            shape.append(tmp[d])
            axes.append(x.axes[d])
        elif isinstance(it, (int, Expr)) and not isinstance(it, bool):
            a = x.axes[d]
            if a is not None and rf[a] is not None:
                k = sympy.sympify(it)
                k = sympy.expand(x.shape[d] + k) if k.is_Integer and int(k) < 0 else k
                old = rf[a]  # the axis is gone: every element reads position k's field
                rf[a] = old.compose(lambda y, k=k: k, lambda y, k=k: k, old.jump, 1)
        else:
            raise RuleError(f"{call.where()}: indexing with {type(it).__name__} is not "
                            "supported")
        d += 1
    shape.extend(x.shape[d:])
    axes.extend(x.axes[d:])
    return OpResult(TensorInfo(tuple(shape), tuple(axes), tuple(rf), x.const), kind="shape",
                    family="shape")


@register(operator.getitem, family="shape")
def getitem(call: Call) -> OpResult:
    seq, index = call.args[0], call.args[1]
    if isinstance(seq, TensorInfo):
        return index_tensor(call, seq, index)
    if isinstance(seq, (tuple, list)):
        if isinstance(index, int):
            return OpResult(seq[index], kind="shape", family="shape")
        if isinstance(index, slice):
            return OpResult(tuple(seq[index]), kind="shape", family="shape")
    if isinstance(seq, dict):
        return OpResult(seq[index], kind="shape", family="shape")
    raise RuleError(f"{call.where()}: cannot index {type(seq).__name__} with {index!r}")


@register(torch.stack, family="merge")
def stack(call: Call) -> OpResult:
    tensors = call.arg(0, "tensors")
    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, TensorInfo)
                                                         for t in tensors):
        raise RuleError(f"{call.where()}: expected a list of tensors")
    first = tensors[0]
    d = int(call.arg(1, "dim", 0)) % (first.ndim + 1)
    conditions = []
    for t in tensors[1:]:
        for a, b in zip(first.shape, t.shape):
            if not _eq(a, b):
                conditions.append(sympy.Eq(a, b))
    rf = [merge_rfs([t.rf[a] for t in tensors], [t.dim_of_axis(a) is None for t in tensors])
          for a in range(len(first.rf))]
    shape = (*first.shape[:d], Integer(len(tensors)), *first.shape[d:])
    axes = (*first.axes[:d], None, *first.axes[d:])
    return OpResult(TensorInfo(shape, axes, tuple(rf)), kind="merge", family="merge",
                    conditions=conditions)
