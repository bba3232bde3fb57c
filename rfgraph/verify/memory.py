"""The ``memory`` check: an analysis' memory and training costs (:mod:`rfgraph.costs`) against
the graph run for real on the CPU, at each verify size, in the analysis' mode and cost dtype.

* ``out bytes`` per node: ``untyped_storage().nbytes()`` of the node's output tensors whose
  storage no earlier node produced (parameters, buffers and tensor constants excluded). The run
  keeps every value until its end, so no storage address is reused;
* ``saved bytes`` per node and in total (costs with ``train``): the tensors
  ``torch.autograd.graph.saved_tensors_hooks`` sees while the node runs, each storage once,
  parameters and buffers excluded;
* ``backward MACs`` (``train``): ``FlopCounterMode`` FLOPs / 2 of the backward
  (``torch.autograd.grad`` of the sum of the outputs: the model's ``.grad`` stay untouched), less
  what torch counts too much for grouped convolutions (its weight gradient is counted ``groups``
  times; pytorch/pytorch#183405), measured per call on meta tensors as the backward of the
  grouped conv minus the backward of the same conv written as ``groups`` ungrouped ones;
* ``peak bytes``: the graph run again without autograd by an interpreter that frees each value
  after its last user (a value nobody reads at once), every tensor a node produced watched
  through a weak reference: the peak is the largest sum of live storage bytes after a node.

One difference of the devices is taken into account: a BatchNorm in training keeps its batch
statistics in float32 on CUDA (what rfgraph counts) but in a float16/bfloat16 model's own dtype
on the CPU; verify counts them in float32. The model's parameters, buffers (running statistics
are restored after the runs) and gradients are left as they were; a model converted to another
dtype (``--dtype``) runs as a converted copy.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..execute import tensors_in
from ..util import resolve_attr
from ..verify_terms import TOTAL
from .report import CheckRow, _error_row, _fmt_sizes, _Progress, _row_equal
from .sizes import _input_shape

if TYPE_CHECKING:
    from ..analysis import Analysis
    from ..costs import Costs

__all__ = ["check_memory"]

_CONVS = {F.conv1d: (1, False), F.conv2d: (2, False), F.conv3d: (3, False),
          F.conv_transpose1d: (1, True), F.conv_transpose2d: (2, True),
          F.conv_transpose3d: (3, True)}
_LOW = (torch.float16, torch.bfloat16)


def check_memory(analysis: Analysis, gm: fx.GraphModule, sizes: Sequence[dict[str, int]],
                 evaluated: Sequence[Analysis], rows: list[CheckRow], notes: list[str],
                 prog: _Progress) -> None:
    """The memory rows at every size (the analysis has costs: ``analysis.costs``)."""
    costs = analysis.costs
    assert costs is not None
    dtype = _dtype(costs.dtype)
    runner = gm
    if any(p.is_floating_point() and p.dtype != dtype for p in gm.parameters()):
        runner = copy.deepcopy(gm).to(dtype)  # floating parameters and buffers only
        notes.append(f"memory: ran a copy of the model converted to {costs.dtype}")
    if any(t.is_meta for t in [*runner.parameters(), *runner.buffers()]):
        rows.append(CheckRow(TOTAL, "memory", "skip", None, detail=(
            "the model's weights live on the meta device: no CPU run"), reason="error"))
        prog.step("memory", len(sizes))
        return
    saved_state = [(b, b.detach().clone()) for b in runner.buffers()]
    try:
        for s, ev in zip(sizes, evaluated):
            at = dict(s)
            try:
                x = torch.randn(_input_shape(analysis, s), generator=torch.Generator()
                                .manual_seed(0), dtype=dtype)
                got = _measure(runner, x, costs.train)
            except Exception as exc:  # the CPU run or the counting failed
                rows.append(_error_row(TOTAL, "memory", at, "", exc, "the CPU run of the "
                                       "memory check"))
                prog.step(f"memory at {_fmt_sizes(s)}")
                continue
            _rows(ev, costs, got, at, rows)
            prog.step(f"memory at {_fmt_sizes(s)}")
    finally:
        with torch.no_grad():
            for b, old in saved_state:
                b.copy_(old)


def _dtype(name: str) -> torch.dtype:
    from ..costs import DTYPES

    return DTYPES[name]


# ------------------------------------------------------------------------------------------------
# The rows
# ------------------------------------------------------------------------------------------------
def _rows(ev: Analysis, costs: Costs, got: _Measured, at: dict[str, int],
          rows: list[CheckRow]) -> None:
    for info in ev.nodes:
        c = costs.nodes.get(info.name)
        if c is None:
            continue
        rows.append(_compare(ev, info.name, c.out_bytes, got.out_bytes.get(info.name, 0), at,
                             "out bytes", "bytes of the new storages of its outputs, CPU run"))
        if costs.train:
            rows.append(_compare(ev, info.name, c.saved_bytes, got.saved.get(info.name, 0), at,
                                 "saved bytes", "storages saved_tensors_hooks sees, CPU run"))
    numeric = any(c.out_bytes is None for c in costs.nodes.values())
    if numeric:
        rows.append(CheckRow(TOTAL, "memory", "skip", at, "peak bytes", detail=(
            "some nodes' bytes are no formula: the peak is known at the sample sizes only"),
            reason="unknown"))
    else:
        rows.append(_row_equal(TOTAL, "memory", at, costs.peak_at(ev.value_of), got.peak,
                               "live storages after each node, CPU run freeing each value "
                               "after its last user", "peak bytes"))
    if costs.train:
        rows.append(_compare(ev, TOTAL, costs.saved_total, got.saved_total, at, "saved bytes",
                             "every saved storage once, CPU run"))
        note = "FlopCounterMode FLOPs / 2 of the backward"
        if got.overcount:
            note += f", less torch's over-count for grouped convs ({got.overcount:,} MACs)"
        rows.append(_row_equal(TOTAL, "memory", at, ev.value_of(costs.backward_macs),
                               got.backward_macs, note, "backward MACs"))


def _compare(ev: Analysis, node: str, formula: Any, measured: int, at: dict[str, int],
             what: str, note: str) -> CheckRow:
    if formula is None:
        return CheckRow(node, "memory", "skip", at, what, detail=(
            f"rfgraph gives no formula for its {what} (measured at the sample sizes only)"),
            reason="unknown")
    return _row_equal(node, "memory", at, ev.value_of(formula), measured, note, what)


# ------------------------------------------------------------------------------------------------
# The CPU runs
# ------------------------------------------------------------------------------------------------
@dataclass
class _Measured:
    out_bytes: dict[str, int] = field(default_factory=dict)
    saved: dict[str, int] = field(default_factory=dict)
    saved_total: int = 0
    backward_macs: int = 0
    overcount: int = 0
    peak: int = 0


def _sid(t: torch.Tensor) -> int:
    return int(t.untyped_storage()._cdata)


def _constants(gm: fx.GraphModule) -> set[int]:
    out = {_sid(t) for t in [*gm.parameters(), *gm.buffers()]}
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            obj = resolve_attr(gm, str(n.target))
            if isinstance(obj, torch.Tensor):
                out.add(_sid(obj))
    return out


def _strided(value: Any) -> list[torch.Tensor]:
    return [t for t in tensors_in(value) if t.layout == torch.strided]


class _Record(fx.Interpreter):
    """Keeps every value, knows the node that runs and the storages node outputs hold so far,
    records the calls of grouped convolutions."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.current: fx.Node | None = None
        self.values: dict[str, Any] = {}
        self.made: set[int] = set()
        self.grouped: list[_Grouped] = []

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        out = super().run_node(n)
        self.values[n.name] = out
        self.made.update(_sid(t) for t in _strided(out))
        return out

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        mod = self.fetch_attr(target)
        if isinstance(mod, nn.modules.conv._ConvNd) and mod.groups > 1 and args and \
                isinstance(args[0], torch.Tensor):
            self.grouped.append(_Grouped.of_module(mod, args[0]))
        return super().call_module(target, args, kwargs)

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        if target in _CONVS:
            call = _Grouped.of_function(target, args, kwargs)
            if call is not None:
                self.grouped.append(call)
        return super().call_function(target, args, kwargs)


