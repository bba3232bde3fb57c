"""Size questions about an analysed model (``rfgraph solve``).

Every answer is derived from the analysis' formulas and then checked by exact evaluation at
concrete sizes (integer arithmetic, never floats):

- :func:`min_input`: the smallest input size per axis for which every node's output is >= 1.
- :func:`no_drop`: the input sizes for which every strided window (conv, pooling, ceil_mode
  included) tiles its padded input exactly, as a congruence ``H = P·t + r``.
- :func:`sizes_for_output`: the input sizes that give a wanted output size at a node.
- :func:`region`: the input box one output element sees (unclipped and clipped) and its centre.
- :func:`reach`: the first node whose field reaches R pixels; at concrete sizes, the nodes whose
  field already covers the whole input (and the layers after which nothing more can be seen).

The receptive-field convention is rfgraph's (docs/conventions.md): unclipped, Araujo et al.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import sympy
from sympy import Expr

from .analysis import condition_text, smallest_true
from .errors import RfgraphError
from .symbolic import format_expr, subs_int
from .tensor import AXIS_LETTERS, Window
from .util import submodule

if TYPE_CHECKING:
    from .analysis import Analysis
    from .annotate import NodeInfo

__all__ = ["AxisMin", "AxisNoDrop", "AxisRange", "AxisRegion", "MinInput", "NoDrop", "Reach",
           "Region", "SizesForOutput", "min_input", "no_drop", "reach", "region",
           "sizes_for_output"]

#: the size other axes take while one axis is solved (large enough for every layer)
_LARGE = 2 ** 20
#: how many sizes past the smallest valid one a stated condition (H = 224) is searched for
_CONDITION_SCAN = 4096


# -- exact evaluation --------------------------------------------------------------------------
Number = int | Fraction


def _ev(e: Expr, env: Mapping[sympy.Symbol, int]) -> Number:
    """``e`` at integer sizes, exactly (Fraction arithmetic; floor/ceiling/Min/Max/Mod)."""
    if e.is_Integer:
        return int(e)
    if e.is_Rational:
        return Fraction(int(e.p), int(e.q))
    if e.is_Symbol:
        return env[e]
    if isinstance(e, sympy.Add):
        return sum((_ev(a, env) for a in e.args), 0)
    if isinstance(e, sympy.Mul):
        return math.prod((_ev(a, env) for a in e.args), start=1)
    if isinstance(e, sympy.Pow) and e.exp.is_Integer:
        return Fraction(_ev(e.base, env)) ** int(e.exp)
    if isinstance(e, sympy.floor):
        return math.floor(_ev(e.args[0], env))
    if isinstance(e, sympy.ceiling):
        return math.ceil(_ev(e.args[0], env))
    if isinstance(e, (sympy.Min, sympy.Max)):
        values = [_ev(a, env) for a in e.args]
        return min(values) if isinstance(e, sympy.Min) else max(values)
    if isinstance(e, sympy.Mod):
        return _ev(e.args[0], env) % _ev(e.args[1], env)
    value = subs_int(e, env)  # anything else (Piecewise...): SymPy, still exact
    if not value.is_Rational:
        raise RfgraphError(f"cannot evaluate {format_expr(e)} at {dict(env)}")
    return Fraction(int(value.p), int(value.q))


def _int(e: Expr, env: Mapping[sympy.Symbol, int]) -> int:
    v = _ev(sympy.sympify(e), env)
    if isinstance(v, Fraction):
        if v.denominator != 1:
            raise RfgraphError(f"{format_expr(e)} is not an integer at {dict(env)}")
        return int(v.numerator)
    return int(v)


# -- the axes ----------------------------------------------------------------------------------
def _axes(a: Analysis) -> list[tuple[int, str, sympy.Symbol | None]]:
    """(axis index, name, symbol or None when the input dim is a number) per spatial axis."""
    return [(i, name, dim if isinstance(dim, sympy.Symbol) else None)
            for i, (name, dim) in enumerate(zip(a.axis_names, a.input_shape[2:], strict=True))]


def _symbols(a: Analysis) -> list[sympy.Symbol]:
    syms = set().union(*(sympy.sympify(d).free_symbols for d in a.input_shape))
    return sorted(syms, key=lambda s: s.name)


def _find_node(a: Analysis, name: str) -> NodeInfo:
    names = [n.name for n in a.nodes]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = (f"; did you mean {', '.join(close)}?" if close
                else " (the node names are in the table's first column)")
        raise RfgraphError(f"no node named '{name}'{hint}")
    return a[name]


def _where(node: NodeInfo) -> str:
    return f"node '{node.name}' ({node.module_type or node.target})"


# -- smallest valid input ----------------------------------------------------------------------
@dataclass
class AxisMin:
    """The smallest valid size along one axis (None: the input dim is the number ``fixed``),
    the node (and dim) that would be empty at ``value - 1``, and the smallest size that also
    meets the model's stated conditions on this axis (``H = 224``; None: none found)."""

    axis: str
    value: int | None
    fixed: int | None = None
    limited_by: str | None = None
    limit_what: str | None = None
    conditions: list[str] = field(default_factory=list)
    with_conditions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "min": self.value, "fixed": self.fixed,
                "limited_by": self.limited_by, "what": self.limit_what,
                "conditions": self.conditions, "min_with_conditions": self.with_conditions}


