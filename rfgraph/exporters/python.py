"""The Python exporter: a standalone module (standard library only) of an analysis' formulas,
exact integer arithmetic (``//`` for floor, ``-(-a // b)`` for ceil, ``Fraction``)."""

from __future__ import annotations

import json
import keyword
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sympy
from sympy import Expr, Integer

from ..errors import RfgraphError
from ..symbolic import fraction_of
from . import _shape, _text, _upper, rows

if TYPE_CHECKING:
    from ..analysis import Analysis
    from ..receptive_field import AxisRF


# -- Python ----------------------------------------------------------------------------------------
class _NoPython(Exception):
    """A formula with a function the Python printer does not know."""


_ATOM, _MUL, _ADD, _LOW = 4, 3, 2, 1


def _py(expr: Any) -> tuple[str, int]:
    """Python source of ``expr`` (exact: ints, ``//``, ``fractions.Fraction``) and its
    precedence."""
    e = sympy.sympify(expr)
    if e.is_Integer:
        return str(int(e)), (_ATOM if e >= 0 else _MUL)
    if e.is_Rational:
        return f"Fraction({int(e.p)}, {int(e.q)})", _ATOM
    if e.is_Symbol:
        return e.name, _ATOM
    if e is sympy.true or e is sympy.false:
        return str(bool(e)), _ATOM
    if isinstance(e, sympy.Add):
        out = ""
        for i, term in enumerate(e.as_ordered_terms()):
            text = _py(term)[0]
            if i == 0:
                out = text
            elif text.startswith("-"):  # "-X": X binds tighter than a binary minus
                out += " - " + text[1:]
            else:
                out += " + " + text
        return out, _ADD
    if isinstance(e, sympy.Mul):
        coeff, rest = e.as_coeff_Mul()
        if coeff.is_negative:  # -(a * b) = -a * b; a floor or ceil keeps its brackets
            text, prec = _py(-e)
            plain = prec == _ATOM or isinstance(-e, sympy.Mul)
            return "-" + (text if plain else f"({text})"), _MUL
        num, den = [], []
        for f in sympy.Mul.make_args(rest):
            base, ex = f.as_base_exp()
            if ex.is_Integer and ex < 0:
                den.append(base if ex == -1 else sympy.Pow(base, -ex))
            else:
                num.append(f)
        if not coeff.is_Integer:
            num.insert(0, Integer(coeff.p))
            den.insert(0, Integer(coeff.q))
        elif coeff != 1:
            num.insert(0, coeff)
        top = " * ".join(_wrap(f, _ATOM) for f in num) or "1"
        if not den:
            return top, _MUL
        bottom = " * ".join(_wrap(f, _ATOM) for f in den)
        return f"Fraction({top}, {bottom})", _ATOM
    if isinstance(e, sympy.Pow):
        base, ex = e.as_base_exp()
        if ex.is_Integer and ex > 0:
            return f"{_wrap(base, _ATOM)} ** {int(ex)}", _MUL
        if ex.is_Integer and ex < 0:
            return f"Fraction(1, {_wrap(base, _ATOM)} ** {int(-ex)})", _ATOM
        raise _NoPython(f"power {e}")
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        num, den = fraction_of(e.args[0])
        if isinstance(e, sympy.floor):
            return f"{_wrap(num, _MUL)} // {_wrap(den, _ATOM)}", _MUL
        return f"-(-{_wrap(num, _ATOM)} // {_wrap(den, _ATOM)})", _MUL
    if isinstance(e, (sympy.Min, sympy.Max)):
        name = "min" if isinstance(e, sympy.Min) else "max"
        args = sorted(e.args, key=sympy.default_sort_key)
        return f"{name}({', '.join(_py(x)[0] for x in args)})", _ATOM
    if isinstance(e, sympy.Mod):
        return f"{_wrap(e.args[0], _ATOM)} % {_wrap(e.args[1], _ATOM)}", _MUL
    if isinstance(e, sympy.Abs):
        return f"abs({_py(e.args[0])[0]})", _ATOM
    if isinstance(e, sympy.Piecewise):
        text = "None"
        for val, cond in reversed(e.args):
            value = _wrap(val, _ADD)
            text = value if cond is sympy.true else f"{value} if {_py(cond)[0]} else {text}"
        return f"({text})", _ATOM
    if isinstance(e, sympy.core.relational.Relational):
        return f"{_wrap(e.lhs, _ADD)} {e.rel_op} {_wrap(e.rhs, _ADD)}", _LOW
    if isinstance(e, (sympy.And, sympy.Or)):
        word = " and " if isinstance(e, sympy.And) else " or "
        return word.join(f"({_py(x)[0]})" for x in e.args), _LOW
    if isinstance(e, sympy.Not):
        return f"not ({_py(e.args[0])[0]})", _LOW
    raise _NoPython(f"{type(e).__name__} in {e}")


