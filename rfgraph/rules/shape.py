"""Shape plumbing: view/reshape, permute/transpose, (un)squeeze, slicing and indexing,
size()/shape, roll and gathers.

A reshape is split into groups of consecutive dims whose sizes multiply to the same value. A
group that keeps one spatial dim passes its field through; a group that merges a spatial dim with
others makes that axis global (its field becomes the union over positions); a group that splits a
non-spatial dim (the channel-shuffle idiom ``view(N, g, C/g, H, W)``) changes no field.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import itertools
import math
import operator
from fractions import Fraction

import sympy
import torch
from sympy import Expr, Integer

from ..errors import RuleError, Unsupported
from ..kinds import Family, Kind
from ..symbolic import ceildiv, floordiv, is_int_valued
from ..tensor import TensorInfo
from .base import Call, OpResult, known, prod, register


def _eq(a: Expr, b: Expr) -> bool:
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def _as_dims(call: Call, values) -> list:
    if len(values) == 1 and isinstance(values[0], (tuple, list, torch.Size)):
        values = values[0]
    return list(values)


def reshape_core(call: Call, x: TensorInfo, target: list) -> OpResult:
    """A reshape's shape and fields. When the sizes are symbolic and rfgraph cannot match the
    two shapes (a product of sizes pinned by constants in the middle of the shape), the node is
    reported and measured at concrete sizes (``Unsupported``) instead of failing the analysis;
    with numbers only, a mismatch is the model's error."""
    try:
        return _reshape_core(call, x, target)
    except Unsupported:
        raise
    except RuleError as exc:
        symbolic = any(sympy.sympify(v).free_symbols for v in (*x.shape, *target)
                       if not isinstance(v, TensorInfo))
        if symbolic:
            raise Unsupported(str(exc).removeprefix(f"{call.where()}: ")) from exc
        raise


def _reshape_core(call: Call, x: TensorInfo, target: list) -> OpResult:
    target = [sympy.sympify(t) for t in target]
    minus = [i for i, t in enumerate(target) if t == -1]
    if len(minus) > 1:
        raise RuleError(f"{call.where()}: more than one -1 in {target}")
    if minus:
        known = prod([t for i, t in enumerate(target) if i != minus[0]])
        target[minus[0]] = _exact_quotient(x.numel(), known)
    target = [sympy.expand(t) for t in target]
    if call.at is not None:
        # symbols first: at H=1 a symbolic H would match a literal 1 of the target by chance
        try:
            return _reshape_grouped(dataclasses.replace(call, at=None), x, target, None)
        except RuleError:
            pass
    try:
        return _reshape_grouped(call, x, target, None)
    except RuleError:
        ref = _reference_sizes(x.numel(), prod(target))
        if ref is None:
            return _reshape_grouped(call, x, target, None, pin_last=True)
        # sizes pinned by constants in the target (a window count fixed at construction, as
        # in torchvision's MaxViT): group as torch does at a size where the numels agree, and
        # state each group's equality as a condition
        return _reshape_grouped(call, x, target, ref)


def _reference_sizes(a: Expr, b: Expr) -> dict | None:
    """The smallest common value v of every symbol with a == b at v (None when none <= 4096)."""
    diff = sympy.expand(sympy.sympify(a) - sympy.sympify(b))
    syms = sorted(diff.free_symbols, key=lambda v: v.name)
    if not syms:
        return None
    if diff in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[diff]
    try:  # a float screen (fast), every hit confirmed exactly
        fast = sympy.lambdify(syms, diff, modules="math")
    except Exception:  # pragma: no cover - lambdify cannot print some expression
        fast = None
    found = None
    for v in range(1, 4097):
        if fast is not None:
            try:
                if abs(fast(*([v] * len(syms)))) > 0.5:
                    continue
            except (ValueError, ZeroDivisionError, OverflowError):
                pass
        if diff.xreplace({s: Integer(v) for s in syms}) == 0:
            found = {s: Integer(v) for s in syms}
            break
    _REFERENCE_CACHE[diff] = found
    return found


