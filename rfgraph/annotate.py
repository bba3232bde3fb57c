"""Walk an fx graph in order, apply the rules, collect one :class:`NodeInfo` per node.

The graph is never mutated; the results live in the returned list (not in ``node.meta``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
import torch.fx as fx
from sympy import Expr, Integer
from torch import nn

from .errors import RfgraphError, RuleError
from .receptive_field import identity_rf
from .rules import base as rules
from .tensor import TensorInfo
from .trace import module_of, resolve_attr


class Unknown:
    """The value of a node whose op has no rule (or which depends on one)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unknown({self.reason})"


@dataclass
class NodeInfo:
    """Everything rfgraph knows about one node (symbolic; see Analysis.evaluate for numbers)."""

    name: str
    op: str
    target: str
    module: str
    module_type: str
    inputs: list[str]
    value: Any
    params: int = 0
    params_formula: str = "0"
    macs: Expr = Integer(0)
    kind: str = "layer"
    family: str = "other"
    notes: list[str] = field(default_factory=list)
    conditions: list[Expr] = field(default_factory=list)
    min_sizes: list[tuple[Expr, str]] = field(default_factory=list)
    buffers: int = 0

    @property
    def tensor(self) -> TensorInfo | None:
        """The node's (first) output tensor."""
        return first_tensor(self.value)

    @property
    def unknown(self) -> bool:
        return self.kind == "unknown"


def first_tensor(value: Any) -> TensorInfo | None:
    if isinstance(value, TensorInfo):
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


def _contains_unknown(value: Any) -> Unknown | None:
    if isinstance(value, Unknown):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            u = _contains_unknown(v)
            if u is not None:
                return u
    if isinstance(value, dict):
        for v in value.values():
            u = _contains_unknown(v)
            if u is not None:
                return u
    return None


def input_tensor(shape: Sequence[Expr]) -> TensorInfo:
    """The model input: dims 2.. are the spatial axes, each with the identity field."""
    n_spatial = max(0, len(shape) - 2)
    axes = (None, None, *range(n_spatial)) if len(shape) >= 2 else (None,) * len(shape)
    return TensorInfo(tuple(shape), tuple(axes), tuple(identity_rf() for _ in range(n_spatial)))


def _const_tensor(t: torch.Tensor, n_axes: int) -> TensorInfo:
    shape = tuple(Integer(int(s)) for s in t.shape)
    return TensorInfo(shape, (None,) * len(shape), (None,) * n_axes, const=True)


def _target_text(gm: fx.GraphModule, node: fx.Node) -> tuple[str, str]:
    if node.op == "call_module":
        mod = gm.get_submodule(str(node.target))
        return type(mod).__name__, type(mod).__name__
    if node.op in ("call_function",):
        return rules.target_name(node.target), ""
    return str(node.target), ""


def annotate(gm: fx.GraphModule, shape: Sequence[Expr]) -> tuple[list[NodeInfo], list[str]]:
    """Annotate every node of ``gm`` for an input of symbolic ``shape``.

    Returns the node infos in graph order (the output node last) and warnings issued.
    """
    env: dict[str, Any] = {}
    infos: list[NodeInfo] = []
    warned: dict[str, int] = {}
    seen_modules: dict[int, str] = {}
    seen_params: set[int] = set()
    n_axes = max(0, len(shape) - 2)
    placeholders = 0
    for node in gm.graph.nodes:
        target, module_type = _target_text(gm, node)
        info = NodeInfo(node.name, node.op, target, module_of(node), module_type,
                        [a.name for a in node.all_input_nodes], None)
        if node.op == "placeholder":
            placeholders += 1
            if placeholders > 1:
                default = node.args[0] if node.args else None
                info.value = default
                info.kind, info.family = "input", "input"
                if default is None and not node.target.startswith("*"):
                    raise RfgraphError(f"the model's forward takes more than one input "
                                       f"('{node.target}'); rfgraph analyses one input tensor")
            else:
                info.value = input_tensor(shape)
                info.kind, info.family = "input", "input"
        elif node.op == "get_attr":
            obj = resolve_attr(gm, str(node.target))
            if isinstance(obj, torch.Tensor):
                info.value = _const_tensor(obj, n_axes)
                info.kind, info.family = "constant", "other"
                if isinstance(obj, nn.Parameter) and id(obj) not in seen_params:
                    seen_params.add(id(obj))
                    info.params = obj.numel()
                    info.params_formula = f"numel {tuple(obj.shape)} = {obj.numel()}"
                elif not isinstance(obj, nn.Parameter):
                    info.buffers = obj.numel()
            else:
                info.value = obj
                info.kind = "constant"
        elif node.op == "output":
            info.value = fx.node.map_arg(node.args[0], lambda n: env[n.name])
            info.kind, info.family = "output", "output"
            t = info.tensor
            if t is None:
                info.notes.append("the output holds no tensor")
        else:
            _apply_rule(gm, node, env, info, warned, seen_modules)
        env[node.name] = info.value
        infos.append(info)
    messages = [f"{count} node(s) with op {t!r} have no rule: marked unknown"
                for t, count in warned.items()]
    return infos, messages


def _apply_rule(gm: fx.GraphModule, node: fx.Node, env: dict[str, Any], info: NodeInfo,
                warned: dict[str, int], seen_modules: dict[int, str]) -> None:
    module = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
    args = fx.node.map_arg(node.args, lambda n: env[n.name])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n.name])
    if node.op == "call_method":
        found = rules.lookup(str(node.target))
    elif module is not None:
        found = rules.lookup_module(module)
    else:
        found = rules.lookup(node.target)
    upstream = _contains_unknown((args, kwargs))
    if upstream is not None:
        info.value = Unknown(f"depends on {upstream.reason}")
        info.kind = "unknown"
        info.notes.append(f"unknown: depends on {upstream.reason}")
        return
    if found is None:
        key = info.module_type or info.target
        warned[key] = warned.get(key, 0) + 1
        if warned[key] == 1:
            warnings.warn(f"rfgraph: no rule for {key} (node '{node.name}'); marked unknown",
                          stacklevel=3)
        info.value = Unknown(f"node '{node.name}' ({key}) has no rule")
        info.kind = "unknown"
        info.notes.append(f"unknown op {key}: shape, field and cost not known")
        if module is not None:
            info.params = sum(p.numel() for p in module.parameters())
            info.params_formula = f"numel of the module's parameters = {info.params}"
        return
    rule, family = found
    call = rules.Call(node.name, module, info.module, node.target, tuple(args), dict(kwargs))
    try:
        result = rule(call)
    except RfgraphError:
        raise
    except Exception as exc:  # a rule bug must still name the node
        raise RuleError(f"{call.where()}: {type(exc).__name__}: {exc}") from None
    info.value = result.value
    info.params, info.params_formula = result.params, result.params_formula
    info.macs = sympy.expand(result.macs)
    info.kind = result.kind
    info.family = result.family if result.family != "other" else family
    info.notes.extend(result.notes)
    info.conditions.extend(result.conditions)
    info.min_sizes.extend(result.min_sizes)
    if module is not None:
        info.buffers = sum(b.numel() for b in module.buffers(recurse=True))
        if id(module) in seen_modules:
            info.notes.append(f"shares its parameters with node '{seen_modules[id(module)]}'")
            info.params, info.buffers = 0, 0
            info.params_formula = f"0 (counted at node '{seen_modules[id(module)]}')"
        else:
            seen_modules[id(module)] = node.name
