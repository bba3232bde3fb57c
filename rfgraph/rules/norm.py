"""Ops that keep shape and field: activations, dropout and drop path (identity in
eval mode), ``nn.Identity``, casts and pointwise maths; norms (batch, instance, group, layer,
RMS, local response; ``F.normalize`` makes its dim global) and softmax (its dim becomes global).
"""

from __future__ import annotations

import operator
import typing
from collections.abc import Callable, Sequence

import sympy
import torch
import torch.nn.functional as F
from sympy import Expr, Integer
from torch import nn

from ..errors import RuleError, Unsupported
from ..kinds import Family, Kind
from ..tensor import TensorInfo
from .attention import _check_width, _Collapser
from .base import Call, OpResult, known, prod, register, register_names
from .tensors import _with_dtype

# -- transparent: shape and field pass through -----------------------------------------------------
ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.GLU,
)
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)
#: (some F.* are the torch.* objects)
FUNCTIONAL_TRANSPARENT: tuple[Callable, ...] = tuple(dict.fromkeys((
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardsigmoid, F.hardtanh, F.softplus, F.sigmoid, F.tanh, F.dropout, F.dropout1d,
    F.dropout2d, F.dropout3d, torch.relu, torch.sigmoid, torch.tanh, F.relu_, torch.relu_,
    torch.clone, torch.clamp, torch.abs, torch.exp, torch.neg, operator.neg,
)))
METHOD_TRANSPARENT = ("relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous",
                      "clone", "clamp", "clamp_", "abs", "exp", "neg", "detach",
                      "requires_grad_")  # casts (to, float, ...): below


def _passthrough(call: Call, family: Family) -> OpResult:
    x = call.tensor(0, "input")
    return OpResult(x, kind=Kind.TRANSPARENT, family=family)


@register(*ACTIVATIONS, family=Family.ACTIVATION)
def activation_module(call: Call) -> OpResult:
    res = _passthrough(call, Family.ACTIVATION)
    if isinstance(call.module, nn.PReLU):
        n = call.module.num_parameters
        res.params, res.params_formula = n, f"num_parameters = {n}"
    if isinstance(call.module, nn.GLU):
        raise RuleError(f"{call.where()}: GLU halves a dim and is not supported yet")
    return res


@register(*DROPOUTS, nn.Identity, family=Family.OTHER)
def identity_module(call: Call) -> OpResult:
    return _passthrough(call, Family.OTHER)


@register(*FUNCTIONAL_TRANSPARENT, *METHOD_TRANSPARENT, family=Family.ACTIVATION)
def transparent_call(call: Call) -> OpResult:
    value = call.arg(0, "input")
    if call.target is operator.neg and not isinstance(value, TensorInfo):
        return OpResult(sympy.expand(-sympy.sympify(value)), kind=Kind.SHAPE, family=Family.SHAPE)
    return _passthrough(call, Family.ACTIVATION)


# -- regularisers that are identity in eval mode ---------------------------------------------------
_DROPOUT_FUNCTIONS: tuple[Callable, ...] = (
    F.alpha_dropout, F.feature_alpha_dropout, torch.dropout, torch.alpha_dropout,
    torch.feature_dropout, torch.feature_alpha_dropout,
)
_MORE_DROPOUTS = tuple(f for f in dict.fromkeys(_DROPOUT_FUNCTIONS)
                       if f not in FUNCTIONAL_TRANSPARENT)


@register(*_MORE_DROPOUTS, "dropout", family=Family.OTHER)
def dropout_call(call: Call) -> OpResult:
    return _passthrough(call, Family.OTHER)


