"""The semantics check: what each covered layer computes (convolution, transposed convolution,
pooling, resizing, channel shuffle, and chains of convolutions that are one convolution) against
an independent reference of :mod:`rfgraph.semantics`, once per node on small random float64
inputs, each node within a time budget."""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import math
import signal
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import semantics as ref
from ..errors import InternalError
from ..execute import MetaExecutor, tensors_in
from ..probe import aten_op
from ..rules.pool import _pool_nd
from ..util import conv_padding, first_line, lookup, ntuple, resolve_attr
from ..verify_terms import NODE_BUDGET
from .probing import _first_tensor
from .report import CheckRow, _Progress

if TYPE_CHECKING:
    from ..analysis import Analysis

SEMANTICS_TOL = 1e-9
#: above this estimated cost (element operations) the transposed-conv reference is computed
#: matrix-free (the dense conv matrix of a dilated 3-D kernel takes minutes to build)
CONV_MATRIX_COST = 20_000_000

_POOL_FUNCS: dict[Any, tuple[str, int]] = {}
for _nd in (1, 2, 3):
    _POOL_FUNCS[getattr(F, f"max_pool{_nd}d")] = ("max", _nd)
    _POOL_FUNCS[getattr(F, f"avg_pool{_nd}d")] = ("avg", _nd)
    _POOL_FUNCS[getattr(F, f"adaptive_avg_pool{_nd}d")] = ("adaptive_avg", _nd)
    _POOL_FUNCS[getattr(F, f"adaptive_max_pool{_nd}d")] = ("adaptive_max", _nd)
_CONV_FUNCS = {getattr(F, f"conv{_nd}d"): ("conv", _nd) for _nd in (1, 2, 3)}
_CONV_FUNCS.update({getattr(F, f"conv_transpose{_nd}d"): ("convt", _nd) for _nd in (1, 2, 3)})
_SHUFFLE_FUNCS = {F.channel_shuffle}
#: modules checked against an independent reference (rfgraph/semantics.py);
#: tests/test_registry.py checks that every window-like module with a rule is here or in
#: NO_REFERENCE
REFERENCE_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd, nn.ChannelShuffle, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
#: window-like modules with a rule but no semantics reference, and why that is enough
NO_REFERENCE: dict[type[nn.Module], str] = {
    cls: "padding copies elements: its shape and field are checked by verify's shape and rf "
         "checks, and its values are torch's own"
    for cls in (nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
                nn.modules.padding._ReplicationPadNd, nn.modules.padding._CircularPadNd)
}


for _nd in (1, 2, 3):  # the ATen twins found in torch.export graphs take the same arguments
    for _name, _entry in ((f"conv{_nd}d.default", ("conv", _nd)),
                          (f"conv_transpose{_nd}d.input", ("convt", _nd))):
        if aten_op(_name) is not None:
            _CONV_FUNCS[aten_op(_name)] = _entry
    for _name, _entry in ((f"max_pool{_nd}d.default", ("max", _nd)),
                          (f"max_pool{_nd}d_with_indices.default", ("max", _nd)),
                          (f"avg_pool{_nd}d.default", ("avg", _nd)),
                          (f"adaptive_avg_pool{_nd}d.default", ("adaptive_avg", _nd)),
                          (f"_adaptive_avg_pool{_nd}d.default", ("adaptive_avg", _nd)),
                          (f"adaptive_max_pool{_nd}d.default", ("adaptive_max", _nd))):
        if aten_op(_name) is not None:
            _POOL_FUNCS[aten_op(_name)] = _entry
for _name in ("channel_shuffle.default", "native_channel_shuffle.default"):
    if aten_op(_name) is not None:
        _SHUFFLE_FUNCS.add(aten_op(_name))
_SHAPE_METHODS = {"view", "reshape", "transpose", "permute", "contiguous", "flatten", "unflatten",
                  "swapaxes", "swapdims"}
_SHAPE_FUNCS = {torch.reshape, torch.transpose, torch.permute, torch.flatten, torch.swapaxes,
                torch.unflatten}


_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_ConvNd = nn.modules.conv._ConvNd
_M = TypeVar("_M", bound=nn.Module)


class _TooSlow(BaseException):
    """Raised by the SIGALRM handler of :func:`_time_budget` (a BaseException: no ``except
    Exception`` on the way may swallow it)."""


