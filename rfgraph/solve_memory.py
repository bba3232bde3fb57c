"""Memory questions about a model (``rfgraph solve --max-batch / --max-size --memory 24GiB``).

- :func:`max_batch`: the largest batch N whose total memory fits a budget, the other sizes given.
- :func:`max_size`: the largest input size S (every spatial symbol = S: a square image, a cube
  for 3-D inputs, the length for 1-D) whose total memory fits, the batch given.

The total is the one :mod:`rfgraph.costs` defines, at concrete sizes (exact integers): for
inference ``param_bytes + buffer_bytes + peak`` (the exact peak at those sizes, the max over
every step of the graph order); with ``train=True`` ``Costs.train_total``: parameters, buffers,
gradients, the optimizer's state, the bytes saved for backward and the peak. A size fits when
its total is ``<=`` the budget.

Both answers come from exact evaluation at concrete sizes (doubling from the smallest valid
value, then bisection), and are checked after the search: the answer is re-evaluated (it fits)
and so is the next value (N + 1, or the next size the model accepts: it does not fit).

Monotonicity (what makes "the largest" mean "every smaller value fits as well") is proved when
it can be, and checked otherwise: every peak candidate (and the saved bytes), with the other
sizes substituted, is written per residue class ``S = P·t + r`` (P: the lcm of the
denominators inside its floors and ceilings, which then vanish) as a polynomial in t; the
difference between consecutive sizes, ``f(S + 1) - f(S)``, must have non-negative coefficients
in t (shifted to start at the smallest valid size): then f is non-decreasing there. The answer
says ``monotone="proved"`` when this holds for every term, ``"probes"`` when it could not be
proved but the totals at every evaluated size are in order, ``"violated"`` when they are not
(only for sizes; for the batch that is an error).

So, precisely: :attr:`MaxSize.size` is a size S that the model accepts and that fits, such that
the next size the model accepts after S does not fit; with ``monotone == "proved"`` it is the
largest S such that every accepted size from the smallest accepted one up to S fits (and no
accepted size above S does). :attr:`MaxBatch.batch` is an N that fits with N + 1 not fitting;
with ``monotone == "proved"`` (every model tried) it is the largest N such that every batch
1..N fits, with ``"probes"`` the totals at every evaluated batch were in order.

Usage (docs/solve.md, "Memory budgets")::

    from rfgraph.solve_memory import max_batch, max_size

    max_batch(model, "24GiB", {"H": 224, "W": 224}).batch          # input ("N", 3, "H", "W")
    max_batch(model, 24 * 2**30, "H=224,W=224", train=True, optimizer="sgd")
    max_size(model, "24GiB", 8).sizes                              # {"H": 4084, "W": 4084}
    max_batch(rfgraph.analyze(model, ("N", 3, "H", "W"), costs="memory"), "24GiB", "H=224,W=224")

Every failure is a one-line :class:`RfgraphError`: N = 1 (or the smallest valid size) does not
fit, no symbol can stand for the batch, a memory size that does not parse, missing sizes,
formulas that are not exact (nodes whose bytes are known at the sample sizes only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sympy
from sympy import Expr

from .errors import RfgraphError
from .symbolic import axis_symbol

if TYPE_CHECKING:
    from torch import nn

    from .analysis import Analysis
    from .costs import Costs

__all__ = ["MaxBatch", "MaxSize", "max_batch", "max_size", "nondecreasing"]

#: the largest batch and size tried before giving up ("fits at every size")
_BATCH_CAP = 2 ** 40
_SIZE_CAP = 2 ** 24
#: how far past a size the next size the model accepts is looked for
_SCAN = 4096
#: the longest period (of the floors in the solved size) the monotonicity proof expands
_PERIOD_CAP = 4096
_S = sympy.Symbol("_S", integer=True, positive=True)
_T = sympy.Symbol("_t", integer=True, nonnegative=True)
_ROUNDING = (sympy.floor, sympy.ceiling, sympy.Mod, sympy.Min, sympy.Max, sympy.Piecewise)


# -- the answers -------------------------------------------------------------------------------
@dataclass
class _Fit:
    """What both answers share: the budget, how the total is counted, its parts at the answer."""

    memory: int
    train: bool
    optimizer: str | None
    dtype: str
    input: list[str]
    at: dict[str, int]
    total: int
    parts: dict[str, int | None]
    next_total: int | None
    monotone: str
    evaluations: int
    notes: list[str]

    def _common(self) -> dict[str, Any]:
        return {"memory_bytes": self.memory, "train": self.train, "optimizer": self.optimizer,
                "dtype": self.dtype, "input": self.input, "at": self.at,
                "total_bytes": self.total, **self.parts, "next_total_bytes": self.next_total,
                "monotone": self.monotone, "evaluations": self.evaluations,
                "notes": self.notes}


@dataclass
class MaxBatch(_Fit):
    """The largest batch that fits: :attr:`batch` (its symbol :attr:`symbol`), at the sizes
    :attr:`at`; :attr:`total` bytes there and :attr:`next_total` at ``batch + 1``.
    :attr:`replaced_batch`: the literal batch of the given input shape that was replaced by
    the symbol N."""

    batch: int = 0
    symbol: str = "N"
    replaced_batch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "symbol": self.symbol,
                "replaced_batch": self.replaced_batch, **self._common()}


@dataclass
class MaxSize(_Fit):
    """The largest input size that fits: :attr:`size` (every symbol of :attr:`symbols` takes
    it; :attr:`sizes`: the input's spatial sizes per axis there) at batch :attr:`batch`.
    :attr:`smallest`: the smallest size the model accepts; :attr:`next_size`: the next size
    after :attr:`size` the model accepts (None: none within 4096), whose total is
    :attr:`next_total`; :attr:`skipped`: sizes the search met that the model rejects."""

    size: int = 0
    symbols: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    batch: int = 1
    smallest: int = 1
    next_size: int | None = None
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "symbols": self.symbols, "sizes": self.sizes,
                "batch": self.batch, "smallest_valid": self.smallest,
                "next_size": self.next_size, "skipped": self.skipped, **self._common()}


# -- the analysis ------------------------------------------------------------------------------
def _budget(memory: int | str) -> int:
    from .costs import parse_bytes

    if isinstance(memory, bool):
        raise RfgraphError(f"bad memory size {memory!r}: use e.g. 24GiB, 16GB or 512MiB")
    if isinstance(memory, int):
        if memory < 1:
            raise RfgraphError(f"bad memory size {memory!r}: a number of bytes must be >= 1")
        return memory
    return parse_bytes(memory)


def _batch_shape(shape: Sequence[Expr]) -> tuple[list[Expr], sympy.Symbol, int | None]:
    """The shape with a symbol as batch dim (a literal batch replaced by N), the symbol, and
    the replaced literal (None when the batch already was a symbol)."""
    dims = [sympy.sympify(d) for d in shape]
    first, rest = dims[0], dims[1:]
    used = set().union(*(d.free_symbols for d in rest)) if rest else set()
    if first.is_Integer:
        sym = axis_symbol("N")
        if sym in used:
            raise RfgraphError(f"cannot make the batch a symbol: N already names another "
                               f"input dim ({', '.join(map(str, dims))}); rename it")
        return [sym, *rest], sym, int(first)
    if not isinstance(first, sympy.Symbol):
        raise RfgraphError(f"the batch dim {first} is neither a symbol nor a number")
    if first in used:
        raise RfgraphError(f"the batch symbol {first} also sizes another input dim "
                           f"({', '.join(map(str, dims))}): the batch cannot change alone")
    return dims, first, None


def _dims(model: Any, shape: Sequence[Any] | str | None) -> list[Expr]:
    """The input shape of the question: ``shape``, else the given analysis', else N,3,H,W."""
    from .analysis import Analysis
    from .api import parse_input

    if shape is None:
        shape = model.input_shape if isinstance(model, Analysis) else ("N", 3, "H", "W")
    return [sympy.sympify(d) for d in parse_input(shape)]


def _prepared(model: Any, dims: Sequence[Expr], train: bool, mode: str | None,
              name: str | None) -> tuple[Analysis, Costs | None]:
    """A symbolic analysis of ``model`` on ``dims`` (a given analysis itself when it is one),
    and the costs it had (whose dtype and optimizer are the defaults of the question)."""
    from .analysis import Analysis
    from .api import analyze

    given = model if isinstance(model, Analysis) else None
    if given is None:
        return analyze(model, list(dims), name=name,
                       mode=mode or ("train" if train else "eval")), None
    if tuple(map(sympy.sympify, given.input_shape)) == tuple(dims) and given.at is None:
        return given, given.costs
    if given.graph_module is None:
        raise RfgraphError("this analysis has no traced graph to analyse again")
    return analyze(given.graph_module, list(dims), name=name or given.model_name,
                   mode=mode or given.mode, rules=given.rules), given.costs


def _costed(a: Analysis, prior: Costs | None, train: bool, optimizer: str | None,
            dtype: str | None, sample: Mapping[str, int] | None) -> Analysis:
    """``a`` when its costs answer the question (training costs for ``train``, the dtype and
    optimizer asked), else a copy with those costs; ``sample``: sizes the model accepts, the
    fallback of the cost's meta runs for a model that rejects their sample sizes."""
    from .costs import compute_costs

    c = a.costs
    if c is not None and (c.train or not train) and dtype in (None, c.dtype) \
            and (not train or optimizer in (None, c.optimizer)):
        return a
    out = a.with_at(None)  # a copy: a given analysis is not changed
    kinds = ("memory", "train") if train else ("memory",)
    base = prior.optimizer if prior is not None and prior.train else "adam"
    out.costs = compute_costs(out, kinds, dtype or (prior.dtype if prior else None),
                              optimizer or base, sample)
    return out


def _accepted(a: Analysis, sizes: Mapping[str, int]) -> Analysis | str:
    """``a`` evaluated at ``sizes``, or why the model rejects them (the symbolic checks first:
    they reject most sizes without re-running the rules of nodes that need concrete sizes)."""
    try:
        a.with_at(dict(sizes)).check_sizes()
        return a.evaluate(**sizes)
    except RfgraphError as exc:
        return str(exc)


def _check_exact(costs: Costs, train: bool) -> None:
    numeric = [n for n, c in costs.nodes.items() if c.out_bytes is None]
    if numeric:
        raise RfgraphError(f"the output bytes of {len(numeric)} node(s) ({', '.join(numeric[:3])}"
                           f"{', ...' if len(numeric) > 3 else ''}) are not formulas of the "
                           "input sizes (measured at the sample sizes only): the memory "
                           "cannot be solved for exactly")
    if train and costs.saved_total is None:
        bad = [n for n, c in costs.nodes.items() if c.saved_bytes is None]
        raise RfgraphError(f"the bytes {len(bad)} node(s) ({', '.join(bad[:3])}"
                           f"{', ...' if len(bad) > 3 else ''}) save for backward are not "
                           "formulas of the input sizes: the training memory cannot be solved "
                           "for exactly")


def _fixed_sizes(a: Analysis, at: Mapping[str, int] | str | None) -> dict[str, int]:
    from .api import parse_at

    sizes = parse_at(at) or {}
    for k, v in sizes.items():
        if k not in a.symbols:
            raise RfgraphError(f"unknown size {k}={v}: the input symbols are "
                               f"{', '.join(a.symbols) or 'none'}")
        if v < 1:
            raise RfgraphError(f"size {k}={v} must be a positive integer")
    return sizes


# -- totals at concrete sizes ------------------------------------------------------------------
@dataclass
class _Point:
    total: int
    parts: dict[str, int | None]


class _Totals:
    """The exact total at concrete sizes (memoised); None when the model rejects them."""

    def __init__(self, a: Analysis, train: bool) -> None:
        assert a.costs is not None
        self.a, self.costs, self.train = a, a.costs, train
        self.seen: dict[tuple[tuple[str, int], ...], _Point | None] = {}
        #: the message of the last size the model rejected
        self.rejected: str | None = None

    def __call__(self, sizes: Mapping[str, int]) -> _Point | None:
        key = tuple(sorted(sizes.items()))
        if key in self.seen:
            return self.seen[key]
        e = _accepted(self.a, sizes)
        if isinstance(e, str):
            self.rejected = e
            self.seen[key] = None
            return None
        c = self.costs
        peak = c.peak_at(e.value_of)
        if peak is None:
            raise RfgraphError("the peak memory is not a formula: some nodes' bytes are known "
                               "at the sample sizes only (see the costs notes of "
                               "`rfgraph analyze --costs memory`)")
        parts: dict[str, int | None] = {"param_bytes": c.param_bytes,
                                        "buffer_bytes": c.buffer_bytes, "peak_bytes": peak,
                                        "saved_bytes": None, "optimizer_bytes": None}
        total = c.param_bytes + c.buffer_bytes + peak
        if self.train:
            assert c.saved_total is not None
            saved = e.int_of(c.saved_total)
            if saved is None:
                raise RfgraphError(f"the saved bytes have no value at {dict(sizes)}")
            parts.update(saved_bytes=saved, optimizer_bytes=c.optimizer_bytes)
            train_total = c.train_total(peak)
            value = e.int_of(train_total) if train_total is not None else None
            if value is None or value != total + c.optimizer_bytes + saved:  # pragma: no cover
                raise RfgraphError("internal check failed: the training total")
            total = value
        point = _Point(total, parts)
        self.seen[key] = point
        return point

    def terms(self) -> list[Expr]:
        """The formulas whose monotonicity makes the total's: peak candidates, saved bytes."""
        out = list(self.costs.peak_candidates)
        if self.train and self.costs.saved_total is not None:
            out.append(self.costs.saved_total)
        return out


def _ordered(points: Sequence[tuple[int, int]]) -> tuple[int, int, int, int] | None:
    """The first pair of evaluated (value, total) whose totals are out of order, else None."""
    pts = sorted(points)
    for (v0, t0), (v1, t1) in zip(pts, pts[1:]):
        if t1 < t0:
            return v0, t0, v1, t1
    return None


# -- monotonicity ------------------------------------------------------------------------------
def _period(exprs: Sequence[Expr]) -> int | None:
    """lcm of the denominators inside the floors/ceilings (and moduli) of ``exprs`` in _S."""
    out = 1
    for e in exprs:
        for atom in e.atoms(sympy.floor, sympy.ceiling, sympy.Mod):
            parts = [atom.args[0]] + ([atom.args[1]] if isinstance(atom, sympy.Mod) else [])
            for p in parts:
                _, den = sympy.fraction(sympy.together(p))
                if not den.is_Integer:
                    return None
                out = math.lcm(out, int(den))
            if isinstance(atom, sympy.Mod):
                if not atom.args[1].is_Integer:
                    return None
                out = math.lcm(out, int(atom.args[1]))
    return out


# polynomials in t as lists of integer coefficients, lowest degree first
_Poly = list[int]


def _mul(p: _Poly, q: _Poly) -> _Poly:
    out = [0] * (len(p) + len(q) - 1)
    for i, x in enumerate(p):
        for j, y in enumerate(q):
            out[i + j] += x * y
    return out


def _add(p: _Poly, q: _Poly, sign: int = 1) -> _Poly:
    out = [0] * max(len(p), len(q))
    for i, x in enumerate(p):
        out[i] += x
    for i, y in enumerate(q):
        out[i] += sign * y
    return out


def _shift(p: _Poly, c: int) -> _Poly:
    """p(t + c) (Horner)."""
    out: _Poly = [0]
    for x in reversed(p):
        out = _add(_mul(out, [c, 1]), [x])
    return out


def _coeffs(e: Expr) -> _Poly | None:
    """``e`` (a formula of t) as integer coefficients, or None when a rounding is left in it
    (or a coefficient is not an integer: not expected once the floors are gone)."""
    if e.has(*_ROUNDING) or not e.is_polynomial(_T):
        return None
    coeffs = sympy.Poly(e, _T).all_coeffs()
    if not all(c.is_Integer for c in coeffs):
        return None
    return [int(c) for c in reversed(coeffs)]


def _generators_per_residue(atoms: Sequence[Expr], period: int) -> list[list[_Poly]] | None:
    """Per residue r, ``_S`` and every floor/ceiling/Mod atom at ``_S = period·t + r`` as a
    polynomial in t (None when one keeps a rounding: the period is too short)."""
    out = []
    for r in range(period):
        row: list[_Poly] = [[r, period]]
        for atom in atoms:
            got = _coeffs(sympy.expand(atom.xreplace({_S: period * _T + r})))
            if got is None:
                return None
            row.append(got)
        out.append(row)
    return out


def _at_residue(term: list[tuple[tuple[int, ...], int]], gens: list[_Poly]) -> _Poly:
    out: _Poly = [0]
    powers: dict[tuple[int, int], _Poly] = {}
    for monom, coeff in term:
        value: _Poly = [coeff]
        for i, k in enumerate(monom):
            if k:
                if (i, k) not in powers:
                    pk: _Poly = [1]
                    for _ in range(k):
                        pk = _mul(pk, gens[i])
                    powers[(i, k)] = pk
                value = _mul(value, powers[(i, k)])
        out = _add(out, value)
    return out


def nondecreasing(exprs: Sequence[Expr], var: sympy.Symbol, start: int = 1) -> bool:
    """True when it is proved that every expression (a formula of ``var`` alone) is
    non-decreasing over the integers ``>= start``: written per residue class
    ``var = P·t + r`` as polynomials in t (P: the lcm of the denominators inside the floors,
    doubled while a nested one is left), ``f(v + 1) - f(v)`` has non-negative coefficients
    once t is shifted to start at ``start``. False: not proved (not necessarily not monotone).

    Exact: each expression is a polynomial in ``var`` and its floor/ceiling/Mod atoms
    (SymPy's ``Poly`` with those generators), each atom per residue class a polynomial in t
    (SymPy), and the rest is integer arithmetic on coefficient lists."""
    terms = []
    for e in exprs:
        e = sympy.sympify(e)
        if e.free_symbols - {var}:
            return False
        if e.free_symbols:
            terms.append(e.xreplace({var: _S}))
    terms = list(dict.fromkeys(terms))
    if not terms:
        return True
    if any(t.has(sympy.Min, sympy.Max, sympy.Piecewise) for t in terms):
        return False
    atoms = sorted(set().union(*(t.atoms(sympy.floor, sympy.ceiling, sympy.Mod)
                                 for t in terms)), key=sympy.default_sort_key)
    try:
        monoms = [sympy.Poly(t, _S, *atoms).terms() for t in terms]
    except sympy.PolynomialError:
        return False  # e.g. an atom in a denominator
    if not all(c.is_Rational for m in monoms for _, c in m):
        return False
    # each term times the lcm of its denominators (> 0: the signs below do not change)
    scale = [math.lcm(*(int(c.q) for _, c in m)) for m in monoms]
    polys = [[(e, int(c * k)) for e, c in m] for m, k in zip(monoms, scale, strict=True)]
    period = _period(terms)
    gens = None
    while period is not None and period <= _PERIOD_CAP and gens is None:
        gens = _generators_per_residue(atoms, period)
        if gens is None:
            period *= 2
    if gens is None or period is None:
        return False
    rows = [[_at_residue(t, g) for t in polys] for g in gens]
    for r in range(period):
        t0 = max(0, -(-(start - r) // period))
        for k in range(len(terms)):
            nxt = rows[r + 1][k] if r + 1 < period else _shift(rows[0][k], 1)
            if any(c < 0 for c in _shift(_add(nxt, rows[r][k], -1), t0)):
                return False
    return True


def _proved(tot: _Totals, fixed: Mapping[str, int], solved: Sequence[str], start: int) -> bool:
    var = sympy.Symbol("_v", integer=True, positive=True)
    subs: dict[Any, Any] = {axis_symbol(k): sympy.Integer(v) for k, v in fixed.items()}
    subs.update({axis_symbol(s): var for s in solved})
    return nondecreasing([sympy.sympify(e).xreplace(subs) for e in tot.terms()], var, start)


# -- the questions -----------------------------------------------------------------------------
def max_batch(model: nn.Module | Analysis, memory: int | str,
              at: Mapping[str, int] | str | None = None, *,
              input_shape: Sequence[int | str] | str | None = None, train: bool = False,
              optimizer: str | None = None, dtype: str | None = None, mode: str | None = None,
              name: str | None = None) -> MaxBatch:
    """The largest batch N whose total memory fits ``memory`` (bytes, or ``"24GiB"``) at the
    sizes ``at`` (every input symbol but the batch, e.g. ``{"H": 224, "W": 224}``).

    ``model``: a module (analysed here, ``input_shape`` default ``("N", 3, "H", "W")``, in
    ``mode`` default ``"train"`` with ``train`` else ``"eval"``) or an :class:`Analysis` (its
    costs are used when they fit the question, else computed again). A literal batch in the
    input shape is replaced by the symbol N (:attr:`MaxBatch.replaced_batch`). ``train``:
    count training memory (``Costs.train_total``) with ``optimizer`` (sgd, momentum, adam;
    default adam). ``dtype``: float32, float16, bfloat16, float64 (default: the model's).
    """
    budget = _budget(memory)
    dims, sym, replaced = _batch_shape(_dims(model, input_shape))
    a, prior = _prepared(model, dims, train, mode, name)
    fixed = _fixed_sizes(a, at)
    if sym.name in fixed:
        raise RfgraphError(f"{sym.name} is the batch being solved for: leave it out of the "
                           "sizes")
    missing = [s for s in a.symbols if s != sym.name and s not in fixed]
    if missing:
        raise RfgraphError("the batch is solved at given sizes: give "
                           f"{', '.join(missing)} (e.g. --at "
                           f"{','.join(s + '=224' for s in missing)})")
    a = _costed(a, prior, train, optimizer, dtype, {**fixed, sym.name: 1})
    assert a.costs is not None
    _check_exact(a.costs, train)
    tot = _Totals(a, train)
    probes: list[tuple[int, int]] = []

    def point(n: int) -> _Point:
        got = tot({**fixed, sym.name: n})
        if got is None:
            raise RfgraphError(f"the model rejects batch {sym.name}={n}: {tot.rejected}")
        probes.append((n, got.total))
        return got

    first = point(1)
    if first.total > budget:
        raise RfgraphError(f"even {sym.name}=1 does not fit: {_bytes(first.total)} "
                           f"({first.total:,} B) > {_bytes(budget)} ({budget:,} B)"
                           f"{_at_text(fixed)}")
    lo, hi = 1, 2
    while point(hi).total <= budget:
        lo, hi = hi, hi * 2
        if hi > _BATCH_CAP:
            raise RfgraphError(f"every batch up to {_BATCH_CAP} fits in {_bytes(budget)}: "
                               "the total does not grow with the batch")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if point(mid).total <= budget:
            lo = mid
        else:
            hi = mid
    ans, nxt = point(lo), point(lo + 1)
    if ans.total > budget or nxt.total <= budget:  # pragma: no cover - the search's invariant
        raise RfgraphError("internal check failed: the batch search")
    proved = _proved(tot, fixed, [sym.name], 1)
    bad = _ordered(probes)
    if bad is not None:
        raise RfgraphError(f"the total is not monotone in {sym.name}: {sym.name}={bad[0]} "
                           f"gives {bad[1]:,} B, {sym.name}={bad[2]} gives {bad[3]:,} B")
    notes = []
    if replaced is not None:
        notes.append(f"the input's batch {replaced} was replaced by the symbol N")
    c = a.costs
    return MaxBatch(budget, train, c.optimizer if train else None, c.dtype,
                    [str(d) for d in a.input_shape], fixed, ans.total, ans.parts, nxt.total,
                    "proved" if proved else "probes", len(tot.seen), notes,
                    batch=lo, symbol=sym.name, replaced_batch=replaced)


def max_size(model: nn.Module | Analysis, memory: int | str, batch: int | None = None, *,
             input_shape: Sequence[int | str] | str | None = None,
             at: Mapping[str, int] | str | None = None, train: bool = False,
             optimizer: str | None = None, dtype: str | None = None, mode: str | None = None,
             name: str | None = None) -> MaxSize:
    """The largest input size S whose total memory fits ``memory`` at batch ``batch``
    (default: the input's literal batch, else 1), every spatial symbol of the input not fixed
    by ``at`` taking the value S (a square image for ``N,3,H,W``). Sizes the model rejects are
    skipped. ``model``, ``input_shape``, ``train``, ``optimizer``, ``dtype``, ``mode``: as for
    :func:`max_batch`. The exact meaning of the answer is in the module docstring."""
    budget = _budget(memory)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)
                              or batch < 1):
        raise RfgraphError(f"the batch must be a positive integer, not {batch!r}")
    dims = _dims(model, input_shape)
    sym: sympy.Symbol | None = None
    replaced = None
    if not (dims[0].is_Integer and batch in (None, int(dims[0]))):
        dims, sym, replaced = _batch_shape(dims)  # the batch becomes a symbol set to ``batch``
    a, prior = _prepared(model, dims, train, mode, name)
    fixed = _fixed_sizes(a, at)
    notes = []
    if sym is not None:
        if sym.name in fixed:
            raise RfgraphError(f"{sym.name} is the batch: give it as the batch (--batch), "
                               "not as a size")
        fixed[sym.name] = batch or replaced or 1
        if replaced is not None:
            notes.append(f"the input's batch {replaced} was replaced by {fixed[sym.name]}")
    n = int(sympy.sympify(a.input_shape[0]).xreplace(
        {axis_symbol(k): v for k, v in fixed.items()}))
    spatial = set().union(*(sympy.sympify(d).free_symbols for d in a.input_shape[2:]))
    solved = sorted(s.name for s in spatial if s.name not in fixed)
    if not solved:
        raise RfgraphError("no spatial size to solve for: the input has "
                           + ("no spatial dims" if a.n_spatial == 0 else
                              "no free spatial symbol (they are numbers or given sizes)"))
    missing = [s for s in a.symbols if s not in fixed and s not in solved]
    if missing:
        raise RfgraphError(f"the size is solved at given other sizes: give {', '.join(missing)}"
                           f" (e.g. --at {','.join(s + '=8' for s in missing)})")
    skipped: dict[int, str | None] = {}
    start = _lower_bound(a, solved)
    s0 = None
    for size in range(start, start + _SCAN):  # the smallest accepted size (before costs)
        why = _accepted(a, {**fixed, **dict.fromkeys(solved, size)})
        if not isinstance(why, str):
            s0 = size
            break
        skipped[size] = why
    if s0 is None:
        raise RfgraphError(f"the model accepts no size {'='.join(solved)} in "
                           f"{start}..{start + _SCAN - 1}: {skipped[start + _SCAN - 1]}")
    a = _costed(a, prior, train, optimizer, dtype, {**fixed, **dict.fromkeys(solved, s0)})
    assert a.costs is not None
    _check_exact(a.costs, train)
    tot = _Totals(a, train)
    probes: list[tuple[int, int]] = []

    def point(s: int) -> _Point | None:
        got = tot({**fixed, **dict.fromkeys(solved, s)})
        if got is None:
            skipped.setdefault(s, tot.rejected)
        else:
            probes.append((s, got.total))
        return got

    def next_valid(s: int, below: int | None = None) -> int | None:
        for v in range(s, below if below is not None else s + _SCAN):
            if point(v) is not None:
                return v
        return None

    p0 = point(s0)
    assert p0 is not None
    where = f" at batch {n}" + "".join(f", {k}={v}" for k, v in fixed.items()
                                       if k != _name(sym))
    if p0.total > budget:
        raise RfgraphError(f"even the smallest valid size {'='.join(solved)}={s0} does not "
                           f"fit{where}: {_bytes(p0.total)} ({p0.total:,} B) > "
                           f"{_bytes(budget)} ({budget:,} B)")
    lo, top = s0, None  # lo: accepted and fits; top: accepted and does not fit
    probe = 2 * s0
    while top is None:  # doubling
        v = next_valid(probe)
        if v is None:
            if next_valid(lo + 1, min(probe, lo + 1 + _SCAN)) is None:
                break  # no other accepted size past lo: lo is the answer
            raise RfgraphError(f"the model accepts no size in {probe}..{probe + _SCAN - 1}: "
                               "cannot bracket the answer")
        pv = point(v)
        assert pv is not None
        if pv.total > budget:
            top = v
        else:
            lo, probe = v, 2 * v
            if probe > _SIZE_CAP:
                raise RfgraphError(f"every size up to {_SIZE_CAP} fits in {_bytes(budget)}")
    if top is not None:
        hi = top  # bisection on "the next accepted size >= s fits", false at hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            v = next_valid(mid, hi)
            pv = point(v) if v is not None else None
            if v is not None and pv is not None and pv.total <= budget:
                lo = v
            else:
                hi = mid
    ans = point(lo)
    nxt_size = next_valid(lo + 1, top + 1 if top is not None else None)
    nxt = point(nxt_size) if nxt_size is not None else None
    assert ans is not None
    if ans.total > budget or (nxt is not None and nxt.total <= budget):  # pragma: no cover
        raise RfgraphError("internal check failed: the size search")
    if nxt_size is None:
        notes.append(f"no other size in {lo + 1}..{lo + _SCAN} is accepted by the model")
    monotone = "proved" if _proved(tot, fixed, solved, s0) else "probes"
    bad = _ordered(probes)
    if bad is not None and monotone == "proved":  # pragma: no cover
        raise RfgraphError("internal check failed: a total proved monotone is not")
    if bad is not None:
        monotone = "violated"
        notes.append(f"the total is not monotone in the size: {bad[0]} gives {bad[1]:,} B, "
                     f"{bad[2]} gives {bad[3]:,} B; the answer fits and the next accepted "
                     "size does not, but a smaller size may not fit")
    if skipped:
        first = min(skipped)
        notes.append(f"{len(skipped)} size(s) the model rejects were skipped "
                     f"(e.g. {first}: {skipped[first]})")
    env = {axis_symbol(k): v for k, v in {**fixed, **dict.fromkeys(solved, lo)}.items()}
    sizes = {ax: int(sympy.sympify(d).xreplace(env))
             for ax, d in zip(a.axis_names, a.input_shape[2:], strict=True)}
    c = a.costs
    return MaxSize(budget, train, c.optimizer if train else None, c.dtype,
                   [str(d) for d in a.input_shape],
                   {k: v for k, v in fixed.items() if k != _name(sym)}, ans.total, ans.parts,
                   nxt.total if nxt is not None else None, monotone, len(tot.seen), notes,
                   size=lo, symbols=solved, sizes=sizes, batch=n, smallest=s0,
                   next_size=nxt_size, skipped=len(skipped))


def _name(sym: sympy.Symbol | None) -> str | None:
    return sym.name if sym is not None else None


def _lower_bound(a: Analysis, solved: Sequence[str]) -> int:
    """The largest per-axis smallest valid size (other axes large) over the solved axes: no
    square size below it is accepted (sizes grow with the input). 1 when unknown."""
    from .solve import min_input

    try:
        mins = min_input(a)
    except RfgraphError:
        return 1
    out = 1
    for x in mins.axes:
        if x.axis in solved and x.value is not None:
            out = max(out, x.with_conditions or x.value)
    return out


def _bytes(n: int) -> str:
    from .cost_report import format_bytes

    return format_bytes(n)


def _at_text(sizes: Mapping[str, int]) -> str:
    return f" at {', '.join(f'{k}={v}' for k, v in sizes.items())}" if sizes else ""
