"""ATen ops, as found in graphs stored by ``torch.export`` (``.pt2`` files).

Most ATen overloads take the same arguments as their ``torch.nn.functional`` twins, so each entry
here forwards to the functional rule, adapting the arguments where they differ.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..kinds import Family, Kind
from .base import Call, OpResult, lookup, register
from .pad import pad_core
from .resize import resize_core
from .shape import index_tensor

aten = torch.ops.aten

#: every ATen op with a rule -> the torch-level op (function, module or method name) whose rule
#: it shares: its twin. The registry-coverage test (tests/test_registry.py) checks that every
#: torch op with a rule has a twin here, is in :data:`EXPORTS_AS`, or is in :data:`MODULE_ONLY`.
TWINS: dict[Any, Any] = {}


def _forward(target: object, adapt: Callable[[Call], Call] | None = None):
    def rule(call: Call) -> OpResult:
        found = lookup(target)
        if found is None:  # pragma: no cover - registration order bug
            raise RuntimeError(f"no rule for {target}")
        return found[0](adapt(call) if adapt else call)

    return rule


def _with(call: Call, args=None, **kwargs) -> Call:
    return Call(call.node, call.module, call.module_name, call.target,
                tuple(call.args if args is None else args), {**call.kwargs, **kwargs}, call.at)


def _ops(*names: str) -> list:
    out = []
    for name in names:
        packet, _, overload = name.partition(".")
        op = getattr(aten, packet, None)
        if op is None:
            continue
        ov = getattr(op, overload or "default", None)
        if ov is not None:
            out.append(ov)
    return out


_SAME_AS = {
    F.conv1d: ["conv1d.default", "conv1d.padding"],
    F.conv2d: ["conv2d.default", "conv2d.padding"],
    F.conv3d: ["conv3d.default", "conv3d.padding"],
    F.conv_transpose1d: ["conv_transpose1d.default"],
    F.conv_transpose2d: ["conv_transpose2d.input"],
    F.conv_transpose3d: ["conv_transpose3d.input"],
    F.max_pool1d: ["max_pool1d.default"],
    F.max_pool2d: ["max_pool2d.default"],
    F.max_pool3d: ["max_pool3d.default"],
    F.avg_pool1d: ["avg_pool1d.default"],
    F.avg_pool2d: ["avg_pool2d.default"],
    F.avg_pool3d: ["avg_pool3d.default"],
    F.adaptive_avg_pool1d: ["adaptive_avg_pool1d.default"],
    F.adaptive_avg_pool2d: ["adaptive_avg_pool2d.default", "_adaptive_avg_pool2d.default"],
    F.adaptive_avg_pool3d: ["adaptive_avg_pool3d.default", "_adaptive_avg_pool3d.default"],
    F.linear: ["linear.default"],
    F.relu: ["relu.default", "relu_.default", "hardtanh.default", "hardtanh_.default",
             "sigmoid.default", "tanh.default", "silu.default", "silu_.default", "gelu.default",
             "hardswish.default", "hardswish_.default", "hardsigmoid.default",
             "leaky_relu.default", "elu.default", "dropout.default", "clone.default",
             "alias.default", "detach.default", "contiguous.default", "_to_copy.default",
             "clamp.default", "mish.default", "softplus.default", "relu6.default"],
    F.batch_norm: ["batch_norm.default", "layer_norm.default", "group_norm.default",
                   "instance_norm.default"],
    torch.add: ["add.Tensor", "add_.Tensor", "sub.Tensor", "sub_.Tensor", "mul.Tensor",
                "mul_.Tensor", "div.Tensor", "div_.Tensor", "add.Scalar", "mul.Scalar",
                "maximum.default", "minimum.default"],
    torch.cat: ["cat.default"],
    torch.stack: ["stack.default"],
    torch.flatten: ["flatten.using_ints"],
    torch.mean: ["mean.dim", "sum.dim_IntList", "amax.default"],
    F.channel_shuffle: ["channel_shuffle.default", "native_channel_shuffle.default"],
    F.pixel_shuffle: ["pixel_shuffle.default"],
    F.pixel_unshuffle: ["pixel_unshuffle.default"],
    torch.chunk: ["chunk.default"],
    torch.split: ["split.Tensor", "split_with_sizes.default"],
    torch.permute: ["permute.default"],
    torch.transpose: ["transpose.int"],
    torch.unsqueeze: ["unsqueeze.default"],
    torch.reshape: ["view.default", "reshape.default", "_unsafe_view.default"],
    torch.softmax: ["softmax.int", "_softmax.default"],
}

for _target, _names in _SAME_AS.items():
    for _op in _ops(*_names):
        register(_op)(_forward(_target))
        TWINS[_op] = _target


def _with_indices(target):
    return _forward(target, lambda c: _with(c, return_indices=True))


for _nd in (1, 2, 3):
    for _op in _ops(f"max_pool{_nd}d_with_indices.default"):
        register(_op, family=Family.POOL)(_with_indices(getattr(F, f"max_pool{_nd}d")))
        TWINS[_op] = getattr(F, f"max_pool{_nd}d_with_indices")
    for _op in _ops(f"adaptive_max_pool{_nd}d.default"):
        register(_op, family=Family.POOL)(_with_indices(getattr(F, f"adaptive_max_pool{_nd}d")))
        TWINS[_op] = getattr(F, f"adaptive_max_pool{_nd}d")


@register(*_ops("_native_batch_norm_legit_no_training.default",
                "native_batch_norm.default", "native_layer_norm.default",
                "native_group_norm.default"), family=Family.NORM)
def native_norm(call: Call) -> OpResult:
    """These return (out, saved statistics...): the statistics carry no spatial field."""
    x = call.tensor(0, "input")
    return OpResult((x, x, x), kind=Kind.TRANSPARENT, family=Family.NORM)


TWINS.update(dict.fromkeys(_ops("_native_batch_norm_legit_no_training.default",
                                "native_batch_norm.default"), F.batch_norm))
TWINS.update(dict.fromkeys(_ops("native_layer_norm.default"), F.layer_norm))
TWINS.update(dict.fromkeys(_ops("native_group_norm.default"), F.group_norm))


def _upsample(mode: str):
    def rule(call: Call) -> OpResult:
        x = call.tensor(0, "input")
        size = call.arg(1, "output_size")
        if mode == "nearest":
            scales = call.arg(2, "scale_factors")
            align = None
        else:
            align = call.arg(2, "align_corners")
            scales = call.arg(3, "scale_factors")
        return resize_core(call, x, size, scales if size is None else None, mode, align, None)

    return rule


for _mode, _names in (("nearest", ["upsample_nearest1d.vec", "upsample_nearest2d.vec",
                                   "upsample_nearest3d.vec"]),
                      ("bilinear", ["upsample_bilinear2d.vec", "upsample_linear1d.vec",
                                    "upsample_trilinear3d.vec"])):
    for _op in _ops(*_names):
        register(_op, family=Family.RESIZE)(_upsample(_mode))
        TWINS[_op] = F.interpolate


@register(*_ops("constant_pad_nd.default", "pad.default"), family=Family.PAD)
def aten_pad(call: Call) -> OpResult:
    return pad_core(call, call.tensor(0, "input"), call.arg(1, "pad"),
                    call.arg(2, "mode", "constant") if isinstance(call.arg(2, "mode"), str)
                    else "constant")


@register(*_ops("slice.Tensor"), family=Family.SHAPE)
def aten_slice(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dim = int(call.arg(1, "dim", 0)) % x.ndim
    start, end, step = call.arg(2, "start"), call.arg(3, "end"), call.arg(4, "step", 1)
    if isinstance(end, int) and end >= 2**62:
        end = None
    index = tuple([slice(None)] * dim + [slice(start, end, step)])
    return index_tensor(call, x, index)


@register(*_ops("select.int"), family=Family.SHAPE)
def aten_select(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dim = int(call.arg(1, "dim")) % x.ndim
    return index_tensor(call, x, tuple([slice(None)] * dim + [int(call.arg(2, "index"))]))


@register(*_ops("sym_size.int"), family=Family.SHAPE)
def sym_size(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    return OpResult(x.shape[int(call.arg(1, "dim")) % x.ndim], kind=Kind.SHAPE, family=Family.SHAPE)


TWINS.update(dict.fromkeys(_ops("constant_pad_nd.default", "pad.default"), F.pad))
TWINS.update(dict.fromkeys(_ops("slice.Tensor", "select.int"), operator.getitem))
TWINS.update(dict.fromkeys(_ops("sym_size.int"), "size"))

# -- torch ops without an ATen rule of their own ---------------------------------------------------
#: modules whose ``torch.export`` graph holds the ATen op of a functional form with a twin
#: (``nn.Conv2d`` exports as ``aten.conv2d``, the twin of ``F.conv2d``)
EXPORTS_AS: dict[Any, Any] = {
    **{getattr(nn, f"{m}{nd}d"): getattr(F, f"{f}{nd}d") for nd in (1, 2, 3) for m, f in (
        ("Conv", "conv"), ("ConvTranspose", "conv_transpose"), ("MaxPool", "max_pool"),
        ("AvgPool", "avg_pool"), ("AdaptiveAvgPool", "adaptive_avg_pool"),
        ("AdaptiveMaxPool", "adaptive_max_pool"))},
    **{getattr(nn, f"{m}{nd}d"): f for nd in (1, 2, 3)
       for m, f in (("BatchNorm", F.batch_norm), ("InstanceNorm", F.instance_norm))},
    **{getattr(F, f"max_pool{nd}d_with_indices"): getattr(F, f"max_pool{nd}d")
       for nd in (1, 2, 3)},
    **{getattr(F, f"adaptive_max_pool{nd}d_with_indices"): getattr(F, f"adaptive_max_pool{nd}d")
       for nd in (1, 2, 3)},
    nn.SyncBatchNorm: F.batch_norm, nn.GroupNorm: F.group_norm, nn.LayerNorm: F.layer_norm,
    nn.Linear: F.linear, nn.Flatten: torch.flatten,
    nn.ReLU: F.relu, nn.ReLU6: F.relu6, nn.LeakyReLU: F.leaky_relu, nn.ELU: F.elu,
    nn.GELU: F.gelu, nn.SiLU: F.silu, nn.Mish: F.mish, nn.Sigmoid: torch.sigmoid,
    nn.Tanh: torch.tanh, nn.Hardswish: F.hardswish, nn.Hardsigmoid: F.hardsigmoid,
    nn.Hardtanh: F.hardtanh, nn.Softplus: F.softplus,
    nn.Upsample: F.interpolate, nn.UpsamplingNearest2d: F.interpolate,
    nn.UpsamplingBilinear2d: F.interpolate,
    **{getattr(nn, f"{m}{nd}d"): F.pad for nd in (1, 2, 3)
       for m in ("ZeroPad", "ConstantPad", "ReflectionPad", "ReplicationPad", "CircularPad")},
}


def _no_twin(reason: str, *keys: Any) -> dict[Any, str]:
    return dict.fromkeys(keys, reason)


_MEASURED = ("no ATen rule yet: in a .pt2 graph the op is measured at concrete sizes (its "
             "field unknown)")

#: torch ops with a rule but no ATen twin, and why. Ops that vanish from an exported graph need
#: none; the others are known gaps (a ``.pt2`` graph with them is still analysed: those nodes are
#: measured, never counted as zero).
MODULE_ONLY: dict[Any, str] = {
    **_no_twin("identity in eval mode: an exported (eval) graph holds no node for it",
               nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
               nn.FeatureAlphaDropout, nn.Identity, F.alpha_dropout, F.feature_alpha_dropout,
               torch.dropout, torch.alpha_dropout, torch.feature_dropout,
               torch.feature_alpha_dropout),
    **_no_twin("a size check of the traced graph: torch.export turns it into its own input "
               "guards (no node)", torch._assert, torch.fx._symbolic_trace._assert_is_none),
    **_no_twin("builds a constant from sizes: torch.export stores it as a constant or a "
               "size-computation, " + _MEASURED, torch.arange, torch.zeros, torch.ones,
               torch.empty, torch.rand, torch.randn, torch.full, torch.zeros_like,
               torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like,
               torch.randn_like, torch.linspace),
    **_no_twin("exports as an activation ATen op without a rule (prelu, selu, celu, "
               "softshrink-like decompositions); " + _MEASURED, nn.PReLU, nn.SELU, nn.CELU,
               nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.GLU),
    **_no_twin("exports as aten.mm/bmm/addmm/baddbmm/matmul/einsum, " + _MEASURED,
               torch.matmul, torch.mm, torch.bmm, torch.addmm, torch.baddbmm, torch.einsum),
    **_no_twin("exports as a fused attention ATen op, " + _MEASURED,
               F.scaled_dot_product_attention, nn.MultiheadAttention),
    **_no_twin("exports as aten.rnn_tanh/gru, " + _MEASURED, nn.RNN, nn.GRU),
    **_no_twin("pointwise or elementwise op whose ATen op has no rule yet; " + _MEASURED,
               torch.addcmul, torch.addcdiv, torch.eq, torch.ne, torch.lt, torch.le, torch.gt,
               torch.ge, torch.masked_fill, torch.pow, torch.where, torch.cumsum,
               torch.cumprod, torch.sin, torch.cos, torch.tan, torch.log, torch.log2,
               torch.log1p, torch.sqrt, torch.rsqrt, torch.erf, torch.floor, torch.ceil,
               torch.round, torch.sign, torch.reciprocal, torch.square, torch.expm1,
               torch.sinh, torch.cosh, torch.atan, torch.frac, torch.trunc, torch.logical_not,
               torch.bitwise_not, torch.nan_to_num),
    **_no_twin("a norm whose ATen op (or decomposition) has no rule yet; " + _MEASURED,
               F.normalize, F.rms_norm, nn.RMSNorm),
    **_no_twin("a reduction whose ATen op has no rule yet; " + _MEASURED, torch.norm,
               torch.linalg.vector_norm, torch.std, torch.var, torch.logsumexp, torch.prod,
               torch.any, torch.all),
    **_no_twin("shape op or gather whose ATen op has no rule yet; " + _MEASURED,
               torch.tensor_split, torch.unbind, torch.gather, torch.take_along_dim,
               torch.index_select, torch.roll, torch.squeeze, torch.repeat_interleave),
}
