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

from .errors import InternalError, RfgraphError
from .execute import MetaModuleError, execute_node
from .kinds import Family, Kind
from .receptive_field import decided_at, identity_rf
from .rules import base as rules
from .tensor import TensorInfo
from .trace import module_of, resolve_attr
from .util import first_line, first_of, map_leaves, submodule


class Unknown:
    """The value of a node whose op has no rule (or which depends on one): ``reason`` says which
    node has no rule, ``root`` is that node's name."""

    def __init__(self, reason: str, root: str | None = None) -> None:
        self.reason = reason
        self.root = root

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
    kind: Kind = Kind.LAYER
    family: Family = Family.OTHER
    notes: list[str] = field(default_factory=list)
    conditions: list[Expr] = field(default_factory=list)
    min_sizes: list[tuple[Expr, str]] = field(default_factory=list)
    buffers: int = 0
    needs_at: bool = False  # part of the result is only known at concrete sizes
    #: the node's shape and MACs hold values measured at the evaluated sizes (an op without a
    #: rule, or a node downstream of one): valid there only, never part of a formula
    numeric_only: bool = False
    #: False when no rule describes the op (none registered, or its rule does not model this
    #: variant): the node is unknown (or numeric only) because of itself
    has_rule: bool = True
    #: why the node's field is unknown (None when it is known): "no rule for LSTM" or
    #: "depends on node 'lstm' (LSTM), which has no rule"
    unknown_reason: str | None = None
    #: the node at the root of the unknown (itself when it has no rule), None when known
    unknown_root: str | None = None

    @property
    def tensor(self) -> TensorInfo | None:
        """The node's (first) output tensor."""
        return first_tensor(self.value)

    @property
    def unknown(self) -> bool:
        return self.kind is Kind.UNKNOWN

    @property
    def numeric(self) -> bool:
        """Alias of :attr:`numeric_only` (the name before 0.10)."""
        return self.numeric_only

    @property
    def unknown_op(self) -> bool:
        """An op without a rule itself (not merely downstream of one)."""
        return self.unknown_root == self.name


def first_tensor(value: Any) -> TensorInfo | None:
    """The first TensorInfo in a node's value."""
    return first_of(value, TensorInfo)


def _contains_unknown(value: Any) -> Unknown | None:
    return first_of(value, Unknown)


def input_tensor(shape: Sequence[Expr]) -> TensorInfo:
    """The model input: dims 2.. are the spatial axes, each with the identity field."""
    n_spatial = max(0, len(shape) - 2)
    axes = (None, None, *range(n_spatial)) if len(shape) >= 2 else (None,) * len(shape)
    return TensorInfo(tuple(shape), tuple(axes), tuple(identity_rf() for _ in range(n_spatial)),
                      varies=False)


def _const_tensor(t: torch.Tensor, n_axes: int) -> TensorInfo:
    shape = tuple(Integer(int(s)) for s in t.shape)
    return TensorInfo(shape, (None,) * len(shape), (None,) * n_axes, const=True,
                      dtype=None if t.is_floating_point() else t.dtype)


def _target_text(gm: fx.GraphModule, node: fx.Node) -> tuple[str, str]:
    if node.op == "call_module":
        mod = submodule(gm, str(node.target))
        return type(mod).__name__, type(mod).__name__
    if node.op in ("call_function",):
        return rules.target_name(node.target), ""
    return str(node.target), ""


