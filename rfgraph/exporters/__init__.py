"""Formula export: LaTeX, a standalone Python module, Markdown, CSV, JSON, SymPy srepr and a
pandas DataFrame (docs/export.md). Formatting only: every number comes from the Analysis.

``export(analysis, fmt, depth=None)`` is what ``Analysis.export`` and ``rfgraph export`` call;
``depth`` groups the rows by module as ``rfgraph analyze --depth`` does.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy
from sympy import Expr
from sympy.printing.latex import LatexPrinter

from ..errors import RfgraphError
from ..symbolic import format_expr

if TYPE_CHECKING:
    from ..analysis import Analysis
    from ..annotate import NodeInfo

__all__ = ["FORMATS", "Row", "export", "load_sympy", "min_input", "records", "rows",
           "to_csv", "to_dataframe", "to_json", "to_latex", "to_latex_expr", "to_markdown",
           "to_python", "to_python_expr", "to_sympy_dict"]

FORMATS = ("latex", "python", "markdown", "csv", "json", "sympy")


# -- rows: one per node, or one per module at a depth ---------------------------------------------
@dataclass
class Row:
    """One exported row: a node, or (with ``depth``) a module group whose shape and field are
    its last node's and whose params and MACs are the sums over its nodes."""

    name: str
    op: str
    module: str
    nodes: int
    node: NodeInfo  # the node (the group's last node)
    params: int
    params_formula: str
    macs: Expr


def rows(a: Analysis, depth: int | None = None) -> list[Row]:
    """The rows of every table format: every node but the output (as ``rfgraph analyze``), or
    the module groups of :meth:`Analysis.by_module` (``depth`` levels)."""
    if depth is None:
        return [Row(n.name, n.module_type or n.target, n.module, 1, n, int(n.params),
                    n.params_formula, sympy.sympify(n.macs)) for n in a.nodes]
    if depth < 0:
        raise RfgraphError("depth must be >= 0")
    out = []
    for g in a.by_module(depth):
        types = ",".join(g["types"])
        out.append(Row(g["module"], types, g["module"], int(g["nodes"]), g["last"],
                       int(g["params"]), str(g["params"]), sympy.expand(g["macs"])))
    return out


def _shape(row: Row) -> list[Expr] | None:
    t = row.node.tensor
    return None if t is None else [sympy.sympify(s) for s in t.shape]


def _field_state(a: Analysis, node: NodeInfo) -> str:
    """'' when the node has a field, '-' when it has none (no spatial axes), '?' when unknown."""
    if a.field(node) is not None:
        return ""
    t = node.tensor
    return "-" if (t is None or t.const or not t.rf) and not node.unknown else "?"


# -- text of formulas ------------------------------------------------------------------------------
def _text(expr: Any) -> str:
    return format_expr(sympy.sympify(expr))


def _value(a: Analysis, expr: Any) -> int | None:
    return a.int_of(expr) if a.at is not None else None


def _field_texts(a: Analysis, node: NodeInfo) -> dict[str, list[str]] | None:
    """Per axis: size (largest over the positions), min_size, jump, offset as formula text."""
    fields = a.field(node)
    if fields is None:
        return None
    return {"size": [_text(r.size) for r in fields],
            "min_size": [_text(r.min_size) for r in fields],
            "jump": [_text(r.jump) for r in fields],
            "offset": [_text(r.offset) for r in fields]}


def _field_values(a: Analysis, node: NodeInfo) -> dict[str, list[Any]] | None:
    fat = a.field_at(node) if a.at is not None else None
    if fat is None:
        return None
    return {"size": [f.size for f in fat], "min_size": [f.min_size for f in fat],
            "jump": [str(f.jump) for f in fat], "offset": [f.offset for f in fat]}


def _upper(a: Analysis, node: NodeInfo) -> bool:
    fields = a.field(node)
    return bool(fields) and any(r.upper for r in fields or [])


