"""The glue between layers: transparent ops, norms, linear, flatten, merges, splits, shuffle."""

from __future__ import annotations

import operator

import sympy
import torch
import torch.nn.functional as F
from sympy import Expr, Integer
from torch import nn

from ..errors import RuleError
from ..receptive_field import concat_rfs, merge_rfs
from ..tensor import TensorInfo
from .base import Call, OpResult, Unsupported, prod, register, register_names

# -- transparent: shape and field pass through -----------------------------------------------------
ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.GLU,
)
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)
FUNCTIONAL_TRANSPARENT = tuple(dict.fromkeys((  # some F.* are the torch.* objects
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardsigmoid, F.hardtanh, F.softplus, F.sigmoid, F.tanh, F.dropout, F.dropout1d,
    F.dropout2d, F.dropout3d, torch.relu, torch.sigmoid, torch.tanh, F.relu_, torch.relu_,
    torch.clone, torch.clamp, torch.abs, torch.exp, torch.neg, operator.neg,
)))
METHOD_TRANSPARENT = ("relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous",
                      "clone", "clamp", "clamp_", "abs", "exp", "neg", "detach",
                      "requires_grad_")  # casts (to, float, ...) live in rules/tensors.py


def _passthrough(call: Call, family: str) -> OpResult:
    x = call.tensor(0, "input")
    return OpResult(x, kind="transparent", family=family)


@register(*ACTIVATIONS, family="activation")
def activation_module(call: Call) -> OpResult:
    res = _passthrough(call, "activation")
    if isinstance(call.module, nn.PReLU):
        n = call.module.num_parameters
        res.params, res.params_formula = n, f"num_parameters = {n}"
    if isinstance(call.module, nn.GLU):
        raise RuleError(f"{call.where()}: GLU halves a dim and is not supported yet")
    return res


@register(*DROPOUTS, nn.Identity, family="other")
def identity_module(call: Call) -> OpResult:
    return _passthrough(call, "other")


@register(*FUNCTIONAL_TRANSPARENT, *METHOD_TRANSPARENT, family="activation")
def transparent_call(call: Call) -> OpResult:
    value = call.arg(0, "input")
    if call.target is operator.neg and not isinstance(value, TensorInfo):
        return OpResult(sympy.expand(-sympy.sympify(value)), kind="shape", family="shape")
    return _passthrough(call, "activation")


@register(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
          nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, family="norm")
def channel_norm(call: Call) -> OpResult:
    m = call.module
    res = _passthrough(call, "norm")
    affine = getattr(m, "affine", False)
    channels = getattr(m, "num_features", None) or getattr(m, "num_channels", None)
    if affine:
        res.params, res.params_formula = 2 * channels, f"2·C = 2·{channels}"
    return res


@register(nn.LayerNorm, family="norm")
def layer_norm(call: Call) -> OpResult:
    m = call.module
    res = _passthrough(call, "norm")
    if m.elementwise_affine:
        n = int(prod(m.normalized_shape))
        has_bias = getattr(m, "bias", None) is not None
        res.params = n * (2 if has_bias else 1)
        res.params_formula = f"{'2·' if has_bias else ''}prod(normalized_shape) = {res.params}"
    return res


@register(nn.LocalResponseNorm, F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm,
          F.local_response_norm, family="norm")
def functional_norm(call: Call) -> OpResult:
    return _passthrough(call, "norm")


@register(nn.Softmax, nn.LogSoftmax, F.softmax, F.log_softmax, torch.softmax, "softmax",
          "log_softmax", family="activation")
