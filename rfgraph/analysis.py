"""The result of an analysis: per-node formulas, totals, evaluation at concrete sizes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sympy
from sympy import Expr, Integer

from .annotate import NodeInfo
from .compiled import FormulaCache
from .errors import InputTooSmall, InternalError, RfgraphError
from .receptive_field import AxisRF
from .symbolic import axis_symbol, format_expr, subs_int

if TYPE_CHECKING:
    import networkx as nx

AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@dataclass(frozen=True)
class FieldAt:
    """A node's receptive field along one axis, at concrete sizes."""

    size: int
    jump: sympy.Rational
    offset: int
    min_size: int


class Analysis:
    """Per-node symbolic output shapes, receptive fields, parameters and MACs of one model.

    ``at`` (None for a purely symbolic analysis) maps symbol names to the sizes substituted by
    :meth:`evaluate`.
    """

    def __init__(self, model_name: str, input_shape: Sequence[Expr], nodes: list[NodeInfo],
                 warnings: list[str] | None = None, at: Mapping[str, int] | None = None,
                 graph_module: Any = None, mode: str = "eval",
                 params_unreached: Mapping[str, int] | None = None,
                 rules: Mapping[Any, Any] | None = None,
                 formulas: FormulaCache | None = None,
                 shared: dict[Any, Any] | None = None, costs: Any = None) -> None:
        self.model_name = model_name
        self.input_shape = tuple(input_shape)
        self._nodes = nodes
        self.warnings = list(warnings or [])
        self.at = dict(at) if at is not None else None
        self.graph_module = graph_module
        #: "eval" or "train": the mode the model was traced and analysed in
        self.mode = mode
        #: parameters no node uses (e.g. auxiliary heads in eval mode): module -> numel
        self.params_unreached = dict(params_unreached or {})
        #: the extra rules of ``analyze(..., rules=)``: they apply again when :meth:`evaluate`
        #: re-runs the rules of nodes that need concrete sizes
        self.rules = dict(rules) if rules else None
        self._index = {n.name: n for n in nodes}
        self._graph: nx.DiGraph | None = None
        #: printed and compiled formulas, shared with the analyses evaluated from this one
        self._formulas = formulas
        #: values at ``at`` already computed: expression -> SymPy number (or expression)
        self._values: dict[tuple[type, Any], Expr] = {}
        self._subs: dict[sympy.Symbol, int] | None = None
        #: values that depend on the nodes only (total MACs formula, per-field values, see
        #: field_value): shared with the analyses evaluated from this one on the same nodes
        self._shared: dict[Any, Any] = {} if shared is None else shared
        #: memory and training costs (:class:`rfgraph.costs.Costs`) when asked for with
        #: ``analyze(..., costs=("memory", "train"))``, else None
        self.costs = costs

    def with_at(self, at: Mapping[str, int] | None, nodes: list[NodeInfo] | None = None,
                warnings: list[str] | None = None) -> Analysis:
        """A copy of this analysis at other sizes (same graph, mode and unreached params)."""
        return Analysis(self.model_name, self.input_shape,
                        self._nodes if nodes is None else nodes,
                        self.warnings if warnings is None else warnings, at,
                        self.graph_module, self.mode, self.params_unreached, self.rules,
                        self.formulas,
                        self._shared if nodes is None or nodes is self._nodes else None,
                        self.costs)

    # -- structure ---------------------------------------------------------------------------
    @property
    def nodes(self) -> list[NodeInfo]:
        """Every node but the output, in graph (topological) order."""
        return [n for n in self._nodes if n.op != "output"]

    @property
    def output(self) -> NodeInfo:
        """The graph's output node (its value is what forward returns)."""
        return self._nodes[-1]

    def __getitem__(self, name: str) -> NodeInfo:
        return self._index[name]

    @property
    def graph(self) -> nx.DiGraph:
        """The node graph (networkx): one node per fx node (attribute ``info``: its NodeInfo),
        an edge per data dependency. Built on first use and cached: networkx is imported only
        here, never by ``import rfgraph`` or by :func:`rfgraph.analyze`."""
        if self._graph is None:
            import networkx as nx

            g = nx.DiGraph()
            for n in self._nodes:
                g.add_node(n.name, info=n)
                for src in n.inputs:
                    g.add_edge(src, n.name)
            self._graph = g
        return self._graph

    def ancestors(self, node: NodeInfo | str) -> set[str]:
        """Names of the nodes ``node`` depends on (not itself)."""
        import networkx as nx

        return set(nx.ancestors(self.graph, node if isinstance(node, str) else node.name))

    @property
    def n_spatial(self) -> int:
        return max(0, len(self.input_shape) - 2)

    @property
    def axis_names(self) -> tuple[str, ...]:
        """Names of the input's spatial axes: the symbols when symbolic, else L/H,W/D,H,W."""
        names = []
        default = AXIS_NAMES.get(self.n_spatial, tuple(f"x{i}" for i in range(self.n_spatial)))
        for i, s in enumerate(self.input_shape[2:]):
            names.append(s.name if isinstance(s, sympy.Symbol) else default[i])
        return tuple(names)

    @property
    def symbols(self) -> list[str]:
        names: set[str] = set()
        for s in self.input_shape:
            names.update(x.name for x in sympy.sympify(s).free_symbols)
        return sorted(names)

    # -- values --------------------------------------------------------------------------------
    def _subs_map(self) -> dict[sympy.Symbol, int]:
        return {axis_symbol(k): v for k, v in (self.at or {}).items()}

    @property
    def formulas(self) -> FormulaCache:
        """Printed text and compiled (plain Python, exact) forms of this analysis' formulas,
        made once and shared with every analysis evaluated from it (rfgraph/compiled.py)."""
        if self._formulas is None:
            self._formulas = FormulaCache(self.symbols)
        return self._formulas

    def text(self, expr: Expr | int) -> str:
        """:func:`format_expr` of ``expr``, printed once per distinct expression."""
        return self.formulas.text(expr)

    def value_of(self, expr: Expr | int) -> Expr:
        """``expr`` with the ``at`` sizes substituted (unchanged for a symbolic analysis).

        Exactly ``subs_int(expr, sizes)``, computed by the formula compiled to Python once per
        analysis (SymPy substitution for what cannot be compiled)."""
        if self.at is None:
            return sympy.sympify(expr)
        key = (type(expr), expr)
        got = self._values.get(key)
        if got is None:
            if self._subs is None:
                self._subs = self._subs_map()
            got = self.formulas.value(expr, self.at, self._subs)
            self._values[key] = got
        return got

    def field_value(self, field: AxisRF, key: str, make: Any) -> Any:
        """``make()`` computed once per (field, key) for this analysis' nodes. ``key`` must
        name everything the value depends on besides the field (e.g. the sizes when it is a
        value at the evaluated sizes)."""
        k = (id(field), key)
        got = self._shared.get(k)
        if got is None or got[0] is not field:
            got = (field, make())
            self._shared[k] = got  # the field is kept with it: its id stays its own
        return got[1]

    def prepare(self) -> None:
        """Compile, in one batch, the formulas the values of every node need (shapes, MACs,
        size checks, fields): done once per analysis, by :meth:`evaluate`."""
        cache = self.formulas
        if any(nodes is self._nodes for nodes in cache.prepared):
            return
        cache.prepared.append(self._nodes)
        exprs: list[Any] = []
        for n in self._nodes:
            t = n.tensor
            if t is not None:
                exprs += list(t.shape)
            exprs.append(n.macs)
            exprs += [e for e, _ in n.min_sizes]
            for r in self.field(n) or ():
                if r.affine is None:  # (affine fields are numbers)
                    exprs += [r.jump, r.offset]
                    if r.extent is not None:  # a global field: one size formula, cheap
                        exprs += r.sizes_over_period()
        exprs.append(self.total_macs)
        cache.prepare(exprs)

    def int_of(self, expr: Expr | int) -> int | None:
        v = self.value_of(expr)
        return int(v) if v.is_Integer else None

    @property
    def total_params(self) -> int:
        return sum(n.params for n in self._nodes)

    @property
    def total_buffers(self) -> int:
        return sum(n.buffers for n in self._nodes)

    @property
    def total_params_unreached(self) -> int:
        """Parameters no node uses: total_params + this = sum(p.numel()) of the model."""
        return sum(self.params_unreached.values())

    @property
    def total_macs(self) -> Expr:
        """The MACs formula: the sum over every node with a symbolic rule. Nodes without a rule
        and nodes measured numerically are not in it (see :attr:`complete`)."""
        got = self._shared.get("total_macs")
        if got is None:
            got = sympy.expand(sympy.Add(*[n.macs for n in self._nodes if not n.numeric_only]))
            self._shared["total_macs"] = got
        return got

    @property
    def measured_macs(self) -> dict[str, int]:
        """MACs of the nodes measured numerically at the evaluated sizes: node -> value."""
        out = {}
        for n in self._nodes:
            if n.numeric_only:
                v = self.int_of(n.macs)
                if v:
                    out[n.name] = v
        return out

    @property
    def total_macs_at(self) -> int | None:
        """The total MACs at the evaluated sizes: the formula's value plus the MACs measured at
        these sizes for nodes without a rule; None when symbolic or when an unknown node could
        not be measured."""
        if self.at is None:
            return None
        value = self.int_of(self.total_macs)
        if value is None or any(n.unknown and not n.numeric_only for n in self.nodes):
            return None
        return value + sum(self.int_of(n.macs) or 0 for n in self._nodes if n.numeric_only)

    @property
    def incomplete_nodes(self) -> list[NodeInfo]:
        """Nodes whose cost is not in the formulas: no rule (unknown) or measured numerically."""
        return [n for n in self.nodes if n.unknown or n.numeric_only]

    @property
    def complete(self) -> bool:
        """True when every node has a symbolic rule: the formulas (totals included) cover the
        whole model at every size."""
        return not self.incomplete_nodes

    @property
    def conditions(self) -> list[str]:
        """Every distinct size condition the model states or needs (asserts such as ``H = 224``,
        branch sizes that must agree, window grids that must divide), in graph order."""
        out: list[str] = []
        for n in self._nodes:
            for c in n.conditions:
                text = condition_text(c)
                if text not in out:
                    out.append(text)
        return out

    @property
    def unknown_nodes(self) -> list[NodeInfo]:
        return [n for n in self.nodes if n.unknown]

    @property
    def unknown_ops(self) -> dict[str, dict[str, int]]:
        """Ops without a rule: op -> {module: count} (fvcore-style unsupported report)."""
        out: dict[str, dict[str, int]] = {}
        for n in self.nodes:
            if n.unknown and not n.has_rule:
                per = out.setdefault(n.module_type or n.target, {})
                per[n.module or "(top)"] = per.get(n.module or "(top)", 0) + 1
        return out

    def field(self, node: NodeInfo | str) -> list[AxisRF] | None:
        """The node's symbolic field per spatial axis, or None when unknown."""
        info = self[node] if isinstance(node, str) else node
        t = info.tensor
        if t is None or any(r is None for r in t.rf) or not t.rf:
            return None
        return cast("list[AxisRF]", list(t.rf))  # no None: checked above

    def field_at(self, node: NodeInfo | str) -> list[FieldAt] | None:
        """The field at the evaluated sizes: the largest/smallest size over the positions the
        node's output really has (one period of the position pattern at most)."""
        info = self[node] if isinstance(node, str) else node
        fields = self.field(info)
        if fields is None or self.at is None:
            return None
        t = info.tensor
        if t is None:  # field() returned None then
            raise InternalError(f"node '{info.name}' has a field but no tensor")
        out = []
        for a, r in enumerate(fields):
            if r.affine is not None and r.extent is None and getattr(r, "_pieces", None) is None:
                size, _, first = r.affine  # size a number; the offset too, but for
                # affine unions of branches whose offsets differ by numbers (a formula then)
                if not isinstance(first, int):
                    first = self.value_of(first)
                    if not first.is_Integer:
                        return None
                out.append(FieldAt(int(size), self.value_of(r.jump), int(first), int(size)))
                continue
            d = t.dim_of_axis(a)
            n = self.int_of(t.shape[d]) if d is not None else 1
            if r.extent is not None:  # a global field's sizes do not depend on n: formulas
                within = self.field_value(r, "sizes_within", lambda r=r: r.sizes_within(None))
                sizes = [self.value_of(s) for s in within]
                offset = self.value_of(r.offset)
            else:  # the sizes at the positions that exist (n of them), computed as numbers
                sizes, offset = self.field_value(
                    r, f"sizes_within {n} at {sorted(self.at.items())}",
                    lambda r=r, n=n: self._numeric_sizes(r, n))
            jump = self.value_of(r.jump)
            if not (all(s.is_Integer for s in sizes) and offset.is_Integer and jump.is_Rational):
                return None
            out.append(FieldAt(max(int(s) for s in sizes), jump, int(offset),
                               min(int(s) for s in sizes)))
        return out

    def cost_values(self) -> dict[str, Any]:
        """The totals of :attr:`costs` (formula text and, when evaluated, ``_at`` values):
        ``param_bytes``, ``buffer_bytes``, ``peak_bytes``, ``saved_bytes``, ``backward_macs``,
        ``optimizer_bytes``... (docs/json.md, docs/memory.md). Empty without costs."""
        from .cost_report import totals

        return totals(self) if self.costs is not None else {}

    def _numeric_sizes(self, r: AxisRF, n: int | None) -> tuple[list[Expr], Expr]:
        """A position-dependent field's sizes at the positions that exist and its offset, at
        this analysis' sizes: the maps run on numbers (rfgraph.symbolic.numeric_at) instead of
        building each position's formula and substituting (exact either way; tests compare)."""
        from .symbolic import numeric_at

        with numeric_at(self._subs_map()):
            sizes = [sympy.sympify(s) for s in r.sizes_within(n)]
            offset = sympy.sympify(r.offset)
        if not all(s.is_Number for s in sizes) or not offset.is_Number:  # pragma: no cover
            sizes = [self.value_of(s) for s in r.sizes_within(n)]
            offset = self.value_of(r.offset)
        return sizes, offset

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, **sizes: int) -> Analysis:
        """This analysis with ``sizes`` (e.g. H=224, W=224) substituted into every formula.

        Raises :class:`InputTooSmall` (naming the first layer whose output would be empty and the
        smallest valid size) and :class:`RfgraphError` when branches would not match.
        """
        at = dict(self.at or {})
        for name, value in sizes.items():
            if name not in self.symbols:
                raise RfgraphError(f"unknown size {name}={value}: the input symbols are "
                                   f"{', '.join(self.symbols) or 'none'}")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RfgraphError(f"size {name}={value!r} must be a positive integer")
            at[name] = int(value)
        missing = [s for s in self.symbols if s not in at]
        if missing:
            raise RfgraphError(f"evaluate needs a value for {', '.join(missing)}")
        nodes, messages = self._nodes, self.warnings
        if self.graph_module is not None and any(n.needs_at for n in self._nodes):
            # ops without rules run on meta tensors, size-dependent fields get resolved
            from .annotate import annotate
            from .modes import in_mode
            from .rules.base import scope

            with in_mode(self.graph_module, self.mode), scope(self.rules):
                nodes, extra = annotate(self.graph_module, self.input_shape, at, warn=False)
            messages = extra
        result = self.with_at(at, nodes, messages)
        result.prepare()
        result.check_sizes()
        return result

    def check_sizes(self) -> None:
        """Raise a one-line error if any node gets an empty output or broken conditions."""
        subs = self._subs_map()
        for i, node in enumerate(self._nodes):
            for expr, what in node.min_sizes:
                value = self.value_of(expr)
                if value.is_Integer and int(value) < 1:
                    hint = self._smallest_valid(i, expr)
                    raise InputTooSmall(
                        f"input too small: {_where(node)} would give {what} = {value} "
                        f"at {_fmt_at(self.at) if self.at else self._shape_text()}{hint}"
                    )
            for cond in node.conditions:
                value = subs_int(cond, subs)
                if value is sympy.false:
                    what = (f"{format_expr(cond.lhs)} = {format_expr(cond.rhs)}"
                            if isinstance(cond, sympy.Eq) else str(cond))
                    raise RfgraphError(
                        f"{_where(node)}: sizes do not fit at {_fmt_at(self.at)} "
                        f"(needs {what})"
                    )

    def _shape_text(self) -> str:
        return "input " + "×".join(self.text(s) for s in self.input_shape)

    def _smallest_valid(self, upto: int, failing: Expr) -> str:
        """'; the smallest valid H is 63' for the symbol that makes ``failing`` empty."""
        parts = []
        for sym in sorted(sympy.sympify(failing).free_symbols, key=lambda s: s.name):
            if sym.name not in (self.at or {}):
                continue
            best = self._search_min(sym, upto)
            if best is not None:
                parts.append(f"{sym.name} >= {best}")
        return f"; it needs {' and '.join(parts)}" if parts else ""

    def _search_min(self, sym: sympy.Symbol, upto: int) -> int | None:
        def ok(v: int) -> bool:
            subs = self._subs_map()
            subs[sym] = v
            for node in self._nodes[: upto + 1]:
                for expr, _ in node.min_sizes:
                    value = subs_int(expr, subs)
                    if value.is_Integer and int(value) < 1:
                        return False
            return True

        return smallest_true(ok, start=max(1, (self.at or {}).get(sym.name, 1)))

    # -- grouping ----------------------------------------------------------------------------
    def by_module(self, depth: int) -> list[dict[str, Any]]:
        """Rows grouped by module prefix of ``depth`` levels (torchinfo-like), graph order."""
        rows: dict[str, dict[str, Any]] = {}
        for n in self.nodes:
            if n.kind in ("input", "constant") and n.params == 0:
                continue
            parts = n.module.split(".") if n.module else []
            key = ".".join(parts[:depth]) if depth > 0 else ""
            row = rows.setdefault(key, {"module": key or "(top)", "nodes": 0, "params": 0,
                                        "macs": Integer(0), "last": n, "types": []})
            row["nodes"] += 1
            row["params"] += n.params
            row["macs"] = row["macs"] + n.macs
            row["last"] = n
            if n.module_type and n.module_type not in row["types"]:
                row["types"].append(n.module_type)
        return list(rows.values())

    # -- drawing -------------------------------------------------------------------------------
    def to_dot(self, depth: int | None = None, show_offset: bool = False,
               **options: Any) -> str:
        """The annotated graph as Graphviz DOT text (deterministic; see docs/rendering.md).

        ``depth``: None draws every node, N collapses modules N levels deep into one box each.
        ``options``: edge_labels, compact, show_shape_ops, legend, wrap (rfgraph.render.to_dot).
        """
        from .render import to_dot

        return to_dot(self, depth=depth, show_offset=show_offset, **options)

    def render(self, path: str | Path, depth: int | None = None, show_offset: bool = False,
               **options: Any) -> Path:
        """Draw the graph to ``path`` (.svg, .png, .pdf, .dot); returns the path written.

        Without Graphviz ``dot`` the DOT source is written next to ``path`` (``.dot``) and
        rfgraph.render.GraphvizNotFound (an RfgraphError) says how to install Graphviz.
        """
        from .render import render

        return render(self, path, depth=depth, show_offset=show_offset, **options)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """Jupyter shows an Analysis as its drawing (SVG; modules collapsed past 100 boxes)."""
        from .render import to_svg

        bundle = {"text/plain": repr(self)}
        try:
            svg = to_svg(self)
        except RfgraphError:
            svg = None
        if svg is not None:
            bundle["image/svg+xml"] = svg
        return bundle

    def erf(self, node: str | None = None, inits: int = 0, samples: int = 1, seed: int = 0,
            position: Sequence[int] | None = None) -> Any:
        """The effective receptive field map (Luo et al. 2016) of the centre element of
        ``node``: a float64 tensor of the input's spatial shape, sum of |d out / d input|.

        Needs concrete sizes (evaluate first). ``inits=0``: the model's own weights; ``n``: summed
        over n random initialisations. For the theoretical box and the 95% statistics use
        ``rfgraph.erf.effective_receptive_field`` (same arguments), which returns them too.
        """
        from .erf import effective_receptive_field

        return effective_receptive_field(self, node, inits=inits, samples=samples, seed=seed,
                                         position=position).map

    def verify(self, at: Sequence[Mapping[str, int]] | Mapping[str, int] | None = None,
               checks: Sequence[str] | None = None, progress: Any = None,
               **options: Any) -> Any:
        """Run the layers with torch and check every formula: shapes, params, MACs, receptive
        fields (gradient probe) and layer semantics (docs/verify.md).

        ``at``: sizes to check, e.g. ``[{"H": 224, "W": 224}, {"H": 97, "W": 131}]``; None: this
        analysis' sizes when it is evaluated, else a typical, an odd/prime and the smallest valid
        size. ``checks``: a subset of shape, params, macs, rf, semantics. ``progress``: True for
        a bar on stderr, or ``fn(done, total, label)``. ``options``: e.g. ``node_budget``
        (seconds per node for the semantics checks, 0 = no limit). Returns a
        :class:`rfgraph.verify.VerifyReport`: ``.ok`` (every check ran or was skipped for a
        stated reason), ``.mismatch``, ``.could_not_check``, ``.exit_status`` (0, 1 mismatch,
        4 could not check), ``.rows``, ``.format()``, ``.to_dict()``.
        """
        from .verify import verify

        return verify(self, at=at, checks=checks, progress=progress, **options)

    # -- output --------------------------------------------------------------------------------
    def export(self, format: str, depth: int | None = None) -> str:
        """The formulas as ``latex``, ``python`` (a module that imports neither rfgraph nor
        SymPy), ``markdown``, ``csv``, ``json`` or ``sympy`` text (docs/export.md)."""
        from .exporters import export

        return export(self, format, depth)

    def to_dataframe(self, depth: int | None = None) -> Any:
        """One row per node (or module at ``depth``) as a pandas DataFrame (needs pandas)."""
        from .exporters import to_dataframe

        return to_dataframe(self, depth)

    def to_dict(self) -> dict[str, Any]:
        from .export import analysis_to_dict

        return analysis_to_dict(self)

    def __str__(self) -> str:
        from .report import format_table

        return format_table(self)

    def __repr__(self) -> str:
        at = f", at={self.at}" if self.at else ""
        return (f"<Analysis {self.model_name} input={tuple(map(str, self.input_shape))}{at}: "
                f"{len(self.nodes)} nodes, {self.total_params:,} params>")


def smallest_true(pred, start: int = 1, cap: int = 2**40) -> int | None:
    """The smallest n >= 1 with ``pred(n)``, for a predicate that stays true once true (every
    size is non-decreasing in the input size): doubling from ``start``, then bisection."""
    hi = max(1, start)
    while not pred(hi):
        hi *= 2
        if hi > cap:
            return None
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def condition_text(cond: Any) -> str:
    """'floor(H/16) = 14' for an Eq, SymPy's text otherwise."""
    if isinstance(cond, sympy.Eq):
        return f"{format_expr(cond.lhs)} = {format_expr(cond.rhs)}"
    return str(cond)


def _where(node: NodeInfo) -> str:
    what = node.module_type or node.target
    mod = f", module '{node.module}'" if node.module else ""
    return f"node '{node.name}' ({what}{mod})"


def _fmt_at(at: Mapping[str, int] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (at or {}).items()) or "the given shape"