# -- records: the flat table behind Markdown, CSV and the DataFrame --------------------------------
def records(a: Analysis, depth: int | None = None) -> list[dict[str, Any]]:
    """One flat dict per row: formulas as text; with ``at``, exact integer values beside them
    (``*_at`` columns). Field columns per axis: ``rf_size_H``, ``rf_min_size_H``, ``rf_jump_H``,
    ``rf_offset_H`` (``rf_size`` is the largest over the output positions)."""
    out = []
    axes = list(a.axis_names)
    for row in rows(a, depth):
        node = row.node
        shape = _shape(row)
        rec: dict[str, Any] = {"name": row.name, "op": row.op, "module": row.module}
        if depth is not None:
            rec["nodes"] = row.nodes
        rec["out_shape"] = _joined(_text(s) for s in shape) if shape is not None else ""
        if a.at is not None:
            values = [_value(a, s) for s in shape] if shape is not None else []
            rec["out_shape_at"] = (_joined(values)
                                   if values and None not in values else "")
        texts = _field_texts(a, node)
        vals = _field_values(a, node)
        state = _field_state(a, node)
        for i, ax in enumerate(axes):
            for key in ("size", "min_size", "jump", "offset"):
                rec[f"rf_{key}_{ax}"] = (texts[key][i] if texts is not None
                                         and i < len(texts[key]) else state)
                if a.at is not None:
                    rec[f"rf_{key}_{ax}_at"] = (vals[key][i] if vals is not None
                                                and i < len(vals[key]) else None)
        rec["rf_upper_bound"] = _upper(a, node)
        rec["params"] = row.params
        rec["macs"] = _text(row.macs)
        if a.at is not None:
            rec["macs_at"] = _value(a, row.macs)
        rec["numeric"] = bool(node.numeric_only)
        rec["unknown"] = bool(node.unknown)
        out.append(rec)
    return out


def to_csv(a: Analysis, depth: int | None = None) -> str:
    recs = records(a, depth)
    buf = io.StringIO()
    if recs:
        writer = csv.DictWriter(buf, fieldnames=list(recs[0]), lineterminator="\n")
        writer.writeheader()
        for r in recs:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def to_dataframe(a: Analysis, depth: int | None = None) -> Any:
    """The rows of :func:`records` as a pandas DataFrame (needs pandas: the ``pandas`` extra)."""
    try:
        pd = importlib.import_module("pandas")  # optional: the ``pandas`` extra
    except ImportError:
        raise RfgraphError("to_dataframe needs pandas: pip install pandas "
                           "(or pip install 'rfgraph[pandas]')") from None
    return pd.DataFrame.from_records(records(a, depth))


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_code(text: str) -> str:
    return f"`{text}`" if text and text not in ("-", "?") else text


def _joined(texts: Iterable[Any]) -> str:
    """'a' for one value, '(a, b)' for several (shapes, one field value per axis)."""
    items = [str(t) for t in texts]
    return items[0] if len(items) == 1 else "(" + ", ".join(items) + ")"


def to_markdown(a: Analysis, depth: int | None = None) -> str:
    """A GitHub Markdown table (formulas in code spans; with ``at``, value columns too) and the
    totals."""
    header = ["node" if depth is None else "module", "op", "module" if depth is None else "nodes",
              "out shape", "RF size", "jump", "offset", "params", "MACs"]
    if a.at is not None:
        header[4:4] = ["out shape at"]
        header += ["RF at", "MACs at"]
    lines = [_title(a), "", "| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if h in ("params", "MACs at") else "---" for h in header)
             + "|"]
    for row in rows(a, depth):
        node = row.node
        shape = _shape(row)
        texts = _field_texts(a, node)
        state = _field_state(a, node)
        if texts is None:
            size = jump = offset = state
        else:
            size = _joined(texts["size"])
            if texts["min_size"] != texts["size"]:
                size += " (min " + _joined(texts["min_size"]) + ")"
            size = ("≤ " if _upper(a, node) else "") + size
            jump, offset = _joined(texts["jump"]), _joined(texts["offset"])
        cells = [row.name, row.op, row.module if depth is None else str(row.nodes),
                 _md_code(_joined(_text(s) for s in shape) if shape is not None else "?"),
                 _md_code(size), _md_code(jump), _md_code(offset),
                 f"{row.params:,}" if row.params else "",
                 _md_code(_text(row.macs)) if row.macs != 0 else ""]
        if a.at is not None:
            values = [_value(a, s) for s in shape] if shape is not None else [None]
            vals = _field_values(a, node)
            cells[4:4] = [_joined(values) if None not in values else "?"]
            rf_at = ("-" if state == "-" else "?") if vals is None else (
                _joined(vals["size"]) + (f" (min {_joined(vals['min_size'])})"
                                         if vals["min_size"] != vals["size"] else ""))
            macs_at = _value(a, row.macs)
            cells += [rf_at, f"{macs_at:,}" if macs_at is not None else "?"]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines += [""] + [f"- {k}: {v}" for k, v in _totals_text(a, code=True)]
    return "\n".join(lines) + "\n"


