"""Merges and splits: broadcasting elementwise ops (add, mul, ..., ``where``,
``masked_fill``, ``addcmul``), comparisons and asserts on sizes (conditions), ``cat``/``stack``
and their inverses ``chunk``/``split``/``tensor_split``/``unbind``.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence
from typing import Any

import sympy
import torch
from sympy import Expr, Integer

from ..errors import RuleError, Unsupported
from ..field_merge import concat_rfs, merge_rfs
from ..kinds import Family, Kind
from ..receptive_field import AxisRF
from ..symbolic import ceildiv
from ..tensor import TensorInfo
from .base import Call, OpResult, known, register
from .shape import _eq, index_tensor


# -- merges ----------------------------------------------------------------------------------------
def _broadcast(call: Call, tensors: list[TensorInfo]) -> tuple[TensorInfo, list[Expr]]:
    ndim = max(t.ndim for t in tensors)
    shape: list[Expr] = []
    axes: list[int | None] = []
    conditions: list[Expr] = []
    for k in range(ndim):
        sizes, ax = [], None
        for t in tensors:
            d = k - (ndim - t.ndim)
            if d < 0:
                continue
            s = t.shape[d]
            if s != 1:
                sizes.append(s)
                if ax is None:
                    ax = t.axes[d]
        distinct = list(dict.fromkeys(sympy.expand(s) for s in sizes))
        if len(distinct) > 1:
            numeric = [s for s in distinct if s.is_Integer]
            if len(numeric) > 1:
                raise RuleError(f"{call.where()}: shapes do not broadcast: "
                                + ", ".join(str(tuple(t.shape)) for t in tensors))
            conditions.extend(sympy.Eq(distinct[0], s) for s in distinct[1:])
        shape.append(distinct[0] if distinct else Integer(1))
        axes.append(ax)
    n_axes = max(len(t.rf) for t in tensors)
    rf = []
    live = [t for t in tensors if not t.const] or tensors[:1]
    for a in range(n_axes):
        fields, bcast, lengths = [], [], []
        for t in live:
            dim = t.dim_of_axis(a)
            fields.append(t.rf[a] if a < len(t.rf) else None)
            bcast.append(dim is None or t.shape[dim] == 1)
            lengths.append(None if dim is None else t.shape[dim])
        rf.append(merge_rfs(fields, bcast, lengths))
    _padding_merge(rf, live)
    const = all(t.const for t in tensors)
    # every channel is the union of the same channels' fields: uniform when the inputs are
    varies = any(t.varies for t in live)
    return TensorInfo(tuple(shape), tuple(axes), tuple(rf), const, varies=varies), conditions


def _padding_merge(rf: list, branches: Sequence[TensorInfo]) -> None:
    """A branch with elements that read only padding (a constant pad of an intermediate
    tensor) takes part in the union with the virtual extension of its field, which may cover
    real pixels it never reads, along this axis or (as the whole element is padding) along the
    others. Where the branches' fields differ, the union is then an upper bound: said so."""
    if not any(f is not None and f.pad_run for t in branches for f in t.rf):
        return
    for a, merged in enumerate(rf):
        ids = {id(t.rf[a]) for t in branches if a < len(t.rf)}
        if merged is not None and len(ids) > 1 and not merged.upper:
            rf[a] = merged.upper_bound(
                "a merged branch has elements that read only padding (a pad of an "
                "intermediate tensor): the union is an upper bound next to them")


@register(operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
          operator.truediv, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
          torch.maximum, torch.minimum, "add", "add_", "sub", "sub_", "mul", "mul_", "div",
          "div_", family=Family.MERGE)
def elementwise(call: Call) -> OpResult:
    tensors = [a for a in (*call.args, *call.kwargs.values()) if isinstance(a, TensorInfo)]
    if not tensors:  # arithmetic on sizes (h // 2, c * 4): a value, not a tensor
        return _size_arithmetic(call)
    if len(tensors) == 1:
        return OpResult(tensors[0], kind=Kind.TRANSPARENT, family=Family.ACTIVATION)
    y, conditions = _broadcast(call, tensors)
    return OpResult(y, kind=Kind.MERGE, family=Family.MERGE, conditions=conditions)


