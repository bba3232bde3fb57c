"""The annotated graph as a Graphviz drawing (the only module that imports graphviz).

:func:`to_dot` builds the DOT text itself, deterministically: items in graph order, ids from the
fx node names (``mod:<qualified name>`` for a collapsed module), no timestamps, no dict-order or
hash dependence; the same analysis gives the same bytes. :func:`render` pipes it through Graphviz
``dot`` (``.svg``, ``.png``, ``.pdf``) or writes it (``.dot``, ``.gv``). When ``dot`` is missing it
writes the ``.dot`` next to the requested file and raises :class:`GraphvizNotFound`, whose one-line
message says how to install Graphviz.

What a drawing shows (docs/rendering.md):

- one box per node (``depth=None``) or, with ``depth=N``, one 3-D box per module N levels deep,
  the modules above that depth drawn as clusters;
- in each box: op and module, output shape (formula and, when evaluated, value), receptive field
  size and jump per input axis (offset on request), params, MACs and their share of the total;
- header colour by op family, body colour by MACs share (heat scale), edges labelled with the
  shape of the tensor they carry; merges have a double border, unaligned fields a thick red
  border and a red line saying why, unknown nodes a dashed red border;
- a legend with the totals, the colours present and the heat scale.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import graphviz
import sympy

from .advise import drawing_row
from .errors import RfgraphError
from .render_layout import (
    _Cluster,
    _cluster_tree,
    _columns,
    _Item,
    _items,
    _module_types,
    auto_depth,
)
from .symbolic import axis_symbol, format_expr, subs_int

if TYPE_CHECKING:
    from .analysis import Analysis
    from .annotate import NodeInfo

__all__ = ["FORMATS", "GraphvizNotFound", "INSTALL_HINT", "auto_depth", "check_format", "render",
           "to_dot", "to_svg"]

#: Output formats by file extension; ``dot``/``gv`` need no Graphviz binary.
FORMATS = ("svg", "png", "pdf", "dot", "gv")
INSTALL_HINT = "sudo apt-get install graphviz (Debian/Ubuntu), brew install graphviz (macOS)"

#: Header colour per op family (ColorBrewer Set3-like pastels; no yellow/orange/red, which the
#: heat scale uses).
FAMILY_COLOURS: dict[str, str] = {
    "input": "#bdbdbd",
    "output": "#bdbdbd",
    "conv": "#80b1d3",
    "linear": "#bc80bd",
    "attention": "#d4b9da",
    "recurrent": "#c6dbef",
    "pool": "#b3de69",
    "resize": "#8dd3c7",
    "pad": "#e5d8bd",
    "shuffle": "#bebada",
    "norm": "#d9d9d9",
    "activation": "#ccebc5",
    "merge": "#fccde5",
    "shape": "#eeeeee",
    "other": "#ffffff",
    "unknown": "#fb8072",
}
MODULE_COLOUR = "#ffffff"
#: Heat scale for the MACs share (ColorBrewer YlOrRd, light end): a box's body colour.
HEAT = ("#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a")
ALERT = "#d62728"
CLUSTER_FILLS = ("#f5f7fa", "#e9edf2")
FONT = "Helvetica,Arial,sans-serif"
#: Reference size for the MACs share (heat colour) of a symbolic analysis.
REFERENCE_SIZE = 224
#: Above this many boxes, transparent nodes (norms, activations) get a one-line label.
COMPACT_ABOVE = 60
#: Above this many boxes, edges are not labelled unless asked (``edge_labels=True``).
EDGE_LABELS_UP_TO = 120
#: Width (characters) at which long formulas wrap at " + ".
WRAP = 56


class GraphvizNotFound(RfgraphError):
    """Graphviz ``dot`` is not installed; the DOT source was written to :attr:`dot_path`."""

    def __init__(self, message: str, dot_path: Path) -> None:
        super().__init__(message)
        self.dot_path = dot_path


# -- values and text --------------------------------------------------------------------------

def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _int_text(value: int) -> str:
    return f"{value:,}"


def _expr_text(expr: Any, factor: bool = False, count: bool = False) -> str:
    """format_expr; ``count``: a plain integer gets thousands separators (params, MACs; not the
    dims of a shape, where '1×1,024×14×14' would read badly); ``factor``: parenthesised when it is
    a sum or product (one factor of a ×-list)."""
    e = sympy.sympify(expr)
    if e.is_Integer:
        return _int_text(int(e)) if count else str(int(e))
    text = format_expr(e)
    return f"({text})" if factor and (e.is_Add or e.is_Mul) else text


def _product(exprs: Sequence[Any], count: bool = False) -> str:
    """'1×16×(floor(H/2) + 1)×(floor(W/2) + 1)'; a single quantity is not parenthesised."""
    if len(exprs) == 1:
        return _expr_text(exprs[0], count=count)
    return "×".join(_expr_text(e, factor=True) for e in exprs)


def _wrap(text: str, width: int = WRAP) -> list[str]:
    """Split a long formula at ' + ' / ' - ' into lines of about ``width`` characters."""
    if len(text) <= width:
        return [text]
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):  # split points at top-level " + " and " - " only
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and ch in "+-" and text[i - 1:i] == " " and text[i + 1:i + 2] == " ":
            parts.append(text[start:i - 1])
            start = i
    parts.append(text[start:])
    lines: list[str] = []
    for p in parts:
        if lines and len(lines[-1]) + 1 + len(p) <= width:
            lines[-1] += " " + p
        else:
            lines.append(p)
    return lines


def _wrap_words(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


class _Values:
    """Formula and value texts for one analysis; MACs shares for the heat scale."""

    def __init__(self, a: Analysis) -> None:
        self.a = a
        self.evaluated = a.at is not None
        if self.evaluated:
            self.share_subs = {axis_symbol(k): v for k, v in (a.at or {}).items()}
            self.share_note = ""
        else:
            self.share_subs = {axis_symbol(s): REFERENCE_SIZE for s in a.symbols}
            self.share_note = ", ".join(f"{s}={REFERENCE_SIZE}" for s in a.symbols)
        total = a.total_macs_at if self.evaluated else self.int_at(a.total_macs)
        self.total_macs = total if total else None
        self.heat_max = 0.0  # the largest share of one box (top of the heat scale)

    def int_at(self, expr: Any) -> int | None:
        """``expr`` at the evaluated (or, for shares of a symbolic analysis, reference) sizes."""
        v = subs_int(sympy.sympify(expr), self.share_subs)
        return int(v) if v.is_Integer else None

    def share(self, macs: Any) -> float | None:
        if self.total_macs is None:
            return None
        v = self.int_at(macs)
        return None if v is None else v / self.total_macs

    def pair(self, exprs: Sequence[Any], count: bool = False) -> tuple[str, str | None]:
        """('formula', 'value') for a ×-joined list; value None when not evaluated or equal."""
        formula = _product(exprs, count)
        if not self.evaluated:
            return formula, None
        value = _product([self.a.value_of(e) for e in exprs], count)
        return formula, (None if value == formula else value)

    def short(self, exprs: Sequence[Any], count: bool = False) -> str:
        """The value when evaluated, else the formula (edge labels, MACs)."""
        formula, value = self.pair(exprs, count)
        return value if value is not None else formula

    def quantity(self, exprs: Sequence[Any]) -> str:
        formula, value = self.pair(exprs)
        return formula if value is None else f"{formula} = {value}"


def _share_text(share: float | None, reference: bool) -> str:
    if share is None:
        return ""
    if share == 0:
        text = "0%"
    elif share < 0.0005:
        text = "<0.1%"
    else:
        text = f"{100 * share:.1f}%"
    return text + ("*" if reference else "")



# -- labels -----------------------------------------------------------------------------------

def _op_name(n: NodeInfo) -> str:
    if n.kind == "input":
        return "input"
    if n.kind == "output":
        return "output"
    if n.module_type:
        return n.module_type
    target = n.target.rsplit(".", 1)[-1]
    return target or n.op


def _reason(n: NodeInfo, fields: list[Any] | None) -> str:
    if fields:
        reasons = list(dict.fromkeys(r.reason for r in fields if r.reason))
        if reasons:
            return reasons[0]
    return ""


def _unaligned(a: Analysis, n: NodeInfo) -> str | None:
    """'origin' when the node's field is unaligned but its inputs' are not (the merge where it
    happens), 'inherited' when an input's already is, None when aligned or unknown."""
    fields = a.field(n)
    if not fields or all(r.aligned for r in fields):
        return None
    for src in n.inputs:
        up = a.field(src)
        if up and not all(r.aligned for r in up):
            return "inherited"
    return "origin"