def _title(a: Analysis) -> str:
    shape = ", ".join(_text(s) for s in a.input_shape)
    at = (" at " + ", ".join(f"{k}={v}" for k, v in a.at.items())) if a.at else ""
    return f"**{a.model_name}**, input ({shape}){at}"


def _totals_text(a: Analysis, code: bool = False) -> list[tuple[str, str]]:
    def c(text: str) -> str:
        return f"`{text}`" if code else text

    out = []
    t = a.output.tensor
    if t is not None:
        out.append(("output", c(_joined(_text(s) for s in t.shape))))
    out.append(("params", f"{a.total_params:,}"))
    macs = c(_text(a.total_macs))
    if a.total_macs_at is not None:
        macs += f" = {a.total_macs_at:,}"
    out.append(("MACs", macs))
    if not a.complete:
        out.append(("incomplete", "the formulas leave out "
                    + ", ".join(n.name for n in a.incomplete_nodes)))
    if a.conditions:
        out.append(("conditions", "; ".join(c(x) for x in a.conditions)))
    return out


# -- LaTeX -----------------------------------------------------------------------------------------
class _Latex(LatexPrinter):
    """SymPy's LaTeX, with floors and ceilings as ``\\left\\lfloor \\frac{H}{2} \\right\\rfloor``
    (numerator and denominator split, as rfgraph's canonical forms are written)."""

    def _rounding(self, expr: Expr, left: str, right: str) -> str:
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        num = sympy.expand(num)
        inner = (self._print(num) if den == 1 else
                 f"\\frac{{{self._print(num)}}}{{{self._print(den)}}}")
        return f"\\left\\{left} {inner} \\right\\{right}"

    def _print_floor(self, expr: Expr, exp: Any = None) -> str:
        text = self._rounding(expr, "lfloor", "rfloor")
        return f"{text}^{{{exp}}}" if exp else text

    def _print_ceiling(self, expr: Expr, exp: Any = None) -> str:
        text = self._rounding(expr, "lceil", "rceil")
        return f"{text}^{{{exp}}}" if exp else text


_LATEX = _Latex({"order": "lex", "mul_symbol": "dot", "fold_short_frac": False})


def to_latex_expr(expr: Any) -> str:
    """LaTeX (math mode) of a formula: floors and ceilings as brackets, never ``ceiling``."""
    expr = sympy.sympify(expr)
    if expr.is_Integer:
        return f"{int(expr):,}".replace(",", "{,}")
    return _LATEX.doprint(expr)


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
                "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """Plain text for LaTeX: the special characters escaped."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def _tex_tuple(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "(" + r",\allowbreak ".join(items) + ")"


def _tex_cell(a: Analysis, exprs: Sequence[Any] | None, values: Sequence[Any] | None = None,
              ) -> str:
    if exprs is None:
        return "?"
    math = _tex_tuple([to_latex_expr(e) for e in exprs])
    if values is not None and None not in values and not all(
            sympy.sympify(e).is_Number for e in exprs):
        math += " = " + _tex_tuple([to_latex_expr(v) for v in values])
    return f"${math}$"