_REFERENCE_CACHE: dict = {}


def _reshape_grouped(call: Call, x: TensorInfo, target: list, ref: dict | None,
                     pin_last: bool = False) -> OpResult:
    # group dims: advance on both sides until the running products agree
    axes: list[int | None] = [None] * len(target)
    rf = list(x.rf)
    notes: list[str] = []
    conditions: list[Expr] = []
    i = j = 0
    while i < x.ndim or j < len(target):
        gi, gj = [i] if i < x.ndim else [], [j] if j < len(target) else []
        pi = x.shape[i] if i < x.ndim else Integer(1)
        pj = target[j] if j < len(target) else Integer(1)
        i, j = i + len(gi), j + len(gj)
        guard = 0
        while True:
            match = _products_match(call, pi, pj) if ref is None else \
                _match_at(pi, pj, ref)
            if match is not None:
                break
            guard += 1
            if guard > 64:
                raise RuleError(f"{call.where()}: cannot match {tuple(x.shape)} to {target}")
            # grow the side with the smaller product (compared at large sizes)
            grow_in = j >= len(target) or (i < x.ndim and (
                _smaller(call, pi, pj) if ref is None else
                bool(pi.xreplace(ref) < pj.xreplace(ref))))
            if grow_in and i < x.ndim:
                gi.append(i)
                pi = pi * x.shape[i]
                i += 1
            elif j < len(target):
                gj.append(j)
                pj = pj * target[j]
                j += 1
            else:
                # both sides used up: the last group's products must be equal (a token count
                # pinned by constants, as MViT's reshape of its tokens to a fixed (8, 56, 56))
                cond = sympy.Eq(pi, pj)
                if not pin_last or cond is sympy.false or not (
                        pi.free_symbols or pj.free_symbols):
                    raise RuleError(f"{call.where()}: cannot view {tuple(x.shape)} as "
                                    f"{tuple(target)}")
                match = True if cond is sympy.true else cond
                break
        if match is not True:
            conditions.append(match)
        # absorb size-1 dims on either side into the group (they carry no data)
        spatial = [x.axes[d] for d in gi if x.axes[d] is not None and x.shape[d] != 1]
        real_out = [d for d in gj if target[d] != 1]
        real_in = [d for d in gi if x.shape[d] != 1]
        if len(spatial) == 1 and len(real_out) == 1 and len(real_in) == 1:
            axes[real_out[0]] = spatial[0]
        else:
            for d in gi:
                a = x.axes[d]
                field = rf[a] if a is not None else None
                if a is None or field is None:
                    continue
                if x.shape[d] == 1:
                    continue
                if not field.is_global:
                    field = rf[a] = field.collapsed(x.shape[d])
                if len(real_in) == 1:
                    note = ("reshape splits a spatial axis (e.g. into windows): its field "
                            "is taken as global, the union over the axis (an upper bound "
                            "when later ops mix only within a window)")
                    notes.append(note)
                    if len(real_out) > 1:
                        rf[a] = field.upper_bound(note)
                else:
                    notes.append("reshape merges a spatial axis: its field becomes global")
    if not notes and x.rf and list(axes).count(None) != len(axes) and (
            len(target) != x.ndim or any(not _eq(a, b) for a, b in zip(x.shape, target))):
        notes.append("regroups non-spatial dims only (e.g. the channel-shuffle idiom): "
                     "fields unchanged")
    if conditions:
        notes.append("needs sizes that divide evenly: "
                     + "; ".join(f"{c.lhs} = {c.rhs}" for c in conditions))
    y = TensorInfo(tuple(target), tuple(axes), tuple(rf), x.const)
    return OpResult(y, kind=Kind.SHAPE, family=Family.SHAPE, notes=list(dict.fromkeys(notes)),
                    conditions=conditions)


#: sizes at which two products are compared when SymPy cannot order them (large, distinct)
_LARGE = (1_000_003, 1_300_021, 1_700_029, 1_900_043, 2_300_003, 2_900_009)