def softmax(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dim = call.arg(1, "dim") if call.module is None else call.module.dim
    if dim is None:
        raise RuleError(f"{call.where()}: softmax needs an explicit dim")
    d = dim % x.ndim
    rf = list(x.rf)
    axis = x.axes[d]
    if axis is not None and rf[axis] is not None:
        rf[axis] = rf[axis].collapsed(x.shape[d])  # every output reads the whole axis
    return OpResult(x.with_shape(x.shape, rf=rf), kind="transparent", family="activation")


# -- channel shuffle -------------------------------------------------------------------------------
@register(nn.ChannelShuffle, F.channel_shuffle, family="shuffle")
def channel_shuffle(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    groups = call.module.groups if call.module is not None else call.arg(1, "groups")
    c = x.shape[1]
    if c.is_Integer and int(c) % int(groups):
        raise RuleError(f"{call.where()}: {c} channels do not split into {groups} groups")
    y = x
    if x.channels is not None:  # output channel k is input channel (k mod g)·(C/g) + k div g
        g, n = int(groups), len(x.channels)
        y = x.with_shape(x.shape, channels=[x.channels[(k % g) * (n // g) + k // g]
                                            for k in range(n)])
    return OpResult(y, kind="layer", family="shuffle",
                    notes=[f"channel permutation ({groups} groups); field unchanged"])


# -- linear and flatten ----------------------------------------------------------------------------
def _collapse_dims(x: TensorInfo, dims: list[int]) -> list:
    rf = list(x.rf)
    for d in dims:
        axis = x.axes[d]
        if axis is not None and rf[axis] is not None:
            rf[axis] = rf[axis].collapsed(x.shape[d])
    return rf


def linear_core(call: Call, x: TensorInfo, in_f: int, out_f: int, bias: bool) -> OpResult:
    last = x.shape[-1]
    conditions = []
    if last.is_Integer and int(last) != in_f:
        raise RuleError(f"{call.where()}: expects {in_f} input features, the input has {last}")
    if not last.is_Integer:
        conditions.append(sympy.Eq(last, in_f))
    rf = _collapse_dims(x, [x.ndim - 1])
    y = TensorInfo((*x.shape[:-1], Integer(out_f)), (*x.axes[:-1], None), tuple(rf))
    params = in_f * out_f + (out_f if bias else 0)
    formula = "in·out" + (" + out" if bias else "") + f" = {in_f}·{out_f}" + (
        f" + {out_f}" if bias else "")
    macs = sympy.expand(prod(x.shape[:-1]) * in_f * out_f)
    return OpResult(y, params, formula, macs, family="linear", conditions=conditions)


@register(nn.Linear, family="linear")
def linear_module(call: Call) -> OpResult:
    m = call.module
    return linear_core(call, call.tensor(), m.in_features, m.out_features, m.bias is not None)


@register(F.linear, family="linear")
def linear_functional(call: Call) -> OpResult:
    weight = call.arg(1, "weight")
    res = linear_core(call, call.tensor(), int(weight.shape[1]), int(weight.shape[0]),
                      call.arg(2, "bias") is not None)
    res.params, res.params_formula = 0, "0 (weights are inputs of the call)"
    return res


def flatten_core(call: Call, x: TensorInfo, start: int, end: int) -> OpResult:
    if x.ndim == 0:
        return OpResult(x, kind="shape", family="shape")
    start, end = start % x.ndim, end % x.ndim
    if start > end:
        raise RuleError(f"{call.where()}: flatten start_dim after end_dim")
    merged = list(range(start, end + 1))
    if len(merged) == 1:
        return OpResult(x, kind="shape", family="shape")
    rf = _collapse_dims(x, merged)
    shape = (*x.shape[:start], prod(x.shape[start:end + 1]), *x.shape[end + 1:])
    axes = (*x.axes[:start], None, *x.axes[end + 1:])
    return OpResult(TensorInfo(tuple(sympy.expand(s) for s in shape), axes, tuple(rf)),
                    kind="shape", family="shape")


@register(nn.Flatten, family="shape")
def flatten_module(call: Call) -> OpResult:
    m = call.module
    return flatten_core(call, call.tensor(), m.start_dim, m.end_dim)


@register(torch.flatten, "flatten", family="shape")
def flatten_call(call: Call) -> OpResult:
    return flatten_core(call, call.tensor(0, "input"), int(call.arg(1, "start_dim", 0)),
                        int(call.arg(2, "end_dim", -1)))


# -- merges ----------------------------------------------------------------------------------------
def _broadcast(call: Call, tensors: list[TensorInfo]) -> tuple[TensorInfo, list[Expr]]:
    ndim = max(t.ndim for t in tensors)
    shape: list[Expr] = []
    axes: list[int | None] = []
    conditions: list[Expr] = []
    for k in range(ndim):
        sizes, ax = [], None
        for t in tensors:
            d = k - (ndim - t.ndim)
            if d < 0:
                continue
            s = t.shape[d]
            if s != 1:
                sizes.append(s)
                if ax is None:
                    ax = t.axes[d]
        distinct = list(dict.fromkeys(sympy.expand(s) for s in sizes))
        if len(distinct) > 1:
            numeric = [s for s in distinct if s.is_Integer]
            if len(numeric) > 1:
                raise RuleError(f"{call.where()}: shapes do not broadcast: "
                                + ", ".join(str(tuple(t.shape)) for t in tensors))
            conditions.extend(sympy.Eq(distinct[0], s) for s in distinct[1:])
        shape.append(distinct[0] if distinct else Integer(1))
        axes.append(ax)
    n_axes = max(len(t.rf) for t in tensors)
    rf = []
    live = [t for t in tensors if not t.const] or tensors[:1]
    for a in range(n_axes):
        fields, bcast, lengths = [], [], []
        for t in live:
            d = t.dim_of_axis(a)
            fields.append(t.rf[a] if a < len(t.rf) else None)
            bcast.append(d is None or t.shape[d] == 1)
            lengths.append(None if d is None else t.shape[d])
        rf.append(merge_rfs(fields, bcast, lengths))
    _padding_merge(rf, live)
    const = all(t.const for t in tensors)
    # every channel is the union of the same channels' fields: uniform when the inputs are
    varies = any(t.varies for t in live)
    return TensorInfo(tuple(shape), tuple(axes), tuple(rf), const, varies=varies), conditions


def _padding_merge(rf: list, branches: list[TensorInfo]) -> None:
    """A branch with elements that read only padding (a constant pad of an intermediate
    tensor) takes part in the union with the virtual extension of its field, which may cover
    real pixels it never reads, along this axis or (as the whole element is padding) along the
    others. Where the branches' fields differ, the union is then an upper bound: said so."""
    if not any(f is not None and f.pad_run for t in branches for f in t.rf):
        return
    for a, merged in enumerate(rf):
        ids = {id(t.rf[a]) for t in branches if a < len(t.rf)}
        if merged is not None and len(ids) > 1 and not merged.upper:
            rf[a] = merged.upper_bound(
                "a merged branch has elements that read only padding (a pad of an "
                "intermediate tensor): the union is an upper bound next to them")


@register(operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
          operator.truediv, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
          torch.maximum, torch.minimum, "add", "add_", "sub", "sub_", "mul", "mul_", "div",
          "div_", family="merge")
def elementwise(call: Call) -> OpResult:
    tensors = [a for a in (*call.args, *call.kwargs.values()) if isinstance(a, TensorInfo)]
    if not tensors:  # arithmetic on sizes (h // 2, c * 4): a value, not a tensor
        return _size_arithmetic(call)
    if len(tensors) == 1:
        return OpResult(tensors[0], kind="transparent", family="activation")
    y, conditions = _broadcast(call, tensors)
    return OpResult(y, kind="merge", family="merge", conditions=conditions)


_SIZE_OPS = {"add": operator.add, "iadd": operator.add, "sub": operator.sub,
             "isub": operator.sub, "mul": operator.mul, "imul": operator.mul,
             "truediv": operator.truediv, "itruediv": operator.truediv}


def _size_arithmetic(call: Call) -> OpResult:
    name = call.target if isinstance(call.target, str) else call.target.__name__
    op = _SIZE_OPS.get(name.strip("_"))
    if op is not None and any(isinstance(v, (tuple, list)) for v in call.args[:2]):
        # sequences of sizes: Python's own semantics (tuple + tuple, (h, w) * 2)
        return OpResult(op(*call.args[:2]), kind="shape", family="shape")
    values = [sympy.sympify(v) for v in call.args[:2]]
    if op is None or len(values) != 2:
        raise RuleError(f"{call.where()}: no tensor operand")
    return OpResult(sympy.expand(op(*values)), kind="shape", family="shape")


@register(torch.cat, torch.concat, torch.concatenate, family="merge")
def concatenate(call: Call) -> OpResult:
    tensors = call.arg(0, "tensors")
    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, TensorInfo)
                                                         for t in tensors):
        raise RuleError(f"{call.where()}: expected a list of tensors")
    dim = int(call.arg(1, "dim", 0))
    first = tensors[0]
    d = dim % first.ndim
    conditions: list[Expr] = []
    for t in tensors[1:]:
        if t.ndim != first.ndim:
            raise RuleError(f"{call.where()}: tensors differ in rank")
        for k in range(first.ndim):
            if k == d:
                continue
            a, b = sympy.expand(first.shape[k]), sympy.expand(t.shape[k])
            if a != b:
                if a.is_Integer and b.is_Integer:
                    raise RuleError(f"{call.where()}: sizes differ on dim {k}: {a} vs {b}")
                conditions.append(sympy.Eq(a, b))
    shape = list(first.shape)
    shape[d] = sympy.expand(sum((t.shape[d] for t in tensors), Integer(0)))
    notes: list[str] = []
    rf = []
    needs_at = False
    for a in range(len(first.rf)):
        if first.axes[d] == a:
            if any(t.axes[d] != a or t.rf[a] is None for t in tensors):
                rf.append(None)
                notes.append("concatenation along a spatial axis of tensors whose fields "
                             "are unknown or not along it: field unknown")
            else:
                rf.append(concat_rfs([(t.rf[a], t.shape[d]) for t in tensors]))
                # which piece a position falls in depends on the sizes: decided when evaluating
                needs_at = needs_at or not all(t.shape[d].is_Integer for t in tensors)
            continue
        live = [t for t in tensors if not t.const] or tensors[:1]  # a class token adds no field
        dims = [t.dim_of_axis(a) for t in live]
        merged = merge_rfs([t.rf[a] for t in live], [d is None for d in dims],
                           [None if d is None else t.shape[d] for t, d in zip(live, dims)])
        if (merged is not None and first.axes[d] is not None
                and len({id(t.rf[a]) for t in live}) > 1):
            # along the other axes each position of a piece has that piece's field: which
            # one depends on the position along the concatenated axis
            merged = merged.upper_bound(
                "concatenated along another axis: the field along this one depends on the "
                "piece, the union of the pieces' fields is an upper bound")
        rf.append(merged)
    if first.axes[d] is None:
        _padding_merge(rf, [t for t in tensors if not t.const] or tensors[:1])
    axes_from = next((t for t in tensors if not t.const), first)
    channels, varies = _cat_channels(tensors, d)
    y = TensorInfo(tuple(shape), axes_from.axes, tuple(rf), all(t.const for t in tensors),
                   channels=channels, varies=varies)
    return OpResult(y, kind="merge", family="merge", conditions=conditions, notes=notes,
                    needs_at=needs_at)


def _cat_channels(tensors: list[TensorInfo], d: int) -> tuple[tuple | None, bool]:
    """(per-channel fields, varies) of a concatenation along dim ``d``: along the channel dim
    the channels are the inputs' channels one after the other."""
    live = [t for t in tensors if not t.const]
    if d != tensors[0].channel_dim or len(live) != len(tensors):
        return None, any(t.varies for t in live)
    varies = (any(t.varies for t in tensors)
              or len({tuple(id(f) for f in t.rf) for t in tensors}) > 1)
    if not varies:
        return None, False
    parts = [t.channel_fields() for t in tensors]
    if any(p is None for p in parts):
        return None, True
    return tuple(f for p in parts for f in p), True


# -- splits ----------------------------------------------------------------------------------------
def _split_sizes(call: Call, size: Expr, sizes: list[int]) -> None:
    if not size.is_Integer:
        raise RuleError(f"{call.where()}: splitting a symbolic size {size} is not supported")
    if sum(sizes) != int(size):
        raise RuleError(f"{call.where()}: split sizes {sizes} do not add up to {size}")


def _pieces(x: TensorInfo, d: int, sizes: list[int]) -> tuple[TensorInfo, ...]:
    out = []
    for s in sizes:
        shape = list(x.shape)
        shape[d] = Integer(s)
        out.append(x.with_shape(shape))
    return tuple(out)


@register(torch.chunk, "chunk", family="shape")
def chunk(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    n = int(call.arg(1, "chunks"))
    d = int(call.arg(2, "dim", 0)) % x.ndim
    size = x.shape[d]
    if not size.is_Integer:
        raise RuleError(f"{call.where()}: chunk of a symbolic size {size} is not supported")
    step = -(-int(size) // n)
    sizes = [min(step, int(size) - i) for i in range(0, int(size), step)]
    return OpResult(_pieces(x, d, sizes), kind="shape", family="shape")


@register(torch.split, "split", family="shape")
def split(call: Call) -> OpResult:
    x = call.tensor(0, "tensor")
    spec = call.arg(1, "split_size_or_sections", call.kwargs.get("split_size"))
    d = int(call.arg(2, "dim", 0)) % x.ndim
    size = x.shape[d]
    if isinstance(spec, int):
        if not size.is_Integer:
            raise RuleError(f"{call.where()}: split of a symbolic size is not supported")
        sizes = [min(spec, int(size) - i) for i in range(0, int(size), spec)]
    else:
        sizes = [int(s) for s in spec]
        _split_sizes(call, size, sizes)
    return OpResult(_pieces(x, d, sizes), kind="shape", family="shape")


# -- reductions ------------------------------------------------------------------------------------
@register(torch.mean, torch.sum, torch.amax, torch.amin, "mean", "sum", "amax", "amin",
          family="pool")
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
    rf = _collapse_dims(x, dims)
    if keepdim:
        shape = [Integer(1) if k in dims else s for k, s in enumerate(x.shape)]
        axes = list(x.axes)
    else:
        shape = [s for k, s in enumerate(x.shape) if k not in dims]
        axes = [a for k, a in enumerate(x.axes) if k not in dims]
    return OpResult(TensorInfo(tuple(shape), tuple(axes), tuple(rf), x.const), family="pool")


# -- regularisers that are identity in eval mode ---------------------------------------------------
_MORE_DROPOUTS = tuple(f for f in dict.fromkeys((
    F.alpha_dropout, F.feature_alpha_dropout, torch.dropout, torch.alpha_dropout,
    torch.feature_dropout, torch.feature_alpha_dropout,
)) if f not in FUNCTIONAL_TRANSPARENT)


@register(*_MORE_DROPOUTS, "dropout", family="other")
def dropout_call(call: Call) -> OpResult:
    return _passthrough(call, "other")


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
    return OpResult(x, kind="transparent", family="other", notes=[note])


register_names(
    "torchvision.ops.stochastic_depth.StochasticDepth", "StochasticDepth", "DropPath",
    "timm.layers.drop.DropPath", "timm.models.layers.drop.DropPath",
    "torchvision.ops.stochastic_depth.stochastic_depth", "stochastic_depth",
    "timm.layers.drop.drop_path", "timm.models.layers.drop.drop_path", "drop_path",
    family="other")(_drop_sample)


# -- size comparisons and asserts: conditions on the input sizes -----------------------------------
_RELATIONS = {
    operator.eq: sympy.Eq, operator.ne: sympy.Ne, operator.lt: sympy.Lt, operator.le: sympy.Le,
    operator.gt: sympy.Gt, operator.ge: sympy.Ge,
}
_TENSOR_COMPARE = {"eq", "ne", "lt", "le", "gt", "ge"}


@register(*_RELATIONS, torch.eq, torch.ne, torch.lt, torch.le, torch.gt, torch.ge,
          *_TENSOR_COMPARE, family="merge")
def compare(call: Call) -> OpResult:
    """``h == self.image_size`` on sizes: a SymPy relation (a condition once asserted);
    ``a == b`` on tensors: an elementwise comparison (shape and field as for add)."""
    tensors = [a for a in (*call.args, *call.kwargs.values()) if isinstance(a, TensorInfo)]
    if tensors:
        if len(tensors) == 1:
            return OpResult(tensors[0], kind="transparent", family="activation")
        y, conditions = _broadcast(call, tensors)
        return OpResult(y, kind="merge", family="merge", conditions=conditions)
    rel = _RELATIONS.get(call.target)
    if rel is None:
        name = call.target if isinstance(call.target, str) else call.target.__name__
        rel = _RELATIONS.get(getattr(operator, name.strip("_"), None))
    a, b = call.args[:2]
    try:
        value = rel(sympy.sympify(a), sympy.sympify(b))
    except (TypeError, sympy.SympifyError) as exc:
        raise Unsupported(f"{call.where()}: cannot compare {a!r} and {b!r}") from exc
    return OpResult(value, kind="shape", family="shape")


@register(torch.fx._symbolic_trace._assert_is_none, family="other")
def assert_is_none(call: Call) -> OpResult:
    """fx's guard for an optional argument specialised to None (the model is called as
    ``model(x)``): nothing to compute."""
    return OpResult(None, kind="guard", family="other")


@register(torch._assert, family="other")
def assert_(call: Call) -> OpResult:
    """``torch._assert(h == 224, msg)``: the relation becomes a condition on the input sizes
    (checked when evaluating); one that can never hold is an error now."""
    cond = call.arg(0, "condition")
    message = call.arg(1, "message", "")
    conditions: list[Expr] = []
    if isinstance(cond, TensorInfo):
        raise Unsupported(f"{call.where()}: an assert on tensor values")
    value = sympy.sympify(cond) if not isinstance(cond, bool) else sympy.true if cond \
        else sympy.false
    if value is sympy.false:
        raise RuleError(f"{call.where()}: the model's assertion fails: {message}")
    if value is not sympy.true:
        conditions.append(value)
    return OpResult(None, kind="guard", family="other", conditions=conditions,
                    notes=[f"assert: {message}"] if message else [])


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
    return OpResult(y, kind="shape", family="resize",
                    notes=["position embedding resampled to the token grid (a constant)"])


def _resample_pos_embed_nhwc(call: Call) -> OpResult:
    pos = call.tensor(0, "posemb")
    new = call.arg(1, "new_size")
    if not isinstance(new, (tuple, list)) or len(new) != 2:
        raise Unsupported(f"{call.where()}: new_size {new!r}")
    shape = (pos.shape[0], sympy.sympify(new[0]), sympy.sympify(new[1]), pos.shape[-1])
    y = TensorInfo(shape, (None,) * 4, tuple(None for _ in pos.rf), const=True)
    return OpResult(y, kind="shape", family="resize",
                    notes=["position embedding resampled to the token grid (a constant)"])


register_names("timm.layers.pos_embed.resample_abs_pos_embed", family="resize")(
    _resample_pos_embed)
register_names("timm.layers.pos_embed.resample_abs_pos_embed_nhwc", family="resize")(
    _resample_pos_embed_nhwc)