def to_latex(a: Analysis, depth: int | None = None) -> str:
    """A standalone LaTeX document (pdflatex; packages amsmath, longtable, geometry) whose
    ``longtable`` lists every row's formulas (with ``at``: ``formula = value``), then the
    totals."""
    axes = _tex_tuple(list(a.axis_names))
    head = [("node" if depth is None else "module"), "op", "output shape",
            f"RF size (${axes}$)", "jump", "offset", "params", "MACs"]
    widths = ("3.2cm", "2.8cm", "3.6cm", "2.8cm", "1.4cm", "1.8cm", "", "5.4cm")
    spec = "".join(r">{\raggedright\arraybackslash}p{" + w + "}" if w else "r" for w in widths)
    lines = [r"\documentclass[10pt]{article}", r"\usepackage[T1]{fontenc}",
             r"\usepackage{amsmath}", r"\usepackage{array}", r"\usepackage{longtable}",
             r"\usepackage[landscape,margin=1.5cm]{geometry}", r"\begin{document}",
             r"\section*{" + tex_escape(a.model_name) + "}",
             "Input $(" + ", ".join(to_latex_expr(s) for s in a.input_shape) + ")$"
             + ((", at $" + ", ".join(f"{k} = {v}" for k, v in a.at.items()) + "$")
                if a.at else "") + ".",
             "", r"{\small\setlength{\tabcolsep}{3pt}", r"\begin{longtable}{" + spec + "}",
             r"\hline",
             " & ".join(head) + r" \\", r"\hline", r"\endhead", r"\hline", r"\endfoot"]
    for row in rows(a, depth):
        node = row.node
        shape = _shape(row)
        values = [_value(a, s) for s in shape] if shape is not None and a.at else None
        fields = a.field(node)
        if fields is None:
            size = jump = offset = _field_state(a, node)
        else:
            fat = a.field_at(node) if a.at is not None else None
            size = _tex_cell(a, [r.size for r in fields],
                             [f.size for f in fat] if fat is not None else None)
            if any(r.min_size != r.size for r in fields):
                size += " (min " + _tex_cell(a, [r.min_size for r in fields], [
                    f.min_size for f in fat] if fat is not None else None) + ")"
            if _upper(a, node):
                size = r"$\le$ " + size
            jump = _tex_cell(a, [r.jump for r in fields])
            offset = _tex_cell(a, [r.offset for r in fields],
                               [f.offset for f in fat] if fat is not None else None)
        macs = "" if row.macs == 0 else _tex_cell(a, [row.macs],
                                                    [_value(a, row.macs)] if a.at else None)
        cells = [r"\texttt{" + tex_escape(row.name).replace(r"\_", r"\_\allowbreak{}") + "}",
                 tex_escape(row.op).replace(",", r",\allowbreak{}"),
                 _tex_cell(a, shape, values), size, jump, offset,
                 f"{row.params:,}" if row.params else "", macs]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\end{longtable}", "}", "", r"\paragraph{Totals.}", r"\begin{itemize}"]
    t = a.output.tensor
    if t is not None:
        lines.append(r"\item output: " + _tex_cell(a, list(t.shape)))
    lines.append(rf"\item params: {a.total_params:,}")
    macs = to_latex_expr(a.total_macs)
    if a.total_macs_at is not None:
        macs += " = " + to_latex_expr(a.total_macs_at)
    lines.append(rf"\item MACs: ${macs}$")
    if not a.complete:
        lines.append(r"\item incomplete: the formulas leave out "
                     + tex_escape(", ".join(n.name for n in a.incomplete_nodes)))
    for cond in a.conditions:
        lines.append(r"\item condition: " + tex_escape(cond))
    lines += [r"\end{itemize}", r"\end{document}", ""]
    return "\n".join(lines)


# -- SymPy srepr -----------------------------------------------------------------------------------
def _srepr(expr: Any) -> str:
    return sympy.srepr(sympy.sympify(expr))


