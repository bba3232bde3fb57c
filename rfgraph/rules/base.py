"""The rule registry: one pure function per op, registered once by a decorator.

A rule receives a :class:`Call` (the module or function, its arguments with every tensor replaced
by a :class:`~rfgraph.tensor.TensorInfo`) and returns an :class:`OpResult`: the output value(s),
parameters with their formula, MACs, and any conditions the op puts on the input sizes. Rules never
touch the graph and never run the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy
from sympy import Expr, Integer
from torch import nn

from ..errors import RuleError, Unsupported  # noqa: F401  (Unsupported: re-exported)
from ..tensor import TensorInfo

Key = type | Callable | str


@dataclass
class Call:
    """One node, as a rule sees it."""

    node: str
    module: nn.Module | None
    module_name: str
    target: Any
    args: tuple
    kwargs: dict
    #: concrete sizes when the analysis is being evaluated (symbol -> int), else None. Rules whose
    #: field depends non-linearly on the input size use it and otherwise report the field unknown
    #: with ``OpResult.needs_at``.
    at: dict | None = None

    def concrete(self, expr: Any) -> Any:
        """``expr`` with the ``at`` sizes substituted (unchanged when there are none)."""
        if self.at is None:
            return sympy.sympify(expr)
        return sympy.sympify(expr).xreplace({k: Integer(v) for k, v in self.at.items()})

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        if name in self.kwargs:
            return self.kwargs[name]
        if len(self.args) > index:
            return self.args[index]
        return default

    def tensor(self, index: int = 0, name: str = "input") -> TensorInfo:
        value = self.arg(index, name)
        if not isinstance(value, TensorInfo):
            raise RuleError(f"{self.where()}: expected a tensor as argument {name!r}")
        return value

    def where(self) -> str:
        what = type(self.module).__name__ if self.module is not None else _target_name(self.target)
        mod = f" (module '{self.module_name}')" if self.module_name else ""
        return f"node '{self.node}' [{what}]{mod}"


@dataclass
class OpResult:
    """What a rule found out about one node."""

    value: Any
    params: int = 0
    params_formula: str = "0"
    macs: Expr = Integer(0)
    kind: str = "layer"  # layer | transparent | shape | merge | unknown
    family: str = "other"  # conv, pool, shuffle, linear, norm, activation, merge, shape, ...
    notes: list[str] = field(default_factory=list)
    conditions: list[Expr] = field(default_factory=list)  # relations that must hold (Eq, Ge)
    # (size that must be >= 1, what it is)
    min_sizes: list[tuple[Expr, str]] = field(default_factory=list)
    needs_at: bool = False  # some result is only known at concrete sizes (re-run when evaluating)


Rule = Callable[[Call], OpResult]

_REGISTRY: dict[Any, tuple[Rule, str]] = {}


def register(*keys: Key, family: str = "other") -> Callable[[Rule], Rule]:
    """Register ``rule`` for module classes, functions or method names (``"chunk"``).

    Registering the same key twice is an error: one op, one rule.
    """

    return _registrar(_REGISTRY, keys, family)


def _registrar(table: dict, keys: Sequence[Any], family: str) -> Callable[[Rule], Rule]:
    """A decorator putting a rule into ``table`` under every key; a key taken is an error."""

    def deco(rule: Rule) -> Rule:
        for key in keys:
            if key in table:
                raise ValueError(f"a rule for {_target_name(key)} is already registered")
            table[key] = (rule, family)
        return rule

    return deco


def register_rule(key: Key, rule: Rule, family: str = "other") -> None:
    """Public form of :func:`register` for users' own modules."""
    register(key, family=family)(rule)


#: rules for ops of libraries rfgraph does not import (torchvision, timm), by qualified name
#: (``module.qualname``) or, for a few unambiguous conventions, by bare name (``DropPath``)
_BY_NAME: dict[str, tuple[Rule, str]] = {}


def register_names(*names: str, family: str = "other") -> Callable[[Rule], Rule]:
    """Register ``rule`` for classes or functions named ``names`` (qualified, like
    ``torchvision.ops.stochastic_depth.StochasticDepth``, or bare, like ``DropPath``), so that
    optional libraries need not be imported. Registering a name twice is an error."""

    return _registrar(_BY_NAME, names, family)


def _by_name(obj: Any) -> tuple[Rule, str] | None:
    if not _BY_NAME:
        return None
    name = getattr(obj, "__name__", None)
    if not isinstance(name, str):
        return None
    qual = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', name)}"
    return _BY_NAME.get(qual) or _BY_NAME.get(name)


_BEHAVIOUR = ("forward", "_conv_forward")


def _same_behaviour(sub: type, cls: type) -> bool:
    """False when ``sub`` overrides how ``cls`` computes (timm's Conv2dSame pads in forward,
    ScaledStdConv2d standardises its weight): the rule for ``cls`` would then be wrong, so the
    subclass is traced through (or reported) instead."""
    return all(getattr(sub, name, None) is getattr(cls, name, None)
               for name in _BEHAVIOUR if hasattr(cls, name))


def lookup_module(module: nn.Module) -> tuple[Rule, str] | None:
    """The rule for the module's class, or for the nearest base class whose computation it
    does not override; a rule by name (timm's Conv2dSame) counts as the class's own."""
    sub = type(module)
    for cls in sub.__mro__:
        if cls is nn.Module:
            break
        found = _REGISTRY.get(cls) or _by_name(cls)
        if found is not None:
            if cls is not sub and not _same_behaviour(sub, cls):
                return None
            return found
    return None


def lookup(key: Any) -> tuple[Rule, str] | None:
    try:
        found = _REGISTRY.get(key)
    except TypeError:  # unhashable target
        return None
    if found is None and callable(key) and not isinstance(key, (str, type)):
        found = _by_name(key)
    if found is None and is_container_type(key):
        found = (container, "shape")
    return found


def is_container_type(key: Any) -> bool:
    """A namedtuple or dataclass type (a model's structured output)."""
    import dataclasses

    return isinstance(key, type) and (
        (issubclass(key, tuple) and hasattr(key, "_fields")) or dataclasses.is_dataclass(key))


def container(call: Call) -> OpResult:
    """Building a namedtuple or dataclass (``GoogLeNetOutputs(logits, aux2, aux1)``): the value
    holds the tensors as they are; no cost."""
    return OpResult(call.target(*call.args, **call.kwargs), kind="shape", family="shape")


def registered_keys() -> list[Any]:
    return list(_REGISTRY)


def _target_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    if type(target).__name__ in ("OpOverload", "OpOverloadPacket"):
        return str(target)  # aten.conv2d.default
    name = getattr(target, "__name__", None) or repr(target)
    mod = getattr(target, "__module__", None)
    if isinstance(target, type):
        return target.__name__
    if mod == "_operator":
        mod = "operator"
    return f"{mod}.{name}" if mod and mod not in {"builtins"} else name


def target_name(target: Any) -> str:
    return _target_name(target)


def ntuple(value: Any, n: int) -> tuple:
    """Expand an int or a sequence to an n-tuple."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1 and n > 1:
            return tuple(value) * n
        if len(value) != n:
            raise RuleError(f"expected {n} values, got {value!r}")
        return tuple(value)
    return (value,) * n


def prod(values: Sequence[Expr | int]) -> Expr:
    return sympy.Mul(*[sympy.sympify(v) for v in values])


def shape_str(values: Sequence[Any]) -> str:
    return "×".join(str(v) for v in values)
