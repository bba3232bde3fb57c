"""The gradient probe as ``rfgraph verify`` runs it: the linearised float64 copy of the graph
(:func:`probe_graph_module`), run node by node up to the nodes wanted (:class:`_Prober`), and the
geometry of where to probe a field (which output elements, how long an input)."""

from __future__ import annotations

import copy
import functools
import itertools
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy
import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import semantics as ref
from ..probe import (
    ExactLinearResize,
    SumLinear,
    aten_op,
    exact_interpolate,
    prepare_probe_model,
)
from ..util import first_line, first_of, lookup, resolve_attr

if TYPE_CHECKING:
    from ..analysis import Analysis
    from ..receptive_field import AxisRF
    from ..tensor import TensorInfo

#: nn.Linear layers with more weights than this get a parameter-free stand-in in the probe copy
BIG_LINEAR = 1 << 22


def _first_tensor(value: Any) -> torch.Tensor | None:
    return first_of(value, torch.Tensor)


def _tensor_of(analysis: Analysis, name: str) -> TensorInfo:
    """The output tensor of node ``name`` (a node whose field is checked has one)."""
    t = analysis[name].tensor
    if t is None:
        raise ValueError(f"node '{name}' has no output tensor in rfgraph")
    return t


# ------------------------------------------------------------------------------------------------
# The probe copy
# ------------------------------------------------------------------------------------------------
@functools.cache
def _conv_like() -> dict[Any, str]:
    """call_function target -> "conv" / "convt" / "linear" (functions and their ATen twins)."""
    table: dict[Any, str] = {}
    for nd in (1, 2, 3):
        table[getattr(F, f"conv{nd}d")] = "conv"
        table[getattr(F, f"conv_transpose{nd}d")] = "convt"
        for name, kind in ((f"conv{nd}d.default", "conv"), (f"conv{nd}d.padding", "conv"),
                           (f"conv_transpose{nd}d.input", "convt"),
                           (f"conv_transpose{nd}d.default", "convt")):
            if aten_op(name) is not None:
                table[aten_op(name)] = kind
    table[F.linear] = "linear"
    table[torch.ops.aten.linear.default] = "linear"
    return table


def _constant_functional_weights(gm: fx.GraphModule) -> None:
    """Positive constant weights and zero biases for convs and linears called as functions
    with weights read from attributes (functional code, exported graphs), like the probe does
    for modules."""
    table = _conv_like()
    with torch.no_grad():
        for node in gm.graph.nodes:
            kind = lookup(table, node.target) if node.op == "call_function" else None
            if kind is None:
                continue
            weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
            bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
            if isinstance(weight, fx.Node) and weight.op == "get_attr":
                w = resolve_attr(gm, str(weight.target))
                groups = node.args[6] if kind == "convt" and len(node.args) > 6 else 1
                fan = (w.shape[0] // max(int(groups), 1) * math.prod(w.shape[2:])
                       if kind == "convt" else w[0].numel())
                w.fill_(1.0 / max(int(fan), 1))
            if isinstance(bias, fx.Node) and bias.op == "get_attr":
                resolve_attr(gm, str(bias.target)).zero_()


def _materialize(gm: fx.GraphModule) -> fx.GraphModule:
    """A model built on the meta device has no values: give the probe copy real ones (every
    floating parameter and buffer 1; the probe then sets conv/linear weights itself)."""
    if not any(t.is_meta for t in itertools.chain(gm.parameters(), gm.buffers())):
        return gm
    gm = copy.deepcopy(gm).to_empty(device="cpu")
    with torch.no_grad():
        for t in itertools.chain(gm.parameters(), gm.buffers()):
            if t.is_floating_point():
                t.fill_(1.0)
            else:
                t.zero_()
    return gm


_INPLACE_FUNCTIONS = {operator.iadd: operator.add, operator.isub: operator.sub,
                      operator.imul: operator.mul, operator.itruediv: operator.truediv}