@dataclass
class MinInput:
    axes: list[AxisMin]
    #: nodes without a symbolic rule: their sizes are not part of the answer
    unchecked: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {x.axis: x.value for x in self.axes if x.value is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"axes": [x.to_dict() for x in self.axes], "unchecked": self.unchecked}


def _size_checks(a: Analysis) -> list[tuple[Expr, str, str]]:
    """(size expression, node name, what) for every size that must be >= 1: the nodes'
    stated minimum sizes and every symbolic dim of every output."""
    out: list[tuple[Expr, str, str]] = []
    seen: set[Expr] = set()
    for node in a.nodes:
        items = list(node.min_sizes)
        t = node.tensor
        if t is not None and not t.const and not node.numeric_only:
            letters = AXIS_LETTERS.get(a.n_spatial, ())
            for d, dim in enumerate(t.shape):
                ax = t.axes[d]
                label = (f"output {letters[ax]}" if ax is not None and ax < len(letters)
                         else f"dim {d}")
                items.append((dim, label))
        for expr, what in items:
            expr = sympy.sympify(expr)
            if expr.free_symbols and expr not in seen:
                seen.add(expr)
                out.append((expr, node.name, what))
    return out


def _first_empty(checks: list[tuple[Expr, str, str]], env: Mapping[sympy.Symbol, int],
                 ) -> tuple[str, str] | None:
    return next(((name, what) for expr, name, what in checks if _int(expr, env) < 1), None)


def _conditions_of(a: Analysis, sym: sympy.Symbol) -> list[Any]:
    out = []
    for node in a.nodes:
        for c in node.conditions:
            c = sympy.sympify(c)
            if getattr(c, "free_symbols", None) == {sym} and c not in out:
                out.append(c)
    return out


def _holds(cond: Any, env: Mapping[sympy.Symbol, int]) -> bool:
    return (_ev(cond.lhs, env) == _ev(cond.rhs, env) if isinstance(cond, sympy.Eq)
            else bool(subs_int(cond, env)))


def min_input(a: Analysis) -> MinInput:
    """The smallest size per spatial axis for which every node's output is non-empty (the other
    axes large): exact, by bisection over the exact size formulas (every size is
    non-decreasing in the input size), confirmed at ``n`` (valid) and ``n - 1`` (empty)."""
    checks = _size_checks(a)
    syms = _symbols(a)
    result = []
    for ax, name, sym in _axes(a):
        if sym is None:
            result.append(AxisMin(name, None, fixed=int(a.input_shape[2 + ax])))
            continue
        base = {s: _LARGE for s in syms}
        mine = [(e, n, w) for e, n, w in checks if sym in e.free_symbols]

        def ok(v: int, base=base, sym=sym, mine=mine) -> bool:
            return _first_empty(mine, {**base, sym: v}) is None

        best = smallest_true(ok, start=1)
        if best is None:
            raise RfgraphError(f"no size of {name} up to 2**40 gives every node an output")
        entry = AxisMin(name, best)
        if best > 1:
            hit = _first_empty(mine, {**base, sym: best - 1})
            if hit is None:  # bisection assumed monotone sizes; say so if they are not
                raise RfgraphError(f"the output sizes are not monotone in {name}")
            entry.limited_by, entry.limit_what = hit
        conds = _conditions_of(a, sym)
        if conds:
            entry.conditions = [condition_text(c) for c in conds]
            for v in range(best, best + _CONDITION_SCAN):
                if all(_holds(c, {**base, sym: v}) for c in conds):
                    entry.with_conditions = v
                    break
        result.append(entry)
    return MinInput(result, [n.name for n in a.nodes if n.unknown_op])


