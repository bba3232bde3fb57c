"""The memory and training costs of an analysis as JSON fields and table columns (the
formulas are made by :mod:`rfgraph.costs`; docs/json.md and docs/memory.md list the keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .analysis import Analysis
    from .annotate import NodeInfo

__all__ = ["cost_cells", "cost_header", "cost_lines", "format_bytes", "node_costs", "totals"]


def _pair(a: Analysis, key: str, expr: Any, formula: bool = False) -> dict[str, Any]:
    """``{key: text, key_at: int}`` (``_at`` only when evaluated; None when the formula is
    unknown). The text is the value at the evaluated sizes, as for a node's ``macs``, or with
    ``formula`` (the totals, as ``totals.macs``) the formula itself."""
    if expr is None:
        return {key: None, **({f"{key}_at": None} if a.at is not None else {})}
    out: dict[str, Any] = {key: a.text(expr if formula else a.value_of(expr))}
    if a.at is not None:
        out[f"{key}_at"] = a.int_of(expr)
    return out


def node_costs(a: Analysis, node: NodeInfo) -> dict[str, Any]:
    costs = a.costs
    c = costs.nodes.get(node.name) if costs is not None else None
    if c is None:
        return {}
    d: dict[str, Any] = {}
    d.update(_pair(a, "out_bytes", c.out_bytes))
    d["param_bytes"] = c.param_bytes  # of the parameters this node is the first to use
    d["buffer_bytes"] = c.buffer_bytes
    if costs.train:
        d.update(_pair(a, "saved_bytes", c.saved_bytes))
        d.update(_pair(a, "backward_macs", c.backward_macs))
        d.update(_pair(a, "grad_input_macs", c.grad_input_macs))
        d.update(_pair(a, "grad_weight_macs", c.grad_weight_macs))
    if c.notes:
        d["cost_notes"] = list(c.notes)
    return d


def totals(a: Analysis) -> dict[str, Any]:
    costs = a.costs
    if costs is None:
        return {}
    d: dict[str, Any] = {"dtype": costs.dtype, "param_bytes": costs.param_bytes,
                         "buffer_bytes": costs.buffer_bytes}
    d.update(_pair(a, "peak_bytes", costs.peak_formula, True))
    if a.at is not None:  # exact: the max over every step at these sizes
        d["peak_bytes_at"] = costs.peak_at(a.value_of)
    d["peak_exact"] = len(costs.peak_candidates) == 1
    d.update(_pair(a, "inference_bytes", costs.inference_total(costs.peak_formula), True))
    if a.at is not None:
        peak_at = costs.peak_at(a.value_of)
        d["inference_bytes_at"] = (None if peak_at is None else
                                   costs.param_bytes + costs.buffer_bytes + peak_at)
    if costs.train:
        d["optimizer"] = costs.optimizer
        d["grad_bytes"] = costs.grad_bytes
        d["optimizer_bytes"] = costs.optimizer_bytes
        d.update(_pair(a, "saved_bytes", costs.saved_total, True))
        d.update(_pair(a, "backward_macs", costs.backward_macs, True))
        d.update(_pair(a, "train_macs", a.total_macs + costs.backward_macs, True))
        d.update(_pair(a, "train_bytes", costs.train_total(costs.peak_formula), True))
        if a.at is not None:
            total = costs.train_total(costs.peak_at(a.value_of))
            d["train_bytes_at"] = None if total is None else a.int_of(total)
    if costs.peak_formula is None:
        d["peak_exact"] = False
    d["costs_complete"] = costs.complete and a.complete
    if costs.notes:
        d["cost_notes"] = list(costs.notes)
    return d


def format_bytes(n: int | None) -> str:
    """1536 -> '1.5 KiB' (binary units, 3 significant digits)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _cell(a: Analysis, expr: Any) -> str:
    if expr is None:
        return "?"
    v = a.value_of(expr)
    if v.is_Integer:
        return f"{int(v):,}" if int(v) else ""
    return a.text(v)


def cost_header(a: Analysis) -> list[str]:
    costs = a.costs
    if costs is None:
        return []
    return ["out bytes"] + (["saved", "bwd MACs"] if costs.train else [])


def cost_cells(a: Analysis, node: NodeInfo) -> list[str]:
    costs = a.costs
    if costs is None:
        return []
    c = costs.nodes.get(node.name)
    if c is None:
        return [""] * len(cost_header(a))
    cells = [_cell(a, c.out_bytes)]
    if costs.train:
        cells += [_cell(a, c.saved_bytes), _cell(a, c.backward_macs)]
    return cells


def cost_lines(a: Analysis) -> list[str]:
    """The totals under the table: memory, and training with ``train``."""
    t = totals(a)
    if not t:
        return []

    def show(key: str) -> str:
        at = t.get(f"{key}_at")
        if at is not None:
            return f"{format_bytes(at)} ({at:,} B)"
        if t.get(key) is None:
            return "unknown (not a formula)"
        return f"{t.get(key)} B"

    lines = [f"memory ({t['dtype']}): params {format_bytes(t['param_bytes'])}, buffers "
             f"{format_bytes(t['buffer_bytes'])}, peak activations {show('peak_bytes')}"
             + ("" if t["peak_exact"] or a.at is not None else
                " (the dominant term for large sizes; exact at given sizes with --at)")
             + f", inference total {show('inference_bytes')}"]
    if "saved_bytes" in t:
        macs = t.get("backward_macs_at")
        lines.append(
            f"training ({t['optimizer']}): saved for backward {show('saved_bytes')}, "
            f"gradients + optimizer state {format_bytes(t['optimizer_bytes'])}, "
            f"backward MACs {f'{macs:,}' if macs is not None else t['backward_macs']}, "
            f"estimated total {show('train_bytes')}")
    if not t["costs_complete"]:
        lines.append("costs incomplete: " + "; ".join(t.get("cost_notes", [])
                                                      or ["some nodes have no formula"]))
    return lines
