"""Model -> torch.fx graph. Every module with a rule stays a leaf; names stay qualified."""

from __future__ import annotations

import torch.fx as fx
from torch import nn

from .errors import TraceError
from .rules.base import lookup_module
from .util import first_line, resolve_attr

__all__ = ["library_notrace_functions", "module_of", "resolve_attr", "trace"]


class _NeedsLeaf(Exception):
    def __init__(self, qualname: str, cause: BaseException) -> None:
        super().__init__(qualname)
        self.qualname = qualname
        self.cause = cause


class RfTracer(fx.Tracer):
    """An fx tracer that keeps every module rfgraph has a rule for as one node, and every module
    in ``forced_leaves`` (whose forward could not be traced) as an opaque node."""

    def __init__(self, forced_leaves: dict[str, str] | None = None,
                 autowrap: tuple = ()) -> None:
        super().__init__(autowrap_functions=autowrap)
        self.forced_leaves = dict(forced_leaves or {})

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.forced_leaves:
            return True
        if lookup_module(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m, forward, args, kwargs):
        try:
            qualname = self.path_of_module(m)
        except NameError:
            return super().call_module(m, forward, args, kwargs)
        if self.is_leaf_module(m, qualname):
            return super().call_module(m, forward, args, kwargs)
        try:
            return super().call_module(m, forward, args, kwargs)
        except _NeedsLeaf:
            raise
        except Exception as exc:  # the innermost module whose forward fails becomes a leaf
            raise _NeedsLeaf(qualname, exc) from None


def trace(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` into a GraphModule, or raise a one-line :class:`TraceError`."""
    if isinstance(model, fx.GraphModule):
        return model
    if not isinstance(model, nn.Module):
        raise TraceError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if lookup_module(model) is not None:  # a single covered layer: trace a one-node wrapper
        model = _Single(model)
    forced: dict[str, str] = {}
    autowrap: tuple = ()
    concrete = _default_args(model)
    for _ in range(200):
        tracer = RfTracer(forced, autowrap)
        try:
            graph = tracer.trace(model, concrete_args=concrete or None)
            break
        except _NeedsLeaf as need:
            forced[need.qualname] = first_line(need.cause)
        except Exception as exc:  # fx raises many kinds; report one line
            if not autowrap and library_notrace_functions():
                # the library marks functions that fx cannot trace (timm's
                # register_notrace_function): keep those as single calls and try again
                autowrap = library_notrace_functions()
                continue
            raise TraceError(f"could not trace {type(model).__name__} with torch.fx: "
                             f"{first_line(exc)} (in its own forward, so no submodule can be "
                             "kept as a leaf instead)") from None
    else:
        raise TraceError(f"could not trace {type(model).__name__}: too many untraceable modules")
    name = type(model.layer if isinstance(model, _Single) else model).__name__
    gm = _graph_module(tracer.root, graph, name)
    gm.meta["rfgraph_forced_leaves"] = forced
    gm.meta["rfgraph_modules"] = dict(gm.named_modules())
    return gm


def _graph_module(root: nn.Module, graph: fx.Graph, name: str) -> fx.GraphModule:
    """A GraphModule whose Python code is generated on first call, not at construction.

    Analysis reads the graph and never calls the module, so ``recompile`` (code generation and
    ``exec``, a third of tracing a light net) is deferred until verify or a user runs it.
    torch's ``_LazyGraphModule`` does exactly that; a torch without it gets a plain GraphModule."""
    try:
        from torch.fx._lazy_graph_module import _LazyGraphModule
    except ImportError:  # pragma: no cover - older/newer torch without the class
        return fx.GraphModule(root, graph, name)
    return _LazyGraphModule(root, graph, name)


def _default_args(model: nn.Module) -> dict:
    """forward's optional arguments after the input, at their defaults (``mask=None``,
    ``return_features=False``): rfgraph analyses ``model(x)``, so fx specialises the code to
    them instead of tracing ``if mask is not None`` as if a mask were given."""
    import inspect

    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    out = {}
    for p in params[1:]:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.default is p.empty:
            continue
        if p.default is None or isinstance(p.default, (bool, int, float, str)):
            out[p.name] = p.default
    return out


def library_notrace_functions() -> tuple:
    """Functions that an already-imported library (timm) declares untraceable by fx."""
    import sys

    fx_mod = sys.modules.get("timm.layers._fx")
    if fx_mod is None:
        return ()
    funcs = getattr(fx_mod, "_autowrap_functions", ())
    return tuple(sorted((f for f in funcs if callable(f)),
                        key=lambda f: f"{getattr(f, '__module__', '')}.{f.__name__}"))


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