# -- sizes that drop no pixel ------------------------------------------------------------------
_CONV = {f"Conv{n}d": n for n in (1, 2, 3)}
_POOL = {f"{kind}Pool{n}d": n for n in (1, 2, 3) for kind in ("Max", "Avg")}
_FN_CONV = {f"conv{n}d": n for n in (1, 2, 3)}
_FN_MAX = {f"max_pool{n}d{x}": n for n in (1, 2, 3) for x in ("", "_with_indices")}
_FN_AVG = {f"avg_pool{n}d": n for n in (1, 2, 3)}


def _arg(node: Any, i: int, key: str, default: Any) -> Any:
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(key, default)


def _window_of(a: Analysis, fx_node: Any) -> tuple[Window, Any] | None:
    """The sliding window of a conv or pooling node and its input fx node, or None."""
    from .rules.base import window
    from .util import conv_padding, ntuple

    if fx_node.op == "call_module":
        mod = submodule(a.graph_module, str(fx_node.target))
        kind = type(mod).__name__
        nd = _CONV.get(kind) or _POOL.get(kind)
        if nd is None:
            return None
        if kind in _POOL:
            return window(nd, mod.kernel_size, mod.stride, mod.padding,
                          getattr(mod, "dilation", 1), mod.ceil_mode), fx_node.args[0]
        k, s, d, padding = mod.kernel_size, mod.stride, mod.dilation, mod.padding
    elif fx_node.op == "call_function":
        fname = getattr(fx_node.target, "__name__", "")
        if fname in _FN_MAX or fname in _FN_AVG:
            mx = fname in _FN_MAX
            nd = _FN_MAX.get(fname) or _FN_AVG[fname]
            return window(nd, _arg(fx_node, 1, "kernel_size", 1), _arg(fx_node, 2, "stride", None),
                          _arg(fx_node, 3, "padding", 0), _arg(fx_node, 4, "dilation", 1)
                          if mx else 1, bool(_arg(fx_node, 5 if mx else 4, "ceil_mode", False))
                          ), fx_node.args[0]
        if fname not in _FN_CONV:
            return None
        nd = _FN_CONV[fname]
        weight = _arg(fx_node, 1, "weight", None)
        wt = a[weight.name].tensor if hasattr(weight, "name") else None
        if wt is None or not all(sympy.sympify(x).is_Integer for x in wt.shape[2:]):
            return None
        k = tuple(int(x) for x in wt.shape[2:])
        s, d = _arg(fx_node, 3, "stride", 1), _arg(fx_node, 5, "dilation", 1)
        padding = _arg(fx_node, 4, "padding", 0)
    else:
        return None
    pl, pr = conv_padding(padding, ntuple(k, nd), ntuple(d, nd), nd)
    w = window(nd, k, s, 0, d)
    return Window(nd, w.kernel, w.stride, tuple(pl), tuple(pr), w.dilation), fx_node.args[0]


@dataclass
class _Tiling:
    """One strided window along one axis: it tiles its padded input when
    ``(n + pl + pr - k_eff) % s == 0`` for the input size n (a formula of the input)."""

    node: str
    n_in: Expr
    pad: int
    k_eff: int
    stride: int
    period: int

    def exact(self, env: Mapping[sympy.Symbol, int]) -> bool:
        return (_int(self.n_in, env) + self.pad - self.k_eff) % self.stride == 0

    def text(self) -> str:
        rest = format_expr(sympy.expand(self.n_in + self.pad - self.k_eff))
        return f"{self.node}: ({rest}) % {self.stride} = 0"


