"""Human-readable tables. Formatting only: every number comes from the Analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .analysis import Analysis
    from .annotate import NodeInfo


def _num(a: Analysis, expr) -> str:
    v = a.value_of(expr)
    if v.is_Integer:
        return f"{int(v):,}"
    return a.text(v)


def grouped(text: str) -> str:
    """``text`` in parentheses when it is a sum at its top level (``floor(H/2) + 1``), so that
    ``×`` between the axes cannot be misread: ``16×(floor(H/2) + 1)``."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and ch in "+-" and 0 < i and text[i - 1] == " ":
            return f"({text})"
    return text


def _axes(a: Analysis, values) -> str:
    return "×".join(grouped(a.text(a.value_of(v))) for v in values)


def _field_axes(a: Analysis, fields, what: str) -> str:
    """The fields' ``what`` (size, jump, offset) per axis, each printed once per analysis."""
    from .export import field_text

    return "×".join(grouped(field_text(a, r, what)) for r in fields)


def _row(a: Analysis, n: NodeInfo) -> list[str]:
    t = n.tensor
    shape = _axes(a, t.shape) if t is not None else ("?" if n.unknown else "-")
    fields = a.field(n)
    if fields is None:
        known_none = t is None or t.const or not t.rf
        rf = jump = offset = "-" if known_none and not n.unknown else "?"
    else:
        fat = a.field_at(n) if a.at is not None else None
        rf = ("×".join(str(f.size) for f in fat) if fat is not None
              else _field_axes(a, fields, "size"))
        jump = _field_axes(a, fields, "jump")
        offset = _field_axes(a, fields, "offset")
        if any(r.upper for r in fields):
            rf = "≤" + rf  # an upper bound (window attention taken as global)
        if not all(r.aligned for r in fields):
            rf += " !"
    what = n.module_type or n.target
    flags = " (unknown)" if n.unknown else ""
    return [n.name, n.module or "", what + flags, shape, rf, jump, offset,
            f"{n.params:,}" if n.params else "", _num(a, n.macs) if n.macs != 0 else ""]


HEADER = ["node", "module", "op", "out shape", "RF", "jump", "offset", "params", "MACs"]
#: columns holding formulas: abbreviated first when the table is wider than the terminal
FORMULA_COLUMNS = ("out shape", "RF", "jump", "offset", "MACs", "out bytes", "saved",
                   "bwd MACs")
#: a formula cell is never abbreviated below this many characters
MIN_CELL = 16


def fit(rows: list[list[str]], header: list[str], width: int | None) -> tuple[list[list[str]],
                                                                              bool]:
    """``rows`` with the widest formula cells cut (``…``) until the table fits in ``width``
    columns (or every formula column is down to :data:`MIN_CELL`); True when something was
    cut. ``width`` None: unchanged."""
    if width is None:
        return rows, False
    cols = [i for i, h in enumerate(header) if h in FORMULA_COLUMNS]

    def widths(rs: list[list[str]]) -> list[int]:
        return [max(len(r[i]) for r in [header, *rs]) for i in range(len(header))]

    w = widths(rows)
    total = sum(w) + 2 * (len(w) - 1)
    caps = {i: w[i] for i in cols}
    while total > width:  # water-filling: shorten the widest formula column first
        widest = max(cols, key=lambda i: caps[i], default=None)
        if widest is None or caps[widest] <= MIN_CELL:
            break
        others = max((caps[i] for i in cols if i != widest), default=MIN_CELL)
        target = max(MIN_CELL, others, caps[widest] - (total - width))
        if target >= caps[widest]:
            target = caps[widest] - 1
        total -= caps[widest] - target
        caps[widest] = target
    if all(caps[i] >= w[i] for i in cols):
        return rows, False
    cut = [[c if i not in caps or len(c) <= caps[i] else c[:caps[i] - 1] + "…"
            for i, c in enumerate(r)] for r in rows]
    return cut, True