_SIZE_OPS = {"add": operator.add, "iadd": operator.add, "sub": operator.sub,
             "isub": operator.sub, "mul": operator.mul, "imul": operator.mul,
             "truediv": operator.truediv, "itruediv": operator.truediv}


def _size_arithmetic(call: Call) -> OpResult:
    name = call.target if isinstance(call.target, str) else call.target.__name__
    op = _SIZE_OPS.get(name.strip("_"))
    if op is not None and any(isinstance(v, (tuple, list)) for v in call.args[:2]):
        # sequences of sizes: Python's own semantics (tuple + tuple, (h, w) * 2)
        return OpResult(op(*call.args[:2]), kind=Kind.SHAPE, family=Family.SHAPE)
    values = [sympy.sympify(v) for v in call.args[:2]]
    if op is None or len(values) != 2:
        raise RuleError(f"{call.where()}: no tensor operand")
    return OpResult(sympy.expand(op(*values)), kind=Kind.SHAPE, family=Family.SHAPE)


@register(torch.pow, "pow", family=Family.ACTIVATION)
def power(call: Call) -> OpResult:
    tensors = [a for a in call.args[:2] if isinstance(a, TensorInfo)]
    if not tensors:
        raise Unsupported(f"{call.where()}: pow without a tensor")
    if len(tensors) == 2:

        y, conditions = _broadcast(call, tensors)
        return OpResult(y, kind=Kind.MERGE, family=Family.MERGE, conditions=conditions)
    return OpResult(tensors[0], kind=Kind.TRANSPARENT, family=Family.ACTIVATION)


@register(torch.where, family=Family.MERGE)
def where(call: Call) -> OpResult:
    tensors = [a for a in call.args[:3] if isinstance(a, TensorInfo)]
    if len(call.args) < 3 or not tensors:
        raise Unsupported(f"{call.where()}: torch.where with one argument (indices)")

    y, conditions = _broadcast(call, tensors)
    return OpResult(y, kind=Kind.MERGE, family=Family.MERGE, conditions=conditions)


