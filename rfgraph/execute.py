"""The execution engine: run an fx graph's nodes on meta tensors, counting FLOPs per node.

:class:`MetaExecutor` is an :class:`torch.fx.Interpreter` (in the style of
``torch.fx.passes.shape_prop.ShapeProp``) used in two ways:

* the whole graph (``MetaExecutor(gm).run(x)``): ``rfgraph verify``'s shape and MACs pass,
  recording every node's value, FLOPs and input shapes;
* one node given its arguments (:meth:`MetaExecutor.execute` / :func:`execute_node`): the
  numeric fallback of :mod:`rfgraph.annotate` for an op without a rule.

Each node runs under its own ``FlopCounterMode`` (MACs are FLOPs // 2). Modules run through
``torch.func.functional_call`` with meta copies of their parameters and buffers, so the model
itself is never touched or copied. A node that cannot run on meta (no meta kernel, or
data-dependent code such as ``if x.sum() > 0``) runs on zeros on the CPU with the real module
(its output is turned back into meta tensors), unless the module itself lives on the meta
device (:class:`MetaModuleError`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from .errors import RfgraphError
from .util import first_line, map_leaves

__all__ = ["MetaExecutor", "MetaModuleError", "execute_node"]


class MetaModuleError(RfgraphError):
    """A node failed on meta tensors and its module lives on the meta device (no CPU values
    to fall back to); ``meta_error`` is the failure on meta."""

    def __init__(self, meta_error: BaseException) -> None:
        super().__init__("the module lives on the meta device")
        self.meta_error = meta_error


def _map_tensors(value: Any, fn: Any) -> Any:
    """``fn`` applied to every tensor of a nested argument or output (not into dataclasses)."""
    return map_leaves(lambda v: fn(v) if isinstance(v, torch.Tensor) else v, value,
                      into_dataclasses=False)


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors of a nested argument or output, in order (not into dataclasses)."""
    out: list[torch.Tensor] = []
    _map_tensors(value, out.append)
    return out


def _cpu_zeros(t: torch.Tensor) -> torch.Tensor:
    return torch.zeros(t.shape, dtype=t.dtype) if t.is_meta else t


class MetaExecutor(fx.Interpreter):
    """Runs nodes of ``gm`` on meta tensors, each under its own FlopCounterMode.

    After :meth:`run` (the whole graph), per node name: ``values`` (the output, meta tensors),
    ``flops`` (FLOPs; :meth:`macs` = FLOPs // 2), ``in_shapes`` (shapes of the tensors among
    its arguments), ``on_cpu`` (why it ran on CPU zeros: the meta error's first line);
    ``failed`` is ``(node name, error)`` of the node that stopped the run, if any.
    """

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.flops: dict[str, int] = {}
        self.values: dict[str, Any] = {}
        self.in_shapes: dict[str, list[tuple[int, ...]]] = {}
        self.on_cpu: dict[str, str] = {}
        self.failed: tuple[str, str] | None = None
        self._meta_cache: dict[int, torch.Tensor] = {}

    def macs(self, name: str) -> int:
        """The MACs of node ``name`` in the last run (FLOPs // 2)."""
        return self.flops.get(name, 0) // 2

    # -- one node -----------------------------------------------------------------------------
    def execute(self, n: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any],
                ) -> tuple[Any, int, str | None]:
        """Run node ``n`` (call_module, call_function, call_method or get_attr) on ``args``
        and ``kwargs`` (meta tensors): ``(output, FLOPs, None)``, or ``(output, FLOPs, why)``
        when it ran on CPU zeros because it failed on meta (``why``: the meta error's first
        line). Raises the CPU run's error when that fails too, :class:`MetaModuleError` when
        the module lives on meta."""
        from torch.utils.flop_counter import FlopCounterMode

        try:
            with FlopCounterMode(display=False) as counter:
                out = getattr(self, n.op)(n.target, args, kwargs)
            return out, counter.get_total_flops(), None
        except Exception as meta_exc:  # no meta kernel / data-dependent: CPU zeros
            with FlopCounterMode(display=False) as counter:
                out = self._on_cpu(n, args, kwargs, meta_exc)
            return out, counter.get_total_flops(), first_line(meta_exc, 160)

    def _meta(self, t: torch.Tensor) -> torch.Tensor:
        if t.is_meta:
            return t
        key = id(t)
        if key not in self._meta_cache:
            self._meta_cache[key] = torch.empty_like(t, device="meta")
        return self._meta_cache[key]

    def _on_cpu(self, n: fx.Node, args: Any, kwargs: Any, meta_exc: BaseException) -> Any:
        args, kwargs = _map_tensors((args, kwargs), _cpu_zeros)
        with torch.no_grad():
            if n.op == "call_module":
                mod = self.fetch_attr(str(n.target))
                if any(p.is_meta for p in mod.parameters()):
                    raise MetaModuleError(meta_exc)
                out = mod(*args, **kwargs)  # in the analysis' mode (rfgraph.modes.in_mode)
            elif n.op == "get_attr":
                out = super().get_attr(n.target, args, kwargs)
            elif n.op == "call_method":
                out = getattr(args[0], str(n.target))(*args[1:], **kwargs)
            else:
                out = n.target(*args, **kwargs)  # type: ignore[operator]
        return _map_tensors(out, lambda t: torch.empty_like(t, device="meta"))

    # -- the whole graph ----------------------------------------------------------------------
    def run_node(self, n: fx.Node) -> Any:
        if n.op in ("placeholder", "output"):
            out = super().run_node(n)
            self.values[n.name] = out
            self.flops[n.name] = 0
            return out
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        self.in_shapes[n.name] = [tuple(t.shape) for t in tensors_in((args, kwargs))]
        try:
            out, flops, cpu = self.execute(n, args, kwargs)
        except Exception as exc:
            why = (f"RfgraphError: {exc}" if isinstance(exc, MetaModuleError)
                   else first_line(exc, 160))
            self.failed = (n.name, why)
            raise
        if cpu is not None:
            self.on_cpu[n.name] = cpu
        self.values[n.name] = out
        self.flops[n.name] = flops
        return out

    # -- the ops ------------------------------------------------------------------------------
    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        mod = self.fetch_attr(target)
        state = {name: self._meta(t) for name, t in
                 [*mod.named_parameters(remove_duplicate=False),
                  *mod.named_buffers(remove_duplicate=False)]}
        with torch.no_grad():
            return torch.func.functional_call(mod, state, tuple(args), dict(kwargs))

    def get_attr(self, target: Any, args: Any, kwargs: Any) -> Any:
        value = super().get_attr(target, args, kwargs)
        return self._meta(value) if isinstance(value, torch.Tensor) else value

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        with torch.no_grad():
            return super().call_function(target, args, kwargs)

    def call_method(self, target: Any, args: Any, kwargs: Any) -> Any:
        with torch.no_grad():
            return super().call_method(target, args, kwargs)


def execute_node(node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any],
                 ) -> tuple[Any, int, str | None]:
    """Run one node of a graph module on meta ``args``/``kwargs``: ``(output, MACs, why it ran
    on CPU zeros or None)`` (see :meth:`MetaExecutor.execute`)."""
    gm = node.graph.owning_module
    if gm is None:
        raise RfgraphError(f"node '{node.name}' belongs to no graph module")
    out, flops, cpu = MetaExecutor(gm).execute(node, args, kwargs)
    return out, flops // 2, cpu