def _dens(expr: Expr) -> int:
    """lcm of the denominators inside every floor/ceiling of ``expr`` (1 when none)."""
    out = 1
    for atom in sympy.sympify(expr).atoms(sympy.floor, sympy.ceiling):
        _, den = sympy.fraction(sympy.together(atom.args[0]))
        if den.is_Integer:
            out = math.lcm(out, int(den))
    return out


def _roundings(tensors: Any) -> set[Expr]:
    return {x for t in tensors if t is not None for dim in t.shape
            for x in sympy.sympify(dim).atoms(sympy.floor, sympy.ceiling)}


def _tilings(a: Analysis) -> tuple[dict[int, list[_Tiling]], list[str], list[str]]:
    """Per input axis the strided windows along it; the nodes whose output size has a new
    floor or ceiling that is not a known window (unchecked); windows mixing several axes."""
    if a.graph_module is None:
        raise RfgraphError("this analysis has no traced graph")
    fx_nodes = {n.name: n for n in a.graph_module.graph.nodes}
    per_axis: dict[int, list[_Tiling]] = {}
    unchecked: list[str] = []
    mixed: list[str] = []
    for node in a.nodes:
        t = node.tensor
        fx_node = fx_nodes.get(node.name)
        found = _window_of(a, fx_node) if fx_node is not None else None
        if found is not None:
            w, src = found
            x = a[src.name].tensor if hasattr(src, "name") else None
            if x is None:
                unchecked.append(node.name)
                continue
            dims = list(range(x.ndim - w.nd, x.ndim))
            for i, d in enumerate(dims):
                ax = x.axes[d]
                if ax is None or w.stride[i] == 1:
                    continue
                n_in = sympy.sympify(x.shape[d])
                sym = a.input_shape[2 + ax]
                if n_in.free_symbols - sympy.sympify(sym).free_symbols:
                    mixed.append(node.name)
                    continue
                pad = int(w.pad_left[i]) + int(w.pad_right[i])
                per_axis.setdefault(ax, []).append(
                    _Tiling(node.name, n_in, pad, w.k_eff(i), w.stride[i],
                            _dens(n_in) * w.stride[i]))
            continue
        if t is None or node.unknown:
            if node.unknown_op:
                unchecked.append(node.name)
            continue
        before = _roundings(a[n].tensor for n in node.inputs)
        if _roundings([t]) - before:  # a floor no window explains (a resize, a slice...)
            unchecked.append(node.name)
    return per_axis, unchecked, mixed


@dataclass
class AxisNoDrop:
    """The sizes of one axis at which every strided window tiles its padded input:
    ``axis = period·t + r`` for r in ``residues``, ``t >= t0[r]``; ``first``: the first sizes
    (>= the smallest valid one), found by direct evaluation. ``windows``: the conditions."""

    axis: str
    period: int
    residues: list[int]
    t0: dict[int, int]
    first: list[int]
    windows: list[str]
    min_valid: int
    always_drops: list[str] = field(default_factory=list)
    fixed: int | None = None

    def contains(self, n: int) -> bool:
        r = n % self.period
        return n >= self.min_valid and r in self.t0 and n >= self.period * self.t0[r] + r

    def congruence(self) -> str:
        if self.fixed is not None:
            return f"{self.axis} = {self.fixed} (given)"
        if not self.residues:
            return "none"
        if self.period == 1:
            return f"every {self.axis} >= {self.min_valid}"
        parts = []
        for r in self.residues:
            rhs = f"{self.period}·t + {r}" if r else f"{self.period}·t"
            parts.append(f"{self.axis} = {rhs} (t >= {self.t0[r]})")
        return " or ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "period": self.period, "residues": self.residues,
                "t0": {str(k): v for k, v in self.t0.items()}, "first": self.first,
                "congruence": self.congruence(), "windows": self.windows,
                "min_valid": self.min_valid, "always_drops": self.always_drops,
                "fixed": self.fixed}