def _wrap(expr: Any, need: int) -> str:
    text, prec = _py(expr)
    return text if prec >= need else f"({text})"


def to_python_expr(expr: Any) -> str:
    """Python source of a formula: exact integer arithmetic (``//`` for floor, ``-(-a // b)``
    for ceil, ``Fraction`` for rationals, ``min``/``max``, conditional expressions)."""
    return _py(expr)[0]



def _symbol_order(a: Analysis) -> list[str]:
    """The input's symbols in the order they appear in the input shape (N, C, D, H, W...)."""
    seen: list[str] = []
    for s in a.input_shape:
        for sym in sorted(sympy.sympify(s).free_symbols, key=lambda x: x.name):
            if sym.name not in seen:
                seen.append(sym.name)
    return seen


_RESERVED = {"Fraction", "NamedTuple", "Field", "node", "value", "sizes", "shape", "formula"}
_WIDTH = 88


def _lit(obj: Any) -> str:
    """A Python literal with double-quoted strings (ruff format's style)."""
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, tuple):
        inner = ", ".join(_lit(x) for x in obj)
        return f"({inner},)" if len(obj) == 1 else f"({inner})"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in obj.items()) + "}"
    return repr(obj)


def _tuple(items: list[str]) -> str:
    return f"({items[0]},)" if len(items) == 1 else "(" + ", ".join(items) + ")"


def _py_lines(expr: Any, names: set[str]) -> list[str]:
    """Python source of a formula, one line, or (when long) one term of a sum per line;
    raises _NoPython when a free symbol is not an input size."""
    e = sympy.sympify(expr)
    if not {s.name for s in e.free_symbols} <= names:
        raise _NoPython(f"symbols {e.free_symbols} in {e}")
    text = _py(e)[0]
    if len(text) <= _WIDTH - 30 or not isinstance(e, sympy.Add):
        return [text]
    out = []
    for i, term in enumerate(e.as_ordered_terms()):
        t = _py(term)[0]
        out.append(t if i == 0 else ("- " + t[1:] if t.startswith("-") else "+ " + t))
    return out


def _value_block(prefix: str, exprs: Sequence[Any], names: set[str], suffix: str,
                 indent: str, as_tuple: bool) -> list[str]:
    """``prefix`` + the formula(s) + ``suffix``, on one line when short, else split."""
    parts = [_py_lines(e, names) for e in exprs]
    one = ", ".join(" ".join(p) for p in parts)
    if as_tuple:
        one = f"({one},)" if len(parts) == 1 else f"({one})"
    if len(indent + prefix + one + suffix) <= _WIDTH:
        return [indent + prefix + one + suffix]
    inner = indent + "    "
    lines = [indent + prefix + "("]
    for p in parts:
        if len(p) == 1:
            lines.append(inner + p[0] + ("," if as_tuple else ""))
        else:
            lines += [inner + ("(" if as_tuple else "") + p[0]]
            lines += [inner + ("    " if as_tuple else "") + x for x in p[1:]]
            if as_tuple:
                lines.append(inner + "),")
    return lines + [indent + ")" + suffix]


