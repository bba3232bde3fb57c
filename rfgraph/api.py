"""rfgraph.analyze: the one entry point of the Python API."""

from __future__ import annotations

import gc
import operator
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import sympy

# What the first analysis would otherwise import lazily (0.3 s: SymPy imports its tensor and
# combinatorics modules on the first sum it flattens; rfgraph its JSON and variant modules),
# so that the first analysis in a process costs about what the next ones do.
import sympy.tensor.tensor  # noqa: F401
import torch.fx as fx
from torch import nn

from . import advise, export  # noqa: F401  (see above)
from .analysis import Analysis
from .annotate import annotate
from .errors import RfgraphError
from .modes import check_mode, in_mode
from .rules.base import Key, RuleSpec, scope
from .symbolic import parse_dim
from .trace import trace
from .util import submodule


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Python's cyclic collector paused while an analysis runs (restored after, as it was).

    An analysis allocates hundreds of thousands of short-lived SymPy and fx objects; each time
    the allocation count crosses the collector's threshold it walks every object of the
    process, torch's and SymPy's included: 0.3 s of ResNet-50's first analysis. What is
    garbage afterwards is collected as usual once the collector runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_input(spec: str | Sequence[int | str]) -> tuple:
    """'1,3,H,W' or (1, 3, 'H', 'W') -> a tuple of SymPy dims.

    An input has at least 2 dims (N, C, *spatial), or (N, F) for a model on flat features; each
    dim is a positive integer or a name. Anything else is a one-line :class:`RfgraphError`.
    """
    example = "use e.g. 1,3,H,W"
    if isinstance(spec, str):
        parts: list = spec.split(",")
    else:
        try:
            parts = list(spec)
        except TypeError:
            raise RfgraphError(f"bad input shape {spec!r}: {example} or (1, 3, 'H', 'W')"
                               ) from None
    if not parts or any(str(p).strip() == "" for p in parts):
        raise RfgraphError(f"bad input shape {spec!r}: an empty dimension; {example}")
    try:
        dims = tuple(parse_dim(p.strip() if isinstance(p, str) else p) for p in parts)
    except (ValueError, TypeError) as exc:
        raise RfgraphError(f"bad input shape {spec!r}: {exc}") from None
    for d in dims:
        if d.is_number and not (d.is_Integer and d >= 1):
            raise RfgraphError(f"bad input shape {spec!r}: dimension {d} is not a positive "
                               "integer")
    if len(dims) < 2:
        raise RfgraphError(f"bad input shape {spec!r}: an input needs at least 2 dims "
                           "(N, C, ...), e.g. 1,3,H,W for images, 1,3,L for sequences, or N,F "
                           "like 1,784 for a model on flat features")
    return dims


