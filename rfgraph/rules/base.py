"""The rule registry: one pure function per op, registered once by a decorator.

A rule receives a :class:`Call` (the module or function, its arguments with every tensor replaced
by a :class:`~rfgraph.tensor.TensorInfo`) and returns an :class:`OpResult`: the output value(s),
parameters with their formula, MACs, and any conditions the op puts on the input sizes. Rules never
touch the graph and never run the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import sympy
from sympy import Expr, Integer
from torch import nn

from ..errors import InternalError, RuleError, Unsupported  # noqa: F401  (Unsupported: re-exported)
from ..kinds import Family, Kind
from ..receptive_field import AxisRF
from ..tensor import AXIS_LETTERS, MinSizes, TensorInfo, Window

Key = type | Callable | str
M = TypeVar("M", bound=nn.Module)


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

    @overload
    def mod(self) -> nn.Module: ...

    @overload
    def mod(self, kind: type[M]) -> M: ...

    def mod(self, kind: type[nn.Module] = nn.Module) -> nn.Module:
        """The module of a module rule's node, as a ``kind`` (the class the rule is registered
        for, or a torch base of those), so that its attributes are typed. Module rules are only
        called with a module of their class: anything else is a bug in rfgraph."""
        if not isinstance(self.module, kind):
            got = type(self.module).__name__ if self.module is not None else "no module"
            raise InternalError(f"{self.where()}: a rule for {kind.__name__} got {got}")
        return self.module

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
    kind: Kind = Kind.LAYER
    #: the op's family; OTHER: the family it was registered with
    family: Family = Family.OTHER
    notes: list[str] = field(default_factory=list)
    conditions: list[Expr] = field(default_factory=list)  # relations that must hold (Eq, Ge)
    # (size that must be >= 1, what it is)
    min_sizes: list[tuple[Expr, str]] = field(default_factory=list)
    needs_at: bool = False  # some result is only known at concrete sizes (re-run when evaluating)


Rule = Callable[[Call], OpResult]
Entry = tuple[Rule, Family]

_REGISTRY: dict[Any, Entry] = {}
#: the keys of _REGISTRY that users added with register_rule (not rfgraph's own)
_USER_KEYS: set[Any] = set()

#: the rules of the enclosing :func:`scope` blocks, innermost last (per thread and task)
_SCOPES: ContextVar[tuple[dict[Any, Entry], ...]] = ContextVar("rfgraph_rule_scopes",
                                                                default=())


def register(*keys: Key, family: Family = Family.OTHER) -> Callable[[Rule], Rule]:
    """Register ``rule`` for module classes, functions or method names (``"chunk"``).

    Registering the same key twice is an error: one op, one rule.
    """

    return _registrar(_REGISTRY, keys, family)


def _registrar(table: dict, keys: Sequence[Any], family: Family | str,
               ) -> Callable[[Rule], Rule]:
    """A decorator putting a rule into ``table`` under every key; a key taken is an error."""
    fam = as_family(family)

    def deco(rule: Rule) -> Rule:
        for key in keys:
            if key in table:
                raise ValueError(f"a rule for {_target_name(key)} is already registered")
            table[key] = (rule, fam)
        return rule

    return deco


def as_family(family: Family | str) -> Family:
    """``family`` as a :class:`Family` (a plain string is accepted when it names one)."""
    try:
        return Family(family)
    except ValueError:
        raise ValueError(f"unknown family {family!r}: one of "
                         f"{', '.join(f.value for f in Family)}") from None


def register_rule(key: Key, rule: Rule, family: Family | str = Family.OTHER) -> None:
    """Add ``rule`` for a user's module class, function or method name, for every later
    analysis (undo with :func:`unregister_rule`; :func:`scope` adds rules for a block only).
    A key that already has a rule is an error."""
    register(key, family=as_family(family))(rule)
    _USER_KEYS.add(key)


def unregister_rule(key: Key) -> None:
    """Remove the rule :func:`register_rule` added for ``key`` (a key without one is an
    error)."""
    if key not in _REGISTRY:
        raise KeyError(f"no rule registered for {_target_name(key)}")
    del _REGISTRY[key]
    _USER_KEYS.discard(key)


RuleSpec = Rule | tuple[Rule, Family | str]


def _entries(extra: Mapping[Key, RuleSpec]) -> dict[Any, Entry]:
    out: dict[Any, Entry] = {}
    for key, spec in extra.items():
        rule, family = spec if isinstance(spec, tuple) else (spec, Family.OTHER)
        if not callable(rule):
            raise TypeError(f"the rule for {_target_name(key)} is not callable: {rule!r}")
        out[key] = (rule, as_family(family))
    return out


@contextmanager
def scope(extra: Mapping[Key, RuleSpec] | None) -> Iterator[None]:
    """Rules that apply only inside the ``with`` block: ``{key: rule}`` or
    ``{key: (rule, family)}`` (family OTHER when not given).

    Inside the block a key of ``extra`` takes precedence over the built-in rule and over one
    given by :func:`register_rule` for the same key (a scope is explicit and ends, so it may
    replace a rule, e.g. to try a variant); an inner scope over an outer one. Leaving the block
    restores the registry exactly. Scopes are per thread and per asyncio task (a ContextVar).
    """
    if not extra:
        yield
        return
    token = _SCOPES.set((*_SCOPES.get(), _entries(extra)))
    try:
        yield
    finally:
        _SCOPES.reset(token)


def _find(key: Any) -> Entry | None:
    """The rule for ``key``: the innermost scope's, else the registry's."""
    for table in reversed(_SCOPES.get()):
        found = table.get(key)
        if found is not None:
            return found
    return _REGISTRY.get(key)


#: rules for ops of libraries rfgraph does not import (torchvision, timm), by qualified name
#: (``module.qualname``) or, for a few unambiguous conventions, by bare name (``DropPath``)
_BY_NAME: dict[str, Entry] = {}


def register_names(*names: str, family: Family = Family.OTHER) -> Callable[[Rule], Rule]:
    """Register ``rule`` for classes or functions named ``names`` (qualified, like
    ``torchvision.ops.stochastic_depth.StochasticDepth``, or bare, like ``DropPath``), so that
    optional libraries need not be imported. Registering a name twice is an error."""

    return _registrar(_BY_NAME, names, family)


def _by_name(obj: Any) -> Entry | None:
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


def lookup_module(module: nn.Module) -> Entry | None:
    """The rule for the module's class, or for the nearest base class whose computation it
    does not override; a rule by name (timm's Conv2dSame) counts as the class's own."""
    sub = type(module)
    for cls in sub.__mro__:
        if cls is nn.Module:
            break
        found = _find(cls) or _by_name(cls)
        if found is not None:
            if cls is not sub and not _same_behaviour(sub, cls):
                return None
            return found
    return None


def lookup(key: Any) -> Entry | None:
    try:
        found = _find(key)
    except TypeError:  # unhashable target
        return None
    if found is None and callable(key) and not isinstance(key, (str, type)):
        found = _by_name(key)
    if found is None and is_container_type(key):
        found = (container, Family.SHAPE)
    return found


def is_container_type(key: Any) -> bool:
    """A namedtuple or dataclass type (a model's structured output)."""
    import dataclasses

    return isinstance(key, type) and (
        (issubclass(key, tuple) and hasattr(key, "_fields")) or dataclasses.is_dataclass(key))


def container(call: Call) -> OpResult:
    """Building a namedtuple or dataclass (``GoogLeNetOutputs(logits, aux2, aux1)``): the value
    holds the tensors as they are; no cost."""
    return OpResult(call.target(*call.args, **call.kwargs), kind=Kind.SHAPE, family=Family.SHAPE)


def registered_keys() -> list[Any]:
    """Every key of the registry (built-in and :func:`register_rule`'s; not scoped ones)."""
    return list(_REGISTRY)


def builtin_rules() -> dict[Any, Entry]:
    """rfgraph's own rules by key (the registry without users' :func:`register_rule`)."""
    return {k: v for k, v in _REGISTRY.items() if k not in _USER_KEYS}


def registered_names() -> dict[str, Entry]:
    """The rules registered by name (optional libraries: torchvision, timm)."""
    return dict(_BY_NAME)


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


def known(rf: AxisRF | None) -> AxisRF:
    """``rf`` where a field is there by construction (the axis was checked to have one): a
    None is a bug in rfgraph."""
    if rf is None:
        raise InternalError("a field expected here is unknown")
    return rf


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


def window(nd: int, kernel: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
           ceil_mode: bool = False) -> Window:
    """A :class:`~rfgraph.tensor.Window` from torch-style arguments (an int or a sequence per
    argument; stride None or empty: the kernel; padding symmetric)."""
    kernel = ntuple(kernel, nd)
    stride = ntuple(stride if stride not in (None, [], ()) else kernel, nd)
    padding = ntuple(padding, nd)
    return Window(nd, kernel, stride, padding, padding, ntuple(dilation, nd), bool(ceil_mode))


def spatial_dims(call: Call, x: TensorInfo, nd: int) -> list[int]:
    """The spatial dims of ``x`` for an ``nd``-D window op, which needs a batched
    (N, C, *spatial) input: an unbatched or wrongly ranked input is refused, naming the layer."""
    if x.ndim != nd + 2:
        op = (type(call.module).__name__ if call.module is not None
              else getattr(call.target, "__name__", None) or str(call.target))
        layout = ", ".join(("N", "C", *(a.upper() for a in AXIS_LETTERS[nd])))
        raise RuleError(
            f"{call.where()}: {op} needs a {nd + 2}-D input ({layout}); the input has "
            f"{x.ndim} dim{'s' if x.ndim != 1 else ''} ({shape_str(x.shape)})"
        )
    return list(range(x.ndim - nd, x.ndim))


def apply_window(call: Call, x: TensorInfo, w: Window, out_channels: Expr | int | None = None,
                 groups: int = 1) -> tuple[TensorInfo, MinSizes]:
    """:meth:`TensorInfo.windowed` after checking that ``x`` is a batched ``w.nd``-D input."""
    spatial_dims(call, x, w.nd)
    return x.windowed(w, out_channels, groups)
