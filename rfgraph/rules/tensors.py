"""Tensors built from sizes, dtype casts and pointwise maths: positional encodings, masks and
relative coordinates (``torch.arange(h)``, ``torch.zeros(b, h, w).bool()``, ``sin``/``cos``,
``cumsum``) stay symbolic instead of falling back to numeric measurement.

A tensor built only from sizes and constants is itself a constant (``TensorInfo.const``): it has
no receptive field and merges ignore it. Pointwise maths keeps shape and field. None of these ops
count MACs (FlopCounterMode counts none for them either).
"""

from __future__ import annotations

import dataclasses
import operator

import sympy
import torch
from sympy import Expr, Integer

from ..errors import RuleError
from ..symbolic import ceildiv
from ..tensor import TensorInfo
from .base import Call, OpResult, Unsupported, register

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


# -- casts ---------------------------------------------------------------------------------------
_CAST_METHODS = {"bool": torch.bool, "long": torch.int64, "int": torch.int32,
                 "short": torch.int16, "char": torch.int8, "byte": torch.uint8,
                 "bfloat16": torch.bfloat16}


@register(*_CAST_METHODS, "type", family="activation")
def cast(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    if call.target == "type":
        dtype = call.arg(1, "dtype")
        if not isinstance(dtype, torch.dtype):
            raise Unsupported(f"{call.where()}: type({dtype!r})")
    else:
        dtype = _CAST_METHODS[call.target]
    return OpResult(_with_dtype(x, dtype), kind="transparent", family="activation")


@register("to", "float", "double", "half", "type_as", family="activation")
def to(call: Call) -> OpResult:
    """x.to(dtype | device | tensor), x.float(), ...: shape and field unchanged; the dtype is
    kept for stand-in tensors."""
    x = call.tensor(0, "input")
    if call.target in ("float", "double", "half"):
        return OpResult(_with_dtype(x, torch.float32), kind="transparent", family="activation")
    dtype = call.kwargs.get("dtype")
    for v in call.args[1:]:
        if isinstance(v, torch.dtype):
            dtype = v
        elif isinstance(v, TensorInfo):
            dtype = v.dtype if v.dtype is not None else torch.float32
    y = x if dtype is None else _with_dtype(x, dtype)
    return OpResult(y, kind="transparent", family="activation")


# -- factories -----------------------------------------------------------------------------------
@register(torch.arange, family="shape")
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
    return OpResult(constant([length], _n_axes(call), dtype), kind="shape", family="shape")


@register(torch.zeros, torch.ones, torch.empty, torch.rand, torch.randn, family="shape")
def filled(call: Call) -> OpResult:
    shape = _sizes(call, call.args) if call.args else _sizes(call, (call.kwargs.get("size"),))
    return OpResult(constant(shape, 0, call.kwargs.get("dtype")), kind="shape", family="shape")


@register(torch.full, family="shape")
def full(call: Call) -> OpResult:
    shape = _sizes(call, (call.arg(0, "size"),))
    return OpResult(constant(shape, 0, call.kwargs.get("dtype")), kind="shape", family="shape")


@register(torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like,
          torch.rand_like, torch.randn_like, family="shape")
def like(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dtype = call.kwargs.get("dtype", x.dtype)
    return OpResult(constant(list(x.shape), len(x.rf), dtype), kind="shape", family="shape")


@register("new_zeros", "new_ones", "new_empty", "new_full", family="shape")
def new_filled(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    rest = call.args[1:]
    if call.target == "new_full":
        rest = rest[:1]
    shape = _sizes(call, rest if rest else (call.kwargs.get("size"),))
    return OpResult(constant(shape, len(x.rf), call.kwargs.get("dtype", x.dtype)),
                    kind="shape", family="shape")


@register(torch.linspace, family="shape")
def linspace(call: Call) -> OpResult:
    steps = call.arg(2, "steps")
    return OpResult(constant([steps], 0, call.kwargs.get("dtype")), kind="shape",
                    family="shape")


# -- pointwise maths -----------------------------------------------------------------------------
_UNARY = (torch.sin, torch.cos, torch.tan, torch.log, torch.log2, torch.log1p, torch.sqrt,
          torch.rsqrt, torch.erf, torch.floor, torch.ceil, torch.round, torch.sign,
          torch.reciprocal, torch.square, torch.expm1, torch.sinh, torch.cosh, torch.atan,
          torch.frac, torch.trunc, torch.logical_not, torch.bitwise_not, operator.invert,
          torch.nan_to_num)
_UNARY_METHODS = ("sin", "cos", "tan", "log", "log2", "log1p", "sqrt", "rsqrt", "erf", "floor",
                  "ceil", "round", "sign", "reciprocal", "square", "expm1", "sinh", "cosh",
                  "atan", "frac", "trunc", "logical_not", "bitwise_not", "sqrt_", "exp_",
                  "clamp_min", "clamp_max", "clamp_min_", "clamp_max_", "fill_", "zero_",
                  "nan_to_num", "pow_", "floor_", "ceil_", "round_")


@register(*_UNARY, *_UNARY_METHODS, family="activation")
def pointwise(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dtype = torch.bool if call.target in (torch.logical_not, "logical_not") else x.dtype
    return OpResult(_with_dtype(x, dtype), kind="transparent", family="activation")


@register(torch.pow, "pow", family="activation")
def power(call: Call) -> OpResult:
    tensors = [a for a in call.args[:2] if isinstance(a, TensorInfo)]
    if not tensors:
        raise Unsupported(f"{call.where()}: pow without a tensor")
    if len(tensors) == 2:
        from .glue import _broadcast

        y, conditions = _broadcast(call, tensors)
        return OpResult(y, kind="merge", family="merge", conditions=conditions)
    return OpResult(tensors[0], kind="transparent", family="activation")


@register(torch.cumsum, torch.cumprod, "cumsum", "cumprod", family="activation")
def cumulative(call: Call) -> OpResult:
    """Element y along ``dim`` reads elements 0..y."""
    x = call.tensor(0, "input")
    d = int(call.arg(1, "dim")) % x.ndim
    rf = list(x.rf)
    a = x.axes[d]
    if a is not None and rf[a] is not None:
        old = rf[a]
        if old.is_global:
            pass
        else:
            rf[a] = old.compose(lambda y: Integer(0), lambda y: y, old.jump, old.period,
                                "cumulative sum: element y reads elements 0..y")
    return OpResult(x.with_shape(x.shape, rf=rf), kind="layer", family="activation")


@register(torch.where, family="merge")
def where(call: Call) -> OpResult:
    tensors = [a for a in call.args[:3] if isinstance(a, TensorInfo)]
    if len(call.args) < 3 or not tensors:
        raise Unsupported(f"{call.where()}: torch.where with one argument (indices)")
    from .glue import _broadcast

    y, conditions = _broadcast(call, tensors)
    return OpResult(y, kind="merge", family="merge", conditions=conditions)


@register(torch.masked_fill, "masked_fill", "masked_fill_", family="merge")
def masked_fill(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    mask = call.arg(1, "mask")
    if not isinstance(mask, TensorInfo):
        raise RuleError(f"{call.where()}: the mask must be a tensor")
    from .glue import _broadcast

    y, conditions = _broadcast(call, [x, mask])
    shape_ok = len(y.shape) == len(x.shape)
    if not shape_ok:
        raise RuleError(f"{call.where()}: the mask does not broadcast to the input")
    return OpResult(dataclasses.replace(y, dtype=x.dtype), kind="merge", family="merge",
                    conditions=conditions)


@register("repeat", family="shape")
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
            if rf[a] is not None and not rf[a].is_global:
                if x.const:
                    continue
                raise Unsupported(f"{call.where()}: repeating a spatial dim")
    return OpResult(TensorInfo(tuple(shape), tuple(axes), tuple(rf), x.const, x.dtype),
                    kind="shape", family="shape")


@register(torch.nn.functional.normalize, family="norm")
def normalize(call: Call) -> OpResult:
    """F.normalize(x, p, dim): each vector along ``dim`` is divided by its norm, so an element
    reads the whole of that dim (a spatial or token axis there becomes global)."""
    x = call.tensor(0, "input")
    d = int(call.arg(2, "dim", 1)) % x.ndim
    rf = list(x.rf)
    a = x.axes[d]
    if a is not None and rf[a] is not None:
        rf[a] = rf[a].collapsed(x.shape[d])
    return OpResult(x.with_shape(x.shape, rf=rf), kind="transparent", family="norm")


# -- more reductions (norms, statistics) ---------------------------------------------------------
#: where dim and keepdim sit positionally, per op (after the input)
_REDUCTIONS = {
    torch.norm: (2, 3), "norm": (2, 3), torch.linalg.vector_norm: (2, 3),
    torch.std: (1, 3), "std": (1, 3), torch.var: (1, 3), "var": (1, 3),
    torch.logsumexp: (1, 2), "logsumexp": (1, 2), torch.prod: (1, 2), "prod": (1, 2),
    torch.any: (1, 2), "any": (1, 2), torch.all: (1, 2), "all": (1, 2),
}


@register(*_REDUCTIONS, family="pool")
def reduction(call: Call) -> OpResult:
    """x.norm(p, dim, keepdim), std/var/logsumexp/prod/any/all over dims: as ``mean``: the
    reduced axes become global. No MACs (FlopCounterMode counts none)."""
    x = call.tensor(0, "input")
    dim_at, keep_at = _REDUCTIONS[call.target]
    dims = call.arg(dim_at, "dim")
    if dims is None:
        dims = list(range(x.ndim))
    if isinstance(dims, int):
        dims = [dims]
    if not all(isinstance(d, int) for d in dims):
        raise Unsupported(f"{call.where()}: reduction over {dims!r}")
    from .glue import reduce_core

    return reduce_core(x, dims, bool(call.arg(keep_at, "keepdim", False)))