def _unknown_origin(n: NodeInfo) -> bool:
    """An op without a rule itself (not merely downstream of one)."""
    return n.unknown and n.unknown_op


def _unknown_why(n: NodeInfo) -> str:
    if _unknown_origin(n):
        return f"unknown: no rule for {n.module_type or _op_name(n)}"
    if n.unknown_root is not None:
        return f"unknown: depends on '{n.unknown_root}'"
    return "unknown"


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Look:
    """Everything that decides how one box is drawn."""

    rows: list[str]
    header_colour: str
    fill: str
    merge: bool = False
    unaligned: bool = False
    unknown: bool = False
    shape: str = "box"


def _row(text: str, colour: str | None = None, bold: bool = False, small: bool = False,
         font: str | None = None) -> str:
    body = text
    if bold:
        body = f"<B>{body}</B>"
    if small or font:
        attrs = ' POINT-SIZE="8"' if small else ""
        attrs += f' COLOR="{font}"' if font else ""
        body = f"<FONT{attrs}>{body}</FONT>"
    bg = f' BGCOLOR="{colour}"' if colour else ""
    return f'<TR><TD ALIGN="LEFT" BALIGN="LEFT"{bg}>{body}</TD></TR>'


def _alert(text: str, small: bool = True) -> str:
    """A warning row: red on white, readable on any heat colour."""
    size = ' POINT-SIZE="8"' if small else ""
    return (f'<TR><TD ALIGN="LEFT" BALIGN="LEFT" BGCOLOR="#ffffff"><FONT{size} '
            f'COLOR="{ALERT}">{text}</FONT></TD></TR>')