def parse_at(spec: str | Mapping[str, int] | None) -> dict[str, int] | None:
    """'H=224,W=224' or a mapping -> {'H': 224, 'W': 224}; a malformed size or a name given twice
    is a one-line :class:`RfgraphError`."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        out = {}
        for k, v in spec.items():
            if isinstance(v, bool):
                raise RfgraphError(f"bad size {k}={v!r}: sizes are integers")
            try:
                out[str(k)] = operator.index(v)
            except TypeError:
                raise RfgraphError(f"bad size {k}={v!r}: sizes are integers") from None
        return out
    out = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.isidentifier() or not value.lstrip("-").isdigit():
            raise RfgraphError(f"bad size {part!r} in --at: use e.g. H=224,W=224")
        if name in out:
            raise RfgraphError(f"bad sizes {spec!r} in --at: {name} is given twice")
        out[name] = int(value)
    return out


def analyze(model: nn.Module, input_shape: str | Sequence[int | str] = (1, 3, "H", "W"),
            at: str | Mapping[str, int] | None = None, name: str | None = None,
            mode: str = "eval", rules: Mapping[Key, RuleSpec] | None = None,
            costs: str | Sequence[str] | None = None, dtype: str | None = None,
            optimizer: str = "adam") -> Analysis:
    """Trace ``model`` and annotate every node with symbolic shapes, fields, params and MACs.

    ``input_shape``: e.g. ``(1, 3, "H", "W")``; names become positive integer symbols.
    ``at``: sizes to substitute (``{"H": 224, "W": 224}``); the result is then evaluated.
    ``mode``: ``"eval"`` (default: dropout and stochastic depth are identity, BatchNorm uses its
    running statistics, training-only branches such as auxiliary heads are not taken) or
    ``"train"``. The model's own ``training`` flags are restored afterwards.
    ``rules``: extra rules for this analysis only, ``{key: rule}`` or ``{key: (rule, family)}``
    (key: a module class, a function or a method name), as with ``rfgraph.scoped_rules``: they
    take precedence over built-in and registered rules for the same key. They apply to the
    tracing, the annotation and every evaluation (``at``, and later ``Analysis.evaluate``,
    which keeps them in ``Analysis.rules``).
    ``costs``: ``("memory",)`` or ``("memory", "train")`` (or ``"memory,train"``) adds memory
    and training costs as formulas (:attr:`Analysis.costs`, docs/memory.md); ``dtype``
    (``float32``, ``float16``, ``bfloat16``; default: the model's) and ``optimizer`` (``sgd``,
    ``momentum``, ``adam``) shape them. Without ``costs`` only params and MACs are counted.
    """
    with scope(rules), _no_cyclic_gc():
        result = _analyze(model, input_shape, None if costs else at, name, mode, rules)
        if costs:
            from .costs import compute_costs, parse_costs

            kinds = parse_costs(costs)
            if kinds:
                result.costs = compute_costs(result, kinds, dtype, optimizer,
                                             parse_at(at) if at else None)
            if at:
                result = result.evaluate(**(parse_at(at) or {}))
        return result


def _analyze(model: nn.Module, input_shape: str | Sequence[int | str],
             at: str | Mapping[str, int] | None, name: str | None, mode: str,
             rules: Mapping[Key, RuleSpec] | None = None) -> Analysis:
    check_mode(mode)
    shape = parse_input(input_shape)
    if not isinstance(model, nn.Module):
        raise RfgraphError(f"expected a torch.nn.Module, got {type(model).__name__}")
    with in_mode(model, mode):
        gm = model if isinstance(model, fx.GraphModule) else trace(model)
        concrete = all(sympy.sympify(s).is_Integer for s in shape)
        infos, messages = annotate(gm, shape, {} if concrete else None)
    if gm is not model:  # the graph module copied the root's flag while in ``mode``
        gm.training = model.training
    unreached = params_unreached(model, gm)
    result = Analysis(name or type(model).__name__, shape, infos, messages, graph_module=gm,
                      mode=mode, params_unreached=unreached, rules=rules)
    if at:
        return result.evaluate(**(parse_at(at) or {}))
    if not result.symbols:
        result = result.with_at({})
        result.check_sizes()
    return result


def params_unreached(model: nn.Module, gm: fx.GraphModule) -> dict[str, int]:
    """Parameters of ``model`` that no node of the traced graph uses (auxiliary heads taken only
    in training mode, modules built but never called): owning module -> numel."""
    reached: set[int] = set()
    for node in gm.graph.nodes:
        if node.op == "call_module":
            try:
                sub = submodule(gm, str(node.target))
            except AttributeError:
                continue
            reached.update(id(p) for p in sub.parameters())
        elif node.op == "get_attr":
            obj: object = gm
            try:
                for part in str(node.target).split("."):
                    obj = getattr(obj, part)
            except AttributeError:
                continue
            if isinstance(obj, nn.Parameter):
                reached.add(id(obj))
            elif isinstance(obj, nn.Module):
                reached.update(id(p) for p in obj.parameters())
    out: dict[str, int] = {}
    for qualname, p in model.named_parameters():
        if id(p) in reached:
            continue
        owner = qualname.rpartition(".")[0] or "(top)"
        out[owner] = out.get(owner, 0) + p.numel()
    return out