def _render(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {i for i, h in enumerate(header) if h in ("params", "MACs", "out bytes", "saved",
                                                      "bwd MACs")}
    def fmt(r: list[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in
                 enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()
    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def _exported(a: Analysis) -> bool:
    gm = a.graph_module
    meta = getattr(gm, "meta", None)
    return isinstance(meta, dict) and str(meta.get("rfgraph_source", "")).startswith(
        "torch.export")


def format_table(a: Analysis, depth: int | None = None, width: int | None = None) -> str:
    """The node table (or, with ``depth``, the module table) followed by totals. ``width``:
    cut the widest formula cells (``…``) so that the table fits in that many columns (the CLI
    passes the terminal's width unless ``--wide``); None: full text."""
    title = f"{a.model_name}  input {'×'.join(grouped(a.text(s)) for s in a.input_shape)}"
    if a.at:
        title += "  at " + ", ".join(f"{k}={v}" for k, v in a.at.items())
    lines = [title, ""]
    cut = False
    folded: list[NodeInfo] = []
    if depth is None:
        nodes = a.nodes
        if _exported(a):  # a .pt2 program lifts every weight and buffer to a graph input
            from .kinds import Kind

            folded = [n for n in nodes if n.kind in (Kind.CONSTANT, Kind.GUARD)]
            nodes = [n for n in nodes if n.kind not in (Kind.CONSTANT, Kind.GUARD)]
        rows = [_row(a, n) for n in nodes]
        from .advise import variants  # a "variant" column when some conv variant is recognised

        found = variants(a)
        if found:
            rows = [r + [found[n.name].label if n.name in found else ""]
                    for r, n in zip(rows, nodes)]
        header = HEADER + (["variant"] if found else [])
        if a.costs is not None:  # --costs: bytes (and backward MACs) per node
            from .cost_report import cost_cells, cost_header

            rows = [r + cost_cells(a, n) for r, n in zip(rows, nodes)]
            header = header + cost_header(a)
        rows, cut = fit(rows, header, width)
        lines += _render(rows, header)
    else:
        rows = []
        for r in a.by_module(depth):
            last = r["last"]
            t = last.tensor
            shape = _axes(a, t.shape) if t is not None else "?"
            fields = a.field(last)
            fat = a.field_at(last) if a.at is not None else None
            rf = ("×".join(str(f.size) for f in fat) if fat is not None
                  else _field_axes(a, fields, "size") if fields else "?")
            jump = _field_axes(a, fields, "jump") if fields else "?"
            rows.append([r["module"], ",".join(r["types"][:3]) + ("…" if len(r["types"]) > 3
                                                                  else ""),
                         str(r["nodes"]), shape, rf, jump,
                         f"{r['params']:,}" if r["params"] else "",
                         _num(a, r["macs"]) if r["macs"] != 0 else ""])
        header = ["module", "types", "nodes", "out shape", "RF", "jump", "params", "MACs"]
        rows, cut = fit(rows, header, width)
        lines += _render(rows, header)
    if folded:
        consts = [n for n in folded if n.op == "get_attr"]
        lines.append(f"(not listed: {len(consts)} weight and buffer inputs of the exported "
                     f"program, {sum(n.params for n in consts):,} params and "
                     f"{sum(n.buffers for n in consts):,} buffer elements"
                     + (f", and {len(folded) - len(consts)} guard node(s)"
                        if len(folded) > len(consts) else "") + "; --json lists every node)")
    if cut:
        lines.append(f"(formulas cut to fit {width} columns: --wide, or the JSON, has them in "
                     "full)")
    out = a.output
    t = out.tensor
    lines.append("")
    if t is not None:
        lines.append(f"output: {_axes(a, t.shape)}")
    lines.append(f"params: {a.total_params:,}   buffers: {a.total_buffers:,}")
    if a.params_unreached:
        mods = sorted(a.params_unreached)
        tops = list(dict.fromkeys(m.split(".")[0] for m in mods))  # aux1, aux2: not every conv
        shown = ", ".join(tops[:6]) + (", …" if len(tops) > 6 else "")
        if len(mods) > len(tops[:6]):
            shown += f" ({len(mods)} modules)"
        lines.append(f"params not reached by forward ({a.mode} mode): "
                     f"{a.total_params_unreached:,} in {shown}")
    total_at = a.total_macs_at
    measured = a.measured_macs
    if total_at is not None:
        text = f"MACs: {total_at:,}   (formula: {a.text(a.total_macs)}"
        if measured:
            text += f"; plus {sum(measured.values()):,} measured at these sizes in " + \
                ", ".join(measured)
        lines.append(text + ")")
    else:
        lines.append(f"MACs: {a.text(a.value_of(a.total_macs))}")
    if a.costs is not None:
        from .cost_report import cost_lines

        lines += cost_lines(a)
    conditions = a.conditions
    if conditions and a.at is None:
        lines.append("conditions on the input sizes: " + "; ".join(conditions[:8])
                     + (f"; … ({len(conditions)} in all)" if len(conditions) > 8 else ""))
    incomplete = a.incomplete_nodes
    if incomplete:
        lines.append(f"incomplete: the formulas leave out {len(incomplete)} node(s) without a "
                     "symbolic rule: " + ", ".join(n.name for n in incomplete[:12])
                     + (" …" if len(incomplete) > 12 else ""))
    unknown = a.unknown_nodes
    if unknown:
        lines.append(f"unknown nodes ({len(unknown)}): " + ", ".join(n.name for n in unknown))
    for w in a.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
