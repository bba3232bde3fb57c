"""Linear layers, flatten (a merged spatial axis becomes global) and recurrent
layers (``nn.RNN``, ``nn.GRU``).
"""

from __future__ import annotations

import sympy
import torch
import torch.nn.functional as F
from sympy import Integer
from torch import nn

from ..errors import RuleError, Unsupported
from ..kinds import Family, Kind
from ..tensor import TensorInfo
from .base import Call, OpResult, prod, register


def linear_core(call: Call, x: TensorInfo, in_f: int, out_f: int, bias: bool) -> OpResult:
    last = x.shape[-1]
    conditions = []
    if last.is_Integer and int(last) != in_f:
        raise RuleError(f"{call.where()}: expects {in_f} input features, the input has {last}")
    if not last.is_Integer:
        conditions.append(sympy.Eq(last, in_f))
    rf = x.collapsed_rf([x.ndim - 1])
    y = TensorInfo((*x.shape[:-1], Integer(out_f)), (*x.axes[:-1], None), tuple(rf))
    params = in_f * out_f + (out_f if bias else 0)
    formula = "in·out" + (" + out" if bias else "") + f" = {in_f}·{out_f}" + (
        f" + {out_f}" if bias else "")
    macs = sympy.expand(prod(x.shape[:-1]) * in_f * out_f)
    return OpResult(y, params, formula, macs, family=Family.LINEAR, conditions=conditions)


@register(nn.Linear, family=Family.LINEAR)
def linear_module(call: Call) -> OpResult:
    m = call.mod(nn.Linear)
    return linear_core(call, call.tensor(), m.in_features, m.out_features, m.bias is not None)


@register(F.linear, family=Family.LINEAR)
def linear_functional(call: Call) -> OpResult:
    weight = call.arg(1, "weight")
    res = linear_core(call, call.tensor(), int(weight.shape[1]), int(weight.shape[0]),
                      call.arg(2, "bias") is not None)
    res.params, res.params_formula = 0, "0 (weights are inputs of the call)"
    return res


def flatten_core(call: Call, x: TensorInfo, start: int, end: int) -> OpResult:
    if x.ndim == 0:
        return OpResult(x, kind=Kind.SHAPE, family=Family.SHAPE)
    start, end = start % x.ndim, end % x.ndim
    if start > end:
        raise RuleError(f"{call.where()}: flatten start_dim after end_dim")
    merged = list(range(start, end + 1))
    if len(merged) == 1:
        return OpResult(x, kind=Kind.SHAPE, family=Family.SHAPE)
    rf = x.collapsed_rf(merged)
    shape = (*x.shape[:start], prod(x.shape[start:end + 1]), *x.shape[end + 1:])
    axes = (*x.axes[:start], None, *x.axes[end + 1:])
    return OpResult(TensorInfo(tuple(sympy.expand(s) for s in shape), axes, tuple(rf)),
                    kind=Kind.SHAPE, family=Family.SHAPE)


@register(nn.Flatten, family=Family.SHAPE)
def flatten_module(call: Call) -> OpResult:
    m = call.mod(nn.Flatten)
    return flatten_core(call, call.tensor(), m.start_dim, m.end_dim)


@register(torch.flatten, "flatten", family=Family.SHAPE)
def flatten_call(call: Call) -> OpResult:
    return flatten_core(call, call.tensor(0, "input"), int(call.arg(1, "start_dim", 0)),
                        int(call.arg(2, "end_dim", -1)))


# -- recurrent layers ----------------------------------------------------------------------------
_GATES = {nn.GRU: 3, nn.RNN: 1}


@register(nn.RNN, nn.GRU, family=Family.RECURRENT)
def recurrent(call: Call) -> OpResult:
    """``nn.RNN`` / ``nn.GRU`` on a (T, B, in) input ((B, T, in) with batch_first, (T, in)
    unbatched): output (T, B, D·H) and h_n (D·layers, B, H). MACs per layer and direction:
    T·B·(in_l + H)·G·H (G = 3 gates for GRU, 1 for RNN), as FlopCounterMode counts them. The
    field along the sequence is taken as global (exact for h_n and bidirectional outputs; an
    upper bound for a one-way output, whose step t reads steps 0..t)."""
    m = call.mod(nn.RNNBase)
    gates = _GATES.get(type(m))
    if gates is None:
        raise Unsupported(f"{call.where()}: {type(m).__name__} is not modelled")
    x = call.arg(0, "input")
    if not isinstance(x, TensorInfo):
        raise Unsupported(f"{call.where()}: input is not a tensor (a packed sequence?)")
    if getattr(m, "proj_size", 0):
        raise Unsupported(f"{call.where()}: proj_size")
    if x.ndim not in (2, 3):
        raise RuleError(f"{call.where()}: expected a 2-D or 3-D input")
    batched = x.ndim == 3
    t_dim = 1 if batched and m.batch_first else 0
    seq = x.shape[t_dim]
    batch = x.shape[1 - t_dim] if batched else Integer(1)
    in_f, hidden, layers = m.input_size, m.hidden_size, m.num_layers
    dirs = 2 if m.bidirectional else 1
    conditions = []
    last = sympy.expand(x.shape[-1])
    if last.is_Integer and int(last) != in_f:
        raise RuleError(f"{call.where()}: expects {in_f} input features, the input has {last}")
    if not last.is_Integer:
        conditions.append(sympy.Eq(last, in_f))
    macs = Integer(0)
    for layer in range(layers):
        width = in_f if layer == 0 else dirs * hidden
        macs += dirs * seq * batch * (width + hidden) * gates * hidden
    rf = x.collapsed_rf([t_dim, x.ndim - 1])
    note = ("recurrence over the sequence: field taken as global"
            + ("" if dirs == 2 else " (an upper bound for the output: step t reads steps 0..t)"))
    out_rf = rf if dirs == 2 else [r.upper_bound(note) if r is not None else None for r in rf]
    out_shape = list(x.shape)
    out_shape[-1] = Integer(dirs * hidden)
    out_axes = list(x.axes)
    out_axes[-1] = None
    out = TensorInfo(tuple(out_shape), tuple(out_axes), tuple(out_rf))
    h_shape = (Integer(dirs * layers), batch, Integer(hidden)) if batched else (
        Integer(dirs * layers), Integer(hidden))
    h_n = TensorInfo(h_shape, (None,) * len(h_shape), tuple(rf))
    params = sum(p.numel() for p in m.parameters())
    return OpResult((out, h_n), params=params,
                    params_formula=f"numel of the weights and biases = {params}",
                    macs=sympy.expand(macs), family=Family.RECURRENT, conditions=conditions,
                    notes=[note])
