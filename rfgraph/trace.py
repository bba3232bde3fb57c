"""Model -> torch.fx graph. Every module with a rule stays a leaf; names stay qualified."""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import nn

from .errors import TraceError
from .rules.base import lookup_module


class RfTracer(fx.Tracer):
    """An fx tracer that keeps every module rfgraph has a rule for as one node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if lookup_module(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` into a GraphModule, or raise a one-line :class:`TraceError`."""
    if isinstance(model, fx.GraphModule):
        return model
    if not isinstance(model, nn.Module):
        raise TraceError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if lookup_module(model) is not None:  # a single covered layer: trace a one-node wrapper
        model = _Single(model)
    tracer = RfTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many kinds; report one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TraceError(
            f"could not trace {type(model).__name__} with torch.fx: {type(exc).__name__}: {first}"
        ) from None
    name = type(model.layer if isinstance(model, _Single) else model).__name__
    return fx.GraphModule(tracer.root, graph, name)


class _Single(nn.Module):
    """Wraps one covered layer so that the layer itself is the graph's only node."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


def module_of(node: fx.Node) -> str:
    """Qualified name of the module a node belongs to ('' for the top level)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        last = list(stack.values())[-1]
        if isinstance(last, tuple):
            return str(last[0])
        return str(last)
    if node.op == "get_attr":
        return str(node.target).rpartition(".")[0]
    return ""


def resolve_attr(gm: fx.GraphModule, target: str) -> torch.Tensor | nn.Module | object:
    obj: object = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