def _lines(prefix: str, text: str) -> str:
    """'prefix text' with long text wrapped onto indented continuation lines."""
    lines = _wrap(text)
    out = _esc(prefix + lines[0])
    for extra in lines[1:]:
        out += "<BR/>" + "&#160;" * 4 + _esc(extra)
    return out


def _pack(segments: list[str], colour: str | None = None) -> list[str]:
    """Rows holding ``segments`` side by side ("RF 3×3  jump 1×1") while they fit in WRAP
    characters; a long formula gets rows of its own, wrapped at ' + '."""
    rows: list[str] = []
    line = ""
    for seg in segments:
        if line and len(line) + 2 + len(seg) <= WRAP:
            line += "  " + seg
            continue
        if line:
            rows.append(_row(_lines("", line), font=colour))
        line = seg
    if line:
        rows.append(_row(_lines("", line), font=colour))
    return rows


def _rf_size_text(v: _Values, fields: list[Any]) -> str:
    """'RF 17×17', 'RF formula = value', with '(min ...)' when the size depends on the position
    (after a transposed conv or resize). A size with more than three forms over the positions
    is not written as a formula (the JSON and table have it)."""
    a = v.a
    formulas: list[str | None] = []
    maxima: list[int | None] = []
    minima: list[int | None] = []
    min_formulas: list[str | None] = []
    for r in fields:
        sizes = list(dict.fromkeys(r.sizes_over_period()))
        factor = len(fields) > 1
        if len(sizes) == 1:
            formulas.append(_expr_text(sizes[0], factor))
            min_formulas.append(None)
        elif len(sizes) <= 3:
            formulas.append(_expr_text(r.size, factor))
            min_formulas.append(_expr_text(r.min_size, factor))
        else:
            formulas.append(None)
            min_formulas.append(None)
        if v.evaluated:
            ints = [a.int_of(x) for x in sizes]
            known = all(i is not None for i in ints)
            maxima.append(max(ints) if known else None)  # type: ignore[type-var]
            minima.append(min(ints) if known else None)  # type: ignore[type-var]
    formula = None if None in formulas else "×".join(formulas)  # type: ignore[arg-type]
    if v.evaluated and None not in maxima:
        value = "×".join(str(x) for x in maxima)
        text = value if formula in (None, value) else f"{formula} = {value}"
        if minima != maxima:
            text += " (min " + "×".join(str(x) for x in minima) + ")"
        return "RF " + text
    if formula is None:
        return "RF varies with the position (see the table)"
    text = "RF " + formula
    if any(m is not None for m in min_formulas):
        text += " (min " + "×".join(m if m is not None else f for m, f in  # formula: no None
                                    zip(min_formulas, cast(list[str], formulas), strict=True)) + ")"
    return text