def _drop_sample(call: Call) -> OpResult:
    """Stochastic depth / drop path: identity in eval mode; in training mode each sample is
    kept (scaled) or zeroed at random, which changes neither shape nor field. No MACs."""
    x = call.tensor(0, "input")
    if call.module is not None:
        training = call.module.training
    elif getattr(call.target, "__name__", "") == "stochastic_depth":  # (input, p, mode, training)
        training = bool(call.arg(3, "training", True))
    else:  # timm's drop_path(x, drop_prob, training, scale_by_keep)
        training = bool(call.arg(2, "training", False))
    note = ("identity in eval mode" if not training else
            "training mode: drops whole samples at random (shape and field unchanged)")
    return OpResult(x, kind=Kind.TRANSPARENT, family=Family.OTHER, notes=[note])


register_names(
    "torchvision.ops.stochastic_depth.StochasticDepth", "StochasticDepth", "DropPath",
    "timm.layers.drop.DropPath", "timm.models.layers.drop.DropPath",
    "torchvision.ops.stochastic_depth.stochastic_depth", "stochastic_depth",
    "timm.layers.drop.drop_path", "timm.models.layers.drop.drop_path", "drop_path",
    family=Family.OTHER)(_drop_sample)


# -- casts ---------------------------------------------------------------------------------------
_CAST_METHODS = {"bool": torch.bool, "long": torch.int64, "int": torch.int32,
                 "short": torch.int16, "char": torch.int8, "byte": torch.uint8,
                 "bfloat16": torch.bfloat16}


