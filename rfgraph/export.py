"""Machine-readable forms of an Analysis (the JSON schema is documented in docs/json.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sympy

if TYPE_CHECKING:
    from .analysis import Analysis
    from .annotate import NodeInfo

SCHEMA_VERSION = 1


def _s(a: Analysis, expr: Any) -> str:
    return a.text(a.value_of(expr))


def field_text(a: Analysis, r: Any, what: str) -> str:
    """Text of a field's ``what`` (size, min_size, jump, offset) at the analysis' sizes, made
    once per field and analysis (nodes that share a field, e.g. a conv and its ReLU, share it)."""
    formula = a.field_value(r, what, lambda: getattr(r, what))  # r.size etc. made once
    if a.at is not None and not formula.is_Number:
        return _s(a, formula)  # a value at these sizes (value_of is memoised per analysis)
    return a.field_value(r, "text " + what, lambda: _s(a, formula))


def variant_label(a: Analysis, node: NodeInfo) -> str | None:
    """The node's convolution-variant label ("depthwise-separable (depthwise)"), or None;
    detection runs once per analysis, on first use (rfgraph.advise.variants)."""
    from .advise import variants

    v = variants(a).get(node.name)
    return v.label if v is not None else None


def node_to_dict(a: Analysis, node: NodeInfo) -> dict[str, Any]:
    t = node.tensor
    evaluated = a.at is not None
    out_shape = [_s(a, s) for s in t.shape] if t is not None else []
    out_shape_at = None
    if evaluated and t is not None:
        values = [a.int_of(s) for s in t.shape]
        out_shape_at = values if all(v is not None for v in values) else None
    fields = a.field(node)
    rf = None
    rf_at = None
    if fields is not None:
        fat = a.field_at(node) if evaluated else None
        if fat is not None:  # sizes over the positions that exist at these sizes
            sizes = [str(f.size) for f in fat]
            min_sizes = [str(f.min_size) for f in fat]
        else:
            sizes = [field_text(a, r, "size") for r in fields]
            min_sizes = [field_text(a, r, "min_size") for r in fields]
        rf = {
            "size": sizes,
            "jump": [field_text(a, r, "jump") for r in fields],
            "offset": [field_text(a, r, "offset") for r in fields],
            "aligned": all(r.aligned for r in fields),
        }
        if any(r.upper for r in fields):
            rf["upper_bound"] = True  # not exact: the true field is inside this one
        reasons = [r.reason for r in fields if r.reason]
        if reasons:
            rf["unaligned_reason"] = "; ".join(dict.fromkeys(reasons))
        if min_sizes != sizes:
            rf["min_size"] = min_sizes
        if fat is not None:
            rf_at = {
                "size": [f.size for f in fat],
                "jump": [a.text(f.jump) for f in fat],
                "offset": [f.offset for f in fat],
            }
    macs_at = a.int_of(node.macs) if evaluated else None
    d: dict[str, Any] = {
        "name": node.name,
        "op": node.op,
        "target": node.target,
        "module": node.module,
        "inputs": list(node.inputs),
        "out_shape": out_shape,
        "out_shape_at": out_shape_at,
        "rf": rf,
        "rf_at": rf_at,
        "params": int(node.params),
        "params_formula": node.params_formula,
        "macs": _s(a, node.macs),
        "macs_at": macs_at,
        "kind": str(node.kind),
        "family": str(node.family),
    }
    if node.numeric_only:
        d["numeric"] = True  # shape and MACs measured at the evaluated sizes, no formula
    if node.unknown:
        d["unknown_reason"] = node.unknown_reason
        d["unknown_root"] = node.unknown_root
    if not node.has_rule:
        d["has_rule"] = False
    if node.notes:
        d["notes"] = list(node.notes)
    variant = variant_label(a, node)
    if variant:  # a layer of a recognised convolution variant (rfgraph/advise.py)
        d["variant"] = variant
    if a.costs is not None:
        from .cost_report import node_costs

        d.update(node_costs(a, node))
    if node.conditions:
        d["conditions"] = [f"{a.text(c.lhs)} = {a.text(c.rhs)}"
                           if isinstance(c, sympy.Eq) else str(c) for c in node.conditions]
    return d


def analysis_to_dict(a: Analysis) -> dict[str, Any]:
    total_macs = a.total_macs
    return {
        "model": a.model_name,
        "input": [a.text(s) for s in a.input_shape],
        "at": dict(a.at) if a.at is not None else None,
        "nodes": [node_to_dict(a, n) for n in a.nodes],
        "output": node_to_dict(a, a.output),
        "totals": {
            "params": int(a.total_params),
            "params_unreached": dict(sorted(a.params_unreached.items())),
            "macs": a.text(total_macs),
            "macs_at": a.total_macs_at,
            "macs_measured": a.measured_macs,
            "complete": a.complete,
            "conditions": a.conditions,
            "incomplete_nodes": [n.name for n in a.incomplete_nodes],
            "buffers": int(a.total_buffers),
            "unknown_nodes": [n.name for n in a.unknown_nodes],
            "unknown_ops": a.unknown_ops,
            **a.cost_values(),
        },
        "mode": a.mode,
        "warnings": list(a.warnings),
        "schema": SCHEMA_VERSION,
    }
