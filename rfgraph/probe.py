"""Receptive-field *gradient probe*: an independent measurement oracle.

The probe measures receptive fields empirically, without any of rfgraph's symbolic machinery
(this module deliberately imports nothing else from :mod:`rfgraph` but the independent layer
references of :mod:`rfgraph.semantics`, which import nothing from it either).  It is used by
the test suite and by ``rfgraph verify`` to cross-check the analytic results.

Method
------
1. :func:`prepare_probe_model` makes a float64 deep copy of the model and *linearises* it so
   that the set of input elements with a non-zero gradient is exactly the set of elements
   connected to the chosen output element:

   * Conv / ConvTranspose / Linear weights become a positive constant (``1 / fan_in``),
     biases become 0, so no two paths can cancel and magnitudes stay around 1;
   * normalisation layers (BatchNorm, GroupNorm, LayerNorm, InstanceNorm, RMSNorm, LRN)
     become identities (statistics are treated as constants, as in eval mode);
   * element-wise activations become identities (a saturated or dead unit would otherwise
     hide a real connection);
   * ``MaxPool`` becomes a *linear* pool with identical geometry (kernel, stride, padding,
     dilation, ceil_mode): the gradient of a max reaches only the argmax, the gradient of a
     sum reaches the whole window; ``AdaptiveMaxPool`` becomes ``AdaptiveAvgPool``;
   * ``Softmax``-like layers become ``x + mean(x, dim)``, which has exactly the same
     dependency structure (every output depends on the whole ``dim`` axis);
   * dropout is disabled (eval mode).

   For :class:`torch.fx.GraphModule` inputs the same rewrites are also applied to
   ``call_function`` / ``call_method`` nodes (``F.max_pool2d``, ``torch.relu``,
   ``x.softmax(...)``, ``F.dropout``, ...).  Functional calls hidden inside an ordinary
   module's ``forward`` cannot be rewritten; trace the model with :mod:`torch.fx` first.

2. :func:`probe_rf` feeds an all-ones float64 input, seeds the gradient with 1 at one output
   position (batch 0, all channels), back-propagates, and returns the bounding box of the
   non-zero input gradient per spatial axis (exact ``!= 0`` test in float64).

Known limits: subtractions inside ``forward`` (``x - pool(x)``) may cancel; ``MaxUnpool`` and
``FractionalMaxPool`` are rejected; parameters used directly in ``forward`` are left as they
are (a zero-initialised scale hides the branch it multiplies).
"""

from __future__ import annotations

import copy
import functools
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import semantics as ref

__all__ = ["ProbeError", "linear_max_pool", "output_spatial_shape", "prepare_probe_model",
           "probe_rf", "probe_rf_many", "standin_for", "touches_border"]

Box = list[tuple[int, int]]


class ProbeError(RuntimeError):
    """The gradient probe could not measure a receptive field."""


# --------------------------------------------------------------------------------------------
# Linear replacements
# --------------------------------------------------------------------------------------------