@dataclass
class NoDrop:
    axes: list[AxisNoDrop]
    #: nodes with a floor in their size that are not a known conv/pooling window
    unchecked: list[str] = field(default_factory=list)
    #: windows whose input size mixes several axes (not solved)
    mixed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"axes": [x.to_dict() for x in self.axes], "unchecked": self.unchecked,
                "mixed": self.mixed}


def no_drop(a: Analysis, count: int = 6, mins: MinInput | None = None) -> NoDrop:
    """The input sizes that drop no pixel, per axis, as a congruence.

    A strided window (conv, max/avg pooling, ``ceil_mode`` too) drops nothing when its
    windows tile the padded input exactly: ``(n + pl + pr - k_eff) % s == 0`` for its input
    size n. The period P is the lcm over the windows of (stride x the denominators of the
    floors in n); the residues r in [0, P) are found by exact evaluation over one period and
    confirmed over the next two (the period is doubled, up to 8 times, until they agree)."""
    mins = mins or min_input(a)
    per_axis, unchecked, mixed = _tilings(a)
    syms = _symbols(a)
    out = []
    for (ax, name, sym), m in zip(_axes(a), mins.axes, strict=True):
        tilings = per_axis.get(ax, [])
        texts = [t.text() for t in tilings]
        if sym is None:
            out.append(AxisNoDrop(name, 1, [], {}, [], texts, 0, fixed=m.fixed))
            continue
        lo = m.value or 1
        base = {s: _LARGE for s in syms}

        def good(n: int, base=base, sym=sym, tilings=tilings) -> bool:
            env = {**base, sym: n}
            return all(t.exact(env) for t in tilings)

        period = 1
        for t in tilings:
            period = math.lcm(period, t.period)
        for _ in range(8):  # confirm the period over two more periods
            start = lo + period
            pattern = [good(start + i) for i in range(period)]
            if all(good(start + i) == pattern[i % period]
                   for i in range(period, 3 * period)):
                break
            period *= 2
        else:
            raise RfgraphError(f"the drop-no-pixel sizes of {name} have no period up to "
                               f"{period}")
        residues = sorted((start + i) % period for i in range(period) if pattern[i])
        t0 = {}
        for r in residues:  # the first t from which the class holds (checked in [lo, start))
            k = max(0, -(-(lo - r) // period))
            while period * k + r < start and not good(period * k + r):
                k += 1
            t0[r] = k
        entry = AxisNoDrop(name, period, residues, t0, [], texts, lo)
        n = lo
        while residues and len(entry.first) < count:
            if entry.contains(n):
                if not good(n):  # derivation and evaluation disagree: never report it
                    raise RfgraphError(f"internal check failed for {name} = {n}")
                entry.first.append(n)
            n += 1
        if not residues:
            env = {**base, sym: start}
            never = [t.node for t in tilings if not any(
                t.exact({**env, sym: start + i}) for i in range(period))]
            entry.always_drops = never or [t.node for t in tilings]
        out.append(entry)
    return NoDrop(out, unchecked, mixed)


# -- input sizes for a wanted output size ------------------------------------------------------
@dataclass
class AxisRange:
    """The sizes ``lo .. hi`` (``hi`` None: unbounded) of one axis giving output ``want``."""

    axis: str
    want: int
    lo: int | None
    hi: int | None
    formula: str
    fixed: int | None = None

    def text(self) -> str:
        if self.fixed is not None:
            return f"{self.axis} = {self.fixed} (given)"
        if self.hi is None:
            return f"{self.axis} >= {self.lo}"
        if self.hi == self.lo:
            return f"{self.axis} = {self.lo}"
        return f"{self.lo} <= {self.axis} <= {self.hi}"

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "want": self.want, "min": self.lo, "max": self.hi,
                "formula": self.formula, "fixed": self.fixed}


@dataclass
class SizesForOutput:
    node: str
    axes: list[AxisRange]

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "axes": [x.to_dict() for x in self.axes]}


