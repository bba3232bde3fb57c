"""Transposed convolution (1-D/2-D/3-D; ``output_padding``, groups,
dilation), module and functional forms: output y reads the inputs
``ceil((y+p-k_eff+1)/s) .. floor((y+p)/s)``, so fields repeat every s outputs.
"""

from __future__ import annotations

import sympy
import torch.nn.functional as F
from sympy import Integer
from torch import nn
from torch.nn.modules.conv import _ConvTransposeNd

from ..errors import RuleError
from ..kinds import Family
from ..receptive_field import AxisRF
from ..tensor import AXIS_LETTERS, TensorInfo
from .base import Call, OpResult, ntuple, prod, register, spatial_dims
from .conv import _batch, _check_channels, _conv_nd, _kernel_formula


def conv_transpose_core(call: Call, x: TensorInfo, nd: int, in_ch: int, out_ch: int, kernel,
                        stride, padding, output_padding, dilation, groups: int, bias: bool,
                        ) -> OpResult:
    kernel, stride, padding, output_padding, dilation = (
        ntuple(v, nd) for v in (kernel, stride, padding, output_padding, dilation))
    conditions = _check_channels(call, x, nd, in_ch)
    dims = spatial_dims(call, x, nd)
    outs = [sympy.expand((x.shape[d] - 1) * stride[i] - 2 * padding[i]
                         + dilation[i] * (kernel[i] - 1) + output_padding[i] + 1)
            for i, d in enumerate(dims)]

    def through(i: int, old: AxisRF) -> AxisRF:
        new = old.through_transposed(kernel[i], stride[i], padding[i], dilation[i])
        if new.extent is not None and output_padding[i] > padding[i] and not new.upper:
            # the last outputs (output padding beyond the cropped padding) read nothing,
            # while every element of a global field is given its extent
            new = new.upper_bound("output padding over a global field: the last outputs read "
                                  "nothing")
        return new

    y = x.resampled(dims, outs, through)
    min_sizes = [(out, f"output {AXIS_LETTERS[nd][i]}") for i, out in enumerate(outs)]
    notes: list[str] = []
    shape = list(y.shape)
    shape[dims[0] - 1] = Integer(out_ch)
    # (grouped transposed convs do not follow channels: their channels may vary)
    y = y.with_shape(shape, varies=x.varies and groups > 1)
    k_prod = prod(kernel)
    params = in_ch * (out_ch // groups) * int(k_prod) + (out_ch if bias else 0)
    formula = f"C_in·(C_out/g)·{_kernel_formula(nd)}" + (" + C_out" if bias else "")
    values = f"{in_ch}·({out_ch}/{groups})·{'·'.join(map(str, kernel))}" + (
        f" + {out_ch}" if bias else "")
    macs = _batch(x, nd) * in_ch * prod(x.shape[-nd:]) * (out_ch // groups) * k_prod
    return OpResult(y, params, f"{formula} = {values}", sympy.expand(macs), family=Family.CONV,
                    notes=notes, conditions=conditions, min_sizes=min_sizes)


@register(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, family=Family.CONV)
def conv_transpose_module(call: Call) -> OpResult:
    m = call.mod(_ConvTransposeNd)
    if call.arg(1, "output_size") is not None:
        raise RuleError(f"{call.where()}: output_size= in forward is not supported")
    return conv_transpose_core(call, call.tensor(), _conv_nd(m), m.in_channels, m.out_channels,
                               m.kernel_size, m.stride, m.padding, m.output_padding,
                               m.dilation, m.groups, m.bias is not None)


def _functional_conv_t(nd: int):
    def rule(call: Call) -> OpResult:
        x = call.tensor(0, "input")
        weight = call.arg(1, "weight")
        bias = call.arg(2, "bias")
        stride = call.arg(3, "stride", 1)
        padding = call.arg(4, "padding", 0)
        output_padding = call.arg(5, "output_padding", 0)
        groups = int(call.arg(6, "groups", 1))
        dilation = call.arg(7, "dilation", 1)
        in_ch = int(weight.shape[0])
        out_ch = int(weight.shape[1]) * groups
        kernel = tuple(int(k) for k in weight.shape[2:])
        res = conv_transpose_core(call, x, nd, in_ch, out_ch, kernel, stride, padding,
                                  output_padding, dilation, groups, bias is not None)
        res.params, res.params_formula = 0, "0 (weights are inputs of the call)"
        return res

    return rule


for _nd, _f in ((1, F.conv_transpose1d), (2, F.conv_transpose2d), (3, F.conv_transpose3d)):
    register(_f, family=Family.CONV)(_functional_conv_t(_nd))
