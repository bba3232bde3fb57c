"""Convolution, transposed convolution and pooling: every op that slides a window."""

from __future__ import annotations

from dataclasses import dataclass

import sympy
import torch.nn.functional as F
from sympy import Expr, Integer, Min
from torch import nn

from ..errors import RuleError
from ..receptive_field import AxisRF, merge_rfs
from ..symbolic import ceildiv, floordiv
from ..tensor import TensorInfo
from .base import Call, OpResult, ntuple, prod, register

_AXIS_LETTERS = {1: ("l",), 2: ("h", "w"), 3: ("d", "h", "w")}


@dataclass(frozen=True)
class Window:
    """A sliding window over the last ``nd`` dims of a tensor."""

    nd: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad_left: tuple[int, ...]
    pad_right: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool = False

    def k_eff(self, i: int) -> int:
        return self.dilation[i] * (self.kernel[i] - 1) + 1


def _spatial_dims(call: Call, x: TensorInfo, nd: int) -> list[int]:
    """The spatial dims of ``x`` for an ``nd``-D window op, which needs a batched
    (N, C, *spatial) input: an unbatched or wrongly ranked input is refused, naming the layer."""
    if x.ndim != nd + 2:
        from .base import shape_str

        op = (type(call.module).__name__ if call.module is not None
              else getattr(call.target, "__name__", None) or str(call.target))
        layout = ", ".join(("N", "C", *(a.upper() for a in _AXIS_LETTERS[nd])))
        raise RuleError(
            f"{call.where()}: {op} needs a {nd + 2}-D input ({layout}); the input has "
            f"{x.ndim} dim{'s' if x.ndim != 1 else ''} ({shape_str(x.shape)})"
        )
    return list(range(x.ndim - nd, x.ndim))


def window_out_size(n: Expr, w: Window, i: int) -> Expr:
    """PyTorch's output size along one axis (conv and pooling, ceil_mode included)."""
    k_eff, s = w.k_eff(i), w.stride[i]
    pl, pr = w.pad_left[i], w.pad_right[i]
    if not w.ceil_mode:
        return floordiv(n + pl + pr - k_eff + s, s)
    # ceil_mode (pooling, symmetric padding p): ceil((n + 2p - k_eff)/s) + 1, minus the last
    # window when it would start in the right padding: min(.., ceil((n + p)/s)).
    out = ceildiv(n + pl + pr - k_eff + s, s)
    if pl + s > k_eff:
        out = Min(out, ceildiv(n + pl, s))
    return out