def probe_graph_module(gm: fx.GraphModule) -> fx.GraphModule:
    """The linearised float64 copy of ``gm`` that ``rfgraph verify`` probes: the same node
    names, huge Linears replaced by a parameter-free stand-in, linear-mode resizing by
    exact-weight stand-ins, in-place arithmetic made out-of-place (so every recorded node value
    keeps its own graph), then :func:`prepare_probe_model` and constant weights for functional
    convs and linears."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(gm.graph, env))
    root: dict[str, Any] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            mod = gm.get_submodule(str(node.target))
            if isinstance(mod, nn.Linear) and mod.weight.numel() > BIG_LINEAR:
                mod = SumLinear(mod.in_features, mod.out_features)
            elif isinstance(mod, nn.Upsample) and mod.mode in ref.LINEAR_MODES:
                mod = ExactLinearResize(mod.size, mod.scale_factor, mod.mode,
                                         mod.align_corners, mod.recompute_scale_factor)
            root[str(node.target)] = mod
        elif node.op == "call_function" and node.target is F.interpolate:
            node.target = exact_interpolate
        elif node.op == "get_attr":
            root[str(node.target)] = resolve_attr(gm, str(node.target))
        elif node.op == "call_function" and node.target in _INPLACE_FUNCTIONS:
            node.target = _INPLACE_FUNCTIONS[node.target]
        elif (node.op == "call_method" and isinstance(node.target, str)
              and node.target.endswith("_") and not node.target.startswith("_")
              and callable(getattr(torch.Tensor, node.target[:-1], None))):
            node.target = node.target[:-1]
    copied = _materialize(fx.GraphModule(root, graph, "probe_copy"))
    prepared = prepare_probe_model(copied)
    assert isinstance(prepared, fx.GraphModule)
    _constant_functional_weights(prepared)
    return prepared


class _Prober:
    """The linearised float64 copy of the graph, run node by node up to the nodes wanted."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = probe_graph_module(gm)
        self.order = [n for n in self.gm.graph.nodes]
        self.by_name = {n.name: n for n in self.order}
        self._anc: dict[str, set[str]] = {}
        self._graph: Any = None  # networkx.DiGraph of the probe graph, built on first use

    def ancestors(self, name: str) -> set[str]:
        """``name`` and every node it depends on in the probe graph (networkx: no recursion, so
        a chain of thousands of layers is fine)."""
        if name not in self._anc:
            import networkx as nx

            if self._graph is None:
                self._graph = nx.DiGraph()
                self._graph.add_nodes_from(n.name for n in self.order)
                self._graph.add_edges_from((i.name, n.name) for n in self.order
                                           for i in n.all_input_nodes)
            self._anc[name] = nx.ancestors(self._graph, name) | {name}
        return self._anc[name]

    def run(self, shape: Sequence[int], wanted: Iterable[str], grad: bool = True,
            ) -> tuple[torch.Tensor, dict[str, Any], dict[str, str]]:
        """(input, values of the wanted nodes and their ancestors, errors per failed node);
        ``grad=False``: values only (no autograd graph)."""
        need: set[str] = set()
        for w in wanted:
            need |= self.ancestors(w)
        interp = fx.Interpreter(self.gm, garbage_collect_values=False)
        x = torch.ones(tuple(shape), dtype=torch.float64, requires_grad=grad)
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        first = True
        with torch.set_grad_enabled(grad):
            for node in self.order:
                if node.name not in need or node.op == "output":
                    continue
                if node.op == "placeholder":
                    value = x if first else (node.args[0] if node.args else None)
                    first = False
                    interp.env[node] = value
                    values[node.name] = value
                    continue
                if any(i.name in errors or i not in interp.env for i in node.all_input_nodes):
                    errors[node.name] = "an input failed"
                    continue
                try:
                    value = interp.run_node(node)
                except Exception as exc:
                    errors[node.name] = first_line(exc, 160)
                    continue
                interp.env[node] = value
                values[node.name] = value
        return x, values, errors


def _live_names(values: Mapping[str, Any]) -> set[str]:
    """The nodes whose (first, floating) tensor has a non-zero element: in the probe copy,
    whose weights are all positive, those that read some input pixel."""
    out = set()
    for name, value in values.items():
        t = _first_tensor(value)
        if t is not None and t.is_floating_point() and bool((t != 0).any()):
            out.add(name)
    return out