@register(*_CAST_METHODS, "type", family=Family.ACTIVATION)
def cast(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    if call.target == "type":
        dtype = call.arg(1, "dtype")
        if not isinstance(dtype, torch.dtype):
            raise Unsupported(f"{call.where()}: type({dtype!r})")
    else:
        dtype = _CAST_METHODS[call.target]
    return OpResult(_with_dtype(x, dtype), kind=Kind.TRANSPARENT, family=Family.ACTIVATION)


@register("to", "float", "double", "half", "type_as", family=Family.ACTIVATION)
def to(call: Call) -> OpResult:
    """x.to(dtype | device | tensor), x.float(), ...: shape and field unchanged; the dtype is
    kept for stand-in tensors."""
    x = call.tensor(0, "input")
    if call.target in ("float", "double", "half"):
        return OpResult(_with_dtype(x, torch.float32), kind=Kind.TRANSPARENT,
                        family=Family.ACTIVATION)
    dtype = call.kwargs.get("dtype")
    for v in call.args[1:]:
        if isinstance(v, torch.dtype):
            dtype = v
        elif isinstance(v, TensorInfo):
            dtype = v.dtype if v.dtype is not None else torch.float32
    y = x if dtype is None else _with_dtype(x, dtype)
    return OpResult(y, kind=Kind.TRANSPARENT, family=Family.ACTIVATION)


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


@register(*_UNARY, *_UNARY_METHODS, family=Family.ACTIVATION)
def pointwise(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dtype = torch.bool if call.target in (torch.logical_not, "logical_not") else x.dtype
    return OpResult(_with_dtype(x, dtype), kind=Kind.TRANSPARENT, family=Family.ACTIVATION)


@register(torch.cumsum, torch.cumprod, "cumsum", "cumprod", family=Family.ACTIVATION)
def cumulative(call: Call) -> OpResult:
    """Element y along ``dim`` reads elements 0..y."""
    x = call.tensor(0, "input")
    d = int(call.arg(1, "dim")) % x.ndim
    rf = list(x.rf)
    a = x.axes[d]
    if a is not None and rf[a] is not None:
        old = known(rf[a])
        if old.is_global:
            pass
        else:
            rf[a] = old.compose(lambda y: Integer(0), lambda y: y, old.jump, old.period,
                                "cumulative sum: element y reads elements 0..y")
    return OpResult(x.with_shape(x.shape, rf=rf), kind=Kind.LAYER, family=Family.ACTIVATION)


@register(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
          nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, family=Family.NORM)
def channel_norm(call: Call) -> OpResult:
    m = call.mod()
    res = _passthrough(call, Family.NORM)
    affine = getattr(m, "affine", False)
    # (batch and instance norms have num_features, GroupNorm num_channels)
    channels = typing.cast(int, getattr(m, "num_features", None)
                           or getattr(m, "num_channels", None))
    if affine:
        res.params, res.params_formula = 2 * channels, f"2·C = 2·{channels}"
    return res


@register(nn.LayerNorm, family=Family.NORM)
def layer_norm(call: Call) -> OpResult:
    m = call.mod(nn.LayerNorm)
    res = _passthrough(call, Family.NORM)
    if m.elementwise_affine:
        n = int(prod(m.normalized_shape))
        has_bias = getattr(m, "bias", None) is not None
        res.params = n * (2 if has_bias else 1)
        res.params_formula = f"{'2·' if has_bias else ''}prod(normalized_shape) = {res.params}"
    return res


@register(nn.LocalResponseNorm, F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm,
          F.local_response_norm, family=Family.NORM)
def functional_norm(call: Call) -> OpResult:
    return _passthrough(call, Family.NORM)


# -- RMS norm --------------------------------------------------------------------------------------
def _rms_core(call: Call, x: TensorInfo, normalized: Sequence[int]) -> OpResult:
    dims = list(range(x.ndim - len(normalized), x.ndim))
    if dims and dims[0] < 0:
        raise RuleError(f"{call.where()}: normalized_shape has more dims than the input")
    conditions: list[Expr] = []
    for d, want in zip(dims, normalized):
        conditions += _check_width(call, x.shape[d], int(want), f"dim {d}")
    rf = list(x.rf)  # the statistics read every normalized position
    collapse = _Collapser()
    for d in dims:
        a = x.axes[d]
        if a is not None and (field := rf[a]) is not None and x.shape[d] != 1:
            rf[a] = collapse(field, x.shape[d])
    return OpResult(x.with_shape(x.shape, rf=rf), kind=Kind.TRANSPARENT, family=Family.NORM,
                    conditions=conditions)


def _as_shape(value) -> list[int]:
    if isinstance(value, (list, tuple, torch.Size)):
        return [int(v) for v in value]
    return [int(value)]


@register(nn.RMSNorm, family=Family.NORM)
def rms_norm_module(call: Call) -> OpResult:
    m = call.mod(nn.RMSNorm)
    res = _rms_core(call, call.tensor(), list(m.normalized_shape))
    if m.elementwise_affine:
        res.params = int(prod(m.normalized_shape))
        res.params_formula = f"prod(normalized_shape) = {res.params}"
    return res


@register(F.rms_norm, family=Family.NORM)
def rms_norm_functional(call: Call) -> OpResult:
    res = _rms_core(call, call.tensor(0, "input"), _as_shape(call.arg(1, "normalized_shape")))
    res.params_formula = "0 (the weight is an input of the call)"
    return res


@register(torch.nn.functional.normalize, family=Family.NORM)
def normalize(call: Call) -> OpResult:
    """F.normalize(x, p, dim): each vector along ``dim`` is divided by its norm, so an element
    reads the whole of that dim (a spatial or token axis there becomes global)."""
    x = call.tensor(0, "input")
    rf = x.collapsed_rf([int(call.arg(2, "dim", 1)) % x.ndim])
    return OpResult(x.with_shape(x.shape, rf=rf), kind=Kind.TRANSPARENT, family=Family.NORM)


@register(nn.Softmax, nn.LogSoftmax, F.softmax, F.log_softmax, torch.softmax, "softmax",
          "log_softmax", family=Family.ACTIVATION)
def softmax(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    # (nn.Softmax and nn.LogSoftmax declare dim: int | None, but share no base declaring it)
    dim = (call.arg(1, "dim") if call.module is None
           else typing.cast("int | None", call.mod().dim))
    if dim is None:
        raise RuleError(f"{call.where()}: softmax needs an explicit dim")
    rf = x.collapsed_rf([dim % x.ndim])  # every output reads the whole axis
    return OpResult(x.with_shape(x.shape, rf=rf), kind=Kind.TRANSPARENT, family=Family.ACTIVATION)
