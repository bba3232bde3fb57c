"""Input sizes for verify: the sizes it checks at (:func:`choose_sizes`) and the search for a
size the analysis accepts near a wanted one (:class:`_SizeSearch`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import sympy

from ..errors import RfgraphError
from ..symbolic import axis_symbol
from .report import _fmt_sizes

if TYPE_CHECKING:
    from ..analysis import Analysis

def _valid(analysis: Analysis, sizes: Mapping[str, int]) -> bool:
    try:
        analysis.evaluate(**sizes)
    except RfgraphError:
        return False
    return True


def _roles(analysis: Analysis) -> dict[str, int | None]:
    """symbol -> spatial axis index (None for batch/channel symbols)."""
    roles: dict[str, int | None] = {}
    for d, dim in enumerate(analysis.input_shape):
        for s in sorted(sympy.sympify(dim).free_symbols, key=lambda s: s.name):
            if s.name not in roles or roles[s.name] is None:
                roles[s.name] = d - 2 if d >= 2 else None
    return roles


_PRIMES = [p for p in range(2, 5000) if all(p % q for q in range(2, int(p ** 0.5) + 1))]


def _next_prime(n: int, k: int = 0) -> int:
    ps = [p for p in _PRIMES if p >= n]
    return ps[min(k, len(ps) - 1)]


def choose_sizes(analysis: Analysis) -> list[dict[str, int]]:
    """A typical size (224, or D=16 x 112 x 112 in 3-D), an odd/prime one (97 x 131) and the
    smallest valid one, each moved to the nearest size rfgraph accepts; duplicates dropped."""
    syms = analysis.symbols
    if not syms:
        return [{}]
    roles = _roles(analysis)
    nd = analysis.n_spatial

    def typical(s: str) -> int:
        a = roles.get(s)
        if a is None:
            return 2
        if nd == 3:
            return 16 if a == 0 else 112
        return 224

    def prime(s: str, k: int) -> int:
        a = roles.get(s)
        if a is None:
            return _next_prime(3, k)
        base = {1: (97,), 2: (97, 131), 3: (13, 61, 67)}.get(nd, (97, 131, 61))
        return _next_prime(base[a % len(base)], k)

    found: list[dict[str, int]] = []
    search = _SizeSearch(analysis)  # axes moved one by one when a common step finds nothing
    for k in range(65):
        cand = {s: typical(s) + k for s in syms}
        if _valid(analysis, cand):
            found.append(cand)
            break
    else:
        near = search.find({s: typical(s) for s in syms})
        if near is not None:
            found.append(near)
    for k in range(30):
        cand = {s: prime(s, k) for s in syms}
        if _valid(analysis, cand):
            found.append(cand)
            break
    else:
        near = search.find({s: prime(s, 0) for s in syms})
        if near is not None:
            found.append(near)
    smallest = _smallest(analysis, syms)
    if smallest is None:
        smallest = search.find(dict.fromkeys(syms, 1))
    if smallest is not None:
        found.append(smallest)
    unique = []
    for f in found:
        if f not in unique:
            unique.append(f)
    if not unique:
        raise RfgraphError("verify could not find an input size the model accepts; pass "
                           "sizes with --at (e.g. --at H=224,W=224)")
    return unique


def _smallest(analysis: Analysis, syms: list[str]) -> dict[str, int] | None:
    def ok(n: int, only: str | None = None, base: int = 0) -> bool:
        if only is None:
            return _valid(analysis, dict.fromkeys(syms, n))
        sizes = dict.fromkeys(syms, base)
        sizes[only] = n
        return _valid(analysis, sizes)

    def first(pred: Callable[[int], bool], hi_cap: int = 4096) -> int | None:
        from ..analysis import smallest_true

        return smallest_true(pred, cap=hi_cap)

    n0 = first(ok)
    if n0 is None:
        return None
    sizes: dict[str, int] = {}
    for s in syms:
        def alone(n: int, s: str = s, n0: int = n0) -> bool:
            return n >= n0 or ok(n, s, n0)

        m = first(alone, hi_cap=n0)
        sizes[s] = m if m is not None else n0
    if _valid(analysis, sizes):
        return sizes
    return dict.fromkeys(syms, n0)


class _SizeSearch:
    """Finds sizes the analysis accepts near a wanted size, axis by axis.

    The min sizes and conditions that involve one symbol alone (``H - 3 >= 1``, ``Mod(H + 1, 2)
    = 0``) are tested directly on their formulas (cheap); a candidate combination is then
    confirmed with :meth:`Analysis.evaluate` (conditions that couple axes, size-dependent
    parts)."""

    def __init__(self, analysis: Analysis) -> None:
        self.a = analysis
        self.mins: dict[str, list[sympy.Basic]] = {}
        self.conds: dict[str, list[sympy.Basic]] = {}
        self._memo: dict[tuple[str, int], bool] = {}
        for node in analysis.nodes:
            for expr, _ in node.min_sizes:
                self._add(self.mins, expr)
            for cond in node.conditions:
                self._add(self.conds, cond)

    @staticmethod
    def _add(table: dict[str, list[sympy.Basic]], expr: object) -> None:
        expr = sympy.sympify(expr)
        free: set[sympy.Symbol] = getattr(expr, "free_symbols", set())
        if len(free) == 1:
            (sym,) = free
            bucket = table.setdefault(sym.name, [])
            if expr not in bucket:
                bucket.append(expr)

    def _holds(self, sym: str, n: int, table: dict[str, list[sympy.Basic]], kind: str,
               ) -> bool:
        for expr in table.get(sym, ()):
            value = expr.xreplace({s: sympy.Integer(n) for s in expr.free_symbols})
            if kind == "min" and value.is_Integer and int(value) < 1:
                return False
            if kind == "cond" and value is sympy.false:
                return False
        return True

    def axis_ok(self, sym: str, n: int) -> bool:
        """Every single-axis min size and condition of ``sym`` holds at ``n``."""
        key = (sym, n)
        if key not in self._memo:
            self._memo[key] = (self._holds(sym, n, self.conds, "cond")
                               and self._holds(sym, n, self.mins, "min"))
        return self._memo[key]

    def values(self, sym: str, start: int, count: int = 6, span: int = 1024) -> list[int]:
        """The first ``count`` sizes n >= start (up to start + span) that pass :meth:`axis_ok`."""
        out: list[int] = []
        n = max(1, start)
        while len(out) < count and n <= start + span:
            if self.axis_ok(sym, n):
                out.append(n)
            n += 1
        return out

    def find(self, base: Mapping[str, int], vary: Sequence[str] | None = None,
             tries: int = 40) -> dict[str, int] | None:
        """A size the analysis accepts: ``base`` with the symbols in ``vary`` (default: all)
        moved up as little as possible (candidates in order of the sum of their ranks)."""
        base = {k: int(v) for k, v in base.items()}
        vary = [s for s in (self.a.symbols if vary is None else vary) if s in base]
        choices = [self.values(s, base[s]) for s in vary]
        if any(not c for c in choices):
            return None
        combos = sorted(itertools.product(*(range(len(c)) for c in choices)),
                        key=lambda ranks: (sum(ranks), ranks))
        for ranks in combos[:tries]:
            trial = dict(base)
            trial.update({s: c[r] for s, c, r in zip(vary, choices, ranks)})
            if _valid(self.a, trial):
                return trial
        return None



def _input_shape(analysis: Analysis, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """The concrete input shape of ``analysis`` at ``sizes``."""
    subs = {axis_symbol(k): sympy.Integer(v) for k, v in sizes.items()}
    shape = []
    for d in analysis.input_shape:
        v = sympy.sympify(sympy.sympify(d).xreplace(subs))
        if not v.is_Integer:
            raise RfgraphError(f"input dim {d} has no value at {_fmt_sizes(sizes)}")
        shape.append(int(v))
    return tuple(shape)