def _field_rows(v: _Values, n: NodeInfo, show_offset: bool) -> tuple[list[str], bool, str]:
    """RF rows of one node, whether it is unaligned, and why."""
    a = v.a
    fields = a.field(n)
    if fields is None:
        t = n.tensor
        if n.unknown or (t is not None and not t.const and t.rf):
            return [_alert(_esc("RF unknown"), small=False)], False, ""
        return [], False, ""
    size = _rf_size_text(v, fields)
    if not all(r.aligned for r in fields):
        size += " !"
    segments = [size, "jump " + v.quantity([r.jump for r in fields])]
    if show_offset:
        segments.append("offset " + v.quantity([r.offset for r in fields]))
    unaligned = not all(r.aligned for r in fields)
    return _pack(segments), unaligned, _reason(n, fields)


def _cost_rows(v: _Values, params: int, macs: Any) -> list[str]:
    """'params 4,608  MACs 58,839,552 (25.5%)': the value when evaluated, else the formula."""
    segments = []
    if params:
        segments.append(f"params {_int_text(params)}")
    macs = sympy.sympify(macs)
    if macs != 0:
        share = _share_text(v.share(macs), not v.evaluated)
        segments.append("MACs " + v.short([macs], count=True)
                        + (f" ({share})" if share else ""))
    return _pack(segments)


def _node_look(v: _Values, n: NodeInfo, compact: bool, show_offset: bool) -> _Look:
    family = "unknown" if _unknown_origin(n) else n.family
    op = _op_name(n)
    title = f"<B>{_esc(op)}</B>"
    sub = n.module if n.module and n.kind not in ("input", "output") else ""
    if sub and sub.replace(".", "_") != n.name:
        sub += f"  [{n.name}]"
    elif not sub and n.kind not in ("input", "output") and op != n.name:
        sub = f"[{n.name}]"
    if sub:
        title += "  " + _esc(sub)
    rows = [_row(title, FAMILY_COLOURS.get(family, FAMILY_COLOURS["other"]))]
    rows += [r for r in [drawing_row(v.a, n)] if r]  # a conv variant's label (advise.py)
    t = n.tensor
    fields = v.a.field(n)
    status = _unaligned(v.a, n)
    unaligned = status == "origin"
    transparent = compact and n.kind == "transparent" and not unaligned
    if t is not None and not transparent:
        rows.append(_row(_lines("", v.quantity(t.shape))))
    elif t is None and n.kind == "output":
        upstream = any(v.a[src].unknown for src in n.inputs)
        rows.append(_row(_esc("unknown" if upstream else "(no tensor)")))
    if not transparent and n.kind != "output":
        rows += _field_rows(v, n, show_offset)[0]
    rows += _cost_rows(v, n.params, n.macs)
    if unaligned:
        reason = _reason(n, fields) or "field centres differ"
        rows.append(_alert(_esc(_short("unaligned: " + reason))))
    if n.unknown:
        rows.append(_alert(_esc(_short(_unknown_why(n)))))
    return _Look(rows, FAMILY_COLOURS.get(family, "#ffffff"), _heat(v, v.share(n.macs)),
                 merge=n.kind == "merge", unaligned=unaligned, unknown=n.unknown)