def to_sympy_dict(a: Analysis, depth: int | None = None) -> dict[str, Any]:
    """Every formula as ``sympy.srepr`` text (round-trips through :func:`load_sympy`, symbols
    keep their assumptions); with ``at``, exact values beside them."""
    nodes = []
    for row in rows(a, depth):
        node = row.node
        shape = _shape(row)
        d: dict[str, Any] = {"name": row.name, "op": row.op, "module": row.module,
                             "out_shape": [_srepr(s) for s in shape] if shape is not None
                             else None}
        fields = a.field(node)
        d["rf"] = None if fields is None else {
            "size": [_srepr(r.size) for r in fields],
            "min_size": [_srepr(r.min_size) for r in fields],
            "jump": [_srepr(r.jump) for r in fields],
            "offset": [_srepr(r.offset) for r in fields],
            "upper_bound": any(r.upper for r in fields)}
        d["params"] = row.params
        d["macs"] = _srepr(row.macs)
        if a.at is not None:
            d["out_shape_at"] = [_value(a, s) for s in shape] if shape is not None else None
            d["rf_at"] = _field_values(a, node)
            d["macs_at"] = _value(a, row.macs)
        nodes.append(d)
    t = a.output.tensor
    return {"format": "rfgraph-sympy", "schema": 1, "model": a.model_name,
            "input": [_srepr(s) for s in a.input_shape], "at": a.at,
            "nodes": nodes,
            "output": [_srepr(s) for s in t.shape] if t is not None else None,
            "totals": {"params": a.total_params, "macs": _srepr(a.total_macs),
                       "macs_at": a.total_macs_at, "complete": a.complete}}


_SRE_KEYS = {"out_shape", "size", "min_size", "jump", "offset", "macs", "input", "output"}


def load_sympy(data: str | dict[str, Any]) -> dict[str, Any]:
    """The ``sympy`` export (JSON text or its dict) with every srepr string turned back into a
    SymPy expression (evaluated in SymPy's namespace: ``floor``, ``ceiling``, ``Min``...)."""
    obj = json.loads(data) if isinstance(data, str) else data
    ns: dict[str, Any] = {}
    exec("from sympy import *", ns)  # noqa: S102 - SymPy's own names, to read srepr back

    def back(value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {k: back(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [back(v, key) for v in value]
        if isinstance(value, str) and key in _SRE_KEYS:
            return eval(value, ns)  # noqa: S307 - srepr text written by to_sympy_dict
        return value

    return {k: (back(v, k) if k != "at" else v) for k, v in obj.items()}


# -- the dispatcher --------------------------------------------------------------------------------
_FORMULA_KEYS = ("out_shape", "rf", "macs")


def to_json(a: Analysis, depth: int | None = None) -> str:
    """``Analysis.to_dict()`` (docs/json.md) with the formulas kept: at given sizes to_dict()
    writes values into ``out_shape``/``rf``/``macs``; here those keys keep the formulas (those
    of the symbolic analysis) and the values stay in ``*_at``. With ``depth``, a ``by_module``
    list of the module groups is added."""
    data = a.to_dict()
    if a.at is not None:
        symbolic = a.with_at(None).to_dict()
        for node, formulas in zip([*data["nodes"], data["output"]],
                                  [*symbolic["nodes"], symbolic["output"]]):
            for key in _FORMULA_KEYS:
                node[key] = formulas[key]
        data["totals"]["macs"] = symbolic["totals"]["macs"]
    if depth is not None:
        data["by_module"] = records(a, depth)
    return json.dumps(data, indent=1) + "\n"


def _python(a: Analysis, depth: int | None = None) -> str:
    from .python import to_python

    return to_python(a, depth)


def export(a: Analysis, fmt: str, depth: int | None = None) -> str:
    """The analysis in format ``fmt`` (one of :data:`FORMATS`), as text."""
    if depth is not None and depth < 0:
        raise RfgraphError("--depth must be >= 0")
    writers: dict[str, Callable[[Analysis, int | None], str]] = {
        "latex": to_latex, "markdown": to_markdown, "csv": to_csv, "json": to_json,
        "sympy": lambda a, d: json.dumps(to_sympy_dict(a, d), indent=1) + "\n",
        "python": _python,
    }
    if fmt not in writers:
        raise RfgraphError(f"unknown export format {fmt!r}: choose from {', '.join(FORMATS)}")
    return writers[fmt](a, depth)


from .python import min_input, to_python, to_python_expr  # noqa: E402  (imports this module)
