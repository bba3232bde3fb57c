"""Per-analysis caches for the path after :func:`rfgraph.analyze`: printed text of formulas and
formulas compiled to plain Python (exact integer arithmetic) for fast evaluation at sizes.

One :class:`FormulaCache` is shared by a symbolic analysis and every analysis
:meth:`rfgraph.analysis.Analysis.evaluate` derives from it, so each formula is printed once and
compiled once per analysis, whatever the number of sizes evaluated. A compiled formula gives
exactly what :func:`rfgraph.symbolic.subs_int` gives (an Integer or a Rational); formulas the
Python printer cannot write, whose symbols are not all given, or whose value is not a number
(a division by zero, a Piecewise without a matching branch) fall back to SymPy substitution.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any

import sympy
from sympy import Expr, Integer, Rational

from .symbolic import format_expr, subs_int

__all__ = ["FormulaCache", "compile_formulas"]

#: a compiled formula: called with the sizes (name -> int) in a fixed argument order
Compiled = Callable[..., Any]

_MISSING = object()
#: names the generated source uses itself
_TAKEN = {"Fraction", "min", "max", "abs", "None", "True", "False"}


def _python_source(expr: Expr) -> str | None:
    """Exact Python source of ``expr``, or None when the printer cannot write it."""
    from .exporters.python import to_python_expr

    if not isinstance(expr, Expr):
        return None  # conditions stay with SymPy (few, and their value is a SymPy boolean)
    try:
        return to_python_expr(expr)
    except Exception:  # _NoPython and anything unexpected: SymPy substitution does it
        return None


def compile_formulas(exprs: Iterable[Expr], names: list[str]) -> dict[Expr, Compiled | None]:
    """Compile ``exprs`` (functions of the symbols ``names``) in one ``exec``: expr -> function
    of ``*names`` (None when the formula cannot be compiled)."""
    out: dict[Expr, Compiled | None] = {}
    if any(not n.isidentifier() or keyword.iskeyword(n) or n in _TAKEN for n in names):
        return {e: None for e in exprs}  # SymPy substitution does these
    lines: list[str] = []
    order: list[Expr] = []
    allowed = set(names)
    args = ", ".join(names)
    for e in exprs:
        if e in out:
            continue
        out[e] = None
        if not {s.name for s in e.free_symbols} <= allowed:
            continue
        src = _python_source(e)
        if src is None:
            continue
        lines.append(f"def _f{len(order)}({args}):\n    return {src}\n")
        order.append(e)
    if order:
        scope: dict[str, Any] = {"Fraction": Fraction}
        try:
            exec(compile("".join(lines), "<rfgraph formulas>", "exec"), scope)
        except SyntaxError:  # a name that is not a Python identifier: SymPy does these
            return out
        for i, e in enumerate(order):
            out[e] = scope[f"_f{i}"]
    return out


def _to_sympy(value: Any) -> Expr | None:
    """The SymPy number of an exact Python result (None for anything else)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Integer(value)
    if isinstance(value, Fraction):
        return Rational(value.numerator, value.denominator)
    return None


class FormulaCache:
    """Printed and compiled formulas of one analysis (and the analyses evaluated from it)."""

    def __init__(self, names: list[str]) -> None:
        #: the input's symbol names: the arguments of every compiled formula
        self.names = list(names)
        self._text: dict[tuple[type, Any], str] = {}
        self._compiled: dict[Expr, Compiled | None] = {}
        #: counts of compile batches (tests check that formulas compile once)
        self.batches = 0
        #: the node lists whose formulas are compiled already (by identity, kept alive)
        self.prepared: list[Any] = []

    # -- text -----------------------------------------------------------------------------------
    def text(self, expr: Any) -> str:
        """:func:`format_expr` of ``expr``, printed once per distinct expression."""
        if isinstance(expr, Integer):  # what format_expr prints, without SymPy's printer
            return str(int(expr))
        if isinstance(expr, Rational):
            return f"{int(expr.p)}/{int(expr.q)}"
        key = (type(expr), expr)  # 1 and 1.0 and True are equal keys but print differently
        got = self._text.get(key, _MISSING)
        if got is _MISSING:
            got = format_expr(expr)
            self._text[key] = got
        return got  # type: ignore[return-value]

    # -- evaluation -----------------------------------------------------------------------------
    def prepare(self, exprs: Iterable[Any]) -> None:
        """Compile, in one batch, those of ``exprs`` not compiled yet."""
        todo = []
        seen = set()
        for e in exprs:
            e = sympy.sympify(e)
            if e.is_Number or e in self._compiled or e in seen:
                continue
            seen.add(e)
            todo.append(e)
        if todo:
            self.batches += 1
            self._compiled.update(compile_formulas(todo, self.names))

    def value(self, expr: Any, at: Mapping[str, int],
              subs: Mapping[sympy.Symbol, int]) -> Expr:
        """``expr`` at the sizes ``at``: exactly ``subs_int(expr, subs)``, by the compiled
        formula when :meth:`prepare` compiled it."""
        e = expr if isinstance(expr, Expr) else sympy.sympify(expr)
        if e.is_Number:
            return e
        fn = self._compiled.get(e)  # None: not prepared (a one-off, e.g. a field at the last
        # position of one size, costs more to compile than to substitute) or not compilable
        if fn is not None:
            try:
                got = _to_sympy(fn(*[at[n] for n in self.names]))
            except (ArithmeticError, KeyError, TypeError, ValueError):
                got = None
            if got is not None:
                return got
        return subs_int(e, subs)