def _group_output(it: _Item, consumers: dict[str, list[str]]) -> NodeInfo | None:
    """The module's result: its last node read from outside (or its last node with a tensor)."""
    inside = {n.name for n in it.nodes}
    leaving = [n for n in it.nodes if n.tensor is not None
               and any(c not in inside for c in consumers.get(n.name, []))]
    if leaving:
        return leaving[-1]
    with_tensor = [n for n in it.nodes if n.tensor is not None]
    return with_tensor[-1] if with_tensor else None


def _type_summary(nodes: list[NodeInfo], limit: int = 4) -> str:
    counts: dict[str, int] = {}
    for n in nodes:
        counts[_op_name(n)] = counts.get(_op_name(n), 0) + 1
    order = sorted(counts, key=lambda k: -counts[k])  # stable: first appearance breaks ties
    text = ", ".join(f"{k}×{counts[k]}" if counts[k] > 1 else k for k in order[:limit])
    return text + (", …" if len(order) > limit else "")


def _group_look(v: _Values, it: _Item, types: dict[str, str],
                consumers: dict[str, list[str]], show_offset: bool) -> _Look:
    a = v.a
    kind = types.get(it.key, "")
    title = f"<B>{_esc(it.key or a.model_name)}</B>" + (f"  {_esc(kind)}" if kind else "")
    rows = [_row(title, MODULE_COLOUR)]
    rows.append(_row(_esc(f"{len(it.nodes)} nodes: {_type_summary(it.nodes)}"), small=True))
    last = _group_output(it, consumers)
    if last is not None and last.tensor is not None:
        rows.append(_row(_lines("out ", v.quantity(last.tensor.shape))))
    if last is not None:
        field_rows, _, _ = _field_rows(v, last, show_offset)
        rows += field_rows
    params = sum(n.params for n in it.nodes)
    macs = sympy.expand(sympy.Add(*[n.macs for n in it.nodes]))
    rows += _cost_rows(v, params, macs)
    unaligned = [n for n in it.nodes if _unaligned(a, n) == "origin"]
    unknown = [n for n in it.nodes if n.unknown]
    if unaligned:
        rows.append(_alert(_esc(_short(f"unaligned: {', '.join(n.name for n in unaligned)}"))))
    if unknown:
        rows.append(_alert(_esc(_short(f"unknown: {', '.join(n.name for n in unknown)}"))))
    return _Look(rows, MODULE_COLOUR, _heat(v, v.share(macs)), merge=False,
                 unaligned=bool(unaligned), unknown=bool(unknown), shape="box3d")


def _heat(v: _Values, share: float | None) -> str:
    if share is None or share <= 0 or not v.heat_max:
        return "#ffffff"
    level = min(len(HEAT) - 1, int(share / v.heat_max * len(HEAT) - 1e-9))
    return HEAT[max(0, level)]


def _node_statement(it: _Item, look: _Look) -> str:
    table = ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">\n\t\t'
             + "\n\t\t".join(look.rows) + "</TABLE>>")  # a row per line: readable diffs
    attrs = [f"label={table}", f'shape="{look.shape}"', f'fillcolor="{look.fill}"']
    style = ["filled"]
    if look.unknown:
        style.append("dashed")
        attrs += [f'color="{ALERT}"', 'penwidth="2"']
    elif look.unaligned:
        attrs += [f'color="{ALERT}"', 'penwidth="2.5"']
    if look.merge:
        attrs.append('peripheries="2"')
    attrs.insert(2, f'style="{",".join(style)}"')
    return f"{_q(it.id)} [{' '.join(attrs)}]"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the legend -------------------------------------------------------------------------------

def _chips(chips: list[tuple[str, str]], per_row: int) -> str:
    """A small table of coloured cells with their names: the legend's swatches."""
    rows = []
    for i in range(0, len(chips), per_row):
        cells = "".join(f'<TD BGCOLOR="{colour}" BORDER="1" COLOR="#999999">{_esc(text)}</TD>'
                        for text, colour in chips[i:i + per_row])
        rows.append(f"<TR>{cells}</TR>")
    return ('<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="2">'
            + "".join(rows) + "</TABLE>")


