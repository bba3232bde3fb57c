"""Pooling: max and average pooling windows (stride, padding, dilation, ``ceil_mode``),
adaptive pooling, and the reductions over dims that make an axis global (``mean``, ``sum``,
``amax``, norms and statistics): the family ``pool``.
"""

from __future__ import annotations

from typing import cast

import sympy
import torch
import torch.nn.functional as F
from sympy import Integer
from torch import nn
from torch.nn.modules.pooling import _AvgPoolNd, _MaxPoolNd

from ..errors import RuleError, Unsupported
from ..kinds import Family
from ..receptive_field import AxisRF
from ..symbolic import ceildiv, floordiv
from ..tensor import AXIS_LETTERS, TensorInfo
from .base import Call, OpResult, apply_window, ntuple, register, spatial_dims, window

#: torch's pooling classes and their number of spatial dims
_POOL_ND: dict[type, int] = {
    cls: nd for nd in (1, 2, 3) for cls in (
        getattr(nn, f"MaxPool{nd}d"), getattr(nn, f"AvgPool{nd}d"),
        getattr(nn, f"AdaptiveAvgPool{nd}d"), getattr(nn, f"AdaptiveMaxPool{nd}d"))
}


def _pool_nd(module: nn.Module) -> int:
    """1, 2 or 3: from the torch pooling class ``module`` is (a subclass of), never from its
    name (a user's ``FancyPool(nn.MaxPool2d)`` is 2-D, ``Pool3d(nn.AvgPool1d)`` 1-D)."""
    for cls, nd in _POOL_ND.items():
        if isinstance(module, cls):
            return nd
    raise RuleError(f"cannot tell the dimension of {type(module).__name__}: not a subclass of "
                    "a torch pooling class")


def pool_core(call: Call, x: TensorInfo, nd: int, kernel, stride, padding, dilation,
              ceil_mode: bool, return_indices: bool = False, avg: bool = False) -> OpResult:
    w = window(nd, kernel, stride, padding, dilation, ceil_mode)
    kernel = w.kernel
    for k, p in zip(kernel, w.pad_left):
        if p * 2 > k:
            raise RuleError(f"{call.where()}: padding {p} exceeds half the kernel {k}")
    y, min_sizes = apply_window(call, x, w)
    if avg and nd == 3:  # avg_pool3d first checks the unpadded input against the kernel
        min_sizes = [(x.shape[d] - kernel[i] + 1, f"input {AXIS_LETTERS[nd][i]} - {kernel[i]} "
                      "+ 1 (avg_pool3d needs input >= kernel)")
                     for i, d in enumerate(spatial_dims(call, x, nd)) if kernel[i] > 1
                     ] + min_sizes
    value = (y, y) if return_indices else y
    notes = ["returns (values, indices)"] if return_indices else []
    return OpResult(value, 0, "0", Integer(0), family=Family.POOL, notes=notes, min_sizes=min_sizes)


@register(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, family=Family.POOL)
def maxpool_module(call: Call) -> OpResult:
    m = call.mod(_MaxPoolNd)
    return pool_core(call, call.tensor(), _pool_nd(m), m.kernel_size, m.stride, m.padding,
                     m.dilation, m.ceil_mode, m.return_indices)


@register(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, family=Family.POOL)
def avgpool_module(call: Call) -> OpResult:
    m = call.mod(_AvgPoolNd)
    # (torch declares ceil_mode on AvgPool1d/2d/3d, not on their base)
    return pool_core(call, call.tensor(), _pool_nd(m), m.kernel_size, m.stride, m.padding, 1,
                     cast(bool, m.ceil_mode), avg=True)


def adaptive_core(call: Call, x: TensorInfo, nd: int, output_size, return_indices=False,
                  ) -> OpResult:
    dims = spatial_dims(call, x, nd)
    sizes = ntuple(output_size, nd)
    outs = [x.shape[d] if o is None else Integer(o) for d, o in zip(dims, sizes)]

    def bins(i: int, old: AxisRF) -> AxisRF:
        n, o = x.shape[dims[i]], outs[i]
        if sizes[i] is None:
            return old
        if o == 1:
            return old.collapsed(n)
        # bin y covers [floor(y*n/o), ceil((y+1)*n/o) - 1]; bins repeat every o outputs
        oi = int(o)
        exact = sympy.sympify(n).is_Integer and int(n) % oi == 0
        note = None if exact else "adaptive bins vary in width: the field size is the widest"
        return old.resampled(lambda y: floordiv(y * n, oi), lambda y: ceildiv((y + 1) * n, oi) - 1,
                             n / oi, oi, note)

    y = x.resampled(dims, outs, bins)
    value = (y, y) if return_indices else y
    return OpResult(value, 0, "0", Integer(0), family=Family.POOL)