@register(torch.masked_fill, "masked_fill", "masked_fill_", family=Family.MERGE)
def masked_fill(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    mask = call.arg(1, "mask")
    if not isinstance(mask, TensorInfo):
        raise RuleError(f"{call.where()}: the mask must be a tensor")

    y, conditions = _broadcast(call, [x, mask])
    shape_ok = len(y.shape) == len(x.shape)
    if not shape_ok:
        raise RuleError(f"{call.where()}: the mask does not broadcast to the input")
    return OpResult(dataclasses.replace(y, dtype=x.dtype), kind=Kind.MERGE, family=Family.MERGE,
                    conditions=conditions)


# -- addcmul / addcdiv ---------------------------------------------------------------------------
@register(torch.addcmul, torch.addcdiv, "addcmul", "addcmul_", "addcdiv", "addcdiv_",
          family=Family.MERGE)
def addcmul(call: Call) -> OpResult:
    """input + value·t1·t2 (or t1/t2): a broadcast merge of the three; no MACs (FlopCounterMode
    counts none). The in-place forms keep the input's shape."""
    tensors = [call.arg(0, "input"), call.arg(1, "tensor1"), call.arg(2, "tensor2")]
    tensors = [t for t in tensors if isinstance(t, TensorInfo)]
    if not tensors:
        raise RuleError(f"{call.where()}: no tensor operand")
    y, conditions = _broadcast(call, tensors)
    if isinstance(call.target, str) and call.target.endswith("_"):
        x = tensors[0]
        for a, b in zip(reversed(x.shape), reversed(y.shape)):
            if a != b and a.is_Integer and b.is_Integer:
                raise RuleError(f"{call.where()}: the in-place result {tuple(y.shape)} does "
                                f"not fit {tuple(x.shape)}")
        y = x.with_shape(x.shape, rf=y.rf)
    return OpResult(y, kind=Kind.MERGE, family=Family.MERGE, conditions=conditions)


# -- size comparisons and asserts: conditions on the input sizes -----------------------------------
_RELATIONS: dict[Any, Callable[..., Any]] = {
    operator.eq: sympy.Eq, operator.ne: sympy.Ne, operator.lt: sympy.Lt, operator.le: sympy.Le,
    operator.gt: sympy.Gt, operator.ge: sympy.Ge,
}
_TENSOR_COMPARE = {"eq", "ne", "lt", "le", "gt", "ge"}


@register(*_RELATIONS, torch.eq, torch.ne, torch.lt, torch.le, torch.gt, torch.ge,
          *_TENSOR_COMPARE, family=Family.MERGE)
def compare(call: Call) -> OpResult:
    """``h == self.image_size`` on sizes: a SymPy relation (a condition once asserted);
    ``a == b`` on tensors: an elementwise comparison (shape and field as for add)."""
    tensors = [a for a in (*call.args, *call.kwargs.values()) if isinstance(a, TensorInfo)]
    if tensors:
        if len(tensors) == 1:
            return OpResult(tensors[0], kind=Kind.TRANSPARENT, family=Family.ACTIVATION)
        y, conditions = _broadcast(call, tensors)
        return OpResult(y, kind=Kind.MERGE, family=Family.MERGE, conditions=conditions)
    rel = _RELATIONS.get(call.target)
    if rel is None:
        name = call.target if isinstance(call.target, str) else call.target.__name__
        rel = _RELATIONS.get(getattr(operator, name.strip("_"), None))
    a, b = call.args[:2]
    if rel is None:
        raise Unsupported(f"{call.where()}: cannot compare {a!r} and {b!r}")
    try:
        value = rel(sympy.sympify(a), sympy.sympify(b))
    except (TypeError, sympy.SympifyError) as exc:
        raise Unsupported(f"{call.where()}: cannot compare {a!r} and {b!r}") from exc
    return OpResult(value, kind=Kind.SHAPE, family=Family.SHAPE)


@register(torch.fx._symbolic_trace._assert_is_none, family=Family.OTHER)
def assert_is_none(call: Call) -> OpResult:
    """fx's guard for an optional argument specialised to None (the model is called as
    ``model(x)``): nothing to compute."""
    return OpResult(None, kind=Kind.GUARD, family=Family.OTHER)


@register(torch._assert, family=Family.OTHER)
def assert_(call: Call) -> OpResult:
    """``torch._assert(h == 224, msg)``: the relation becomes a condition on the input sizes
    (checked when evaluating); one that can never hold is an error now."""
    cond = call.arg(0, "condition")
    message = call.arg(1, "message", "")
    conditions: list[Expr] = []
    if isinstance(cond, TensorInfo):
        raise Unsupported(f"{call.where()}: an assert on tensor values")
    value = sympy.sympify(cond) if not isinstance(cond, bool) else sympy.true if cond \
        else sympy.false
    if value is sympy.false:
        raise RuleError(f"{call.where()}: the model's assertion fails: {message}")
    if value is not sympy.true:
        conditions.append(value)
    return OpResult(None, kind=Kind.GUARD, family=Family.OTHER, conditions=conditions,
                    notes=[f"assert: {message}"] if message else [])


@register(torch.cat, torch.concat, torch.concatenate, family=Family.MERGE)
def concatenate(call: Call) -> OpResult:
    tensors = call.arg(0, "tensors")
    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, TensorInfo)
                                                         for t in tensors):
        raise RuleError(f"{call.where()}: expected a list of tensors")
    dim = int(call.arg(1, "dim", 0))
    first = tensors[0]
    d = dim % first.ndim
    conditions: list[Expr] = []
    for t in tensors[1:]:
        if t.ndim != first.ndim:
            raise RuleError(f"{call.where()}: tensors differ in rank")
        for k in range(first.ndim):
            if k == d:
                continue
            a, b = sympy.expand(first.shape[k]), sympy.expand(t.shape[k])
            if a != b:
                if a.is_Integer and b.is_Integer:
                    raise RuleError(f"{call.where()}: sizes differ on dim {k}: {a} vs {b}")
                conditions.append(sympy.Eq(a, b))
    shape = list(first.shape)
    shape[d] = sympy.expand(sum((t.shape[d] for t in tensors), Integer(0)))
    notes: list[str] = []
    rf: list[AxisRF | None] = []
    needs_at = False
    for a in range(len(first.rf)):
        if first.axes[d] == a:
            if any(t.axes[d] != a or t.rf[a] is None for t in tensors):
                rf.append(None)
                notes.append("concatenation along a spatial axis of tensors whose fields "
                             "are unknown or not along it: field unknown")
            else:
                rf.append(concat_rfs([(t.rf[a], t.shape[d]) for t in tensors]))
                # which piece a position falls in depends on the sizes: decided when evaluating
                needs_at = needs_at or not all(t.shape[d].is_Integer for t in tensors)
            continue
        live = [t for t in tensors if not t.const] or tensors[:1]  # a class token adds no field
        dims = [t.dim_of_axis(a) for t in live]
        merged = merge_rfs([t.rf[a] for t in live], [d is None for d in dims],
                           [None if d is None else t.shape[d] for t, d in zip(live, dims)])
        if (merged is not None and first.axes[d] is not None
                and len({id(t.rf[a]) for t in live}) > 1):
            # along the other axes each position of a piece has that piece's field: which
            # one depends on the position along the concatenated axis
            merged = merged.upper_bound(
                "concatenated along another axis: the field along this one depends on the "
                "piece, the union of the pieces' fields is an upper bound")
        rf.append(merged)
    if first.axes[d] is None:
        _padding_merge(rf, [t for t in tensors if not t.const] or tensors[:1])
    axes_from = next((t for t in tensors if not t.const), first)
    channels, varies = _cat_channels(tensors, d)
    y = TensorInfo(tuple(shape), axes_from.axes, tuple(rf), all(t.const for t in tensors),
                   channels=channels, varies=varies)
    return OpResult(y, kind=Kind.MERGE, family=Family.MERGE, conditions=conditions, notes=notes,
                    needs_at=needs_at)


