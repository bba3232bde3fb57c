"""Tensors built from sizes and repeats: positional encodings, masks and relative coordinates
(``torch.arange(h)``, ``torch.zeros(b, h, w)``, ``x.new_ones(...)``) stay symbolic instead of
falling back to numeric measurement; ``repeat`` and ``repeat_interleave``. Casts and pointwise
maths live in ``norm.py``, ``where``/``masked_fill`` in ``merge.py``.

A tensor built only from sizes and constants is itself a constant (``TensorInfo.const``): it has
no receptive field and merges ignore it. None of these ops count MACs (FlopCounterMode counts
none for them either).
"""

from __future__ import annotations

import dataclasses

import sympy
import torch
from sympy import Expr, Integer

from ..errors import RuleError, Unsupported
from ..kinds import Family, Kind
from ..symbolic import ceildiv, floordiv
from ..tensor import TensorInfo
from .base import Call, OpResult, register

_FLOAT = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _with_dtype(x: TensorInfo, dtype: object) -> TensorInfo:
    return dataclasses.replace(x, dtype=None if dtype in _FLOAT else dtype)


def _n_axes(call: Call) -> int:
    """How many input spatial axes fields are kept for (from any tensor argument)."""
    for v in (*call.args, *call.kwargs.values()):
        if isinstance(v, TensorInfo):
            return len(v.rf)
    return 0


def constant(shape: list[Expr], n_axes: int, dtype: object = None) -> TensorInfo:
    shape = [sympy.sympify(s) for s in shape]
    return TensorInfo(tuple(shape), (None,) * len(shape), (None,) * n_axes, const=True,
                      dtype=None if dtype in _FLOAT else dtype)


def _sizes(call: Call, values: tuple) -> list[Expr]:
    if len(values) == 1 and isinstance(values[0], (tuple, list, torch.Size)):
        values = tuple(values[0])
    out = []
    for v in values:
        if isinstance(v, TensorInfo):
            raise Unsupported(f"{call.where()}: a size given as a tensor")
        out.append(sympy.sympify(v))
    return out


# -- factories -----------------------------------------------------------------------------------
@register(torch.arange, family=Family.SHAPE)
def arange(call: Call) -> OpResult:
    args = [a for a in call.args]
    if "end" in call.kwargs:
        args = [call.kwargs.get("start", args[0] if args else 0), call.kwargs["end"]]
    if len(args) == 1:
        start, end, step = Integer(0), sympy.sympify(args[0]), Integer(1)
    else:
        start, end = sympy.sympify(args[0]), sympy.sympify(args[1])
        step = sympy.sympify(args[2] if len(args) > 2 else call.kwargs.get("step", 1))
    if not (step.is_Integer and int(step) > 0) or not (sympy.sympify(end - start).is_integer):
        raise Unsupported(f"{call.where()}: arange({start}, {end}, {step})")
    length = sympy.Max(ceildiv(end - start, int(step)), 0) if (end - start).is_Integer \
        else ceildiv(end - start, int(step))
    dtype = call.kwargs.get("dtype")
    if dtype is None:
        dtype = torch.int64 if all(sympy.sympify(v).is_integer for v in (start, end, step)) \
            else None
    return OpResult(constant([length], _n_axes(call), dtype), kind=Kind.SHAPE, family=Family.SHAPE)


@register(torch.zeros, torch.ones, torch.empty, torch.rand, torch.randn, family=Family.SHAPE)
def filled(call: Call) -> OpResult:
    shape = _sizes(call, call.args) if call.args else _sizes(call, (call.kwargs.get("size"),))
    return OpResult(constant(shape, 0, call.kwargs.get("dtype")), kind=Kind.SHAPE,
                    family=Family.SHAPE)


@register(torch.full, family=Family.SHAPE)
def full(call: Call) -> OpResult:
    shape = _sizes(call, (call.arg(0, "size"),))
    return OpResult(constant(shape, 0, call.kwargs.get("dtype")), kind=Kind.SHAPE,
                    family=Family.SHAPE)


@register(torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like,
          torch.rand_like, torch.randn_like, family=Family.SHAPE)
