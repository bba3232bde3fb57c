"""ATen ops, as found in graphs stored by ``torch.export`` (``.pt2`` files).

Most ATen overloads take the same arguments as their ``torch.nn.functional`` twins, so each entry
here forwards to the functional rule, adapting the arguments where they differ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .base import Call, OpResult, lookup, register
from .resize import pad_core, resize_core
from .shape import index_tensor

aten = torch.ops.aten


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


def _with_indices(target):
    return _forward(target, lambda c: _with(c, return_indices=True))


for _nd in (1, 2, 3):
    for _op in _ops(f"max_pool{_nd}d_with_indices.default"):
        register(_op, family="pool")(_with_indices(getattr(F, f"max_pool{_nd}d")))
    for _op in _ops(f"adaptive_max_pool{_nd}d.default"):
        register(_op, family="pool")(_with_indices(getattr(F, f"adaptive_max_pool{_nd}d")))


@register(*_ops("_native_batch_norm_legit_no_training.default",
                "native_batch_norm.default", "native_layer_norm.default",
                "native_group_norm.default"), family="norm")
def native_norm(call: Call) -> OpResult:
    """These return (out, saved statistics...): the statistics carry no spatial field."""
    x = call.tensor(0, "input")
    return OpResult((x, x, x), kind="transparent", family="norm")


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
        register(_op, family="resize")(_upsample(_mode))


@register(*_ops("constant_pad_nd.default", "pad.default"), family="pad")
def aten_pad(call: Call) -> OpResult:
    return pad_core(call, call.tensor(0, "input"), call.arg(1, "pad"),
                    call.arg(2, "mode", "constant") if isinstance(call.arg(2, "mode"), str)
                    else "constant")


@register(*_ops("slice.Tensor"), family="shape")
def aten_slice(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dim = int(call.arg(1, "dim", 0)) % x.ndim
    start, end, step = call.arg(2, "start"), call.arg(3, "end"), call.arg(4, "step", 1)
    if isinstance(end, int) and end >= 2**62:
        end = None
    index = tuple([slice(None)] * dim + [slice(start, end, step)])
    return index_tensor(call, x, index)


@register(*_ops("select.int"), family="shape")
def aten_select(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dim = int(call.arg(1, "dim")) % x.ndim
    return index_tensor(call, x, tuple([slice(None)] * dim + [int(call.arg(2, "index"))]))


@register(*_ops("sym_size.int"), family="shape")
def sym_size(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    return OpResult(x.shape[int(call.arg(1, "dim")) % x.ndim], kind="shape", family="shape")