def _phase_sizes(r: AxisRF) -> list[Expr] | None:
    """The field sizes over one period of positions (sizes_within(n) = the first min(P, n)),
    or None when the size is not periodic in the position (a concatenation along the axis,
    torch.roll): such fields are not exported."""
    if getattr(r, "_pieces", None) is not None or not r.periodic:
        return None
    return [sympy.sympify(s) for s in r.sizes_over_period()]


def min_input(a: Analysis) -> dict[str, int] | None:
    """The smallest size per input symbol at which every node's output is non-empty (the other
    sizes large); None when no such size is found."""
    from ..analysis import smallest_true
    from ..symbolic import axis_symbol, subs_int

    checks = list(dict.fromkeys(sympy.sympify(e) for n in [*a.nodes, a.output]
                                for e, _ in n.min_sizes))
    order = _symbol_order(a)
    big = 1 << 16
    out: dict[str, int] = {}
    for name in order:
        def ok(v: int, name: str = name) -> bool:
            values = {axis_symbol(s): (v if s == name else big) for s in order}
            for e in checks:
                x = subs_int(e, values)
                if x.is_Integer and int(x) < 1:
                    return False
            return True

        found = smallest_true(ok)
        if found is None:
            return None
        out[name] = found
    return out


_PY_HEAD = '''"""{title}

Exported by rfgraph (`rfgraph export --format python`): exact formulas of every node's
output shape, receptive field, parameters and MACs for input {input}. Plain Python,
standard library only: sizes, MACs, field sizes and offsets are ints, a jump below 1
(after up-sampling) is a fractions.Fraction; floor is ``a // b`` and ceil ``-(-a // b)``,
both exact.

Receptive fields (rfgraph's convention): per input spatial axis the size, the jump (input
pixels between neighbouring outputs) and the offset (input coordinate of the first pixel
seen by output element 0; negative in the padding). Where the size depends on the output
position (transposed convolutions, up-sampling: it repeats with a period),
``receptive_field`` returns what rfgraph's ``Analysis.field_at`` does: ``size`` the
largest and ``min_size`` the smallest over the positions the output really has. Nodes in
UPPER_BOUND have a field that is an upper bound, not exact.{extra}
"""

from fractions import Fraction
from typing import NamedTuple
'''

_PY_BODY = '''

class Field(NamedTuple):
    """The receptive field of a node along one input spatial axis."""

    size: int
    jump: int | Fraction
    offset: int
    min_size: int


def _exact(value):
    """An int when ``value`` is a whole number (Fraction arithmetic stays exact)."""
    if isinstance(value, Fraction) and value.denominator == 1:
        return value.numerator
    return value


def check({sig}) -> None:
    """Raise ValueError when some node's output would be empty or a condition fails."""
    for node, what, size in _CHECKS:
        value = size({args})
        if value < 1:
            message = f"node {{node!r}} would give {{what}} = {{value}}"
            raise ValueError("input too small: " + message)
    for node, text, holds in _CONDITIONS:
        if not holds({args}):
            raise ValueError(f"node {{node!r}} needs {{text}}")


def valid({sig}) -> bool:
    """True when the model accepts these input sizes (see check)."""
    try:
        check({args})
    except ValueError:
        return False
    return True


def min_input() -> dict[str, int] | None:
    """The smallest valid size of each input symbol, the other sizes being large (every
    node's output non-empty; check() also tests the conditions, if any)."""
    return {min_input}


def params() -> int:
    """Parameters used by forward (a shared module counted once)."""
    return {params}


def node_params(node: str) -> int:
    """Parameters of one row (with a depth: the sum over a module's nodes)."""
    return PARAMS[node]


def macs({sig}) -> int:
    """Total multiply-accumulates of every node with a formula (see COMPLETE)."""
    check({args})
    return _exact(_total_macs({args}))


def node_macs(node: str, {sig}) -> int:
    """Multiply-accumulates of one row (with a depth: the sum over a module's nodes)."""
    check({args})
    if node not in PARAMS:
        raise KeyError(node)
    formula = _MACS.get(node)
    return 0 if formula is None else _exact(formula({args}))


def output_shape({sig}) -> tuple[int, ...]:
    """Shape of the model's output (its first tensor)."""
    check({args})
    return tuple(_exact(v) for v in _output_shape({args}))


def node_shape(node: str, {sig}) -> tuple[int, ...]:
    """Output shape of one row (with a depth: the module's last node)."""
    check({args})
    formula = _SHAPES[node]
    if formula is None:
        raise ValueError(f"node {{node!r}} has no shape formula")
    return tuple(_exact(v) for v in formula({args}))


def receptive_field(node: str, {sig}) -> tuple[Field, ...] | None:
    """Per spatial axis, the node's Field at these input sizes; None when the field is
    unknown, not exported or the node has no spatial axis."""
    check({args})
    entry = _FIELDS.get(node)
    if entry is None:
        return None
    shape = node_shape(node, {args})
    dims, formula = entry
    out = []
    for dim, (sizes, jump, offset) in zip(dims, formula({args})):
        n = 1 if dim is None else shape[dim]
        seen = [_exact(s) for s in sizes[: max(1, min(len(sizes), n))]]
        out.append(Field(max(seen), _exact(jump), _exact(offset), min(seen)))
    return tuple(out)
'''