def apply_window(call: Call, x: TensorInfo, w: Window, out_channels: Expr | int | None,
                 groups: int = 1) -> tuple[TensorInfo, list[tuple[Expr, str]]]:
    """Output TensorInfo of a windowed op and the sizes that must be >= 1.

    ``out_channels`` None: a per-channel window (pooling); else a conv with ``groups``: output
    channel o reads the input channels of its group (all of them when groups == 1)."""
    dims = _spatial_dims(call, x, w.nd)
    shape = list(x.shape)
    min_sizes: list[tuple[Expr, str]] = []
    letters = _AXIS_LETTERS[w.nd]
    for i, d in enumerate(dims):
        out = window_out_size(x.shape[d], w, i)
        shape[d] = out
        min_sizes.append((out, f"output {letters[i]}"))
    cache: dict[tuple[int, ...], tuple] = {}

    def through(fields: tuple) -> tuple:
        key = tuple(id(f) for f in fields)
        if key not in cache:
            rf = list(fields)
            for i, d in enumerate(dims):
                axis = x.axes[d]
                if axis is not None and rf[axis] is not None:
                    rf[axis] = rf[axis].through_window(w.kernel[i], w.stride[i],
                                                       w.pad_left[i], w.dilation[i],
                                                       w.pad_right[i])
            cache[key] = tuple(rf)
        return cache[key]

    rf = through(x.rf)
    channels, varies = None, x.varies
    if out_channels is not None:
        shape[dims[0] - 1] = sympy.sympify(out_channels)
        if groups == 1:
            varies = False  # every output channel reads every input channel
        elif x.channels is not None and shape[dims[0] - 1].is_Integer:
            n_out, n_in = int(shape[dims[0] - 1]), len(x.channels)
            per_out, per_in = n_out // groups, n_in // groups
            by_group = []
            for g in range(groups):
                members = x.channels[g * per_in:(g + 1) * per_in]
                by_group.append(through(tuple(
                    merge_rfs([m[a] for m in members], [False] * len(members))
                    for a in range(len(x.rf)))))
            channels = [by_group[o // per_out] for o in range(n_out)]
    elif x.channels is not None:
        channels = [through(f) for f in x.channels]
    return x.with_shape(shape, rf=rf, channels=channels, varies=varies), min_sizes


def _check_channels(call: Call, x: TensorInfo, nd: int, expected: int) -> list[Expr]:
    _spatial_dims(call, x, nd)  # the rank first: an unbatched input is not a channel mismatch
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
    letters = _AXIS_LETTERS[nd]
    for i, d in enumerate(range(x.ndim - nd, x.ndim)):
        pad = max(pl[i], pr[i])
        if pad > 0:
            rel = "<" if slack == 0 else "<="
            out.append((x.shape[d] - pad + slack,
                        f"input {letters[i]} - {pad}{' + 1' if slack else ''} "
                        f"(padding_mode='{padding_mode}' needs padding {rel} input)"))
    return out


def _kernel_formula(nd: int) -> str:
    return "·".join(f"k_{c}" for c in _AXIS_LETTERS[nd])


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
    return OpResult(y, params, f"{formula} = {values}", sympy.expand(macs), family="conv",
                    notes=notes, conditions=conditions, min_sizes=min_sizes)


def conv_transpose_core(call: Call, x: TensorInfo, nd: int, in_ch: int, out_ch: int, kernel,
                        stride, padding, output_padding, dilation, groups: int, bias: bool,
                        ) -> OpResult:
    kernel, stride, padding, output_padding, dilation = (
        ntuple(v, nd) for v in (kernel, stride, padding, output_padding, dilation))
    conditions = _check_channels(call, x, nd, in_ch)
    dims = _spatial_dims(call, x, nd)
    shape, rf = list(x.shape), list(x.rf)
    min_sizes: list[tuple[Expr, str]] = []
    notes: list[str] = []
    letters = _AXIS_LETTERS[nd]
    for i, d in enumerate(dims):
        k, s, p, op, dl = kernel[i], stride[i], padding[i], output_padding[i], dilation[i]
        out = (x.shape[d] - 1) * s - 2 * p + dl * (k - 1) + op + 1
        shape[d] = sympy.expand(out)
        min_sizes.append((shape[d], f"output {letters[i]}"))
        axis = x.axes[d]
        if axis is not None and rf[axis] is not None:
            rf[axis] = rf[axis].through_transposed(k, s, p, dl)
            if rf[axis].extent is not None and op > p and not rf[axis].upper:
                # the last outputs (output padding beyond the cropped padding) read nothing,
                # while every element of a global field is given its extent
                rf[axis] = rf[axis].upper_bound("output padding over a global field: the "
                                                "last outputs read nothing")
    shape[dims[0] - 1] = Integer(out_ch)
    # (grouped transposed convs do not follow channels: their channels may vary)
    y = x.with_shape(shape, rf=rf, varies=x.varies and groups > 1)
    k_prod = prod(kernel)
    params = in_ch * (out_ch // groups) * int(k_prod) + (out_ch if bias else 0)
    formula = f"C_in·(C_out/g)·{_kernel_formula(nd)}" + (" + C_out" if bias else "")
    values = f"{in_ch}·({out_ch}/{groups})·{'·'.join(map(str, kernel))}" + (
        f" + {out_ch}" if bias else "")
    macs = _batch(x, nd) * in_ch * prod(x.shape[-nd:]) * (out_ch // groups) * k_prod
    return OpResult(y, params, f"{formula} = {values}", sympy.expand(macs), family="conv",
                    notes=notes, conditions=conditions, min_sizes=min_sizes)


# -- modules --------------------------------------------------------------------------------------
def _conv_nd(module: nn.Module) -> int:
    return len(module.kernel_size)


@register(nn.Conv1d, nn.Conv2d, nn.Conv3d, family="conv")
def conv_module(call: Call) -> OpResult:
    m = call.module
    return conv_core(call, call.tensor(), _conv_nd(m), m.in_channels, m.out_channels,
                     m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                     m.bias is not None, m.padding_mode)


@register(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, family="conv")
def conv_transpose_module(call: Call) -> OpResult:
    m = call.module
    if call.arg(1, "output_size") is not None:
        raise RuleError(f"{call.where()}: output_size= in forward is not supported")
    return conv_transpose_core(call, call.tensor(), _conv_nd(m), m.in_channels, m.out_channels,
                               m.kernel_size, m.stride, m.padding, m.output_padding,
                               m.dilation, m.groups, m.bias is not None)


def _pool_nd(module: nn.Module) -> int:
    """1, 2 or 3 from the pooling class or the first base class that says it (a user's
    ``FancyPool(nn.MaxPool2d)`` is 2-D)."""
    for cls in type(module).__mro__:
        if cls.__name__[-2:] in ("1d", "2d", "3d"):
            return int(cls.__name__[-2])
    raise RuleError(f"cannot tell the dimension of {type(module).__name__}")


def pool_core(call: Call, x: TensorInfo, nd: int, kernel, stride, padding, dilation,
              ceil_mode: bool, return_indices: bool = False, avg: bool = False) -> OpResult:
    kernel = ntuple(kernel, nd)
    stride = ntuple(stride if stride not in (None, [], ()) else kernel, nd)
    padding = ntuple(padding, nd)
    dilation = ntuple(dilation, nd)
    for k, p in zip(kernel, padding):
        if p * 2 > k:
            raise RuleError(f"{call.where()}: padding {p} exceeds half the kernel {k}")
    w = Window(nd, kernel, stride, padding, padding, dilation, bool(ceil_mode))
    y, min_sizes = apply_window(call, x, w, None)
    if avg and nd == 3:  # avg_pool3d first checks the unpadded input against the kernel
        min_sizes = [(x.shape[d] - kernel[i] + 1, f"input {_AXIS_LETTERS[nd][i]} - {kernel[i]} "
                      "+ 1 (avg_pool3d needs input >= kernel)")
                     for i, d in enumerate(_spatial_dims(call, x, nd)) if kernel[i] > 1
                     ] + min_sizes
    value = (y, y) if return_indices else y
    notes = ["returns (values, indices)"] if return_indices else []
    return OpResult(value, 0, "0", Integer(0), family="pool", notes=notes, min_sizes=min_sizes)


@register(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, family="pool")
def maxpool_module(call: Call) -> OpResult:
    m = call.module
    return pool_core(call, call.tensor(), _pool_nd(m), m.kernel_size, m.stride, m.padding,
                     m.dilation, m.ceil_mode, m.return_indices)


@register(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, family="pool")
def avgpool_module(call: Call) -> OpResult:
    m = call.module
    return pool_core(call, call.tensor(), _pool_nd(m), m.kernel_size, m.stride, m.padding, 1,
                     m.ceil_mode, avg=True)


def adaptive_core(call: Call, x: TensorInfo, nd: int, output_size, return_indices=False,
                  ) -> OpResult:
    dims = _spatial_dims(call, x, nd)
    sizes = ntuple(output_size, nd)
    shape, rf = list(x.shape), list(x.rf)
    notes: list[str] = []
    for i, d in enumerate(dims):
        n = x.shape[d]
        o = n if sizes[i] is None else Integer(sizes[i])
        shape[d] = o
        axis = x.axes[d]
        if axis is None or rf[axis] is None or sizes[i] is None:
            continue
        if o == 1:
            rf[axis] = rf[axis].collapsed(n)
        else:
            # bin y covers [floor(y*n/o), ceil((y+1)*n/o) - 1]; bins repeat every o outputs
            oi = int(o)
            old: AxisRF = rf[axis]
            exact = sympy.sympify(n).is_Integer and int(n) % oi == 0
            note = None if exact else "adaptive bins vary in width: the field size is the widest"
            rf[axis] = old.compose(lambda y, n=n, oi=oi: floordiv(y * n, oi),
                                   lambda y, n=n, oi=oi: ceildiv((y + 1) * n, oi) - 1,
                                   old.jump * n / oi, old.period * oi, note)
    y = x.with_shape(shape, rf=rf)
    value = (y, y) if return_indices else y
    return OpResult(value, 0, "0", Integer(0), family="pool", notes=notes)


@register(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
          nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, family="pool")
def adaptive_module(call: Call) -> OpResult:
    m = call.module
    return adaptive_core(call, call.tensor(), _pool_nd(m), m.output_size,
                         getattr(m, "return_indices", False))


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


for _nd, _f in ((1, F.conv1d), (2, F.conv2d), (3, F.conv3d)):
    register(_f, family="conv")(_functional_conv(_nd))
for _nd, _f in ((1, F.conv_transpose1d), (2, F.conv_transpose2d), (3, F.conv_transpose3d)):
    register(_f, family="conv")(_functional_conv_t(_nd))


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
    register(getattr(F, f"max_pool{_nd}d"), family="pool")(_functional_maxpool(_nd))
    register(getattr(F, f"avg_pool{_nd}d"), family="pool")(_functional_avgpool(_nd))
    register(getattr(F, f"adaptive_avg_pool{_nd}d"), family="pool")(
        _functional_adaptive(_nd, False))
    register(getattr(F, f"adaptive_max_pool{_nd}d"), family="pool")(
        _functional_adaptive(_nd, True))
    register(getattr(F, f"max_pool{_nd}d_with_indices"), family="pool")(_functional_maxpool(_nd))
    register(getattr(F, f"adaptive_max_pool{_nd}d_with_indices"), family="pool")(
        _functional_adaptive(_nd, True))
