"""Rules for layers of timm (matched by qualified name: timm is never imported) whose forward
fx cannot trace: TensorFlow-style "SAME" convolution and pooling, which pad by an amount computed
from the input size (``get_same_padding`` calls ``math.ceil`` and ``max`` on the size), and
``resample_abs_pos_embed`` (a ViT with ``dynamic_img_size=True``).

SAME padding along an axis of size n with kernel k_eff = d(k-1)+1 and stride s pads
``max((ceil(n/s) - 1)·s + k_eff - n, 0)`` in total, ``floor(total/2)`` on the left: the output has
``ceil(n/s)`` elements and the field's offset depends on n modulo s (exact through the maps).
When k_eff < s the total can be 0 or not depending on n: that variant is measured instead.
"""

from __future__ import annotations

import sympy
from sympy import Integer
from torch import nn

from ..errors import Unsupported
from ..kinds import Family, Kind
from ..symbolic import ceildiv, floordiv
from ..tensor import TensorInfo, Window
from .base import Call, OpResult, apply_window, ntuple, prod, register_names, spatial_dims
from .conv import _batch, _check_channels, _kernel_formula


def _same_window(call: Call, x, nd: int, kernel, stride, dilation) -> Window:
    kernel, stride, dilation = (ntuple(v, nd) for v in (kernel, stride, dilation))
    dims = spatial_dims(call, x, nd)
    left, right = [], []
    for i, d in enumerate(dims):
        k_eff = dilation[i] * (kernel[i] - 1) + 1
        s = stride[i]
        if k_eff < s:
            raise Unsupported(f"{call.where()}: SAME padding with kernel {k_eff} < stride {s}")
        n = x.shape[d]
        total = sympy.expand(s * ceildiv(n, s) - n + k_eff - s)
        if total.is_Integer:
            lo = int(total) // 2
            left.append(lo)
            right.append(int(total) - lo)
        else:
            lo = floordiv(total, 2)
            left.append(lo)
            right.append(sympy.expand(total - lo))
    return Window(nd, kernel, stride, tuple(left), tuple(right), dilation)


def conv2d_same(call: Call) -> OpResult:
    m = call.mod(nn.Conv2d)  # timm's Conv2dSame is one
    x = call.tensor()
    nd = 2
    w = _same_window(call, x, nd, m.kernel_size, m.stride, m.dilation)
    conditions = _check_channels(call, x, nd, m.in_channels)
    y, min_sizes = apply_window(call, x, w, m.out_channels, m.groups)
    k_prod = prod(w.kernel)
    g = m.groups
    params = m.out_channels * (m.in_channels // g) * int(k_prod) + (
        m.out_channels if m.bias is not None else 0)
    formula = (f"C_out·(C_in/g)·{_kernel_formula(nd)}" + (" + C_out" if m.bias is not None
                                                          else "")
               + f" = {m.out_channels}·({m.in_channels}/{g})·{'·'.join(map(str, w.kernel))}"
               + (f" + {m.out_channels}" if m.bias is not None else ""))
    macs = _batch(x, nd) * m.out_channels * prod(y.shape[-nd:]) * (m.in_channels // g) * k_prod
    own = sum(p.numel() for p in m.parameters())
    if own != params:  # a variant with extra parameters (ScaledStdConv2dSame's gain)
        raise Unsupported(f"{call.where()}: {own} parameters, a conv has {params}")
    return OpResult(y, params, formula, sympy.expand(macs), family=Family.CONV,
                    conditions=conditions, min_sizes=min_sizes,
                    notes=["TensorFlow SAME padding: floor(total/2) left, the rest right"])


def pool2d_same(call: Call) -> OpResult:
    m = call.mod()
    if getattr(m, "ceil_mode", False):
        raise Unsupported(f"{call.where()}: SAME pooling with ceil_mode")
    x = call.tensor()
    w = _same_window(call, x, 2, m.kernel_size, m.stride, getattr(m, "dilation", 1))
    y, min_sizes = apply_window(call, x, w, None)
    return OpResult(y, 0, "0", Integer(0), family=Family.POOL, min_sizes=min_sizes,
                    notes=["TensorFlow SAME padding: floor(total/2) left, the rest right"])


register_names("timm.layers.conv2d_same.Conv2dSame", "timm.models.layers.conv2d_same.Conv2dSame",
               family=Family.CONV)(conv2d_same)
register_names("timm.layers.pool2d_same.MaxPool2dSame", "timm.layers.pool2d_same.AvgPool2dSame",
               family=Family.POOL)(pool2d_same)


def _resample_pos_embed(call: Call) -> OpResult:
    """timm's ``resample_abs_pos_embed(posemb, new_size, old_size, num_prefix_tokens, ...)``:
    the position embedding (a parameter, 1 × (prefix + h·w) × C) interpolated to the token grid
    ``new_size``. A constant of shape 1 × (prefix + new_h·new_w) × C; interpolation counts no
    MACs (as FlopCounterMode)."""
    pos = call.tensor(0, "posemb")
    new = call.arg(1, "new_size")
    prefix = call.arg(3, "num_prefix_tokens", 1)
    if not isinstance(new, (tuple, list)) or len(new) != 2:
        raise Unsupported(f"{call.where()}: new_size {new!r}")
    tokens = sympy.expand(sympy.sympify(new[0]) * sympy.sympify(new[1]) + int(prefix))
    y = TensorInfo((pos.shape[0], tokens, pos.shape[-1]), (None, None, None),
                   tuple(None for _ in pos.rf), const=True)
    return OpResult(y, kind=Kind.SHAPE, family=Family.RESIZE,
                    notes=["position embedding resampled to the token grid (a constant)"])


def _resample_pos_embed_nhwc(call: Call) -> OpResult:
    pos = call.tensor(0, "posemb")
    new = call.arg(1, "new_size")
    if not isinstance(new, (tuple, list)) or len(new) != 2:
        raise Unsupported(f"{call.where()}: new_size {new!r}")
    shape = (pos.shape[0], sympy.sympify(new[0]), sympy.sympify(new[1]), pos.shape[-1])
    y = TensorInfo(shape, (None,) * 4, tuple(None for _ in pos.rf), const=True)
    return OpResult(y, kind=Kind.SHAPE, family=Family.RESIZE,
                    notes=["position embedding resampled to the token grid (a constant)"])


register_names("timm.layers.pos_embed.resample_abs_pos_embed", family=Family.RESIZE)(
    _resample_pos_embed)
register_names("timm.layers.pos_embed.resample_abs_pos_embed_nhwc", family=Family.RESIZE)(
    _resample_pos_embed_nhwc)