def _is_batch_norm(gm: fx.GraphModule, n: fx.Node | None) -> bool:
    if n is None:
        return False
    if n.op == "call_module":
        return isinstance(gm.get_submodule(str(n.target)), nn.modules.batchnorm._BatchNorm)
    return n.op == "call_function" and n.target in (F.batch_norm, torch.batch_norm)


def _measure(gm: fx.GraphModule, x: torch.Tensor, train: bool) -> _Measured:
    consts = _constants(gm)
    rec = _Record(gm)
    saved: dict[str, dict[int, int]] = {}
    keep: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        keep.append(t)  # alive until the end: no storage address is reused
        sid = _sid(t)
        n = rec.current
        if sid not in consts and n is not None and t.layout == torch.strided:
            nbytes = t.untyped_storage().nbytes()
            if t.dtype in _LOW and t.dim() == 1 and sid not in rec.made and _is_batch_norm(gm, n):
                nbytes = t.numel() * 4  # batch statistics: float32, as CUDA keeps them
            saved.setdefault(n.name, {})[sid] = nbytes
        return t

    got = _Measured()
    with torch.set_grad_enabled(train), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = rec.run(x)
    seen = set(consts)
    for n in gm.graph.nodes:
        if n.op in ("output", "get_attr") or n.name not in rec.values:
            continue
        total = 0
        for t in _strided(rec.values[n.name]):
            if _sid(t) not in seen:
                seen.add(_sid(t))
                total += t.untyped_storage().nbytes()
        got.out_bytes[n.name] = total
    if train:
        every: dict[int, int] = {}
        for name, storages in saved.items():
            got.saved[name] = sum(storages.values())
            every.update(storages)
        got.saved_total = sum(every.values())
        got.backward_macs, got.overcount = _backward(gm, x)
    rec.values.clear()
    keep.clear()
    del out
    got.peak = _peak(gm, x, consts)
    return got