def _spatial_node(a: Analysis, node: str | None) -> NodeInfo:
    """``node``, else the last node that keeps every spatial axis with a size that depends on
    the input (the model output for a dense-prediction net)."""
    if node is not None:
        return _find_node(a, node)
    best = None
    for info in a.nodes:
        t = info.tensor
        if t is None or t.const or info.unknown or info.kind in ("input", "constant"):
            continue
        dims = [t.dim_of_axis(ax) for ax in range(a.n_spatial)]
        if a.n_spatial and all(d is not None for d in dims) and any(
                sympy.sympify(t.shape[d]).free_symbols for d in dims if d is not None):
            best = info
    if best is None:
        raise RfgraphError("no node keeps the input's spatial axes with a size that depends "
                           "on the input: give --node")
    return best


def sizes_for_output(a: Analysis, want: Sequence[int], node: str | None = None,
                     mins: MinInput | None = None) -> SizesForOutput:
    """Every input size per axis whose output size at ``node`` (default: the model output, or
    the last node keeping the spatial axes) is ``want[axis]``: an interval, as every size is
    non-decreasing in the input size; its ends are confirmed by exact evaluation and it is cut
    to the valid sizes (:func:`min_input`). No size: a one-line :class:`RfgraphError`."""
    info = _spatial_node(a, node)
    t = info.tensor
    if t is None or info.unknown:
        raise RfgraphError(f"{_where(info)} has no known output size")
    if len(want) != a.n_spatial:
        raise RfgraphError(f"--output needs {a.n_spatial} size{'s' if a.n_spatial > 1 else ''} "
                           f"(one per spatial axis: {'x'.join(a.axis_names)}), got "
                           f"{'x'.join(map(str, want))}")
    if any(w < 1 for w in want):
        raise RfgraphError(f"a wanted output size must be >= 1, not {'x'.join(map(str, want))}")
    mins = mins or min_input(a)
    syms = _symbols(a)
    out = []
    for (ax, name, sym), w, m in zip(_axes(a), want, mins.axes, strict=True):
        d = t.dim_of_axis(ax)
        if d is None:
            raise RfgraphError(f"{_where(info)} has no {name} axis any more (it was pooled or "
                               "flattened away): choose a node with spatial dims (--node)")
        f = sympy.sympify(t.shape[d])
        if sym is None:
            got = _int(f, {s: _LARGE for s in syms})
            if got != w:
                raise RfgraphError(f"the {name} axis is given as {m.fixed}, which gives "
                                   f"{got} at node '{info.name}', not {w}")
            out.append(AxisRange(name, w, None, None, format_expr(f), fixed=m.fixed))
            continue
        if f.free_symbols - {sym}:
            raise RfgraphError(f"the size of {_where(info)} along {name} mixes axes: "
                               f"{format_expr(f)}")
        base = {s: _LARGE for s in syms}

        def at(v: int, base=base, sym=sym, f=f) -> int:
            return _int(f, {**base, sym: v})

        lo = smallest_true(lambda v, at=at, w=w: at(v) >= w)
        if lo is None:
            raise RfgraphError(f"no size of {name} up to 2**40 gives {w} at node "
                               f"'{info.name}' ({format_expr(f)})")
        if at(lo) != w:
            before = f"{name} = {lo - 1} gives {at(lo - 1)}, " if lo > 1 else ""
            raise RfgraphError(f"no size of {name} gives {w} at node '{info.name}' "
                               f"({format_expr(f)}): {before}{name} = {lo} gives {at(lo)}")
        above = smallest_true(lambda v, at=at, w=w: at(v) >= w + 1, start=lo)
        hi = None if above is None else above - 1
        valid = m.value or 1
        if hi is not None and hi < valid:
            raise RfgraphError(f"only {name} <= {hi} gives {w} at node '{info.name}', but the "
                               f"model needs {name} >= {valid}")
        lo = max(lo, valid)
        ends = [lo] + ([hi] if hi is not None else [lo + 1, lo + 1000])
        if any(at(v) != w for v in ends):
            raise RfgraphError(f"the size of node '{info.name}' along {name} is not monotone")
        out.append(AxisRange(name, w, lo, hi, format_expr(f)))
    return SizesForOutput(info.name, out)


