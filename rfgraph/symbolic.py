"""Integer arithmetic on SymPy expressions that stays compact.

Every size in rfgraph is an integer-valued SymPy expression of the input symbols (N, C, D, H, W,
L, or any name the user gives). Layers divide sizes with floor or ceiling; stacked layers would give
nested floors that SymPy never collapses by itself (`simplify` does not help and is slow). The
functions here apply, bottom-up, the identity

    floor((floor(G/a) + c) / b) = floor((G + c*a) / (a*b))   (G, c integers; a, b positive)

and its ceiling twin, and write every floor in a canonical form (``ceiling(H/32)`` rather than
``floor((H + 31)/32)``), so that ResNet-50's final map size is ``ceiling(H/32)`` rather than five
nested floors. Nothing here calls ``sympy.simplify``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from fractions import Fraction

import sympy
from sympy import Add, Expr, Integer, Max, Min, Rational, ceiling, floor

__all__ = [
    "Y",
    "axis_symbol",
    "ceildiv",
    "floordiv",
    "format_expr",
    "is_int_valued",
    "normalize",
    "parse_dim",
    "subs_int",
    "to_int",
]

#: Dummy index of an output element along one axis (receptive-field maps are functions of it).
Y = sympy.Symbol("y", integer=True, nonnegative=True)

_SYMBOLS: dict[str, sympy.Symbol] = {}


def axis_symbol(name: str) -> sympy.Symbol:
    """The positive integer symbol called ``name`` (one object per name)."""
    if name not in _SYMBOLS:
        _SYMBOLS[name] = sympy.Symbol(name, integer=True, positive=True)
    return _SYMBOLS[name]


def parse_dim(value: int | str | Expr) -> Expr:
    """An input dimension: a positive int, a symbol name ('H') or a SymPy expression."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool):
        raise ValueError(f"bad dimension {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"dimension must be positive, got {value}")
        return Integer(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return parse_dim(int(text))
    if not text.isidentifier():
        raise ValueError(f"bad dimension {value!r}: use a positive integer or a name like H")
    return axis_symbol(text)


def is_int_valued(expr: Expr) -> bool:
    """True when SymPy can tell that ``expr`` is an integer for every value of its symbols."""
    return bool(sympy.sympify(expr).is_integer)


def _int_coeff_gcd(expr: Expr) -> int:
    """gcd of the integer coefficients of the terms of ``expr`` (0 when a coefficient is not an
    integer)."""
    g = 0
    for term in Add.make_args(expr):
        coeff, _ = term.as_coeff_Mul()
        if not coeff.is_Integer:
            return 1
        g = math.gcd(g, int(coeff))
    return g


def _canonical_floor(num: Expr, den: int) -> Expr:
    """floor(num/den) for an integer-valued ``num`` and a positive int ``den``, canonical form."""
    if den == 1:
        return num
    const, rest = num.as_coeff_Add()
    if not const.is_Integer:  # keep going with a safe form
        return floor(num / den)
    const = int(const)
    if rest == 0:
        return Integer(const // den)
    g = math.gcd(_int_coeff_gcd(rest), den)
    if g > 1:  # floor((g*R + c)/(g*a)) = floor((R + floor(c/g))/a)
        rest = sympy.expand(rest / g)
        const = const // g
        den //= g
        if den == 1:
            return rest + const
    q, r = divmod(const, den)
    # the canonical forms below are already simplified: skip SymPy's (slow, assumption-heavy)
    # floor.eval; substituting numbers later evaluates them as usual
    if r == 0:
        return floor(rest / den, evaluate=False) + q
    if r == den - 1:
        return ceiling(rest / den, evaluate=False) + q
    return floor((rest + const) / den, evaluate=False)


def fraction_of(arg: Expr) -> tuple[Expr, Expr]:
    """``arg`` as (numerator, denominator), expanded: ``(H + 6)/8`` -> ``(H + 6, 8)``.

    The common case, a sum of terms with rational coefficients and no symbolic denominators,
    takes the lcm of the coefficients' denominators; anything else goes through SymPy's
    ``together`` (which costs ~0.5 ms a call, and printing a formula calls this per floor)."""
    arg = sympy.sympify(arg)
    den = 1
    for term in Add.make_args(arg):
        coeff, core = term.as_coeff_Mul()
        if not coeff.is_Rational:
            break
        if any(not (f.as_base_exp()[1].is_Integer and f.as_base_exp()[1] > 0)
               or f.is_Rational for f in sympy.Mul.make_args(core) if f is not sympy.S.One):
            break
        den = den * int(coeff.q) // math.gcd(den, int(coeff.q))
    else:
        return sympy.expand(arg * den), Integer(den)
    num, d = sympy.fraction(sympy.together(arg))
    return sympy.expand(num), d


def _as_int_fraction(arg: Expr) -> tuple[Expr, int] | None:
    """Write ``arg`` as G/a with G integer-valued and a a positive int, or None."""
    num, den = fraction_of(arg)
    if not den.is_Integer or int(den) <= 0:
        return None
    num = sympy.expand(num)
    if not is_int_valued(num):
        return None
    return num, int(den)


def _split_floor_terms(expr: Expr) -> tuple[list[tuple[int, Expr]], Expr]:
    """Split an Add into (integer coefficient, floor/ceiling/Min/Max term) pairs and the rest."""
    special: list[tuple[int, Expr]] = []
    rest: list[Expr] = []
    for term in Add.make_args(expr):
        coeff, core = term.as_coeff_Mul()
        if coeff.is_Integer and isinstance(core, (floor, ceiling, Min, Max)):
            special.append((int(coeff), core))
        else:
            rest.append(term)
    return special, Add(*rest)


#: (token, symbol -> Integer) while :func:`numeric_at` is active: floordiv/ceildiv of a
#: formula whose every symbol has a value return that number (no canonical form is built)
_NUMERIC: list[tuple[int, dict]] = []
_TOKENS = itertools.count()


@contextmanager
def numeric_at(values: Mapping[sympy.Symbol, int]) -> Iterator[int]:
    """Within: the floor/ceil divisions of formulas are computed at ``values`` (a number, not
    a formula). Used to evaluate position-dependent fields at concrete sizes without building
    their symbolic forms first; yields a token that names these values for caches."""
    token = next(_TOKENS)
    _NUMERIC.append((token, {k: Integer(v) for k, v in values.items()}))
    try:
        yield token
    finally:
        _NUMERIC.pop()


def numeric_values() -> tuple[int, dict] | None:
    """(token, values) of the innermost :func:`numeric_at`, or None."""
    return _NUMERIC[-1] if _NUMERIC else None


def clear_caches() -> None:
    """Forget every memoised formula: SymPy's cache and rfgraph's own (benchmarks call this so
    that each run pays the cost of a first analysis)."""
    sympy.core.cache.clear_cache()
    _floordiv.cache_clear()


def floordiv(num: Expr | int, den: int) -> Expr:
    """floor(num / den) for an integer-valued ``num`` and a positive int ``den``, kept compact."""
    num = sympy.sympify(num)
    den = int(den)
    if den <= 0:
        raise ValueError("floordiv needs a positive divisor")
    if _NUMERIC and not num.is_Integer:
        value = num.xreplace(_NUMERIC[-1][1])
        if value.is_Integer:
            return Integer(int(value) // den)
    return _floordiv(num, den)


@functools.lru_cache(maxsize=4096)
def _floordiv(num: Expr, den: int) -> Expr:
    """:func:`floordiv`, memoised: a network asks for the same few sizes over and over (every
    conv of a stage sees the same input length), and the canonical forms are pure."""
    if den == 1:
        return num
    if num.is_Integer:
        return Integer(int(num) // den)
    num = sympy.expand(num)
    special, rest = _split_floor_terms(num)
    if not special:
        if is_int_valued(rest):
            return _canonical_floor(rest, den)
        return floor(num / den)
    if len(special) == 1 and is_int_valued(rest):
        coeff, core = special[0]
        if isinstance(core, (Min, Max)) and coeff > 0:
            # floor is monotone: floor((Min(a, b)*m + c)/d) = Min(floor((a*m + c)/d), ...)
            parts = [floordiv(coeff * arg + rest, den) for arg in core.args]
            return type(core)(*parts)
        if isinstance(core, (floor, ceiling)):
            if coeff % den == 0:
                return (coeff // den) * core + floordiv(rest, den)
            g = math.gcd(coeff, den)
            if g > 1:  # floor((m f + R)/d) = floor((m/g f + floor(R/g)) / (d/g))
                return floordiv((coeff // g) * core + floordiv(rest, g), den // g)
            if coeff == 1:
                frac = _as_int_fraction(core.args[0])
                if frac is not None:
                    g_num, a = frac
                    if isinstance(core, ceiling):  # ceiling(G/a) = floor((G + a - 1)/a)
                        g_num = g_num + a - 1
                    return _canonical_floor(sympy.expand(g_num + rest * a), a * den)
    return floor(num / den)


def ceildiv(num: Expr | int, den: int) -> Expr:
    """ceiling(num / den) = floor((num + den - 1) / den) for integer-valued ``num``."""
    return floordiv(sympy.sympify(num) + int(den) - 1, den)


def normalize(expr: Expr) -> Expr:
    """Rebuild every floor/ceiling in ``expr`` bottom-up through :func:`floordiv` (used after a
    substitution, which can make nested floors collapsible again)."""
    expr = sympy.sympify(expr)
    if not expr.args or not expr.has(floor, ceiling):
        return expr
    if isinstance(expr, (floor, ceiling)):
        inner = normalize(expr.args[0])
        frac = _as_int_fraction(inner)
        if frac is not None:
            g_num, a = frac
            return ceildiv(g_num, a) if isinstance(expr, ceiling) else floordiv(g_num, a)
        return type(expr)(inner)
    if isinstance(expr, (Min, Max)):
        return min_max(type(expr), [normalize(a) for a in expr.args])
    return expr.func(*[normalize(a) for a in expr.args])


def min_max(kind: type[Min] | type[Max], args: Iterable[Expr]) -> Expr:
    """``Min``/``Max`` of ``args`` without SymPy's evaluation, whose search for comparable pairs
    goes through the assumptions system (seconds for a handful of floor formulas). Nested
    ``kind`` are flattened, pairs whose difference is a number decided here, the rest kept,
    sorted for a deterministic print."""
    largest = kind is Max
    flat: list[Expr] = []
    for arg in args:
        e = sympy.sympify(arg)
        flat.extend(e.args if isinstance(e, kind) else (e,))
    keep: list[Expr] = []
    for v in dict.fromkeys(flat):
        for i, k in enumerate(keep):
            d = sympy.expand(v - k)
            if d.is_Number:
                if (d > 0) == largest and d != 0:
                    keep[i] = v
                break
        else:
            keep.append(v)
    if len(keep) == 1:
        return keep[0]
    return kind(*sorted(keep, key=sympy.default_sort_key), evaluate=False)


def subs_int(expr: Expr, values: Mapping[sympy.Symbol, int]) -> Expr:
    """Substitute integer values, returning a SymPy number (exact; floors evaluate)."""
    return sympy.sympify(expr).xreplace({k: Integer(v) for k, v in values.items()})


def to_int(expr: Expr) -> int:
    """An exact Python int from a SymPy integer (raises if it is not one)."""
    expr = sympy.sympify(expr)
    if not expr.is_Integer:
        raise ValueError(f"not an integer: {expr}")
    return int(expr)


def to_fraction(expr: Expr) -> Fraction:
    """An exact Fraction from a SymPy rational."""
    expr = sympy.sympify(expr)
    if not expr.is_Rational:
        raise ValueError(f"not a rational number: {expr}")
    return Fraction(int(expr.p), int(expr.q))


class _Printer(sympy.printing.str.StrPrinter):
    """SymPy's str, but floor((H + 6)/8) instead of floor(H/8 + 3/4)."""

    def _print_floor(self, expr: Expr) -> str:
        return self._rounding("floor", expr)

    def _print_ceiling(self, expr: Expr) -> str:
        return self._rounding("ceiling", expr)

    def _rounding(self, name: str, expr: Expr) -> str:
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        if den == 1:
            return f"{name}({self._print(num)})"
        num_text = self._print(sympy.expand(num))
        if len(Add.make_args(sympy.expand(num))) > 1:
            num_text = f"({num_text})"
        return f"{name}({num_text}/{self._print(den)})"


_PRINTER = _Printer({"order": "lex"})


def format_expr(expr: Expr | int) -> str:
    """Canonical, deterministic text of an expression."""
    expr = sympy.sympify(expr)
    if isinstance(expr, Rational):
        return str(expr)
    return _PRINTER.doprint(expr)


def free_names(exprs: Iterable[Expr]) -> list[str]:
    """Sorted names of the free symbols in ``exprs``."""
    names: set[str] = set()
    for e in exprs:
        names.update(s.name for s in sympy.sympify(e).free_symbols)
    return sorted(names)