def _backward(gm: fx.GraphModule, x: torch.Tensor) -> tuple[int, int]:
    """The backward's MACs (FlopCounterMode, grouped convs corrected) and the correction.

    A forward of its own, with attention through SDPA's math path: FlopCounterMode has no
    formula for the backward of the CPU's fused attention kernel (it would count 0), while the
    math path's matmuls are counted like any other."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    rec = _Record(gm)
    with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
        out = rec.run(x)
    grouped = rec.grouped
    outs = [t for t in tensors_in(out) if t.requires_grad and t.is_floating_point()]
    leaves = [p for p in gm.parameters() if p.requires_grad]
    if not outs or not leaves:
        return 0, 0
    loss = sum((t.float().sum() for t in outs), torch.zeros(()))
    with FlopCounterMode(display=False) as counter:
        torch.autograd.grad(loss, leaves, allow_unused=True)
    over = sum(g.overcount() for g in grouped) // 2
    return counter.get_total_flops() // 2 - over, over


# ------------------------------------------------------------------------------------------------
# Grouped convolutions: torch's over-count, measured
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Grouped:
    """One call of a grouped convolution: shapes and flags, enough to redo it on meta."""

    nd: int
    transposed: bool
    x: tuple[int, ...]
    w: tuple[int, ...]
    bias: bool
    x_grad: bool
    w_grad: bool
    b_grad: bool
    stride: Any
    padding: Any
    dilation: Any
    output_padding: Any
    groups: int

    @staticmethod
    def of_module(mod: nn.modules.conv._ConvNd, x: torch.Tensor) -> _Grouped:
        shape = tuple(x.shape)
        padding: Any = mod.padding
        if mod.padding_mode != "zeros":  # the module pads first (no MACs), then pads nothing
            pads = mod._reversed_padding_repeated_twice
            shape = shape[:2] + tuple(s + pads[2 * (len(shape) - 3 - i)]
                                      + pads[2 * (len(shape) - 3 - i) + 1]
                                      for i, s in enumerate(shape[2:]))
            padding = 0
        return _Grouped(mod.weight.dim() - 2, mod.transposed, shape, tuple(mod.weight.shape),
                        mod.bias is not None, x.requires_grad, mod.weight.requires_grad,
                        mod.bias is not None and mod.bias.requires_grad, _key(mod.stride),
                        _key(padding), _key(mod.dilation), _key(mod.output_padding), mod.groups)

    @staticmethod
    def of_function(fn: Any, args: Any, kwargs: Any) -> _Grouped | None:
        nd, transposed = _CONVS[fn]
        names = (["input", "weight", "bias", "stride", "padding", "output_padding", "groups",
                  "dilation"] if transposed else
                 ["input", "weight", "bias", "stride", "padding", "dilation", "groups"])
        a = dict(zip(names, args))
        a.update(kwargs)
        groups = int(a.get("groups", 1))
        x, w, b = a.get("input"), a.get("weight"), a.get("bias")
        if groups <= 1 or not isinstance(x, torch.Tensor) or not isinstance(w, torch.Tensor):
            return None
        b_rg = isinstance(b, torch.Tensor) and b.requires_grad
        return _Grouped(nd, transposed, tuple(x.shape), tuple(w.shape),
                        isinstance(b, torch.Tensor), x.requires_grad, w.requires_grad, b_rg,
                        _key(a.get("stride", 1)),
                        _key(a.get("padding", 0)), _key(a.get("dilation", 1)),
                        _key(a.get("output_padding", 0)), groups)

    def overcount(self) -> int:
        return _overcount(self)

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
              groups: int) -> torch.Tensor:
        if self.transposed:
            up: Any = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[self.nd - 1]
            return up(x, w, b, self.stride, self.padding, self.output_padding, groups,
                      self.dilation)
        conv: Any = (F.conv1d, F.conv2d, F.conv3d)[self.nd - 1]
        return conv(x, w, b, self.stride, self.padding, self.dilation, groups)

    def backward_flops(self, split: bool) -> int:
        """FlopCounterMode FLOPs of the backward of this call on meta tensors, the conv grouped
        or (``split``) as ``groups`` ungrouped convs on channel slices."""
        from torch.utils.flop_counter import FlopCounterMode

        x = torch.empty(self.x, device="meta", requires_grad=self.x_grad)
        w = torch.empty(self.w, device="meta", requires_grad=self.w_grad)
        b = None
        if self.bias:
            out_ch = self.w[1] * self.groups if self.transposed else self.w[0]
            b = torch.empty(out_ch, device="meta", requires_grad=self.b_grad)
        if split:
            g = self.groups
            bs: list[Any] = list(b.chunk(g)) if b is not None else [None] * g
            y = torch.cat([self._conv(xi, wi, bi, 1) for xi, wi, bi in
                           zip(x.chunk(g, dim=1), w.chunk(g, dim=0), bs)], dim=1)
        else:
            y = self._conv(x, w, b, self.groups)
        if not y.requires_grad:
            return 0
        wanted = [t for t in (x, w, b) if t is not None and t.requires_grad]
        with FlopCounterMode(display=False) as counter:
            torch.autograd.grad(y.sum(), wanted)
        return int(counter.get_total_flops())


def _key(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


_OVERCOUNTS: dict[_Grouped, int] = {}


def _overcount(call: _Grouped) -> int:
    """FLOPs FlopCounterMode counts too much for the backward of ``call`` (0 once torch counts
    grouped convs right)."""
    if call not in _OVERCOUNTS:
        _OVERCOUNTS[call] = max(0, call.backward_flops(False) - call.backward_flops(True))
    return _OVERCOUNTS[call]


# ------------------------------------------------------------------------------------------------
# The peak
# ------------------------------------------------------------------------------------------------
class _Replay(fx.Interpreter):
    """fx's own interpreter, freeing each value after its last user (and a value nobody reads
    right after its node); after each node, the sum of the storages a tensor of some node's
    output still lives on."""

    def __init__(self, gm: fx.GraphModule, consts: set[int], x: torch.Tensor) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.consts = consts
        self.inputs = [x]
        self.refs: dict[int, list[weakref.ref[torch.Tensor]]] = {}
        self.nbytes: dict[int, int] = {}
        self.unread: list[fx.Node] = []
        self.peak = 0

    def _live(self, sid: int) -> bool:
        return any(r() is not None for r in self.refs.get(sid, ()))

    def placeholder(self, target: Any, args: Any, kwargs: Any) -> Any:
        return self.inputs.pop() if self.inputs else super().placeholder(target, args, kwargs)

    def run_node(self, n: fx.Node) -> Any:
        for old in self.unread:
            self.env.pop(old, None)
        self.unread = []
        out = super().run_node(n)
        if n.op != "get_attr":
            for t in _strided(out):
                sid = _sid(t)
                if sid in self.consts:
                    continue
                if not self._live(sid):  # a new storage (or the address of a freed one)
                    self.refs[sid] = []
                    self.nbytes[sid] = t.untyped_storage().nbytes()
                self.refs[sid].append(weakref.ref(t))
        self.peak = max(self.peak, sum(b for sid, b in self.nbytes.items() if self._live(sid)))
        if not n.users and n.op != "output":
            self.unread.append(n)
        return out


def _peak(gm: fx.GraphModule, x: torch.Tensor, consts: set[int]) -> int:
    n_inputs = sum(1 for n in gm.graph.nodes if n.op == "placeholder")
    rep = _Replay(gm, consts, x.clone())
    with torch.no_grad():
        rep.run(*([None] * n_inputs))
    return rep.peak