@register(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
          nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, family=Family.POOL)
def adaptive_module(call: Call) -> OpResult:
    m = call.mod()
    return adaptive_core(call, call.tensor(), _pool_nd(m), m.output_size,
                         getattr(m, "return_indices", False))


def _functional_maxpool(nd: int):
    def rule(call: Call) -> OpResult:
        kernel = call.arg(1, "kernel_size")
        return pool_core(call, call.tensor(0, "input"), nd, kernel, call.arg(2, "stride"),
                         call.arg(3, "padding", 0), call.arg(4, "dilation", 1),
                         call.arg(5, "ceil_mode", False), call.arg(6, "return_indices", False))

    return rule


def _functional_avgpool(nd: int):
    def rule(call: Call) -> OpResult:
        return pool_core(call, call.tensor(0, "input"), nd, call.arg(1, "kernel_size"),
                         call.arg(2, "stride"), call.arg(3, "padding", 0), 1,
                         call.arg(4, "ceil_mode", False), avg=True)

    return rule


def _functional_adaptive(nd: int, max_pool: bool):
    def rule(call: Call) -> OpResult:
        return adaptive_core(call, call.tensor(0, "input"), nd, call.arg(1, "output_size"),
                             max_pool and call.arg(2, "return_indices", False))

    return rule


for _nd in (1, 2, 3):
    register(getattr(F, f"max_pool{_nd}d"), family=Family.POOL)(_functional_maxpool(_nd))
    register(getattr(F, f"avg_pool{_nd}d"), family=Family.POOL)(_functional_avgpool(_nd))
    register(getattr(F, f"adaptive_avg_pool{_nd}d"), family=Family.POOL)(
        _functional_adaptive(_nd, False))
    register(getattr(F, f"adaptive_max_pool{_nd}d"), family=Family.POOL)(
        _functional_adaptive(_nd, True))
    register(getattr(F, f"max_pool{_nd}d_with_indices"), family=Family.POOL)(
        _functional_maxpool(_nd))
    register(getattr(F, f"adaptive_max_pool{_nd}d_with_indices"), family=Family.POOL)(
        _functional_adaptive(_nd, True))


# -- reductions ------------------------------------------------------------------------------------
@register(torch.mean, torch.sum, torch.amax, torch.amin, "mean", "sum", "amax", "amin",
          family=Family.POOL)
def reduce_dims(call: Call) -> OpResult:
    """x.mean(dim=(2, 3), keepdim=...) and friends: the reduced axes become global."""
    x = call.tensor(0, "input")
    dims = call.arg(1, "dim")
    if dims is None:
        dims = list(range(x.ndim))
    if isinstance(dims, int):
        dims = [dims]
    return reduce_core(x, dims, bool(call.arg(2, "keepdim", False)))


def reduce_core(x: TensorInfo, dims: list, keepdim: bool) -> OpResult:
    """Reduce ``dims`` of ``x`` (mean, sum, norm, std, ...): the reduced axes become global."""
    dims = sorted({int(d) % x.ndim for d in dims})
    rf = x.collapsed_rf(dims)
    if keepdim:
        shape = [Integer(1) if k in dims else s for k, s in enumerate(x.shape)]
        axes = list(x.axes)
    else:
        shape = [s for k, s in enumerate(x.shape) if k not in dims]
        axes = [a for k, a in enumerate(x.axes) if k not in dims]
    return OpResult(TensorInfo(tuple(shape), tuple(axes), tuple(rf), x.const), family=Family.POOL)


# -- more reductions (norms, statistics) ---------------------------------------------------------
#: where dim and keepdim sit positionally, per op (after the input)
_REDUCTIONS = {
    torch.norm: (2, 3), "norm": (2, 3), torch.linalg.vector_norm: (2, 3),
    torch.std: (1, 3), "std": (1, 3), torch.var: (1, 3), "var": (1, 3),
    torch.logsumexp: (1, 2), "logsumexp": (1, 2), torch.prod: (1, 2), "prod": (1, 2),
    torch.any: (1, 2), "any": (1, 2), torch.all: (1, 2), "all": (1, 2),
}


@register(*_REDUCTIONS, family=Family.POOL)
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

    return reduce_core(x, dims, bool(call.arg(keep_at, "keepdim", False)))