@contextlib.contextmanager
def _time_budget(seconds: float | None) -> Iterator[bool]:
    """Interrupt the block (raise :class:`_TooSlow`) after ``seconds`` of wall time.

    Uses SIGALRM, so only in the main thread and when no other interval timer is armed; the
    value of the ``with`` is whether the budget is enforced. Python code is interrupted
    between bytecodes: one long torch call finishes first."""
    usable = (seconds is not None and 0 < seconds < math.inf and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    if not usable or seconds is None:
        yield False
        return
    state = {"armed": True}

    def on_alarm(signum: int, frame: Any) -> None:
        if state["armed"]:
            state["armed"] = False
            raise _TooSlow()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield True
    finally:
        state["armed"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Semantics:
    """Runs every reference check once per node (random float64 inputs, small sizes)."""

    def __init__(self, analysis: Analysis, gm: fx.GraphModule, meta: MetaExecutor | None,
                 rows: list[CheckRow], progress: _Progress, budget: float | None = NODE_BUDGET,
                 notes: list[str] | None = None) -> None:
        self.a = analysis
        self.gm = gm
        self.meta = meta
        self.rows = rows
        self.progress = progress
        self.budget = budget
        self.notes = notes if notes is not None else []
        self.budget_note = False
        self.gen = torch.Generator().manual_seed(0)
        self.done_modules: dict[int, str] = {}

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen, dtype=torch.float64)

    def row(self, node: str, what: str, err: float, detail: str = "") -> None:
        status = "pass" if err <= SEMANTICS_TOL else "fail"
        text = detail or f"max relative error {err:.1e}"
        if status == "fail":
            text = f"{what}: max relative error {err:.3g} > {SEMANTICS_TOL:g}" + (
                f" ({detail})" if detail else "")
        self.rows.append(CheckRow(node, "semantics", status, None, what, None, None,
                                  float(err), text))

    def skip(self, node: str, what: str, detail: str, reason: str = "no-reference") -> None:
        self.rows.append(CheckRow(node, "semantics", "skip", None, what, detail=detail,
                                  reason=reason))

    def _guarded(self, name: str, what: str, fn: Callable[[], None]) -> None:
        """Run one node's check within the time budget; an error or the budget running out is
        reported as a check that could not run."""
        try:
            with _time_budget(self.budget) as enforced:
                if not enforced and self.budget and not self.budget_note:
                    self.budget_note = True
                    self.notes.append("semantics: the per-node time budget is not enforced "
                                      "here (verify runs outside the main thread, or another "
                                      "timer is active)")
                fn()
        except _TooSlow:
            self.skip(name, what, f"the check took longer than the budget of {self.budget:g} s "
                                  "per node (raise it with --node-budget, or node_budget=)",
                      reason="too-slow")
        except Exception as exc:  # a reference that cannot run is reported, not hidden
            self.skip(name, what, f"reference could not run: {first_line(exc, 160)}",
                      reason="error")

    def targets(self) -> list[fx.Node]:
        out = []
        for node in self.gm.graph.nodes:
            if node.op == "call_module":
                mod = self.gm.get_submodule(str(node.target))
                if isinstance(mod, REFERENCE_MODULES):
                    out.append(node)
            elif node.op == "call_function" and (
                    lookup(_POOL_FUNCS, node.target) or lookup(_CONV_FUNCS, node.target)
                    or node.target in _SHUFFLE_FUNCS or node.target is F.interpolate):
                out.append(node)
        return out

    def run(self) -> None:
        targets = self.targets()
        chains = self._conv_chains()
        shuffles = self._shuffle_idioms()
        self.progress.add(len(targets) + len(chains) + len(shuffles))
        for node in targets:
            self._guarded(node.name, "layer", functools.partial(self._check_node, node))
            self.progress.step(f"semantics {node.name}")
        for chain in chains:
            self._guarded(chain[-1].name, "conv chain",
                          functools.partial(self._check_chain, chain))
            self.progress.step(f"semantics {chain[-1].name}")
        for src, end, nodes, groups in shuffles:
            self._guarded(end.name, "channel shuffle",
                          functools.partial(self._check_shuffle_idiom, src, end, nodes, groups))
            self.progress.step(f"semantics {end.name}")

    # -- single layers ------------------------------------------------------------------------
    def _in_channels(self, node: fx.Node, default: int = 3) -> int:
        shapes = self.meta.in_shapes.get(node.name) if self.meta is not None else None
        if shapes and len(shapes[0]) >= 2:
            return int(shapes[0][1])
        return default

    def _check_node(self, node: fx.Node) -> None:
        if node.op == "call_module":
            mod = self.gm.get_submodule(str(node.target))
            if id(mod) in self.done_modules:
                self.skip(node.name, "layer", f"same module as node "
                                               f"'{self.done_modules[id(mod)]}' (checked there)",
                          reason="same-module")
                return
            self.done_modules[id(mod)] = node.name
            if isinstance(mod, nn.modules.conv._ConvTransposeNd):
                self._convt(node.name, mod)
            elif isinstance(mod, nn.modules.conv._ConvNd):
                self._conv(node.name, mod)
            elif isinstance(mod, nn.Upsample):
                shapes = self.meta.in_shapes.get(node.name) if self.meta is not None else None
                self._resize(node.name, mod.size, mod.scale_factor, mod.mode,
                             mod.align_corners, mod.recompute_scale_factor,
                             shapes[0] if shapes else None)
            elif isinstance(mod, nn.ChannelShuffle):
                self._shuffle(node.name, lambda x: mod(x), int(mod.groups),
                              self._in_channels(node, 2 * int(mod.groups)))
            elif isinstance(mod, (nn.PixelShuffle, nn.PixelUnshuffle)):
                self._pixel_shuffle(node.name, mod)
            else:
                self._pool_module(node, mod)
            return
        pool = lookup(_POOL_FUNCS, node.target)
        conv = lookup(_CONV_FUNCS, node.target)
        if node.target is F.interpolate:
            names = ["size", "scale_factor", "mode", "align_corners", "recompute_scale_factor",
                     "antialias"]
            kw = dict(zip(names, [self._measured(a) for a in node.args[1:]]))
            kw.update({k: self._measured(v) for k, v in node.kwargs.items()})
            if kw.get("antialias"):
                self.skip(node.name, "resize", "antialias=True has no reference")
                return
            shapes = self.meta.in_shapes.get(node.name) if self.meta is not None else None
            self._resize(node.name, kw.get("size"), kw.get("scale_factor"),
                         kw.get("mode", "nearest"), kw.get("align_corners"),
                         kw.get("recompute_scale_factor"), shapes[0] if shapes else None)
            return
        if node.target in _SHUFFLE_FUNCS:
            groups = node.args[1] if len(node.args) > 1 else node.kwargs.get("groups")
            try:  # groups computed in forward: the value of the (first) meta run
                groups = self._measured(groups)
            except LookupError:
                pass
            if not isinstance(groups, int):
                self.skip(node.name, "channel shuffle", "groups computed at run time")
                return
            fn = node.target
            self._shuffle(node.name, lambda x: fn(x, groups), groups,
                          self._in_channels(node, 2 * groups))
        elif pool is not None:
            self._pool_function(node, *pool)
        elif conv is not None:
            self._conv_function(node, *conv)

    def real(self, mod: _M) -> _M:
        """A float64 CPU copy of ``mod``; a module on the meta device gets random values."""
        m = copy.deepcopy(mod)
        if any(t.is_meta for t in itertools.chain(m.parameters(), m.buffers())):
            m = m.to_empty(device="cpu")
            with torch.no_grad():
                for t in itertools.chain(m.parameters(), m.buffers()):
                    if t.is_floating_point():
                        t.copy_(torch.randn(t.shape, generator=self.gen))
        return m.double().eval()

    def _conv(self, name: str, mod: _ConvNd) -> None:
        nd = len(mod.kernel_size)
        m = self.real(mod)
        left, right = conv_padding(m.padding, m.kernel_size, m.dilation, nd)
        k_eff = [d * (k - 1) + 1 for k, d in zip(m.kernel_size, m.dilation)]
        sizes = []
        for a in range(nd):
            n = max(k_eff[a] - left[a] - right[a], 1) + 2 * m.stride[a] + 1
            if m.padding_mode != "zeros":
                n = max(n, max(left[a], right[a]) + 1)
            sizes.append(n)
        x = self.randn(2, m.in_channels, *sizes)
        with torch.no_grad():
            want = m(x)
            weight, bias = m.weight.detach(), None if m.bias is None else m.bias.detach()
            got = ref.conv_reference(x, weight, bias, m.stride, left, m.dilation, m.groups,
                                     right, m.padding_mode)
            self.row(name, "conv == im2col matmul", ref.rel_error(got, want))
            xp = ref.pad_reference(x, left, right, m.padding_mode)
            fn = _CONV_FN[nd]
            if any(d > 1 for d in m.dilation):
                got = fn(xp, ref.dilate_kernel(weight, m.dilation), bias, m.stride, 0, 1,
                         m.groups)
                self.row(name, "dilated conv == conv with the zero-dilated kernel",
                         ref.rel_error(got, want))
            if m.groups > 1:
                got = fn(xp, ref.block_diagonal(weight, m.groups), bias, m.stride, 0,
                         m.dilation, 1)
                self.row(name, "grouped conv == block-diagonal conv", ref.rel_error(got, want))

    def _convt(self, name: str, mod: nn.modules.conv._ConvTransposeNd) -> None:
        nd = len(mod.kernel_size)
        m = self.real(mod)
        padding = cast(tuple[int, ...], m.padding)  # transposed convs take no string padding
        sizes = []
        for a in range(nd):
            n = 2
            while ref.conv_transpose_output_size(n, m.kernel_size[a], m.stride[a], padding[a],
                                                 m.output_padding[a], m.dilation[a]) < 2:
                n += 1
            sizes.append(n + 1)
        x = self.randn(2, m.in_channels, *sizes)
        weight, bias = m.weight.detach(), None if m.bias is None else m.bias.detach()
        with torch.no_grad():
            want = m(x)
        n_out = list(want.shape[2:])
        taps = math.prod(m.kernel_size)
        padded = math.prod(n + 2 * p for n, p in zip(n_out, padding))
        cost = taps * (taps * math.prod(n_out) * math.prod(sizes) + math.prod(n_out) * padded)
        if cost <= CONV_MATRIX_COST:
            with torch.no_grad():
                got = ref.conv_transpose_by_matrix(x, weight, bias, m.stride, padding,
                                                   m.output_padding, m.groups, m.dilation)
            self.row(name, "transposed conv == transpose of the conv's matrix",
                     ref.rel_error(got, want))
            return
        # the dense matrix would be large (3-D, dilated): M^T x matrix-free, as the gradient
        # of <x, M y> with respect to y, M the im2col conv reference
        got = ref.conv_transpose_by_adjoint(x, weight, bias, m.stride, padding, m.groups,
                                         m.dilation, n_out)
        self.row(name, "transposed conv == adjoint of the im2col conv (the conv's matrix "
                       "transposed, matrix-free)", ref.rel_error(got, want))

    def _measured(self, value: Any) -> Any:
        """A call argument's value from the meta run (sizes read from tensors are ints)."""
        if isinstance(value, fx.Node):
            got = self.meta.values.get(value.name) if self.meta is not None else None
            if isinstance(got, torch.Tensor) or got is None:
                raise LookupError(f"argument '{value.name}' has no plain value")
            return tuple(got) if isinstance(got, (list, tuple)) else got
        if isinstance(value, (list, tuple)):
            return type(value)(self._measured(v) for v in value)
        return value

    def _resize(self, name: str, size: Any, scale_factor: Any, mode: str, align: Any,
                recompute: Any, in_shape: tuple[int, ...] | None) -> None:
        what = f"{mode} resize == exact-coordinate reference"
        if mode not in ("nearest", "nearest-exact", *ref.LINEAR_MODES):
            self.skip(name, what, f"mode {mode!r} has no reference")
            return
        factors = scale_factor if isinstance(scale_factor, (tuple, list)) else [scale_factor]
        for f in factors:
            if f is not None and Fraction(f).denominator & (Fraction(f).denominator - 1):
                self.skip(name, what, f"scale factor {f} is not a binary fraction: torch's "
                                      "float coordinates round differently from exact ones")
                return
        if in_shape is not None and math.prod(in_shape) <= 1 << 20:
            shape = in_shape
        else:
            nd = len(in_shape) - 2 if in_shape else self.a.n_spatial
            shape = (2, 2, *([5] * nd))
        x = self.randn(*shape)
        with torch.no_grad():
            want = F.interpolate(x, size, scale_factor, mode, align, recompute)
        got = ref.resize_reference(x, size, scale_factor, mode, align, recompute)
        self.row(name, what, ref.rel_error(got, want))

    def _static(self, value: Any) -> Any:
        """A call argument that does not depend on the input: constants and get_attr values."""
        if isinstance(value, fx.Node):
            if value.op == "get_attr":
                return resolve_attr(self.gm, str(value.target))
            raise LookupError(f"argument '{value.name}' is computed in forward")
        if isinstance(value, (list, tuple)):
            return type(value)(self._static(v) for v in value)
        return value

    def _conv_function(self, node: fx.Node, kind: str, nd: int) -> None:
        try:
            args = [self._static(a) for a in node.args[1:]]
            kwargs = {k: self._static(v) for k, v in node.kwargs.items()}
        except LookupError as exc:
            self.skip(node.name, "functional conv", f"{exc}: no fixed weights to check")
            return
        names = (["weight", "bias", "stride", "padding", "dilation", "groups"] if kind == "conv"
                 else ["weight", "bias", "stride", "padding", "output_padding", "groups",
                       "dilation"])
        params = dict(zip(names, args))
        params.update(kwargs)
        weight = params["weight"].detach().double()
        bias = params.get("bias")
        bias = None if bias is None else bias.detach().double()
        groups = int(params.get("groups", 1))
        if kind == "conv":
            mod = getattr(nn, f"Conv{nd}d")(weight.shape[1] * groups, weight.shape[0],
                                            tuple(weight.shape[2:]),
                                            params.get("stride", 1), params.get("padding", 0),
                                            params.get("dilation", 1), groups, bias is not None)
        else:
            mod = getattr(nn, f"ConvTranspose{nd}d")(
                weight.shape[0], weight.shape[1] * groups, tuple(weight.shape[2:]),
                params.get("stride", 1), params.get("padding", 0),
                params.get("output_padding", 0), groups, bias is not None,
                params.get("dilation", 1))
        with torch.no_grad():
            mod.weight.copy_(weight)
            if bias is not None:
                mod.bias.copy_(bias)
        (self._conv if kind == "conv" else self._convt)(node.name, mod)

    def _shuffle(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor], groups: int,
                 channels: int) -> None:
        x = self.randn(2, channels, 3, 4)
        with torch.no_grad():
            want = fn(x)
        perm = ref.channel_shuffle_permutation(channels, groups)
        self.row(name, f"channel shuffle == a permutation ({groups} groups)",
                 ref.rel_error(x[:, perm], want))

    def _pixel_shuffle(self, name: str, mod: nn.PixelShuffle | nn.PixelUnshuffle) -> None:
        if isinstance(mod, nn.PixelShuffle):
            r = int(mod.upscale_factor)
            x = self.randn(2, 3 * r * r, 3, 4)
            want, what = ref.pixel_shuffle_reference(x, r), f"pixel shuffle ×{r} == index map"
        else:
            r = int(mod.downscale_factor)
            x = self.randn(2, 3, 3 * r, 4 * r)
            want, what = ref.pixel_unshuffle_reference(x, r), f"pixel unshuffle ×{r} == index map"
        with torch.no_grad():
            got = mod(x)
        self.row(name, what, ref.rel_error(want, got))

    def _pool_module(self, node: fx.Node, mod: nn.Module) -> None:
        nd = _pool_nd(mod)  # from the torch base class: a user's FancyPool(nn.MaxPool2d) is 2-D
        kw: dict[str, Any]
        if isinstance(mod, nn.modules.pooling._MaxPoolNd):
            kw = {"kernel_size": mod.kernel_size, "stride": mod.stride, "padding": mod.padding,
                  "dilation": mod.dilation, "ceil_mode": mod.ceil_mode}
            kind = "max"
        elif isinstance(mod, nn.modules.pooling._AvgPoolNd):
            kw = {"kernel_size": mod.kernel_size, "stride": mod.stride, "padding": mod.padding,
                  "ceil_mode": mod.ceil_mode,
                  "count_include_pad": getattr(mod, "count_include_pad", True),
                  "divisor_override": getattr(mod, "divisor_override", None)}
            kind = "avg"
        elif isinstance(mod, nn.modules.pooling._AdaptiveAvgPoolNd):
            kw, kind = {"output_size": mod.output_size}, "adaptive_avg"
        else:
            kw, kind = {"output_size": mod.output_size}, "adaptive_max"

        def run(x: torch.Tensor) -> torch.Tensor:
            out = mod(x)
            return out[0] if isinstance(out, tuple) else out

        self._pool(node, kind, nd, kw, run)

    def _pool_function(self, node: fx.Node, kind: str, nd: int) -> None:
        try:  # arguments computed in forward (kernel = x.shape[2:]): the meta run's values
            args = [self._measured(a) for a in node.args[1:]]
            kwargs = {k: self._measured(v) for k, v in node.kwargs.items()}
        except LookupError as exc:
            self.skip(node.name, f"{kind} pool", f"{exc}: no fixed arguments to check")
            return
        names = {"max": ["kernel_size", "stride", "padding", "dilation", "ceil_mode",
                         "return_indices"],
                 "avg": ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                         "divisor_override"],
                 "adaptive_avg": ["output_size"],
                 "adaptive_max": ["output_size", "return_indices"]}[kind]
        kw = dict(zip(names, args))
        kw.update(kwargs)
        fn = cast(Callable[..., Any], node.target)  # a call_function node: a pooling function

        def run(x: torch.Tensor) -> torch.Tensor:
            out = fn(x, **kw)
            return out[0] if isinstance(out, tuple) else out

        kw_ref = {k: v for k, v in kw.items() if k != "return_indices"}
        self._pool(node, kind, nd, kw_ref, run)

    def _pool(self, node: fx.Node, kind: str, nd: int, kw: dict[str, Any],
              run: Callable[[torch.Tensor], torch.Tensor]) -> None:
        channels = min(self._in_channels(node, 3), 64)
        if kind in ("max", "avg"):
            k = ntuple(kw["kernel_size"], nd)
            s = ntuple(kw.get("stride") or k, nd)
            d = ntuple(kw.get("dilation", 1), nd)
            p = ntuple(kw.get("padding", 0), nd)
            sizes = [max(di * (ki - 1) + 1 - 2 * pi, 1) + 2 * si + 1
                     for ki, si, di, pi in zip(k, s, d, p)]
        else:
            outs = ntuple(kw["output_size"], nd)
            sizes = [2 * (o or 3) + 1 for o in outs]
        x = self.randn(2, channels, *sizes)
        with torch.no_grad():
            want = run(x)
            if kind == "max":
                got = ref.max_pool_reference(x, nd, kw["kernel_size"], kw.get("stride"),
                                             kw.get("padding", 0), kw.get("dilation", 1),
                                             bool(kw.get("ceil_mode", False)))
            elif kind == "avg":
                got = ref.avg_pool_reference(x, nd, kw["kernel_size"], kw.get("stride"),
                                             kw.get("padding", 0),
                                             bool(kw.get("ceil_mode", False)),
                                             bool(kw.get("count_include_pad", True)),
                                             kw.get("divisor_override"))
            else:
                got = ref.adaptive_pool_reference(x, nd, kw["output_size"], kind[9:])
            self.row(node.name, f"{kind.replace('_', ' ')} pool == window reference",
                     ref.rel_error(got, want))
            n, c = x.shape[:2]
            alone = run(x.reshape(n * c, 1, *sizes)).reshape(want.shape)
            self.row(node.name, "pooling acts per channel", ref.rel_error(alone, want))

    # -- chains of convolutions ---------------------------------------------------------------
    def _conv_module(self, node: fx.Node | None) -> _ConvNd | None:
        if node is None or node.op != "call_module":
            return None
        mod = self.gm.get_submodule(str(node.target))
        if isinstance(mod, nn.modules.conv._ConvNd) and not isinstance(
                mod, nn.modules.conv._ConvTransposeNd) and mod.padding_mode == "zeros":
            return mod
        return None

    def _conv_chains(self) -> list[list[fx.Node]]:
        """Maximal runs conv -> conv -> ... where each conv feeds only the next one."""
        def feeds(a: fx.Node, b: fx.Node) -> bool:
            return (len(a.users) == 1 and b in a.users and len(b.all_input_nodes) == 1
                    and b.args[:1] == (a,) and not b.kwargs)

        chains = []
        for node in self.gm.graph.nodes:
            if self._conv_module(node) is None:
                continue
            prev = node.args[0] if node.args else None
            if isinstance(prev, fx.Node) and self._conv_module(prev) is not None \
                    and feeds(prev, node):
                continue  # not the start of a chain
            chain = [node]
            while True:
                users = list(chain[-1].users)
                if len(users) == 1 and self._conv_module(users[0]) is not None \
                        and feeds(chain[-1], users[0]):
                    chain.append(users[0])
                else:
                    break
            if len(chain) >= 2:
                chains.append(chain)
        return chains

    def _spec(self, mod: _ConvNd) -> ref.ConvSpec:
        nd = len(mod.kernel_size)
        left, right = conv_padding(mod.padding, mod.kernel_size, mod.dilation, nd)
        return ref.ConvSpec.of(mod.weight.detach(), None if mod.bias is None else
                               mod.bias.detach(), mod.stride, left, mod.dilation, mod.groups,
                               right)

    def _check_chain(self, chain: list[fx.Node]) -> None:
        segments: list[list[fx.Node]] = []
        current = [chain[0]]
        spec = self._spec(cast(_ConvNd, self._conv_module(chain[0])))  # a chain: all convs
        reasons = []
        for node in chain[1:]:
            nxt = self._spec(cast(_ConvNd, self._conv_module(node)))
            composed, why = ref.compose_convs(spec, nxt)
            if composed is None:
                reasons.append(f"{current[-1].name} -> {node.name}: {why}")
                segments.append(current)
                current, spec = [node], nxt
            else:
                current.append(node)
                spec = composed
        segments.append(current)
        for seg in segments:
            if len(seg) < 2:
                continue
            self._check_segment(seg)
        if reasons:
            self.skip(chain[-1].name, "conv chain", "not one convolution (so not compared): "
                      + "; ".join(reasons), reason="not-one-conv")

    def _label(self, mods: list[_ConvNd]) -> str:
        def nontrivial(m: _ConvNd) -> set[int]:
            return {a for a, k in enumerate(m.kernel_size) if k > 1}

        if len(mods) == 2:
            a, b = mods
            if len(a.kernel_size) >= 2 and len(nontrivial(a)) == 1 and len(nontrivial(b)) == 1 \
                    and nontrivial(a) != nontrivial(b):
                return "spatially separable pair == one conv with the outer-product kernel"
            if a.groups == a.in_channels and a.groups > 1 and not nontrivial(b) \
                    and b.groups == 1:
                return "depthwise-separable pair == their composed conv"
        if len(mods) == 3:
            a, b, c = mods
            if not nontrivial(a) and b.groups == b.in_channels and c.groups == c.in_channels \
                    and len(nontrivial(b)) == 1 and len(nontrivial(c)) == 1 \
                    and nontrivial(b) != nontrivial(c):
                return "flattened triple == their composed conv"
        return f"chain of {len(mods)} convs == their composed conv"

    def _check_segment(self, seg: list[fx.Node]) -> None:
        mods = [cast(_ConvNd, self._conv_module(n)) for n in seg]  # a chain: all convs
        spec, why = ref.compose_chain([self._spec(m) for m in mods])
        if spec is None:
            raise InternalError(f"conv segment ending at '{seg[-1].name}' does not compose: {why}")
        nd = spec.nd
        k = spec.weight.shape[2:]
        sizes = [max(spec.dilation[a] * (k[a] - 1) + 1 - spec.pad_left[a] - spec.pad_right[a],
                     1) + 2 * spec.stride[a] + 1 for a in range(nd)]
        x = self.randn(2, mods[0].in_channels, *sizes)
        with torch.no_grad():
            want = x
            for m in mods:
                want = self.real(m)(want)
            got = spec(x)
        got = got[(slice(None), slice(None)) + tuple(slice(0, n) for n in want.shape[2:])]
        label = self._label(mods)
        self.row(seg[-1].name, label + f" ({', '.join(n.name for n in seg)})",
                 ref.rel_error(got, want))

    # -- view/transpose/view channel shuffle --------------------------------------------------
    def _is_shape_op(self, node: fx.Node) -> bool:
        if node.op == "call_method":
            return node.target in _SHAPE_METHODS
        return node.op == "call_function" and lookup({f: 1 for f in _SHAPE_FUNCS},
                                                      node.target) is not None

    def _shuffle_idioms(self) -> list[tuple[fx.Node, fx.Node, list[fx.Node], int]]:
        """The view-transpose-view channel shuffles: in a chain of shape ops, each shortest
        segment from a tensor of shape (N, C, *S) whose first op views it as (N, g, C/g, *S),
        which swaps dims 1 and 2, and whose last op gives (N, C, *S) again (back-to-back
        shuffles are separate segments). Returns (source, end, segment, g) per segment."""
        if self.meta is None:
            return []
        found = []
        for node in self.gm.graph.nodes:
            if not self._is_shape_op(node) or any(self._is_shape_op(u) for u in node.users):
                continue
            chain, cur = [node], node
            while True:
                src = cur.args[0] if cur.args else None
                if isinstance(src, fx.Node) and self._is_shape_op(src):
                    chain.append(src)
                    cur = src
                else:
                    break
            chain.reverse()
            if not isinstance(src, fx.Node) or len(chain) < 3:
                continue
            values = [_first_tensor(self.meta.values.get(n.name)) for n in [src, *chain]]
            shapes = [None if t is None else tuple(t.shape) for t in values]
            i = 0  # values[i] is the segment's source, chain[i] its first op
            while i < len(chain):
                seg = self._shuffle_segment(shapes, chain, i)
                if seg is None:
                    i += 1
                    continue
                j, groups = seg
                found.append((src if i == 0 else chain[i - 1], chain[j], chain[i:j + 1],
                              groups))
                i = j + 1
        return found

    def _shuffle_segment(self, shapes: list[tuple[int, ...] | None], chain: list[fx.Node],
                         i: int) -> tuple[int, int] | None:
        """(index of the last op, g) of the shortest shuffle segment starting at chain[i]."""
        a, split = shapes[i], shapes[i + 1]
        if a is None or split is None or len(a) < 3 or len(split) != len(a) + 1:
            return None
        if split[0] != a[0] or split[1] * split[2] != a[1] or split[3:] != a[2:]:
            return None
        swapped = False
        for j in range(i + 1, len(chain)):
            swapped = swapped or self._swaps_1_2(chain[j])
            if shapes[j + 1] is None:
                return None
            if swapped and shapes[j + 1] == a:
                return j, int(split[1])
        return None

    @staticmethod
    def _swaps_1_2(node: fx.Node) -> bool:
        name = str(getattr(node.target, "__name__", node.target))
        args = node.args[1:]
        if name in ("transpose", "swapaxes", "swapdims"):
            return sorted(int(a) for a in args[:2] if isinstance(a, int)) == [1, 2]
        if name == "permute":
            dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
            return len(dims) > 2 and tuple(dims[:3]) == (0, 2, 1)
        return False

    def _check_shuffle_idiom(self, src: fx.Node, end: fx.Node, chain: list[fx.Node],
                             groups: int) -> None:
        if self.meta is None:
            raise InternalError("channel-shuffle idiom found without a meta run")
        first = _first_tensor(self.meta.values[src.name])
        if first is None:
            raise InternalError(f"no tensor value for node '{src.name}' in the meta run")
        shape = tuple(first.shape)
        order = list(self.gm.graph.nodes)
        start, stop = order.index(src), order.index(end)
        interp = fx.Interpreter(self.gm, garbage_collect_values=False)
        for node in order[:stop + 1]:  # sizes computed earlier (x.size() read once for two
            value = self.meta.values.get(node.name)  # shuffles): the meta run's plain values
            if node.op != "output" and value is not None and not tensors_in(value):
                interp.env[node] = value
        x = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
        interp.env[src] = x
        for node in order[start + 1:stop + 1]:  # the chain and the size arithmetic it uses
            if node.op in ("call_module", "placeholder", "output", "get_attr"):
                continue
            if all(i in interp.env for i in node.all_input_nodes):
                interp.env[node] = interp.run_node(node)
        if end not in interp.env:
            self.skip(end.name, "channel shuffle", "the chain needs values from elsewhere",
                      reason="error")
            return
        perm = ref.channel_shuffle_permutation(shape[1], groups)
        self.row(end.name, f"view/transpose/view == channel shuffle ({groups} groups) "
                 f"({', '.join(n.name for n in chain)})", ref.rel_error(interp.env[end],
                                                                         x[:, perm]))