def annotate(gm: fx.GraphModule, shape: Sequence[Expr], at: dict[str, int] | None = None,
             warn: bool = True) -> tuple[list[NodeInfo], list[str]]:
    """Annotate every node of ``gm`` for an input of symbolic ``shape``.

    ``at`` (symbol name -> size) lets ops without a rule run on meta tensors ("numeric only")
    and rules that need concrete sizes finish their work. Returns the node infos in graph order
    (the output node last) and the warnings issued.
    """
    at_syms = {sympy.Symbol(k, integer=True, positive=True): v for k, v in at.items()} \
        if at is not None else None
    forced = gm.meta.get("rfgraph_forced_leaves", {}) if hasattr(gm, "meta") else {}
    env: dict[str, Any] = {}
    infos: list[NodeInfo] = []
    warned: dict[str, int] = {}
    seen_modules: dict[int, str] = {}
    n_axes = max(0, len(shape) - 2)
    numeric: dict[str, bool] = {}
    with decided_at(at_syms):
        _annotate_nodes(gm, shape, at_syms, warn, forced, env, infos, warned, seen_modules,
                        n_axes, numeric)
    messages = [f"{count} node(s) with op {t!r} have no rule: "
                + ("measured on meta tensors (numeric only)" if at is not None
                   else "marked unknown (evaluate at concrete sizes to measure them)")
                for t, count in warned.items()]
    return infos, messages


def _annotate_nodes(gm: fx.GraphModule, shape: Sequence[Expr], at_syms: dict | None,
                    warn: bool, forced: dict, env: dict[str, Any], infos: list[NodeInfo],
                    warned: dict[str, int], seen_modules: dict[int, str], n_axes: int,
                    numeric: dict[str, bool]) -> None:
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
                info.kind, info.family = Kind.INPUT, Family.INPUT
                if not node.args and not node.target.startswith("*"):
                    raise RfgraphError(f"the model's forward takes more than one input "
                                       f"('{node.target}'); rfgraph analyses one input tensor")
            else:
                info.value = input_tensor(shape)
                info.kind, info.family = Kind.INPUT, Family.INPUT
        elif node.op == "get_attr":
            obj = resolve_attr(gm, str(node.target))
            if isinstance(obj, torch.Tensor):
                info.value = _const_tensor(obj, n_axes)
                info.kind, info.family = Kind.CONSTANT, Family.OTHER
                if isinstance(obj, nn.Parameter) and id(obj) not in seen_modules:
                    seen_modules[id(obj)] = node.name
                    info.params = obj.numel()
                    info.params_formula = f"numel {tuple(obj.shape)} = {obj.numel()}"
                elif not isinstance(obj, nn.Parameter):
                    info.buffers = obj.numel()
            else:
                info.value = obj
                info.kind = Kind.CONSTANT
        elif node.op == "call_module" and str(node.target) == "_guards_fn":
            info.value, info.kind = None, Kind.GUARD  # torch.export's input guards: no data
        elif node.op == "output":
            info.value = fx.node.map_arg(node.args[0], lambda n: env[n.name])
            info.kind, info.family = Kind.OUTPUT, Family.OUTPUT
            t = info.tensor
            if t is None:
                info.notes.append("the output holds no tensor")
        else:
            _apply_rule(gm, node, env, info, warned, seen_modules, at_syms, warn, n_axes)
            if not info.numeric_only and any(numeric.get(n.name) for n in node.all_input_nodes):
                info.numeric_only = True  # computed from measured values: valid here only
            if info.numeric_only:
                numeric[node.name] = True
            if node.op == "call_module" and str(node.target) in forced:
                info.notes.insert(0, "kept as a leaf: tracing its forward failed "
                                     f"({forced[str(node.target)]})")
        env[node.name] = info.value
        infos.append(info)