# -- the input region of one output element ----------------------------------------------------
@dataclass
class AxisRegion:
    axis: str
    position: int | None  # None: the axis was collapsed (every element sees the same)
    start: int
    end: int
    image: int
    upper: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def clipped(self) -> tuple[int, int] | None:
        lo, hi = max(0, self.start), min(self.image - 1, self.end)
        return (lo, hi) if lo <= hi else None

    @property
    def centre(self) -> Fraction:
        return Fraction(self.start + self.end, 2)

    def to_dict(self) -> dict[str, Any]:
        c = self.centre
        return {"axis": self.axis, "position": self.position, "start": self.start,
                "end": self.end, "size": self.size,
                "clipped": list(self.clipped) if self.clipped else None,
                "centre": int(c) if c.denominator == 1 else float(c),
                "upper_bound": self.upper}


@dataclass
class Region:
    node: str
    at: dict[str, int]
    axes: list[AxisRegion]

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "at": self.at, "axes": [x.to_dict() for x in self.axes]}


def _concrete(a: Analysis) -> dict[str, int]:
    if a.symbols and a.at is None:
        raise RfgraphError("this question needs concrete sizes: give --at "
                           f"(e.g. --at {','.join(s + '=64' for s in a.symbols)})")
    sizes = [a.int_of(d) for d in a.input_shape[2:]]
    if any(s is None for s in sizes):
        raise RfgraphError("the input shape is not concrete")
    return {n: int(s) for n, s in zip(a.axis_names, sizes, strict=True) if s is not None}


def region(a: Analysis, node: str, position: Sequence[int]) -> Region:
    """The input box the output element ``position`` of ``node`` sees (one index per spatial
    dim the node keeps, in axis order), from the node's field maps at the evaluated sizes:
    unclipped ``start_at(y) .. end_at(y)``, clipped to the image, and its centre."""
    sizes = _concrete(a)
    info = _find_node(a, node)
    fields = a.field(info)
    t = info.tensor
    if fields is None or t is None:
        raise RfgraphError(f"{_where(info)} has no known receptive field")
    kept = [ax for ax in range(a.n_spatial) if t.dim_of_axis(ax) is not None]
    if len(position) != len(kept):
        dims = "x".join(a.axis_names[ax] for ax in kept) or "none"
        raise RfgraphError(f"node '{info.name}' has {len(kept)} spatial dim"
                           f"{'s' if len(kept) != 1 else ''} ({dims}): give "
                           f"{len(kept)} coordinate{'s' if len(kept) != 1 else ''}, not "
                           f"{','.join(map(str, position)) or 'none'}")
    out = []
    coords = dict(zip(kept, position, strict=True))
    for ax, name in enumerate(a.axis_names):
        r = fields[ax]
        y = coords.get(ax)
        if y is not None:
            d = t.dim_of_axis(ax)
            n_out = a.int_of(t.shape[d]) if d is not None else None
            if n_out is None:
                raise RfgraphError(f"{_where(info)}: its {name} size is not known")
            if not 0 <= y < n_out:
                raise RfgraphError(f"position {name} = {y} is out of range: node "
                                   f"'{info.name}' has {n_out} along {name} (0..{n_out - 1})")
        yy = 0 if y is None else y
        start, end = a.int_of(r.start_at(yy)), a.int_of(r.end_at(yy))
        if start is None or end is None:
            raise RfgraphError(f"{_where(info)}: the field along {name} is not known here")
        out.append(AxisRegion(name, y, start, end, sizes[name], bool(r.upper)))
    return Region(info.name, sizes, out)


# -- reach ---------------------------------------------------------------------------------------
@dataclass
class Reach:
    want: int
    #: per axis: the first node whose field is >= want at every valid size (or at ``at``)
    first: dict[str, str | None]
    #: per axis: earlier nodes that reach it only from some input size on: (node, size)
    conditional: dict[str, list[tuple[str, int]]]
    at: dict[str, int] | None = None
    #: at ``at``: per axis the first node whose every element sees the whole input
    covers: dict[str, str | None] = field(default_factory=dict)
    #: at ``at``: the first node that sees the whole input on every axis, and the layers after
    #: it whose inputs already do (they cannot see more)
    covers_all: str | None = None
    cannot_see_more: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"want": self.want, "first": self.first,
                "conditional": {k: [list(x) for x in v] for k, v in self.conditional.items()},
                "at": self.at, "covers": self.covers, "covers_all": self.covers_all,
                "cannot_see_more": self.cannot_see_more}