def _cat_channels(tensors: Sequence[TensorInfo], d: int) -> tuple[tuple | None, bool]:
    """(per-channel fields, varies) of a concatenation along dim ``d``: along the channel dim
    the channels are the inputs' channels one after the other."""
    live = [t for t in tensors if not t.const]
    if d != tensors[0].channel_dim or len(live) != len(tensors):
        return None, any(t.varies for t in live)
    varies = (any(t.varies for t in tensors)
              or len({tuple(id(f) for f in t.rf) for t in tensors}) > 1)
    if not varies:
        return None, False
    parts = [t.channel_fields() for t in tensors]
    known_parts = [p for p in parts if p is not None]
    if len(known_parts) != len(parts):
        return None, True
    return tuple(f for p in known_parts for f in p), True


@register(torch.stack, family=Family.MERGE)
def stack(call: Call) -> OpResult:
    tensors = call.arg(0, "tensors")
    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, TensorInfo)
                                                         for t in tensors):
        raise RuleError(f"{call.where()}: expected a list of tensors")
    first = tensors[0]
    d = int(call.arg(1, "dim", 0)) % (first.ndim + 1)
    conditions = []
    for t in tensors[1:]:
        for a, b in zip(first.shape, t.shape):
            if not _eq(a, b):
                conditions.append(sympy.Eq(a, b))
    rf = [merge_rfs([t.rf[a] for t in tensors], [t.dim_of_axis(a) is None for t in tensors])
          for a in range(len(first.rf))]
    shape = (*first.shape[:d], Integer(len(tensors)), *first.shape[d:])
    axes = (*first.axes[:d], None, *first.axes[d:])
    return OpResult(TensorInfo(shape, axes, tuple(rf)), kind=Kind.MERGE, family=Family.MERGE,
                    conditions=conditions)


# -- splits ----------------------------------------------------------------------------------------
def _split_sizes(call: Call, size: Expr, sizes: list[int]) -> None:
    if not size.is_Integer:
        raise RuleError(f"{call.where()}: splitting a symbolic size {size} is not supported")
    if sum(sizes) != int(size):
        raise RuleError(f"{call.where()}: split sizes {sizes} do not add up to {size}")


def _pieces(x: TensorInfo, d: int, sizes: list[int]) -> tuple[TensorInfo, ...]:
    out = []
    for s in sizes:
        shape = list(x.shape)
        shape[d] = Integer(s)
        out.append(x.with_shape(shape))
    return tuple(out)