def _apply_rule(gm: fx.GraphModule, node: fx.Node, env: dict[str, Any], info: NodeInfo,
                warned: dict[str, int], seen_modules: dict[int, str],
                at: dict[sympy.Symbol, int] | None, warn: bool, n_axes: int = 0) -> None:
    module = submodule(gm, str(node.target)) if node.op == "call_module" else None
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
        info.value = Unknown(upstream.reason, upstream.root)  # the root cause, not nested
        info.kind, info.family = Kind.UNKNOWN, Family.UNKNOWN
        info.unknown_reason = f"depends on node '{upstream.root}', which has no rule"
        info.unknown_root = upstream.root
        info.notes.append(f"unknown: depends on {upstream.reason}")
        if found is None:  # an op without a rule is reported even behind another one
            info.has_rule = False
            key = info.module_type or info.target
            warned[key] = warned.get(key, 0) + 1
            if warned[key] == 1 and warn:
                warnings.warn(f"rfgraph: no rule for {key} (node '{node.name}'); marked unknown",
                              stacklevel=3)
            info.notes.append(f"op {key} has no rule")
        if module is not None:  # parameters do not depend on the input: still count them
            _count_module(info, module, node.name, seen_modules)
        return
    if found is None:
        _no_rule(node, module, args, kwargs, info, warned, seen_modules, at, warn,
                 n_axes=n_axes)
        return
    rule, family = found
    call = rules.Call(node.name, module, info.module, node.target, tuple(args), dict(kwargs),
                      at)
    try:
        result = rule(call)
    except rules.Unsupported as exc:  # a variant the rule does not model: as if it had none
        _no_rule(node, module, args, kwargs, info, warned, seen_modules, at, warn, str(exc),
                 n_axes)
        return
    except RfgraphError:
        raise
    except Exception as exc:  # a rule bug must still name the node
        raise InternalError(f"{call.where()}: internal error: {first_line(exc)}") from exc
    info.value = result.value
    info.params, info.params_formula = result.params, result.params_formula
    info.macs = sympy.expand(result.macs)
    info.kind = Kind(result.kind)
    info.family = Family(result.family if result.family != Family.OTHER else family)
    info.notes.extend(result.notes)
    info.conditions.extend(result.conditions)
    info.min_sizes.extend(result.min_sizes)
    info.needs_at = result.needs_at
    if module is not None:
        info.buffers = sum(b.numel() for b in module.buffers(recurse=True))
        if id(module) in seen_modules:
            info.notes.append(f"shares its parameters with node '{seen_modules[id(module)]}'")
            info.params, info.buffers = 0, 0
            info.params_formula = f"0 (counted at node '{seen_modules[id(module)]}')"
        else:
            seen_modules[id(module)] = node.name
            _claim_params(info, module, node.name, seen_modules)


def _claim_params(info: NodeInfo, module: nn.Module, name: str, seen: dict[int, str]) -> None:
    """Count each parameter once: one read earlier through a get_attr node (``x.to(w.dtype)``)
    or by another module is not counted again here. ``seen`` maps ids of modules and
    parameters to the node that counted them."""
    earlier = {seen[id(p)]: 0 for p in module.parameters() if id(p) in seen}
    if earlier:
        fresh = sum(p.numel() for p in module.parameters() if id(p) not in seen)
        info.params = fresh
        info.params_formula = (f"{fresh} (numel of the parameters not counted earlier, at "
                               + ", ".join(f"'{n}'" for n in earlier) + ")")
    for p in module.parameters():
        seen.setdefault(id(p), name)


def _no_rule(node: fx.Node, module: nn.Module | None, args: Any, kwargs: Any, info: NodeInfo,
             warned: dict[str, int], seen_modules: dict[int, str],
             at: dict[sympy.Symbol, int] | None, warn: bool, why: str = "",
             n_axes: int = 0) -> None:
    """An op without a rule (or a variant its rule does not model): reported, its params
    counted, its shape and MACs measured on meta tensors when sizes are concrete."""
    key = info.module_type or info.target
    warned[key] = warned.get(key, 0) + 1
    detail = f" ({why})" if why else ""
    if warned[key] == 1 and warn:
        warnings.warn(f"rfgraph: no rule for {key}{detail} (node '{node.name}'); its field is "
                      "unknown, its shape and cost are measured on meta tensors at concrete "
                      "sizes", stacklevel=4)
    info.kind, info.family = Kind.UNKNOWN, Family.UNKNOWN
    info.has_rule = False
    info.unknown_reason = f"no rule for {key}{detail}"
    info.unknown_root = node.name
    info.needs_at = True
    if module is not None:
        _count_module(info, module, node.name, seen_modules)
    measured = _run_on_meta(node, module, args, kwargs, at, n_axes) if at is not None else None
    if measured is None:
        info.value = Unknown(f"node '{node.name}' ({key}) has no rule", node.name)
        info.notes.append(f"unknown op {key}{detail}: field unknown; shape and MACs known at "
                          "concrete sizes (evaluate)")
        return
    info.value, macs, how = measured
    info.macs = Integer(macs)
    info.numeric_only = True
    info.notes.append(f"unknown op {key}{detail}: numeric only (shape and MACs measured {how} "
                      "at the evaluated sizes; field unknown)")