_CONV_FN: dict[int, Callable[..., torch.Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_ADAPTIVE_AVG_FN: dict[int, Callable[..., torch.Tensor]] = {
    1: F.adaptive_avg_pool1d,
    2: F.adaptive_avg_pool2d,
    3: F.adaptive_avg_pool3d,
}


def _ntuple(value: Any, n: int) -> tuple[int, ...]:
    """Expand an int (or a length-1 sequence) to an n-tuple of ints."""
    if isinstance(value, int):
        return (value,) * n
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"expected {n} values, got {values}")
    return values


def max_pool_output_size(
    n: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool
) -> int:
    """PyTorch's MaxPool output length along one axis (``pooling_output_shape``)."""
    numerator = n + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= n + padding:
        out -= 1
    return out


def _with_indices(values: torch.Tensor, return_indices: bool) -> Any:
    """Mimic the ``return_indices`` convention of max pools (indices are dummies)."""
    if return_indices:
        return values, torch.zeros_like(values, dtype=torch.long)
    return values


def linear_max_pool(
    x: torch.Tensor,
    nd: int,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Window mean with exactly the geometry of ``F.max_pool{nd}d`` (same output shape).

    Implemented as a depthwise convolution with a constant positive kernel; ``ceil_mode`` is
    emulated by extra zero padding on the right followed by a crop to PyTorch's output size.
    """
    k = _ntuple(kernel_size, nd)
    s = _ntuple(stride, nd) if stride not in (None, [], ()) else k
    p, d = _ntuple(padding, nd), _ntuple(dilation, nd)
    unbatched = x.dim() == nd + 1
    if unbatched:
        x = x.unsqueeze(0)
    sizes = x.shape[2:]
    outs = [max_pool_output_size(sizes[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(nd)]
    if min(outs) < 1:
        raise ValueError(f"max pool output size {outs} is too small")
    pad: list[int] = []
    for i in reversed(range(nd)):  # F.pad lists the last axis first
        right = (outs[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - sizes[i] - p[i]
        pad += [p[i], max(right, 0)]
    x = F.pad(x, pad)
    channels = x.shape[1]
    weight = x.new_full((channels, 1, *k), 1.0 / math.prod(k))
    y = _CONV_FN[nd](x, weight, stride=s, dilation=d, groups=channels)
    y = y[(slice(None), slice(None)) + tuple(slice(0, o) for o in outs)]
    if unbatched:
        y = y.squeeze(0)
    return _with_indices(y, return_indices)


class LinearMaxPool(nn.Module):
    """Drop-in linear stand-in for ``nn.MaxPool{1,2,3}d`` (see :func:`linear_max_pool`)."""

    def __init__(self, pool: nn.Module, nd: int) -> None:
        super().__init__()
        self.nd = nd
        self.kernel_size = pool.kernel_size
        self.stride = pool.stride
        self.padding = pool.padding
        self.dilation = pool.dilation
        self.ceil_mode = bool(pool.ceil_mode)
        self.return_indices = bool(pool.return_indices)

    def forward(self, x: torch.Tensor) -> Any:
        """Apply the linear pool."""
        return linear_max_pool(
            x,
            self.nd,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )


def linear_adaptive_max_pool(
    x: torch.Tensor, nd: int, output_size: Any, return_indices: bool = False
) -> Any:
    """Adaptive average pool standing in for ``F.adaptive_max_pool{nd}d``."""
    return _with_indices(_ADAPTIVE_AVG_FN[nd](x, output_size), return_indices)


class LinearAdaptiveMaxPool(nn.Module):
    """Drop-in linear stand-in for ``nn.AdaptiveMaxPool{1,2,3}d``."""

    def __init__(self, pool: nn.Module, nd: int) -> None:
        super().__init__()
        self.nd = nd
        self.output_size = pool.output_size
        self.return_indices = bool(pool.return_indices)

    def forward(self, x: torch.Tensor) -> Any:
        """Apply the adaptive average pool."""
        return linear_adaptive_max_pool(x, self.nd, self.output_size, self.return_indices)


def _softmax_dim(ndim: int) -> int:
    """The dimension ``F.softmax`` picks when ``dim`` is None."""
    return 0 if ndim in (0, 1, 3) else 1


def axis_mix(x: torch.Tensor, dim: int | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Linear op with the dependency structure of a softmax along ``dim``."""
    if dim is None:
        dim = _softmax_dim(x.dim())
    return x + x.mean(dim, keepdim=True)


class AxisMix(nn.Module):
    """Module form of :func:`axis_mix` (stand-in for Softmax / Softmin / LogSoftmax)."""

    def __init__(self, dim: int | None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the axis mix."""
        return axis_mix(x, self.dim)


def linear_glu(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``a + b`` for the two halves of ``x`` along ``dim``: the dependency structure of GLU."""
    a, b = x.chunk(2, dim)
    return a + b


class LinearGLU(nn.Module):
    """Module form of :func:`linear_glu` (stand-in for ``nn.GLU``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the linear GLU."""
        return linear_glu(x, self.dim)


def _identity_first(x: Any, *args: Any, **kwargs: Any) -> Any:
    """Return the first argument unchanged (stand-in for element-wise functionals)."""
    return x


def _identity_with_stats(x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple:
    """Stand-in for aten's native norms, which return (out, mean, rstd)."""
    return x, x.new_zeros(0), x.new_zeros(0)


# --------------------------------------------------------------------------------------------
# Module classification
# --------------------------------------------------------------------------------------------


def _classes(*names: str) -> tuple[type, ...]:
    """The ``torch.nn`` classes among ``names`` that exist in this torch version."""
    return tuple(getattr(nn, n) for n in names if hasattr(nn, n))


_ACTIVATIONS = _classes(
    *"""ReLU ReLU6 LeakyReLU PReLU RReLU ELU SELU CELU GELU SiLU Mish Sigmoid Hardsigmoid
    Hardswish Hardtanh Tanh Softplus Softsign Tanhshrink LogSigmoid Threshold Hardshrink
    Softshrink""".split()
)
_NORMS = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    *_classes("GroupNorm", "LayerNorm", "RMSNorm", "LocalResponseNorm", "CrossMapLRN2d"),
)
_MAX_POOLS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}
_ADAPTIVE_MAX_POOLS = {nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}
_SOFTMAXES = _classes("Softmax", "Softmin", "LogSoftmax")
_UNSUPPORTED = _classes(
    "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d", "FractionalMaxPool2d", "FractionalMaxPool3d"
)


class _LinearizedForward(nn.Module):
    """A max-pool subclass with its own forward (timm's MaxPool2dSame pads with -inf, then
    pools): its forward, run with ``F.max_pool{nd}d`` replaced by the linear pool and -inf
    padding by zeros."""

    def __init__(self, pool: nn.Module, nd: int) -> None:
        super().__init__()
        self.pool = pool
        self.nd = nd

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        name = f"max_pool{self.nd}d"
        saved_pool, saved_pad = getattr(F, name), F.pad

        def pool(x: torch.Tensor, *a: Any, **kw: Any) -> Any:
            return linear_max_pool(x, self.nd, *a, **kw)

        def pad(input: torch.Tensor, pad: Any, mode: str = "constant", value: Any = None,
                ) -> Any:  # F.pad's own parameter names: F.pad(x, pad=...) works
            if value is not None and not math.isfinite(value):
                value = 0.0
            return saved_pad(input, pad, mode, value)

        setattr(F, name, pool)
        F.pad = pad  # temporary patch: same call as F.pad
        try:
            return self.pool(*args, **kwargs)
        finally:
            setattr(F, name, saved_pool)
            F.pad = saved_pad


def _replacement(module: nn.Module) -> nn.Module | None:
    """The linear stand-in for ``module``, or None to keep it."""
    if isinstance(module, _UNSUPPORTED):
        raise ProbeError(f"the gradient probe does not support {type(module).__name__}")
    if isinstance(module, nn.GLU):
        return LinearGLU(module.dim)
    if isinstance(module, _ACTIVATIONS + _NORMS):
        return nn.Identity()
    for cls, nd in _MAX_POOLS.items():
        if isinstance(module, cls):
            if type(module).forward is not cls.forward:  # its own forward (TF SAME padding)
                return _LinearizedForward(module, nd)
            return LinearMaxPool(module, nd)
    for acls, nd in _ADAPTIVE_MAX_POOLS.items():
        if isinstance(module, acls):
            return LinearAdaptiveMaxPool(module, nd)
    if isinstance(module, nn.Softmax2d):
        return AxisMix(-3)
    if isinstance(module, _SOFTMAXES):
        return AxisMix(cast("int | None", module.dim))  # Softmax/Softmin/LogSoftmax.dim
    return None


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``name`` (works for Sequential/ModuleList too)."""
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def _swap_modules(root: nn.Module) -> nn.Module:
    """Replace every non-linear module by its stand-in, at every path it is reachable from."""
    own = _replacement(root)
    if own is not None:
        return own
    cache: dict[int, nn.Module | None] = {}
    replaced: list[str] = []
    for name, module in list(root.named_modules(remove_duplicate=False)):
        if not name or any(name.startswith(prefix + ".") for prefix in replaced):
            continue
        if id(module) not in cache:
            cache[id(module)] = _replacement(module)
        new = cache[id(module)]
        if new is not None:
            _set_submodule(root, name, new)
            replaced.append(name)
    return root


def _fan_in(module: nn.Module) -> int:
    """Positive normaliser for a Conv / ConvTranspose / Linear weight."""
    weight = cast(torch.Tensor, module.weight)  # a Conv / ConvTranspose / Linear
    if isinstance(module, nn.Linear):
        return max(int(module.in_features), 1)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return max(weight.shape[0] // module.groups * math.prod(module.kernel_size), 1)
    return max(weight[0].numel(), 1)


def _set_constant_weights(root: nn.Module) -> None:
    """Positive constant weights and zero biases for every Conv / ConvTranspose / Linear."""
    for module in root.modules():
        if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            continue
        if isinstance(module.weight, nn.parameter.UninitializedParameter):
            raise ProbeError("lazy module is not initialised; run one forward pass first")
        with torch.no_grad():
            module.weight.fill_(1.0 / _fan_in(module))
            if module.bias is not None:
                module.bias.zero_()


# --------------------------------------------------------------------------------------------
# fx functional rewrites
# --------------------------------------------------------------------------------------------


def _pool_fn(nd: int, force_indices: bool) -> Callable[..., Any]:
    """Linear stand-in for a functional max pool (``*_with_indices`` forces a tuple)."""

    def pool(x: torch.Tensor, kernel_size: Any, *args: Any, **kwargs: Any) -> Any:
        if force_indices:
            args, kwargs["return_indices"] = args[:4], True  # drop a positional flag
        return linear_max_pool(x, nd, kernel_size, *args, **kwargs)

    return pool


def _adaptive_fn(nd: int, force_indices: bool) -> Callable[..., Any]:
    """Linear stand-in for a functional adaptive max pool."""

    def pool(x: torch.Tensor, output_size: Any, return_indices: bool = False) -> Any:
        return linear_adaptive_max_pool(x, nd, output_size, return_indices or force_indices)

    return pool


def aten_op(name: str) -> Any:
    """``torch.ops.aten.<packet>.<overload>`` for ``"packet.overload"``, None if torch lacks it."""
    packet, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.aten, packet, None), overload or "default", None)


@functools.cache
def _functional_table() -> dict[Any, Callable[..., Any]]:
    """Map functional call targets (``torch.nn.functional`` and ``torch`` functions, and the
    ATen ops of ``torch.export`` graphs) to their linear stand-ins."""
    table: dict[Any, Callable[..., Any]] = {}
    for nd in (1, 2, 3):
        table[getattr(F, f"max_pool{nd}d")] = _pool_fn(nd, False)
        table[getattr(F, f"max_pool{nd}d_with_indices")] = _pool_fn(nd, True)
        table[getattr(F, f"adaptive_max_pool{nd}d")] = _adaptive_fn(nd, False)
        table[getattr(F, f"adaptive_max_pool{nd}d_with_indices")] = _adaptive_fn(nd, True)
        if hasattr(torch, f"max_pool{nd}d"):
            table[getattr(torch, f"max_pool{nd}d")] = _pool_fn(nd, False)
        if hasattr(torch, f"max_pool{nd}d_with_indices"):
            table[getattr(torch, f"max_pool{nd}d_with_indices")] = _pool_fn(nd, True)
    for name in ("softmax", "softmin", "log_softmax"):
        for namespace in (F, torch):
            if hasattr(namespace, name):
                table[getattr(namespace, name)] = axis_mix
    table[F.glu] = linear_glu
    identity_names = """relu relu_ relu6 leaky_relu prelu rrelu elu selu celu gelu silu mish
        sigmoid hardsigmoid hardswish hardtanh tanh softplus softsign tanhshrink logsigmoid
        threshold hardshrink softshrink dropout dropout1d dropout2d dropout3d alpha_dropout
        feature_alpha_dropout batch_norm instance_norm group_norm layer_norm rms_norm
        local_response_norm""".split()
    for name in (*identity_names, *sorted(STEP_NAMES)):
        for namespace in (F, torch):
            if hasattr(namespace, name):
                table.setdefault(getattr(namespace, name), _identity_first)
    for name in sorted(ARG_REDUCTIONS):
        table[getattr(torch, name)] = _sum_reduction
    for name in ("max_unpool1d", "max_unpool2d", "max_unpool3d"):
        table[getattr(F, name)] = _unsupported(name)
    _add_aten_standins(table)
    return table


def _add_aten_standins(table: dict[Any, Callable[..., Any]]) -> None:
    """The ATen twins (``torch.export`` graphs, .pt2 files): max pooling becomes a linear pool
    of the same geometry, activations and norms the identity, softmax an axis mix, linear
    interpolation the exact-weight version."""

    def add(name: str, fn: Callable[..., Any]) -> None:
        op = aten_op(name)
        if op is not None:
            table[op] = fn

    for nd in (1, 2, 3):
        add(f"max_pool{nd}d.default", _pool_fn(nd, False))
        add(f"max_pool{nd}d_with_indices.default", _pool_fn(nd, True))
        add(f"adaptive_max_pool{nd}d.default", _adaptive_fn(nd, True))
    for name in ("relu", "relu_", "hardtanh", "hardtanh_", "sigmoid", "tanh", "silu", "silu_",
                 "gelu", "hardswish", "hardswish_", "hardsigmoid", "leaky_relu", "elu",
                 "dropout", "clamp", "mish", "softplus", "relu6", "batch_norm", "layer_norm",
                 "group_norm", "instance_norm"):
        add(f"{name}.default", _identity_first)
    for name in ("_native_batch_norm_legit_no_training", "native_batch_norm",
                 "native_layer_norm", "native_group_norm"):
        add(f"{name}.default", _identity_with_stats)
    for name in sorted(STEP_NAMES):
        add(f"{name}.default", _identity_first)
    for name in sorted(ARG_REDUCTIONS):
        add(f"{name}.default", _sum_reduction)
    add("softmax.int", axis_mix)
    add("_softmax.default", axis_mix)
    for nd, mode in ((1, "linear"), (2, "bilinear"), (3, "trilinear")):
        add(f"upsample_{mode}{nd}d.vec", lambda x, size, align, scales, mode=mode:
            ref.resize_reference(x, size, scales, mode, align))


def _unsupported(name: str) -> Callable[..., Any]:
    """A stand-in that rejects an unsupported functional at run time."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise ProbeError(f"the gradient probe does not support {name}")

    return fail


#: Step functions (derivative zero almost everywhere), clamps (zero outside the range) and
#: ``detach`` (no gradient at all): the probe would see no dependency where there is one, so it
#: runs the identity instead. Functions (``torch.*``) and methods of the same names.
STEP_NAMES = frozenset("""floor floor_ ceil ceil_ round round_ trunc trunc_ sign sign_ clamp
    clamp_ clamp_min clamp_min_ clamp_max clamp_max_ clip clip_ detach""".split())
#: Reductions whose gradient goes to one element (the extreme): the probe takes the sum.
ARG_REDUCTIONS = frozenset({"amax", "amin"})
#: Element-wise ops the probe runs as they are, declared: their derivative is non-zero almost
#: everywhere (so every read element shows in the gradient), or their result is an integer or
#: boolean tensor, which verify skips by design. tests/test_registry.py checks that every
#: activation-family op with a rule has a stand-in or is declared here.
GRADIENT_SAFE = frozenset("""abs neg exp exp_ expm1 log log1p log2 sin cos tan sinh cosh atan erf
    sqrt sqrt_ rsqrt reciprocal square pow pow_ frac nan_to_num cumsum cumprod clone contiguous
    float double half bfloat16 to type_as bool byte char int long short logical_not bitwise_not
    invert fill_ zero_ normalize type requires_grad_""".split())

_METHOD_IDENTITIES = frozenset(
    {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"} | STEP_NAMES
)


def _sum_reduction(x: torch.Tensor, dim: Any = None, keepdim: bool = False, **_: Any,
                   ) -> torch.Tensor:
    """Stand-in for ``amax``/``amin``: the sum over the same dims (linear; every element of
    the reduced window reaches the gradient)."""
    if dim is None or dim == () or dim == []:
        dim = tuple(range(x.ndim))
    return x.sum(dim=dim, keepdim=keepdim)
_METHOD_SOFTMAXES = frozenset({"softmax", "softmin", "log_softmax"})


def _rewrite_graph(gm: fx.GraphModule) -> None:
    """Apply the functional rewrites to the nodes of an fx graph, in place."""
    table = _functional_table()
    changed = False
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is not operator.getitem:
            new = _lookup(table, node.target)
            if new is not None:
                node.target, changed = new, True
        elif node.op == "call_method" and node.target in (_METHOD_IDENTITIES | _METHOD_SOFTMAXES
                                                          | ARG_REDUCTIONS):
            new = (axis_mix if node.target in _METHOD_SOFTMAXES else _sum_reduction
                   if node.target in ARG_REDUCTIONS else _identity_first)
            node.op, node.target, changed = "call_function", new, True
    if changed:
        gm.graph.lint()
        gm.recompile()


def _lookup(table: dict[Any, Callable[..., Any]], target: Any) -> Callable[..., Any] | None:
    """``table.get(target)`` that tolerates unhashable targets."""
    try:
        return table.get(target)
    except TypeError:
        return None


def standin_for(key: Any) -> Callable[..., Any] | None:
    """The probe's linear stand-in for an op, or None when the probe keeps the op as it is (a
    linear op needs none) or rejects it (``MaxUnpool``, ``FractionalMaxPool``).

    ``key`` is what rfgraph's rule registry is keyed by: a call target (a ``torch`` or
    ``torch.nn.functional`` function, an ATen op of a ``torch.export`` graph), a method name
    (``"softmax"``), an ``nn.Module`` class (the answer is then the factory that builds the
    stand-in from an instance) or an ``nn.Module`` instance (the answer is the stand-in)."""
    if isinstance(key, str):
        if key in _METHOD_SOFTMAXES:
            return axis_mix
        if key in ARG_REDUCTIONS:
            return _sum_reduction
        return _identity_first if key in _METHOD_IDENTITIES else None
    if isinstance(key, type):
        if issubclass(key, _UNSUPPORTED):
            return None
        replaced = (nn.GLU, nn.Softmax2d, *_ACTIVATIONS, *_NORMS, *_MAX_POOLS,
                    *_ADAPTIVE_MAX_POOLS, *_SOFTMAXES)
        return _replacement if issubclass(key, replaced) else None
    if isinstance(key, nn.Module):
        try:
            return _replacement(key)
        except ProbeError:
            return None
    return _lookup(_functional_table(), key)


# --------------------------------------------------------------------------------------------
# Stand-ins of rfgraph verify's probe copy (rfgraph.verify.probing.probe_graph_module)
# --------------------------------------------------------------------------------------------


class SumLinear(nn.Module):
    """Probe stand-in for a huge nn.Linear: every output is mean(x) over the last dim (the same
    dependency pattern as the probe's constant 1/fan_in weights, without the weight matrix)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(-1, keepdim=True) * x.new_full((self.out_features,), 1.0 / self.in_features)


class ExactLinearResize(nn.Module):
    """Probe stand-in for a linear-mode nn.Upsample: the same geometry with exact weights.

    torch computes the source coordinate in floating point; where the exact coordinate is an
    integer it may come out a hair above it and give the next pixel a weight of ~1e-15, which
    the probe (an exact ``!= 0`` test) would count as a dependence."""

    def __init__(self, size: Any, scale_factor: Any, mode: str, align_corners: Any,
                 recompute: Any) -> None:
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute = align_corners, recompute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ref.resize_reference(x, self.size, self.scale_factor, self.mode,
                                    self.align_corners, self.recompute)


def exact_interpolate(x: torch.Tensor, size: Any = None, scale_factor: Any = None,
                       mode: str = "nearest", align_corners: Any = None,
                       recompute_scale_factor: Any = None, antialias: bool = False,
                       ) -> torch.Tensor:
    """Probe stand-in for ``F.interpolate``: exact weights for the linear modes."""
    if mode in ref.LINEAR_MODES and not antialias:
        return ref.resize_reference(x, size, scale_factor, mode, align_corners,
                                    recompute_scale_factor)
    return F.interpolate(x, size, scale_factor, mode, align_corners, recompute_scale_factor,
                         antialias)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def prepare_probe_model(model: nn.Module) -> nn.Module:
    """The linearised float64 eval-mode deep copy of ``model`` used by the probe.

    The original model is not modified.
    """
    prepared = copy.deepcopy(model)
    prepared = _swap_modules(prepared)
    if isinstance(prepared, fx.GraphModule):
        _rewrite_graph(prepared)
    prepared = prepared.double().eval()
    _set_constant_weights(prepared)  # after the cast, so the constants are exact in float64
    prepared.requires_grad_(False)
    return prepared


def _select_output(out: Any, output_index: Any = None) -> torch.Tensor:
    """The tensor to probe: ``out[output_index]``, else the first element/value, recursively."""
    if output_index is not None:
        out = out[output_index]
    while not isinstance(out, torch.Tensor):
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        elif isinstance(out, dict) and out:
            out = next(iter(out.values()))
        else:
            raise ProbeError(f"cannot find a tensor in model output of type {type(out)}")
    return out


def _forward(
    prepared: nn.Module, input_shape: Sequence[int], output_index: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the prepared model on an all-ones float64 input that requires grad."""
    x = torch.ones(tuple(int(n) for n in input_shape), dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        out = _select_output(prepared(x), output_index)
    return x, out


def _has_spatial_output(out: torch.Tensor, input_shape: Sequence[int]) -> bool:
    """Whether ``out`` is laid out like the input: ``(N, C, *spatial)`` with as many axes."""
    return out.dim() == len(input_shape) and out.dim() > 2


def _resolve_position(position: Sequence[int] | None, spatial: Sequence[int]) -> tuple[int, ...]:
    """Validate ``position`` against the output spatial shape (None = centre, negatives wrap)."""
    if position is None:
        return tuple(n // 2 for n in spatial)
    if len(position) != len(spatial):
        raise ValueError(f"position {tuple(position)} does not match output axes {spatial}")
    resolved = []
    for p, n in zip(position, spatial, strict=True):
        q = int(p) + n if int(p) < 0 else int(p)
        if not 0 <= q < n:
            raise ValueError(f"position {tuple(position)} is outside output shape {spatial}")
        resolved.append(q)
    return tuple(resolved)


def _seed(
    out: torch.Tensor, position: Sequence[int] | None, input_shape: Sequence[int]
) -> torch.Tensor:
    """Gradient seed: 1 at ``position`` for batch 0 and every channel, 0 elsewhere.

    Outputs without matching spatial axes (e.g. ``(N, F)``) are seeded over all of batch 0.
    """
    if out.dim() == 0:
        return torch.ones_like(out)
    seed = torch.zeros_like(out)
    if not _has_spatial_output(out, input_shape):
        seed[0] = 1.0
        return seed
    pos = _resolve_position(position, tuple(out.shape[2:]))
    seed[(0, slice(None)) + tuple(pos)] = 1.0
    return seed


def _bounding_box(grad: torch.Tensor | None) -> Box:
    """Per-spatial-axis ``(lo, hi)`` of the non-zero entries of an input gradient."""
    if grad is None or not bool((grad != 0).any()):
        raise ProbeError("the input gradient is empty: the output does not depend on the input")
    mask = grad != 0
    if mask.dim() > 2:
        mask = mask.flatten(0, 1).any(0)  # merge batch and channel axes
    else:
        return []
    box: Box = []
    for axis in range(mask.dim()):
        others = [a for a in range(mask.dim()) if a != axis]
        line = mask.any(dim=others) if others else mask
        idx = torch.nonzero(line).flatten()
        box.append((int(idx[0]), int(idx[-1])))
    return box


def _measure(
    x: torch.Tensor,
    out: torch.Tensor,
    input_shape: Sequence[int],
    position: Sequence[int] | None,
    retain_graph: bool,
) -> Box:
    """Back-propagate one seed and return the bounding box of the input gradient."""
    if not out.requires_grad:
        raise ProbeError("the model output does not depend on the input")
    seed = _seed(out, position, input_shape)
    (grad,) = torch.autograd.grad(out, x, seed, retain_graph=retain_graph, allow_unused=True)
    return _bounding_box(grad)


def probe_rf(
    model: nn.Module,
    input_shape: Sequence[int],
    position: Sequence[int] | None = None,
    output_index: Any = None,
) -> Box:
    """Bounding box ``[lo, hi]`` (inclusive, input coordinates) per spatial input axis.

    The box encloses the input region whose values reach the output element at ``position``
    (one index per output spatial axis, negatives wrap; None = centre ``n // 2``), summed over
    channels, batch 0.  Spatial axes are input dims 2.. .  If the output has fewer spatial dims
    than the input (e.g. ``(N, F)`` after flatten + linear) the position is ignored and the
    field of all of batch 0's features is measured.

    ``output_index`` selects ``out[output_index]`` from a tuple / list / dict output; by
    default the first element (or first dict value) is used.

    Raises :class:`ProbeError` if the gradient is empty.  The box may be clipped by the input
    border; see :func:`touches_border`.
    """
    return probe_rf_many(model, input_shape, [position], output_index)[0]


def probe_rf_many(
    model: nn.Module,
    input_shape: Sequence[int],
    positions: Sequence[Sequence[int] | None],
    output_index: Any = None,
) -> list[Box]:
    """:func:`probe_rf` for several output positions with one model copy and one forward."""
    prepared = prepare_probe_model(model)
    x, out = _forward(prepared, input_shape, output_index)
    boxes = []
    for i, position in enumerate(positions):
        last = i == len(positions) - 1
        boxes.append(_measure(x, out, input_shape, position, retain_graph=not last))
    return boxes


def output_spatial_shape(
    model: nn.Module, input_shape: Sequence[int], output_index: Any = None
) -> tuple[int, ...]:
    """Spatial shape (dims 2..) of the probed output, computed on the prepared copy.

    Empty if the output has no spatial axes matching the input's (e.g. ``(N, F)``).
    """
    prepared = prepare_probe_model(model)
    x = torch.ones(tuple(int(n) for n in input_shape), dtype=torch.float64)
    with torch.no_grad():
        out = _select_output(prepared(x), output_index)
    return tuple(out.shape[2:]) if _has_spatial_output(out, input_shape) else ()


def touches_border(box: Sequence[tuple[int, int]], input_shape: Sequence[int]) -> list[bool]:
    """Per spatial axis: whether the box reaches the input border (the field may be clipped)."""
    spatial = list(input_shape)[2:]
    if len(box) != len(spatial):
        raise ValueError(f"box has {len(box)} axes, input has {len(spatial)} spatial axes")
    return [lo == 0 or hi == n - 1 for (lo, hi), n in zip(box, spatial, strict=True)]