def to_python(a: Analysis, depth: int | None = None) -> str:
    """A standalone Python module (standard library only) of the analysis' formulas; see the
    generated docstring and docs/export.md."""
    from ..analysis import condition_text

    order = _symbol_order(a)
    for name in order:
        if keyword.iskeyword(name) or name in _RESERVED or name.startswith("_"):
            raise RfgraphError(f"cannot export symbol {name!r} to Python: rename it "
                               f"(reserved: {', '.join(sorted(_RESERVED))})")
    names = set(order)
    args = ", ".join(order)
    lam = f"lambda {args}: " if args else "lambda: "
    rs = rows(a, depth)
    skipped: list[str] = []

    def entry(key: str, exprs: Sequence[Any], as_tuple: bool, what: str, pre: str = "",
              post: str = "") -> list[str]:
        try:
            return _value_block(f"{key}: {pre}{lam}", exprs, names, post + ",", "    ",
                                as_tuple)
        except _NoPython:
            skipped.append(what)
            return [f"    {key}: None,"]

    shapes: list[str] = []
    macs: list[str] = []
    fields: list[str] = []
    for row in rs:
        node, key, shape = row.node, _lit(row.name), _shape(row)
        if shape is None or node.numeric_only:
            shapes.append(f"    {key}: None,")
        else:
            shapes += entry(key, shape, True, row.name)
        if row.macs != 0 and not node.numeric_only:
            macs += entry(key, [row.macs], False, f"{row.name} (MACs)")
        fl, t = a.field(node), node.tensor
        if fl is None or t is None or node.numeric_only:
            continue
        phases = [_phase_sizes(r) for r in fl]
        dims = tuple(t.dim_of_axis(i) for i in range(len(fl)))
        try:
            if any(p is None for p in phases):
                raise _NoPython("a field whose size is not periodic in the position")
            per_axis = ["(" + _tuple([" ".join(_py_lines(s, names)) for s in p or []]) + ", "
                        + " ".join(_py_lines(r.jump, names)) + ", "
                        + " ".join(_py_lines(r.offset, names)) + ")"
                        for r, p in zip(fl, phases)]
        except _NoPython:
            skipped.append(f"{row.name} (field)")
            continue
        head = f"    {key}: ({_lit(dims)}, {lam}"
        one = head + "(" + ", ".join(per_axis) + ",)),"
        fields += ([one] if len(one) <= _WIDTH else
                   [head + "(", *[f"        {x}," for x in per_axis], "    )),"])
    checks: list[str] = []
    for n in [*a.nodes, a.output]:
        for e, what in n.min_sizes:
            if sympy.sympify(e).is_Number:
                continue
            try:
                lines = _value_block(f"({_lit(n.name)}, {_lit(what)}, {lam}", [e], names,
                                     "),", "    ", False)
            except _NoPython:
                skipped.append(f"{n.name} (size check)")
                continue
            if lines[-1] and "\n".join(lines) not in "\n".join(checks):
                checks += lines
    conditions: list[str] = []
    for n in a.nodes:
        for c in n.conditions:
            try:
                conditions += _value_block(f"({_lit(n.name)}, {_lit(condition_text(c))}, "
                                           f"{lam}", [c], names, "),", "    ", False)
            except (_NoPython, TypeError, AttributeError):
                skipped.append(f"{n.name} (condition)")
    out_t = a.output.tensor
    extra = ""
    if not a.complete:
        extra += ("\n\nIncomplete: the MACs leave out the nodes in INCOMPLETE_NODES (no "
                  "symbolic rule).")
    if a.at:
        extra += ("\n\nExported from an analysis at " + ", ".join(
            f"{k}={v}" for k, v in a.at.items()) + ": nodes measured there are left out.")

    def func(name: str, exprs: Sequence[Any] | None, as_tuple: bool) -> list[str]:
        sig = ", ".join(order)
        try:
            if exprs is None:
                raise _NoPython("no formula")
            body = _value_block("return ", exprs, names, "", "    ", as_tuple)
        except _NoPython:
            skipped.append(name)
            body = ["    return None"]
        return ["", "", f"def {name}({sig}):", *body]

    tail = [*func("_total_macs", [a.total_macs], False),
            *func("_output_shape", list(out_t.shape) if out_t is not None else None, True)]
    if skipped:
        extra += "\n\nNot exported (no exact Python form): " + ", ".join(skipped) + "."
    head = _PY_HEAD.format(title=f"{a.model_name}: rfgraph formulas.",
                           input="(" + ", ".join(_text(s) for s in a.input_shape) + ")",
                           extra=extra)
    input_shape = tuple(int(s) if sympy.sympify(s).is_Integer else _text(s)
                        for s in a.input_shape)
    mins = min_input(a)
    return "\n".join([
        head.rstrip("\n"), "",
        f"MODEL = {_lit(a.model_name)}",
        f"INPUT_SHAPE = {_lit(input_shape)}",
        f"SYMBOLS = {_lit(tuple(order))}",
        f"AXES = {_lit(tuple(a.axis_names))}",
        f"AT = {_lit(dict(a.at)) if a.at else None}",
        f"COMPLETE = {a.complete!r}",
        f"INCOMPLETE_NODES = {_lit(tuple(n.name for n in a.incomplete_nodes))}",
        f"UPPER_BOUND = {_lit(tuple(r.name for r in rs if _upper(a, r.node)))}",
        "NODES = (", *[f"    {_lit(r.name)}," for r in rs], ")",
        "PARAMS = {", *[f"    {_lit(r.name)}: {r.params}," for r in rs], "}",
        _PY_BODY.format(sig=", ".join(f"{s}: int" for s in order), args=args,
                        params=a.total_params,
                        min_input=_lit(mins) if mins is not None else None).rstrip("\n"),
        "", "", "# fmt: off",
        "# Generated tables: one formula per row (NODES) and input sizes as arguments.",
        *tail[2:],
        "", "", "_SHAPES = {", *shapes, "}",
        "_MACS = {", *macs, "}",
        "# node: (output dim of each spatial axis, per axis: (field sizes over one period of",
        "# output positions, jump, offset))",
        "_FIELDS = {", *fields, "}",
        "# node, what, size: the size must be >= 1",
        "_CHECKS = (", *checks, ")",
        "_CONDITIONS = (", *conditions, ")",
        "# fmt: on", ""])