def _run_on_meta(node: fx.Node, module: nn.Module | None, args: Any, kwargs: Any,
                 at: dict[sympy.Symbol, int], n_axes: int) -> tuple[Any, int, str] | None:
    """Run one op on meta tensors at concrete sizes (:mod:`rfgraph.execute`): (output
    TensorInfo(s), MACs, how it ran), or None when an argument has no value at these sizes."""
    first_in: list[TensorInfo] = []
    data_in: list[TensorInfo] = []
    subs = {k: Integer(x) for k, x in at.items()}

    def to_meta(v: Any) -> Any:
        if isinstance(v, TensorInfo):
            dims = [sympy.sympify(s).xreplace(subs) for s in v.shape]
            if not all(d.is_Integer for d in dims):
                raise _CannotMeasure
            if not first_in:
                first_in.append(v)
            if not v.const:
                data_in.append(v)
            return torch.empty([int(d) for d in dims], device="meta",
                               dtype=v.dtype if isinstance(v.dtype, torch.dtype) else None)
        if isinstance(v, Unknown):
            raise _CannotMeasure
        if isinstance(v, Expr):
            e = v.xreplace(subs)
            if not e.is_Integer:
                raise _CannotMeasure
            return int(e)
        return v

    try:
        margs, mkwargs = map_leaves(to_meta, (args, kwargs), into_dataclasses=False)
    except _CannotMeasure:
        return None
    where = f"node '{node.name}' ({rules.target_name(node.target)})"
    try:
        out, macs, cpu = execute_node(node, margs, mkwargs)
    except MetaModuleError as exc:  # cannot run on meta, and the module lives on meta
        raise RfgraphError(f"{where} cannot run on meta tensors: "
                           f"{first_line(exc.meta_error)}") from None
    except Exception as exc:
        raise RfgraphError(f"{where} failed when run at the evaluated sizes: "
                           f"{first_line(exc)}") from None
    # data-dependent code (x.sum() > 0) cannot run on meta: it ran on zeros on the CPU
    how = "on meta tensors" if cpu is None else (
        "on zeros on the CPU (its code is data-dependent and cannot run on meta; another input "
        "may take another branch)")
    ref = first_in[0] if first_in else None
    # an op on sizes and constants only (torch.arange(h), a mask built from shapes) gives a
    # constant: no field, ignored by merges
    const = not data_in and (module is None or not any(True for _ in module.parameters()))

    def to_info(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            shape = tuple(Integer(int(d)) for d in v.shape)
            if ref is not None and v.ndim == ref.ndim:
                axes = ref.axes
            else:
                axes = (None,) * v.ndim
            return TensorInfo(shape, axes, (None,) * n_axes, const=const,
                              dtype=None if v.is_floating_point() else v.dtype)
        return v

    return map_leaves(to_info, out), macs, how


def _count_module(info: NodeInfo, module: nn.Module, name: str,
                  seen_modules: dict[int, str]) -> None:
    """Parameters of a module without a rule (or behind an unknown node): numel, once."""
    if id(module) in seen_modules:
        info.notes.append(f"shares its parameters with node '{seen_modules[id(module)]}'")
        info.params_formula = f"0 (counted at node '{seen_modules[id(module)]}')"
        return
    seen_modules[id(module)] = name
    info.params = sum(p.numel() for p in module.parameters())
    info.buffers = sum(b.numel() for b in module.buffers())
    info.params_formula = f"numel of the module's parameters = {info.params}"
    _claim_params(info, module, name, seen_modules)


class _CannotMeasure(Exception):
    pass