def _legend(v: _Values, families: list[str], has: dict[str, bool], depth: int | None,
            edge_labels: bool, compact: bool) -> str:
    a = v.a
    rows: list[str] = []

    def add(text: str) -> None:
        rows.append(f'<TR><TD ALIGN="LEFT" BALIGN="LEFT">{text}</TD></TR>')

    title = f"<B>{_esc(a.model_name)}</B>  input {_esc(_product(a.input_shape))}"
    if a.at:
        title += _esc("  at " + ", ".join(f"{k}={x}" for k, x in a.at.items()))
    add(title)
    add(_esc(f"params {_int_text(a.total_params)}"))
    formula = format_expr(a.total_macs)
    value = a.total_macs_at if v.evaluated else None
    measured = a.measured_macs if v.evaluated else {}
    if value is None:
        text = formula
    elif sympy.sympify(a.total_macs).is_Integer and not measured:
        text = _int_text(value)
    elif measured:
        text = f"{formula} + {_int_text(sum(measured.values()))} measured = {_int_text(value)}"
    else:
        text = f"{formula} = {_int_text(value)}"
    add(_lines("MACs ", text))
    if not a.complete:
        add(_esc(f"incomplete: {len(a.incomplete_nodes)} node(s) without a symbolic rule"))
    chips = [(fam, FAMILY_COLOURS.get(fam, "#ffffff")) for fam in families]
    if has.get("module"):
        chips.append((f"module (depth {depth})", MODULE_COLOUR))
    add(_chips(chips, 6))
    if v.heat_max:
        step = v.heat_max / len(HEAT)
        heat = [("none", "#ffffff")] + [(f"{100 * step * i:.1f}-{100 * step * (i + 1):.1f}%",
                                          colour) for i, colour in enumerate(HEAT)]
        add("MACs share of the total (box colour)" + (" *" if v.share_note else ""))
        add(_chips(heat, len(heat)))
        if v.share_note:
            add(_esc(f"* at {v.share_note} (the input is symbolic; use --at for exact values)"))
    notes = ["RF: receptive field size per input axis; jump: input pixels between neighbouring "
             "outputs" + ("; offset: first input pixel of element 0" if has.get("offset") else "")
             + " (unclipped, Araujo et al. 2019)"]
    if has.get("module"):
        notes.append("3-D box: a collapsed module; out/RF of its result, params and MACs summed")
    if has.get("merge"):
        notes.append("double border: merge (add, cat, mul); its field is the union of its inputs")
    if compact:
        notes.append("norm/activation boxes: shape and field as their input")
    if edge_labels:
        notes.append("edge labels: shape of the tensor passed on")
    for note in notes:
        add("<BR/>".join(_esc(line) for line in _wrap_words(note, 2 * WRAP)))
    if has.get("unaligned"):
        add(f'<FONT COLOR="{ALERT}"><B>red border</B>: unaligned merge, the branch fields do '
            "not line up; RF ... ! : unaligned here or upstream</FONT>")
    if has.get("unknown"):
        add(f'<FONT COLOR="{ALERT}"><B>dashed red border</B>: unknown field (an op without a '
            "rule, or downstream of one)</FONT>")
    return ('<<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" '
            'COLOR="#999999" BGCOLOR="#ffffff">\n\t\t' + "\n\t\t".join(rows) + "</TABLE>>")


# -- DOT --------------------------------------------------------------------------------------

