"""Convolution (1-D/2-D/3-D; stride, padding including ``'same'``/``'valid'``,
dilation, groups, padding modes), module and functional forms: the family ``conv``.
"""

from __future__ import annotations

import sympy
import torch.nn.functional as F
from sympy import Expr, Integer
from torch import nn
from torch.nn.modules.conv import _ConvNd

from ..errors import RuleError
from ..kinds import Family
from ..tensor import AXIS_LETTERS, TensorInfo, Window
from .base import Call, OpResult, apply_window, ntuple, prod, register, spatial_dims


def _check_channels(call: Call, x: TensorInfo, nd: int, expected: int) -> list[Expr]:
    spatial_dims(call, x, nd)  # the rank first: an unbatched input is not a channel mismatch
    c = x.shape[x.ndim - nd - 1]
    if c.is_Integer:
        if int(c) != expected:
            raise RuleError(
                f"{call.where()}: expects {expected} input channels, the input has {c}"
            )
        return []
    return [sympy.Eq(c, expected)]


def _batch(x: TensorInfo, nd: int) -> Expr:
    return prod(x.shape[: x.ndim - nd - 1]) if x.ndim == nd + 2 else Integer(1)


def _conv_padding(padding, kernel, dilation, nd, stride) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * nd, (0,) * nd
        if padding == "same":
            left, right = [], []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                left.append(total // 2)
                right.append(total - total // 2)
            return tuple(left), tuple(right)
        raise RuleError(f"unknown padding {padding!r}")
    p = ntuple(padding, nd)
    return p, p


def _padding_mode_min_sizes(x: TensorInfo, nd: int, pl, pr, padding_mode: str,
                            ) -> list[tuple[Expr, str]]:
    """torch's own limits on the input size for non-zero padding: reflect needs every pad to be
    smaller than the input, circular at most the input (it wraps around only once)."""
    out: list[tuple[Expr, str]] = []
    slack = {"reflect": 0, "circular": 1}.get(padding_mode)
    if slack is None:
        return out
    letters = AXIS_LETTERS[nd]
    for i, d in enumerate(range(x.ndim - nd, x.ndim)):
        pad = max(pl[i], pr[i])
        if pad > 0:
            rel = "<" if slack == 0 else "<="
            out.append((x.shape[d] - pad + slack,
                        f"input {letters[i]} - {pad}{' + 1' if slack else ''} "
                        f"(padding_mode='{padding_mode}' needs padding {rel} input)"))
    return out


def _kernel_formula(nd: int) -> str:
    return "·".join(f"k_{c}" for c in AXIS_LETTERS[nd])


def conv_core(call: Call, x: TensorInfo, nd: int, in_ch: int, out_ch: int, kernel, stride,
              padding, dilation, groups: int, bias: bool, padding_mode: str = "zeros",
              ) -> OpResult:
    kernel, stride, dilation = (ntuple(v, nd) for v in (kernel, stride, dilation))
    pl, pr = _conv_padding(padding, kernel, dilation, nd, stride)
    w = Window(nd, kernel, stride, pl, pr, dilation)
    conditions = _check_channels(call, x, nd, in_ch)
    y, min_sizes = apply_window(call, x, w, out_ch, groups)
    k_prod = prod(kernel)
    weights = out_ch * (in_ch // groups) * int(k_prod)
    params = weights + (out_ch if bias else 0)
    formula = f"C_out·(C_in/g)·{_kernel_formula(nd)}" + (" + C_out" if bias else "")
    values = f"{out_ch}·({in_ch}/{groups})·{'·'.join(map(str, kernel))}" + (
        f" + {out_ch}" if bias else "")
    macs = _batch(x, nd) * out_ch * prod(y.shape[-nd:]) * (in_ch // groups) * k_prod
    notes = []
    if padding_mode != "zeros":
        notes.append(f"padding_mode={padding_mode}: padded coordinates stand for "
                     "reflected/replicated/wrapped pixels")
        min_sizes = _padding_mode_min_sizes(x, nd, pl, pr, padding_mode) + min_sizes
    return OpResult(y, params, f"{formula} = {values}", sympy.expand(macs), family=Family.CONV,
                    notes=notes, conditions=conditions, min_sizes=min_sizes)


# -- modules --------------------------------------------------------------------------------------
def _conv_nd(module: _ConvNd) -> int:
    return len(module.kernel_size)


@register(nn.Conv1d, nn.Conv2d, nn.Conv3d, family=Family.CONV)
def conv_module(call: Call) -> OpResult:
    m = call.mod(_ConvNd)
    return conv_core(call, call.tensor(), _conv_nd(m), m.in_channels, m.out_channels,
                     m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                     m.bias is not None, m.padding_mode)


# -- functional forms ------------------------------------------------------------------------------
def _functional_conv(nd: int):
    def rule(call: Call) -> OpResult:
        x = call.tensor(0, "input")
        weight = call.arg(1, "weight")
        bias = call.arg(2, "bias")
        if not isinstance(weight, TensorInfo):
            raise RuleError(f"{call.where()}: weight must be a tensor")
        stride = call.arg(3, "stride", 1)
        padding = call.arg(4, "padding", 0)
        dilation = call.arg(5, "dilation", 1)
        groups = int(call.arg(6, "groups", 1))
        out_ch = int(weight.shape[0])
        in_ch = int(weight.shape[1]) * groups
        kernel = tuple(int(k) for k in weight.shape[2:])
        res = conv_core(call, x, nd, in_ch, out_ch, kernel, stride, padding, dilation, groups,
                        bias is not None)
        res.params, res.params_formula = 0, "0 (weights are inputs of the call)"
        return res

    return rule


for _nd, _f in ((1, F.conv1d), (2, F.conv2d), (3, F.conv3d)):
    register(_f, family=Family.CONV)(_functional_conv(_nd))