def _at_large(expr: Expr) -> Expr:
    """``expr`` at large distinct values of its symbols (a number; floors evaluated)."""
    expr = sympy.sympify(expr)
    syms = sorted(expr.free_symbols, key=lambda s: s.name)
    return expr.xreplace({s: Integer(_LARGE[k % len(_LARGE)] + 7 * (k // len(_LARGE)))
                          for k, s in enumerate(syms)})


def _match_at(a: Expr, b: Expr, ref: dict) -> Expr | bool | None:
    if _eq(a, b):
        return True
    if sympy.sympify(a).xreplace(ref) != sympy.sympify(b).xreplace(ref):
        return None
    cond = sympy.Eq(a, b)
    return True if cond is sympy.true else cond


def _mixed(call: Call | None, a: Expr, b: Expr) -> bool:
    """One side symbolic, the other a number measured at the evaluated sizes: compare there."""
    return call is not None and call.at is not None and (
        bool(sympy.sympify(a).free_symbols) != bool(sympy.sympify(b).free_symbols))


def _products_match(call: Call | None, a: Expr, b: Expr) -> Expr | bool | None:
    """True when the two group products are equal; a condition ``Eq(a, b)`` when they agree up
    to rounding (a view of floor(H/4) as floor(H/28)·7 needs floor(H/4) divisible by 7, exactly
    what torch checks); None when they differ."""
    if _eq(a, b):
        return True
    if call is not None and _mixed(call, a, b):
        ca, cb = call.concrete(a), call.concrete(b)
        return True if ca.is_Integer and cb.is_Integer and ca == cb else None
    va, vb = _at_large(a), _at_large(b)
    if not (va.is_number and vb.is_number) or (va.is_Integer and vb.is_Integer and va == vb
                                               and not (a.free_symbols or b.free_symbols)):
        return None
    if not (a.free_symbols or b.free_symbols):
        return None  # two different numbers
    if va == 0 or vb == 0 or abs(float(va / vb) - 1.0) > 1e-4:
        return None
    cond = sympy.Eq(a, b)
    if cond is sympy.true:
        return True
    if cond is sympy.false:
        return None
    return cond


def _exact_quotient(total: Expr, known: Expr) -> Expr:
    """The size a -1 stands for: total/known, with the floors of ``known`` matched against
    ``total`` when SymPy cannot cancel them (the condition is stated by the grouping)."""
    q = sympy.cancel(total / known)
    if is_int_valued(q) or q.is_Integer:
        return q
    # total = A·B with A matching known up to rounding: the quotient is B
    factors = sympy.Mul.make_args(total)
    for k in range(1, len(factors) + 1):
        for combo in itertools.combinations(range(len(factors)), k):
            part = sympy.Mul(*[factors[c] for c in combo])
            if _products_match(None, part, known) is not None:
                return sympy.Mul(*[f for c, f in enumerate(factors) if c not in combo])
    return q


def _smaller(call: Call, a: Expr, b: Expr) -> bool:
    """Should the group on the input side grow (its product a is a proper factor of b)?"""
    if _mixed(call, a, b):
        ca, cb = call.concrete(a), call.concrete(b)
        if ca.is_Integer and cb.is_Integer:
            return int(ca) < int(cb)
    if sympy.fraction(sympy.cancel(sympy.sympify(b) / sympy.sympify(a)))[1] == 1:
        return True
    if sympy.fraction(sympy.cancel(sympy.sympify(a) / sympy.sympify(b)))[1] == 1:
        return False
    va, vb = _at_large(a), _at_large(b)
    if va.is_number and vb.is_number:
        return bool(va < vb)
    return True


@register("view", "reshape", torch.reshape, family=Family.SHAPE)
def reshape(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    rest = call.args[1:] if len(call.args) > 1 else [call.kwargs.get("shape")]
    return reshape_core(call, x, _as_dims(call, rest))


@register("view_as", "reshape_as", family=Family.SHAPE)
def reshape_as(call: Call) -> OpResult:
    return reshape_core(call, call.tensor(0, "input"), list(call.tensor(1, "other").shape))


def permute_core(x: TensorInfo, order: list[int]) -> TensorInfo:
    order = [int(o) % x.ndim for o in order]
    return TensorInfo(tuple(x.shape[o] for o in order), tuple(x.axes[o] for o in order), x.rf,
                      x.const)


@register("permute", torch.permute, family=Family.SHAPE)
def permute(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    order = _as_dims(call, call.args[1:] if len(call.args) > 1 else [call.kwargs.get("dims")])
    return OpResult(permute_core(x, order), kind=Kind.SHAPE, family=Family.SHAPE)


@register("transpose", torch.transpose, torch.swapaxes, "swapaxes", family=Family.SHAPE)
def transpose(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    a, b = int(call.arg(1, "dim0")) % x.ndim, int(call.arg(2, "dim1")) % x.ndim
    order = list(range(x.ndim))
    order[a], order[b] = order[b], order[a]
    return OpResult(permute_core(x, order), kind=Kind.SHAPE, family=Family.SHAPE)


@register("unsqueeze", torch.unsqueeze, family=Family.SHAPE)
def unsqueeze(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    d = int(call.arg(1, "dim"))
    d = d % (x.ndim + 1)
    y = TensorInfo((*x.shape[:d], Integer(1), *x.shape[d:]), (*x.axes[:d], None, *x.axes[d:]),
                   x.rf, x.const)
    return OpResult(y, kind=Kind.SHAPE, family=Family.SHAPE)


@register("squeeze", torch.squeeze, family=Family.SHAPE)
def squeeze(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    dim = call.arg(1, "dim")
    if dim is None:
        dims = [d for d, s in enumerate(x.shape) if s == 1]
        unknown = [d for d, s in enumerate(x.shape) if not s.is_Integer]
        if unknown:
            raise RuleError(f"{call.where()}: squeeze() of symbolic dims; give dim=")
    else:
        dims = [int(d) % x.ndim for d in (dim if isinstance(dim, (tuple, list)) else [dim])]
        dims = [d for d in dims if x.shape[d] == 1]
    keep = [d for d in range(x.ndim) if d not in dims]
    y = TensorInfo(tuple(x.shape[d] for d in keep), tuple(x.axes[d] for d in keep), x.rf,
                   x.const)
    return OpResult(y, kind=Kind.SHAPE, family=Family.SHAPE)


@register("expand", "expand_as", family=Family.SHAPE)
def expand(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    if call.target == "expand_as":
        sizes = list(call.tensor(1, "other").shape)
    else:
        sizes = _as_dims(call, call.args[1:])
    sizes = [x.shape[d - (len(sizes) - x.ndim)] if sympy.sympify(s) == -1 else sympy.sympify(s)
             for d, s in enumerate(sizes)]
    lead = len(sizes) - x.ndim
    axes = (None,) * lead + x.axes
    return OpResult(TensorInfo(tuple(sizes), axes, x.rf, x.const), kind=Kind.SHAPE,
                    family=Family.SHAPE)


# -- sizes as values -----------------------------------------------------------------------------
@register("size", family=Family.SHAPE)
def size(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    d = call.arg(1, "dim")
    value = tuple(x.shape) if d is None else x.shape[int(d) % x.ndim]
    return OpResult(value, kind=Kind.SHAPE, family=Family.SHAPE)


_TENSOR_FACTS = {"device": torch.device("cpu"), "dtype": torch.float32, "is_cuda": False,
                 "is_meta": False, "layout": torch.strided, "is_sparse": False,
                 "requires_grad": False, "is_quantized": False}


@register(builtins.getattr, family=Family.SHAPE)
def get_attribute(call: Call) -> OpResult:
    obj, name = call.args[0], call.args[1]
    if isinstance(obj, TensorInfo) and name == "shape":
        return OpResult(tuple(obj.shape), kind=Kind.SHAPE, family=Family.SHAPE)
    if isinstance(obj, TensorInfo) and name in ("ndim",):
        return OpResult(obj.ndim, kind=Kind.SHAPE, family=Family.SHAPE)
    if isinstance(obj, TensorInfo) and name in _TENSOR_FACTS:
        # where and how the values live: no bearing on shapes or fields; the analysis runs
        # with CPU float32 stand-ins when it must measure an op
        return OpResult(_TENSOR_FACTS[name], kind=Kind.SHAPE, family=Family.SHAPE)
    if isinstance(obj, TensorInfo) and name in ("T", "mT"):
        order = list(range(obj.ndim))[::-1] if name == "T" else [
            *range(obj.ndim - 2), obj.ndim - 1, obj.ndim - 2]
        return OpResult(permute_core(obj, order), kind=Kind.SHAPE, family=Family.SHAPE)
    raise RuleError(f"{call.where()}: attribute {name!r} is not supported")


@register("dim", family=Family.SHAPE)
def ndim(call: Call) -> OpResult:
    return OpResult(call.tensor(0, "input").ndim, kind=Kind.SHAPE, family=Family.SHAPE)


def _int_arith(op):
    def rule(call: Call) -> OpResult:
        a, b = (sympy.sympify(v) for v in call.args[:2])
        if op is operator.mod:
            return OpResult(sympy.Mod(a, b), kind=Kind.SHAPE, family=Family.SHAPE)
        if op is operator.floordiv:
            if b.is_Integer and int(b) > 0:
                return OpResult(floordiv(a, int(b)), kind=Kind.SHAPE, family=Family.SHAPE)
            return OpResult(sympy.floor(a / b), kind=Kind.SHAPE, family=Family.SHAPE)
        return OpResult(sympy.expand(op(a, b)), kind=Kind.SHAPE, family=Family.SHAPE)

    return rule


for _op in (operator.floordiv, operator.mod):
    register(_op, family=Family.SHAPE)(_int_arith(_op))


@register(operator.pow, family=Family.SHAPE)
def power(call: Call) -> OpResult:
    """``(C // heads) ** -0.5`` on sizes gives a value; ``x ** 2`` on a tensor is elementwise
    (field unchanged, no MACs)."""
    base, exponent = call.args[0], call.args[1]
    for t in (base, exponent):
        if isinstance(t, TensorInfo):
            return OpResult(t, kind=Kind.TRANSPARENT, family=Family.ACTIVATION)
    value = sympy.Pow(sympy.sympify(base), sympy.sympify(exponent))
    return OpResult(value, kind=Kind.SHAPE, family=Family.SHAPE)


# -- tensor indexing -----------------------------------------------------------------------------
def _slice_dim(call: Call, x: TensorInfo, d: int, sl: slice, shape: list, rf: list) -> None:
    n = x.shape[d]
    step = 1 if sl.step is None else int(sl.step)
    if step <= 0:
        raise RuleError(f"{call.where()}: slice step must be positive")

    def norm(v, default):
        if v is None:
            return default
        v = sympy.sympify(v)
        if v.is_Integer and int(v) < 0:
            return sympy.expand(n + v)
        return v

    start, stop = norm(sl.start, Integer(0)), norm(sl.stop, n)
    if stop.is_Integer and n.is_Integer:
        stop = Integer(min(int(stop), int(n)))
    elif sl.stop is not None and not (sympy.sympify(sl.stop).is_Integer
                                      and int(sl.stop) < 0):
        if nonnegative(n - stop):  # x[:, :H] after padding H up: the stop is inside
            pass
        elif nonnegative(stop - n):
            stop = n
        else:
            stop = sympy.Min(stop, n)
    shape[d] = ceildiv(stop - start, step)
    a = x.axes[d]
    if a is not None and rf[a] is not None:
        old = rf[a]
        rf[a] = old.compose(lambda y: step * y + start, lambda y: step * y + start,
                            old.jump * step, max(1, old.period // _gcd(old.period, step)))


@functools.lru_cache(maxsize=4096)
def nonnegative(expr: Expr) -> bool:
    """True when ``expr`` (floors of sizes, e.g. 3·ceiling(H'/3) - H') is >= 0 for every
    positive value of its symbols; False when that is not proved.

    ``expr`` is a sum of parts in one symbol each. A part is quasi-linear: with L the lcm of the
    denominators inside its floors (their product when floors nest), part(s + L) = part(s) +
    slope·L, the slope being that of the part with the floors dropped. With slope >= 0 its
    minimum over s >= 1 is its minimum over s = 1..L; the sum of those minima must be >= 0.
    """
    expr = sympy.expand(sympy.sympify(expr))
    if expr.is_number:
        return bool(expr >= 0)
    parts: dict[sympy.Symbol | None, list[Expr]] = {}
    for term in sympy.Add.make_args(expr):
        syms = term.free_symbols
        if len(syms) > 1:
            return False
        parts.setdefault(next(iter(syms)) if syms else None, []).append(term)
    total = Fraction(0)
    for sym, terms in parts.items():
        part = sympy.Add(*terms)
        if sym is None:
            total += Fraction(int(part.p), int(part.q)) if part.is_Rational else 0
            if not part.is_Rational:
                return False
            continue
        low = _part_minimum(part, sym)
        if low is None:
            return False
        total += low
    return total >= 0


def _part_minimum(part: Expr, sym: sympy.Symbol) -> Fraction | None:
    rounding = part.atoms(sympy.floor, sympy.ceiling, sympy.Mod)
    period = 1
    nested = any(r.args[0].has(sympy.floor, sympy.ceiling, sympy.Mod) for r in rounding)
    for r in rounding:
        dens = [int(q.q) for q in r.atoms(sympy.Rational)]
        if isinstance(r, sympy.Mod):
            if not r.args[1].is_Integer:
                return None
            dens.append(int(r.args[1]))
        for q in dens:
            period = period * q if nested else period * q // math.gcd(period, q)
    if period > 4096:
        return None
    smooth = part.replace(sympy.floor, lambda a: a).replace(sympy.ceiling, lambda a: a)
    if smooth.has(sympy.Mod, sympy.Min, sympy.Max):
        return None
    smooth = sympy.expand(smooth)
    if not smooth.is_polynomial(sym) or sympy.degree(smooth, sym) > 1:
        return None
    if smooth.coeff(sym, 1) < 0:
        return None
    try:
        return min(_exact_value(part, {sym: v}) for v in range(1, period + 1))
    except _NotExact:
        return None


class _NotExact(Exception):
    pass


def _exact_value(expr: Expr, env: dict) -> Fraction:
    """``expr`` at integer symbol values, in exact fractions (fast: no SymPy evaluation)."""
    if expr.is_Symbol:
        return Fraction(env[expr])
    if expr.is_Rational:
        return Fraction(int(expr.p), int(expr.q))
    if expr.is_Add:
        return sum((_exact_value(a, env) for a in expr.args), Fraction(0))
    if expr.is_Mul:
        out = Fraction(1)
        for a in expr.args:
            out *= _exact_value(a, env)
        return out
    if isinstance(expr, sympy.floor):
        return Fraction(math.floor(_exact_value(expr.args[0], env)))
    if isinstance(expr, sympy.ceiling):
        return Fraction(math.ceil(_exact_value(expr.args[0], env)))
    if isinstance(expr, sympy.Mod):
        a, b = (_exact_value(v, env) for v in expr.args)
        return a - b * math.floor(a / b)
    if expr.is_Pow and expr.exp.is_Integer and int(expr.exp) >= 0:
        return _exact_value(expr.base, env) ** int(expr.exp)
    raise _NotExact(str(expr))


def _gcd(a: int, b: int) -> int:
    return math.gcd(a, b)


def index_tensor(call: Call, x: TensorInfo, index) -> OpResult:
    items = list(index) if isinstance(index, tuple) else [index]
    if any(it is Ellipsis for it in items):
        e = items.index(Ellipsis)
        fill = x.ndim - (len(items) - 1 - sum(1 for it in items if it is None))
        items = items[:e] + [slice(None)] * fill + items[e + 1:]
    advanced = any(isinstance(it, TensorInfo) for it in items)
    # output pieces in order: (dims' shapes, dims' axes, from an advanced index?)
    pieces: list[tuple[list, list, bool]] = []
    index_shapes: list[tuple[Expr, ...]] = []
    rf = list(x.rf)
    notes: list[str] = []
    const = x.const
    d = 0
    for it in items:
        if it is None:
            pieces.append(([Integer(1)], [None], False))
            continue
        if d >= x.ndim:
            raise RuleError(f"{call.where()}: too many indices")
        a = x.axes[d]
        if isinstance(it, slice):
            tmp = list(x.shape)
            _slice_dim(call, x, d, it, tmp, rf)
            pieces.append(([tmp[d]], [a], False))
        elif isinstance(it, (int, Expr)) and not isinstance(it, bool):
            if a is not None and rf[a] is not None:
                k = sympy.sympify(it)
                k = sympy.expand(x.shape[d] + k) if k.is_Integer and int(k) < 0 else k
                old = known(rf[a])  # the axis is gone: every element reads position k's field

                def at_k(y: Expr, k: Expr = k) -> Expr:
                    return k

                rf[a] = old.compose(at_k, at_k, old.jump, 1)
            if advanced:
                pieces.append(([], [], True))
        elif isinstance(it, TensorInfo):
            index_shapes.append(tuple(it.shape))
            const = const and it.const
            pieces.append(([], [], True))
            if a is not None and rf[a] is not None:
                rf[a] = None
                notes.append("gathers positions of a spatial axis with an index tensor: "
                             "field unknown")
        else:
            raise RuleError(f"{call.where()}: indexing with {type(it).__name__} is not "
                            "supported")
        d += 1
    tail = [(list(x.shape[d:]), list(x.axes[d:]), False)]
    pieces += tail
    shape: list[Expr] = []
    axes: list[int | None] = []
    if advanced:
        bshape = _broadcast_shapes(call, index_shapes)
        where = [k for k, p in enumerate(pieces) if p[2]]
        adjacent = where == list(range(where[0], where[-1] + 1))
        at = where[0] if adjacent else 0
        rest = [p for p in pieces if not p[2]]
        rest.insert(at if adjacent else 0, (list(bshape), [None] * len(bshape), False))
        pieces = rest
    for sh, ax, _ in pieces:
        shape.extend(sh)
        axes.extend(ax)
    y = TensorInfo(tuple(shape), tuple(axes), tuple(rf), const)
    return OpResult(y, kind=Kind.SHAPE, family=Family.SHAPE, notes=notes)


def _broadcast_shapes(call: Call, shapes: list[tuple[Expr, ...]]) -> tuple[Expr, ...]:
    ndim = max((len(s) for s in shapes), default=0)
    out: list[Expr] = []
    for k in range(ndim):
        sizes = [s[k - (ndim - len(s))] for s in shapes if k - (ndim - len(s)) >= 0]
        real = list(dict.fromkeys(sympy.expand(v) for v in sizes if v != 1))
        if len(real) > 1:
            raise RuleError(f"{call.where()}: index shapes do not broadcast: {shapes}")
        out.append(real[0] if real else Integer(1))
    return tuple(out)


@register(operator.getitem, family=Family.SHAPE)
def getitem(call: Call) -> OpResult:
    seq, index = call.args[0], call.args[1]
    if isinstance(seq, TensorInfo):
        return index_tensor(call, seq, index)
    if isinstance(seq, (tuple, list)):
        if isinstance(index, int):
            return OpResult(seq[index], kind=Kind.SHAPE, family=Family.SHAPE)
        if isinstance(index, slice):
            return OpResult(tuple(seq[index]), kind=Kind.SHAPE, family=Family.SHAPE)
    if isinstance(seq, dict):
        return OpResult(seq[index], kind=Kind.SHAPE, family=Family.SHAPE)
    raise RuleError(f"{call.where()}: cannot index {type(seq).__name__} with {index!r}")


# -- roll, gathers -------------------------------------------------------------------------------
@register(torch.roll, "roll", family=Family.SHAPE)
def roll(call: Call) -> OpResult:
    """torch.roll: output element y along a rolled dim reads element (y - shift) mod n."""
    x = call.tensor(0, "input")
    shifts, dims = call.arg(1, "shifts"), call.arg(2, "dims")
    rf = list(x.rf)
    notes: list[str] = []
    if dims is None or (isinstance(dims, (tuple, list)) and len(dims) == 0):
        # rolls the flattened tensor: positions move across rows
        for axis, field in enumerate(rf):
            if field is not None and not field.is_global and x.dim_of_axis(axis) is not None:
                rf[axis] = None
                notes.append("roll of the flattened tensor: field unknown")
        return OpResult(x.with_shape(x.shape, rf=rf), kind=Kind.SHAPE, family=Family.SHAPE,
                        notes=notes)
    shifts = list(shifts) if isinstance(shifts, (tuple, list)) else [shifts]
    dims = list(dims) if isinstance(dims, (tuple, list)) else [dims]
    if len(shifts) != len(dims):
        raise RuleError(f"{call.where()}: shifts and dims differ in length")
    for shift, dim in zip(shifts, dims):
        d = int(dim) % x.ndim
        a = x.axes[d]
        old = rf[a] if a is not None else None
        if a is None or old is None or old.is_global:
            continue
        n, s = x.shape[d], sympy.sympify(shift)
        if s == 0:
            continue
        period = old.period if old.period == 1 else None
        if period is None:
            rf[a] = None
            notes.append("roll of a field that varies with the position: field unknown")
            continue

        def rolled(y: Expr, s: Expr = s, n: Expr = n) -> Expr:
            return sympy.Mod(y - s, n)

        new = old.compose(rolled, rolled, old.jump, 1, monotone=False, periodic=False)
        new.permutation_of = (old, n)  # the union over all positions is unchanged
        rf[a] = new
        notes.append(f"cyclic shift by {s}: element y reads element (y - {s}) mod {n}")
    return OpResult(x.with_shape(x.shape, rf=rf), kind=Kind.SHAPE, family=Family.SHAPE, notes=notes)


def _gather_result(call: Call, x: TensorInfo, index: TensorInfo, d: int,
                   shape: tuple) -> OpResult:
    rf = list(x.rf)
    notes: list[str] = []
    a = x.axes[d]
    if a is not None and (field := rf[a]) is not None and not field.is_global:
        rf[a] = None
        notes.append("gathers positions of a spatial axis with an index tensor: field unknown")
    axes = tuple(x.axes[k] if k != d else None for k in range(len(shape))) \
        if len(shape) == x.ndim else (None,) * len(shape)
    y = TensorInfo(tuple(shape), axes, tuple(rf), x.const and index.const)
    return OpResult(y, kind=Kind.SHAPE, family=Family.SHAPE, notes=notes)


@register(torch.index_select, "index_select", family=Family.SHAPE)
def index_select(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    d = int(call.arg(1, "dim")) % x.ndim
    index = call.tensor(2, "index")
    n = index.numel()
    shape = (*x.shape[:d], sympy.expand(n), *x.shape[d + 1:])
    return _gather_result(call, x, index, d, shape)


@register(torch.gather, "gather", torch.take_along_dim, "take_along_dim", family=Family.SHAPE)
def gather(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    if call.target in (torch.take_along_dim, "take_along_dim"):
        index = call.tensor(1, "indices")
        dim = call.arg(2, "dim")
        if dim is None:
            raise RuleError(f"{call.where()}: take_along_dim without dim is not supported")
        d = int(dim) % x.ndim
        shape = tuple(index.shape[k] if k == d else
                      (x.shape[k] if index.shape[k] == 1 else index.shape[k])
                      for k in range(x.ndim))
    else:
        d = int(call.arg(1, "dim")) % x.ndim
        index = call.tensor(2, "index")
        shape = tuple(index.shape)
    return _gather_result(call, x, index, d, shape)