def _covers(a: Analysis, info: NodeInfo, ax: int, n: int) -> bool:
    """Whether every output element of ``info`` sees every pixel 0..n-1 along ``ax``."""
    fields = a.field(info)
    t = info.tensor
    if fields is None or t is None or fields[ax].upper:
        return False
    r = fields[ax]
    d = t.dim_of_axis(ax)
    n_out = a.int_of(t.shape[d]) if d is not None else 1
    if n_out is None:
        return False
    ys = [0, n_out - 1] if (r.monotone and r.periodic and not r.gappy) else range(n_out)
    for y in ys:
        s, e = a.int_of(r.start_at(y)), a.int_of(r.end_at(y))
        if s is None or e is None or s > 0 or e < n - 1:
            return False
    return True


def reach(a: Analysis, want: int, mins: MinInput | None = None) -> Reach:
    """The first node (graph order) whose field reaches ``want`` pixels per axis. Symbolic
    analysis: at every valid size (a field that grows with the input, after global pooling, is
    listed apart with the size from which it reaches ``want``); evaluated analysis: at its
    sizes, plus the nodes whose field covers the whole input."""
    if want < 1:
        raise RfgraphError(f"--reach must be >= 1, not {want}")
    syms = _symbols(a)
    concrete = a.at is not None or not a.symbols
    if not concrete:
        mins = mins or min_input(a)
    first: dict[str, str | None] = {}
    conditional: dict[str, list[tuple[str, int]]] = {}
    for ax, name, sym in _axes(a):
        first[name] = None
        for info in a.nodes:
            fields = a.field(info)
            if fields is None or info.kind in ("input", "constant") or fields[ax].upper:
                continue
            size = sympy.sympify(a.value_of(fields[ax].size))
            if concrete or not size.free_symbols:
                v = a.int_of(size)
                if v is not None and v >= want:
                    first[name] = info.name
                    break
                continue
            assert mins is not None
            least = {x.axis: x.value for x in mins.axes}
            base = {s: least.get(s.name) or _LARGE for s in syms}
            if _int(size, base) >= want:
                first[name] = info.name
                break
            if sym is not None:
                from_n = smallest_true(lambda v, size=size, base=base, sym=sym:
                                       _int(size, {**base, sym: v}) >= want)
                if from_n is not None and name not in conditional:  # the first one only
                    conditional[name] = [(info.name, from_n)]
    result = Reach(want, first, conditional)
    if not concrete:
        return result
    result.at = sizes = _concrete(a)
    result.covers = dict.fromkeys(a.axis_names)
    covering: set[str] = set()
    for info in a.nodes:
        if info.kind in ("input", "constant"):
            continue
        per_axis = [_covers(a, info, ax, sizes[name]) for ax, name in enumerate(a.axis_names)]
        for name, covers in zip(a.axis_names, per_axis, strict=True):
            if covers and result.covers[name] is None:
                result.covers[name] = info.name
        if not all(per_axis):
            continue
        covering.add(info.name)
        if result.covers_all is None:
            result.covers_all = info.name
        elif info.family in ("conv", "pool") and all(
                s in covering for s in info.inputs if a[s].kind != "constant"):
            result.cannot_see_more.append(info.name)  # its input already sees everything
    return result


def parse_sizes(text: str, what: str = "--output") -> list[int]:
    """'7x7' or '7,7' -> [7, 7] (one-line error otherwise)."""
    parts = text.replace("×", "x").replace(",", "x").split("x")
    try:
        values = [int(p.strip()) for p in parts]
    except ValueError:
        raise RfgraphError(f"bad {what} {text!r}: use e.g. 7x7") from None
    return values