@register(torch.chunk, "chunk", family=Family.SHAPE)
def chunk(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    n = int(call.arg(1, "chunks"))
    d = int(call.arg(2, "dim", 0)) % x.ndim
    size = x.shape[d]
    if not size.is_Integer:
        raise RuleError(f"{call.where()}: chunk of a symbolic size {size} is not supported")
    step = -(-int(size) // n)
    sizes = [min(step, int(size) - i) for i in range(0, int(size), step)]
    return OpResult(_pieces(x, d, sizes), kind=Kind.SHAPE, family=Family.SHAPE)


@register(torch.split, "split", family=Family.SHAPE)
def split(call: Call) -> OpResult:
    x = call.tensor(0, "tensor")
    spec = call.arg(1, "split_size_or_sections", call.kwargs.get("split_size"))
    d = int(call.arg(2, "dim", 0)) % x.ndim
    size = x.shape[d]
    if isinstance(spec, int):
        if not size.is_Integer:
            raise RuleError(f"{call.where()}: split of a symbolic size is not supported")
        sizes = [min(spec, int(size) - i) for i in range(0, int(size), spec)]
    else:
        sizes = [int(s) for s in spec]
        _split_sizes(call, size, sizes)
    return OpResult(_pieces(x, d, sizes), kind=Kind.SHAPE, family=Family.SHAPE)


# -- tensor_split, repeat_interleave -------------------------------------------------------------
@register(torch.tensor_split, "tensor_split", family=Family.SHAPE)
def tensor_split(call: Call) -> OpResult:
    """``tensor_split(x, sections or indices, dim)``: slices of ``dim``; n sections of a size s
    are ceil((s - k)/n) long (k = 0..n-1), as torch splits them."""
    x = call.tensor(0, "input")
    spec = call.arg(1, "indices_or_sections")
    for name in ("indices", "sections", "tensor_indices_or_sections"):
        if spec is None and name in call.kwargs:
            spec = call.kwargs[name]
    d = int(call.arg(2, "dim", 0)) % x.ndim
    if spec is None or isinstance(spec, TensorInfo):
        raise Unsupported(f"{call.where()}: split points given as a tensor")
    size = x.shape[d]
    if isinstance(spec, (tuple, list)):
        points = [sympy.sympify(p) for p in spec]
        if any(not p.is_Integer or int(p) < 0 for p in points):
            raise Unsupported(f"{call.where()}: split points {spec!r}")
        bounds = [None, *(int(p) for p in points), None]
    else:
        n = int(spec)
        if n < 1:
            raise RuleError(f"{call.where()}: sections must be positive")
        bounds = [None]
        start: Expr = Integer(0)
        for k in range(n - 1):
            start = sympy.expand(start + ceildiv(size - k, n))
            bounds.append(start)
        bounds.append(None)
    if size.is_Integer:  # clip the bounds as Python slicing does
        bounds = [b if b is None else min(int(b), int(size)) for b in bounds]
    pieces = []
    notes: list[str] = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if lo is not None and hi is not None and sympy.sympify(hi).is_Integer and \
                sympy.sympify(lo).is_Integer and int(hi) < int(lo):
            hi = lo  # an empty piece
        index = (*[slice(None)] * d, slice(lo, hi))
        res = index_tensor(call, x, index)
        pieces.append(res.value)
        notes += res.notes
    return OpResult(tuple(pieces), kind=Kind.SHAPE, family=Family.SHAPE,
                    notes=list(dict.fromkeys(notes)))


# -- unbind ----------------------------------------------------------------------------------------
@register(torch.unbind, "unbind", family=Family.SHAPE)
def unbind(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    d = int(call.arg(1, "dim", 0)) % x.ndim
    n = sympy.expand(x.shape[d])
    if not n.is_Integer:
        raise Unsupported(f"{call.where()}: unbind of a symbolic size {n} is not supported")
    a = x.axes[d]
    pieces = []
    for i in range(int(n)):
        rf = list(x.rf)
        if a is not None and rf[a] is not None:
            old = known(rf[a])  # piece i is position i of the axis

            def at_i(y: Expr, i: int = i) -> Expr:
                return Integer(i)

            rf[a] = old.compose(at_i, at_i, old.jump, 1)
        keep = [k for k in range(x.ndim) if k != d]
        pieces.append(TensorInfo(tuple(x.shape[k] for k in keep), tuple(x.axes[k] for k in keep),
                                 tuple(rf), x.const))
    return OpResult(tuple(pieces), kind=Kind.SHAPE, family=Family.SHAPE)