def like(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dtype = call.kwargs.get("dtype", x.dtype)
    return OpResult(constant(list(x.shape), len(x.rf), dtype), kind=Kind.SHAPE, family=Family.SHAPE)


@register("new_zeros", "new_ones", "new_empty", "new_full", family=Family.SHAPE)
def new_filled(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    rest = call.args[1:]
    if call.target == "new_full":
        rest = rest[:1]
    shape = _sizes(call, rest if rest else (call.kwargs.get("size"),))
    return OpResult(constant(shape, len(x.rf), call.kwargs.get("dtype", x.dtype)),
                    kind=Kind.SHAPE, family=Family.SHAPE)


@register(torch.linspace, family=Family.SHAPE)
def linspace(call: Call) -> OpResult:
    steps = call.arg(2, "steps")
    return OpResult(constant([steps], 0, call.kwargs.get("dtype")), kind=Kind.SHAPE,
                    family=Family.SHAPE)


@register("repeat", family=Family.SHAPE)
def repeat(call: Call) -> OpResult:
    """x.repeat(r0, r1, ...): dim k of size n becomes r_k·n; leading new dims are r_k."""
    x = call.tensor(0, "input")
    reps = _sizes(call, call.args[1:])
    if len(reps) < x.ndim:
        raise RuleError(f"{call.where()}: repeat needs at least {x.ndim} sizes")
    lead = len(reps) - x.ndim
    shape = [*reps[:lead], *(sympy.expand(r * s) for r, s in zip(reps[lead:], x.shape))]
    axes = [None] * lead + list(x.axes)
    rf = list(x.rf)
    for k, r in enumerate(reps[lead:]):
        a = x.axes[k]
        if r != 1 and a is not None:
            axes[lead + k] = None
            if (field := rf[a]) is not None and not field.is_global:
                if x.const:
                    continue
                raise Unsupported(f"{call.where()}: repeating a spatial dim")
    return OpResult(TensorInfo(tuple(shape), tuple(axes), tuple(rf), x.const, x.dtype),
                    kind=Kind.SHAPE, family=Family.SHAPE)


@register(torch.repeat_interleave, "repeat_interleave", family=Family.SHAPE)
def repeat_interleave(call: Call) -> OpResult:
    """Each element repeated r times along ``dim`` (the flattened tensor when dim is None):
    output element y of that dim is input element floor(y/r). No MACs."""
    x = call.tensor(0, "input")
    repeats = call.arg(1, "repeats")
    if repeats is None or isinstance(repeats, TensorInfo):
        raise Unsupported(f"{call.where()}: repeats given as a tensor")
    r = sympy.sympify(repeats)
    dim = call.arg(2, "dim")
    if dim is None:
        if x.ndim == 1:
            return OpResult(_repeat_dim(call, x, 0, r), kind=Kind.SHAPE, family=Family.SHAPE)
        rf = x.collapsed_rf(list(range(x.ndim)))
        y = TensorInfo((sympy.expand(x.numel() * r),), (None,), tuple(rf), x.const, x.dtype)
        return OpResult(y, kind=Kind.SHAPE, family=Family.SHAPE,
                        notes=["repeat_interleave of the flattened tensor"])
    return OpResult(_repeat_dim(call, x, int(dim) % x.ndim, r), kind=Kind.SHAPE,
                    family=Family.SHAPE)


def _repeat_dim(call: Call, x: TensorInfo, d: int, r: Expr) -> TensorInfo:
    shape = list(x.shape)
    shape[d] = sympy.expand(shape[d] * r)
    rf = list(x.rf)
    a = x.axes[d]
    old = rf[a] if a is not None else None
    if a is not None and old is not None and not old.is_global and r != 1:
        if not r.is_Integer:
            raise Unsupported(f"{call.where()}: repeating a spatial dim {r} times")
        k = int(r)

        def source(y: Expr) -> Expr:
            return floordiv(y, k)

        rf[a] = old.resampled(source, source, sympy.Rational(1, k), k)
    return x.with_shape(shape, rf=rf)