def _grad_box(x: torch.Tensor, out: torch.Tensor, index: tuple, axis_dim: int,
              ) -> tuple[int, int] | None:
    """Bounding box along input dim ``axis_dim`` of the non-zero gradient of out[index].sum()."""
    seed = torch.zeros_like(out)
    seed[index] = 1.0
    (grad,) = torch.autograd.grad(out, x, seed, retain_graph=True, allow_unused=True)
    if grad is None:
        return None
    mask = (grad != 0).movedim(axis_dim, 0).reshape(grad.shape[axis_dim], -1).any(1)
    idx = torch.nonzero(mask).flatten()
    if idx.numel() == 0:
        return None
    return int(idx[0]), int(idx[-1])


@dataclass
class _RfItem:
    """One (node, input axis) to probe."""

    name: str
    axis: int
    rf: AxisRF  # AxisRF
    local: bool
    need: int = 0  # probe length along the axis (local fields)
    tries: int = 0
    why: str = ""  # why the last attempt failed
    code: str = ""  # its skip reason (SKIP_REASONS) if it is given up


def _is_local(rf: AxisRF) -> bool:
    """The field does not depend on the input size (so it can be made to fit inside an image)."""
    try:
        vals = [rf.jump, rf.start_at(0), rf.end_at(0), rf.start_at(rf.period),
                rf.end_at(rf.period)]
    except Exception:
        return False
    return not any(sympy.sympify(v).free_symbols for v in vals)


def _first_y(rf: AxisRF, lo: int) -> int:
    """Smallest y >= 0 whose field starts at input pixel >= lo (start_at is non-decreasing)."""
    def s(y: int) -> int:
        return int(rf.start_at(y))

    if s(0) >= lo:
        return 0
    hi = 1
    while s(hi) < lo:
        hi *= 2
        if hi > 1 << 24:
            raise ValueError("field never starts inside the image")
    a = hi // 2
    while a < hi:
        mid = (a + hi) // 2
        if s(mid) >= lo:
            hi = mid
        else:
            a = mid + 1
    return hi


def _live_phase(rf: AxisRF) -> int | None:
    return next((p for p in range(rf.period) if rf.is_live(p)), None)


def _plan_need(rf: AxisRF) -> int:
    """The probe length that leaves room for one full period (+1) of fields inside [1, L-2]."""
    period = rf.period
    phase = _live_phase(rf)
    size = int(rf.size)
    jump = float(rf.jump)
    base = 2 * size + 4 * math.ceil(jump * period) + 2
    if phase is None:
        return max(base, 8)
    y = _first_y(rf, 1)
    y += (phase - y) % period
    return max(base, int(rf.end_at(y + period)) + 2, 8)


_LADDER = sorted({int(b * 2 ** k) for k in range(3, 14) for b in (1, 1.5)})


def _tier(need: int) -> int:
    return next((t for t in _LADDER if t >= need), need)


def _rf_subset(analysis: Analysis, items: list[_RfItem], mode: str, big: bool, what: str = "",
               ) -> tuple[set[str], str]:
    """The nodes to probe: all of them, or (mode "auto" on big models) every node whose field
    differs from all its inputs' on some axis, plus the first node of each other op type."""
    names = list(dict.fromkeys(i.name for i in items))
    if mode == "all" or not big or not names:
        return set(names), ""
    chosen: set[str] = set()
    kinds: set[str] = set()
    for name in names:
        info = analysis[name]
        t = _tensor_of(analysis, name)
        inputs = [x for i in info.inputs if (x := analysis[i].tensor) is not None]
        same = all(any(inp.rf[a] is t.rf[a] for inp in inputs if len(inp.rf) > a)
                   for a in range(len(t.rf)))
        kind = f"{info.op}:{info.module_type or info.target}"
        if not same or kind not in kinds:
            chosen.add(name)
        kinds.add(kind)
    last = names[-1]
    chosen.add(last)
    if len(chosen) == len(names):
        return chosen, ""
    note = (f"rf: {len(names)} nodes have a {what}field; probed {len(chosen)} of them (every node "
            "whose field differs from its inputs', and the first node of every other op type); "
            "the others pass an input's field through unchanged")
    return chosen, note
