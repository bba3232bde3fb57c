"""Independent oracles for tests/test_zoo_analysis.py.

Nothing here uses rfgraph's formulas: shapes come from running the fx graph on the meta device,
MACs from ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) on an eager meta copy of the
model, receptive fields from the gradient probe (``rfgraph.probe``, which imports nothing else
from rfgraph). The helpers only *read* an Analysis to know which node / position to measure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

from examples.zoo import ZOO, ZOO_INPUTS
from rfgraph.models import seed_tour
from rfgraph.probe import probe_rf_many

#: name -> (factory, symbolic input spec); the zoo plus the seed tour.
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple]] = {
    name: (factory, ZOO_INPUTS[name]) for name, factory in ZOO.items()
}
MODELS["seed_tour"] = (seed_tour, (1, 3, "H", "W"))


def input_shape(name: str, sizes: dict[str, int]) -> tuple[int, ...]:
    """The concrete input shape of model ``name`` at ``sizes`` (e.g. {'H': 97, 'W': 131})."""
    spec = MODELS[name][1]
    return tuple(sizes[d] if isinstance(d, str) else int(d) for d in spec)


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a (nested) tuple/list/dict, as rfgraph's ``NodeInfo.tensor``."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            t = first_tensor(v)
            if t is not None:
                return t
    if isinstance(value, dict):
        for v in value.values():
            t = first_tensor(v)
            if t is not None:
                return t
    return None


# -- shapes ---------------------------------------------------------------------------------------
def copy_graph(graph: fx.Graph, stop_at: str | None = None) -> fx.Graph:
    """A copy of ``graph`` (same node names); with ``stop_at``, truncated so that the output is
    the node called ``stop_at``."""
    new = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    if stop_at is None:
        new.output(new.graph_copy(graph, env))
        return new
    for node in graph.nodes:
        if node.op == "output":
            raise KeyError(f"no node {stop_at!r}")
        env[node] = new.node_copy(node, lambda n: env[n])
        if node.name == stop_at:
            new.output(env[node])
            break
    return new


def truncated(gm: fx.GraphModule, node_name: str) -> fx.GraphModule:
    """A GraphModule computing ``gm``'s node ``node_name`` from the input (shares modules;
    nodes that do not lead to ``node_name`` are dropped)."""
    cut = fx.GraphModule(gm, copy_graph(gm.graph, node_name), f"upto_{node_name}")
    cut.graph.eliminate_dead_code()
    cut.recompile()
    return cut


def meta_graph_module(name: str, gm: fx.GraphModule) -> fx.GraphModule:
    """The graph of ``gm`` on a meta-device instance of model ``name`` (no weights copied)."""
    with torch.device("meta"):
        root = MODELS[name][0]().eval()
    return fx.GraphModule(root, copy_graph(gm.graph), "meta_copy")


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph, recording the shape of every node's (first) output tensor."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[str, tuple[int, ...] | None] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        t = first_tensor(out)
        self.shapes[n.name] = None if t is None else tuple(int(s) for s in t.shape)
        return out


def torch_node_shapes(meta_gm: fx.GraphModule, shape: Sequence[int],
                      ) -> dict[str, tuple[int, ...] | None]:
    """Shape of every node of ``meta_gm`` (key 'output' for the output node) for an input of
    ``shape``; raises whatever torch raises (e.g. an empty pooling output)."""
    recorder = _ShapeRecorder(meta_gm)
    with torch.no_grad():
        recorder.run(torch.empty(tuple(shape), device="meta"))
    return recorder.shapes


def torch_accepts(meta_gm: fx.GraphModule, shape: Sequence[int]) -> bool:
    """Whether torch runs the graph at ``shape`` with no empty intermediate tensor."""
    try:
        shapes = torch_node_shapes(meta_gm, shape)
    except RuntimeError:
        return False
    return all(s is None or all(d > 0 for d in s) for s in shapes.values())


def smallest_accepted(meta_gm: fx.GraphModule, make_shape: Callable[[int], tuple[int, ...]],
                      hi: int) -> int:
    """The smallest n in [1, hi] with ``torch_accepts(make_shape(n))`` (binary search; validity
    is monotone in the size for these models). ``hi`` must be accepted."""
    assert torch_accepts(meta_gm, make_shape(hi))
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if torch_accepts(meta_gm, make_shape(mid)):
            hi = mid
        else:
            lo = mid + 1
    return lo


# -- MACs -----------------------------------------------------------------------------------------
def factory_flop_macs(factory: Callable[[], nn.Module], shape: tuple[int, ...],
                      ) -> tuple[int, dict[str, int]]:
    """(total MACs, MACs per module qualified name) of the *eager* model built by ``factory``
    on the meta device, from FlopCounterMode (FLOPs / 2). Modules without FLOPs are absent."""
    with torch.device("meta"):
        model = factory().eval()
    root = type(model).__name__
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.empty(shape, device="meta"))
    per_module: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if key.startswith(root + "."):
            flops = sum(ops.values())
            assert flops % 2 == 0
            per_module[key[len(root) + 1:]] = flops // 2
    total = counter.get_total_flops()
    assert total % 2 == 0
    return total // 2, per_module


@functools.cache
def flop_macs(name: str, shape: tuple[int, ...]) -> tuple[int, dict[str, int]]:
    """:func:`factory_flop_macs` of the zoo model ``name``."""
    return factory_flop_macs(MODELS[name][0], shape)


# -- receptive fields -----------------------------------------------------------------------------
def inside_range(start: Callable[[int], int], end: Callable[[int], int], n_out: int,
                 n_in: int) -> tuple[int, int] | None:
    """[lo, hi]: the output indices whose field [start(y), end(y)] lies inside [0, n_in - 1]
    (start and end are non-decreasing in y, so this is an interval; binary searches)."""
    lo, hi = 0, n_out  # first y with start(y) >= 0
    while lo < hi:
        mid = (lo + hi) // 2
        if start(mid) >= 0:
            hi = mid
        else:
            lo = mid + 1
    first = lo
    lo, hi = -1, n_out - 1  # last y with end(y) <= n_in - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if end(mid) <= n_in - 1:
            lo = mid
        else:
            hi = mid - 1
    last = lo
    return (first, last) if first <= last else None


def spread(lo: int, hi: int, period: int, count: int = 3) -> list[int]:
    """Output indices to probe in [lo, hi]: a full period plus one around the middle when the
    field varies with y mod period, else ``count`` evenly spread ones (ends included)."""
    if period > 1:
        n = min(period + 1, hi - lo + 1)
        first = max(lo, (lo + hi) // 2 - n // 2)
        return list(range(first, first + n))
    if hi - lo + 1 <= count:
        return list(range(lo, hi + 1))
    return sorted({lo + (hi - lo) * i // (count - 1) for i in range(count)})


def probe_boxes(gm: fx.GraphModule, node_name: str, shape: Sequence[int],
                positions: Sequence[Sequence[int] | None]) -> list[list[tuple[int, int]]]:
    """Gradient-probe boxes of node ``node_name`` of ``gm`` (the graph cut after that node)."""
    model = gm if node_name == "output" else truncated(gm, node_name)
    return probe_rf_many(model, tuple(shape),
                         [None if p is None else tuple(p) for p in positions])


def ceil_int(x: Any) -> int:
    return math.ceil(float(x))