def to_dot(a: Analysis, depth: int | None = None, show_offset: bool = False,
           edge_labels: bool | None = None, compact: bool | None = None,
           show_shape_ops: bool = False, legend: bool = True, wrap: bool | None = None) -> str:
    """The annotated graph as DOT text (deterministic).

    ``depth``: None draws every node (modules as nested clusters); N collapses each module N
    levels deep into one box. ``show_offset`` adds the field offset. ``edge_labels`` /
    ``compact`` (one-line norm/activation boxes): None decides by the number of boxes.
    ``show_shape_ops`` also draws the shape arithmetic (``x.size()`` and friends) that is hidden
    by default because it carries no tensor. ``wrap``: lay a long drawing out in columns, one
    per top-level module (None: for a ``depth`` drawing whose longest path exceeds WRAP_RANKS
    boxes; a full drawing stays one column, to be scrolled).
    """
    if depth is not None and depth < 0:
        raise RfgraphError("depth must be >= 0 (or None for every node)")
    v = _Values(a)
    items = _items(a, depth, show_shape_ops)
    if compact is None:
        compact = len(items) > COMPACT_ABOVE
    if edge_labels is None:
        edge_labels = len(items) <= EDGE_LABELS_UP_TO
    item_of = {n.name: it for it in items for n in it.nodes}
    consumers: dict[str, list[str]] = {}
    for n in [*a.nodes, a.output]:
        for inp in n.inputs:
            consumers.setdefault(inp, []).append(n.name)
    types = _module_types(a)

    shares = []
    for it in items:
        macs = sympy.Add(*[n.macs for n in it.nodes])
        s = v.share(macs)
        if s:
            shares.append(s)
    v.heat_max = max(shares) if shares else 0.0

    looks: dict[str, _Look] = {}
    for it in items:
        looks[it.id] = (_group_look(v, it, types, consumers, show_offset) if it.collapsed
                        else _node_look(v, it.nodes[0], compact, show_offset))

    root = _cluster_tree(items, depth)
    lines = [
        f"digraph {_q(a.model_name)} {{",
        f'\tgraph [rankdir="TB" fontname="{FONT}" fontsize="11" ranksep="0.3" '
        'nodesep="0.25" newrank="true"]',
        f'\tnode [fontname="{FONT}" fontsize="10" margin="0.04,0.02" penwidth="1" '
        'height="0.1" width="0.1"]',
        f'\tedge [fontname="{FONT}" fontsize="8" arrowsize="0.6" color="#555555" '
        'fontcolor="#333333"]',
    ]

    def emit(cl: _Cluster, indent: str) -> None:
        for ch in cl.children:
            if isinstance(ch, _Cluster):
                lines.append(f"{indent}subgraph {_q('cluster_' + ch.key)} {{")
                lines.append(f"{indent}\t{_cluster_attrs(v, ch, types, items)}")
                emit(ch, indent + "\t")
                lines.append(f"{indent}}}")
            else:
                lines.append(indent + _node_statement(ch, looks[ch.id]))

    emit(root, "\t")

    seen: dict[tuple[str, str], list[str]] = {}
    for n in [*a.nodes, a.output]:
        dst = item_of.get(n.name)
        if dst is None:
            continue
        for src_name in n.inputs:
            src = item_of.get(src_name)
            if src is None or src is dst:
                continue
            labels = seen.setdefault((src.id, dst.id), [])
            t = a[src_name].tensor
            text = v.short(t.shape) if t is not None else ""
            if text and text not in labels:
                labels.append(text)
    columns = _columns(root, items, list(seen), wrap)
    column_of = {it.id: i for i, col in enumerate(columns or []) for it in col}
    if columns:  # the first boxes of the columns side by side, in order
        heads = [_q(col[0].id) for col in columns]
        lines.append(f'\t{{rank="same"; {" ".join(h + ";" for h in heads)}}}')
        lines += [f'\t{h} -> {k} [style="invis"]' for h, k in zip(heads, heads[1:], strict=False)]
    for (src_id, dst_id), labels in seen.items():
        attrs = []
        if edge_labels and labels:
            attrs.append(f"label={_q(' | '.join(labels))}")
        if columns and column_of[src_id] != column_of[dst_id]:
            attrs.append('constraint="false"')
        lines.append(f"\t{_q(src_id)} -> {_q(dst_id)}"
                     + (f" [{' '.join(attrs)}]" if attrs else ""))

    if legend:
        families = []
        for it in items:
            for n in it.nodes if not it.collapsed else []:
                fam = "unknown" if _unknown_origin(n) else n.family
                if fam not in families:
                    families.append(fam)
        has = {
            "module": any(it.collapsed for it in items),
            "merge": any(looks[it.id].merge or any(n.kind == "merge" for n in it.nodes)
                         for it in items),
            "unaligned": any(looks[it.id].unaligned for it in items),
            "unknown": any(looks[it.id].unknown for it in items),
            "offset": show_offset,
        }
        lines.append(f'\t"rfgraph:legend" [shape="plaintext" margin="0" label='
                     f"{_legend(v, families, has, depth, edge_labels, compact)}]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _cluster_attrs(v: _Values, cl: _Cluster, types: dict[str, str], items: list[_Item]) -> str:
    nodes = [n for it in items if it.key == cl.key or it.key.startswith(cl.key + ".")
             for n in it.nodes]
    params = sum(n.params for n in nodes)
    macs = sympy.Add(*[n.macs for n in nodes])
    parts = [f"<B>{_esc(cl.key)}</B>"]
    if types.get(cl.key):
        parts.append(_esc(types[cl.key]))
    cost = []
    if params:
        cost.append(f"{_int_text(params)} params")
    share = _share_text(v.share(macs), not v.evaluated)
    if share and macs != 0:
        cost.append(f"MACs {share}")
    if cost:
        parts.append(_esc(", ".join(cost)))
    label = "<" + "  ".join(parts) + ">"
    fill = CLUSTER_FILLS[(cl.depth - 1) % len(CLUSTER_FILLS)]
    return (f'graph [label={label} labeljust="l" style="rounded,filled" fillcolor="{fill}" '
            'color="#9e9e9e" fontsize="10"]')


# -- files ------------------------------------------------------------------------------------

def check_format(path: str | Path, fmt: str | None = None) -> str:
    """The output format for ``path`` ('svg', 'png', 'pdf', 'dot', 'gv'), or a one-line error
    (the CLI checks this before analysing)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise RfgraphError(f"cannot draw to {str(path)!r}: use a .svg, .png, .pdf or .dot file")
    return fmt


def _dot_binary() -> str | None:
    return shutil.which("dot")


def _pipe(source: str, fmt: str, dot_path: Path | None, target: str) -> bytes:
    """Run Graphviz; when it is missing, write ``dot_path`` and raise GraphvizNotFound."""
    def missing() -> GraphvizNotFound:
        where = ""
        if dot_path is not None:
            dot_path.parent.mkdir(parents=True, exist_ok=True)
            dot_path.write_text(source, encoding="utf-8")
            where = f"; wrote {dot_path} instead (dot -T{fmt} {dot_path} -o {target})"
        return GraphvizNotFound(f"Graphviz 'dot' not found, cannot draw {target}{where}; "
                                f"install Graphviz: {INSTALL_HINT}", dot_path or Path())

    if _dot_binary() is None:
        raise missing()
    try:
        return graphviz.pipe("dot", fmt, source.encode("utf-8"), quiet=True)
    except graphviz.ExecutableNotFound:
        raise missing() from None
    except graphviz.CalledProcessError as exc:
        err = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise RfgraphError(f"Graphviz failed on {target}: {err[0] if err else exc}") from None


def render(a: Analysis, path: str | Path, depth: int | None = None, show_offset: bool = False,
           format: str | None = None, **options: Any) -> Path:
    """Draw the analysis to ``path`` (format from the extension: .svg .png .pdf .dot .gv).

    Returns the path written. Without Graphviz ``dot``, writes ``<path minus extension>.dot`` and
    raises :class:`GraphvizNotFound` (an :class:`RfgraphError`) with a one-line install hint.
    ``options`` go to :func:`to_dot` (edge_labels, compact, show_shape_ops, legend).
    """
    path = Path(path)
    fmt = check_format(path, format)
    source = to_dot(a, depth=depth, show_offset=show_offset, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("dot", "gv"):
        path.write_text(source, encoding="utf-8")
        return path
    data = _pipe(source, fmt, path.with_suffix(".dot"), str(path))
    path.write_bytes(data)
    return path


def to_svg(a: Analysis, depth: int | None | str = "auto", **options: Any) -> str | None:
    """The drawing as SVG text, or None when Graphviz is missing (for Jupyter).

    ``depth="auto"`` draws every node up to 100 boxes, else collapses modules (:func:`auto_depth`).
    """
    if depth == "auto":
        depth = auto_depth(a)
    source = to_dot(a, depth=depth, **options)  # type: ignore[arg-type]
    try:
        return _pipe(source, "svg", None, "svg").decode("utf-8")
    except GraphvizNotFound:
        return None
