"""The shape, MACs and parameter checks: one run of the graph on meta tensors per size
(:class:`rfgraph.execute.MetaExecutor`), each node's output shape(s) and FLOPs / 2 against
rfgraph's formulas; each node's parameters against ``numel()``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sympy
import torch
from torch import fx, nn

from ..execute import MetaExecutor
from ..tensor import TensorInfo
from ..util import leaves, resolve_attr
from ..verify_terms import TOTAL
from .report import CheckRow, _row_equal
from .sizes import _input_shape

if TYPE_CHECKING:
    from ..analysis import Analysis
    from ..annotate import NodeInfo


# ------------------------------------------------------------------------------------------------
# Values: flatten rfgraph's and torch's node values the same way
# ------------------------------------------------------------------------------------------------
def _rf_leaves(value: Any, ev: Analysis) -> list[tuple[str, Any]]:
    """rfgraph's value as ("tensor", shape) and ("int", n) items, in order (bools dropped)."""
    out: list[tuple[str, Any]] = []
    for v in leaves(value, into_dataclasses=False):
        if isinstance(v, TensorInfo):
            out.append(("tensor", tuple(ev.int_of(s) for s in v.shape)))
        elif isinstance(v, sympy.Expr):
            out.append(("int", ev.int_of(v)))
        elif isinstance(v, int) and not isinstance(v, bool):
            out.append(("int", v))
    return out


def _torch_leaves(value: Any) -> list[tuple[str, Any]]:
    """torch's value flattened as :func:`_rf_leaves` flattens rfgraph's."""
    out: list[tuple[str, Any]] = []
    for v in leaves(value, into_dataclasses=False):
        if isinstance(v, torch.Tensor):
            out.append(("tensor", tuple(int(s) for s in v.shape)))
        elif isinstance(v, int) and not isinstance(v, bool):
            out.append(("int", int(v)))
    return out


# ------------------------------------------------------------------------------------------------
# Shapes and MACs: one pass on meta tensors
# ------------------------------------------------------------------------------------------------
def _model_dtype(gm: nn.Module) -> torch.dtype:
    """The dtype the model computes in: its (first floating) parameters', else its buffers',
    else float32."""
    for tensors in (gm.parameters(), gm.buffers()):
        for t in tensors:
            if t.is_floating_point():
                return t.dtype
    return torch.float32


def _shape_and_macs(analysis: Analysis, gm: fx.GraphModule, sizes: dict[str, int], ev: Analysis,
                    checks: Sequence[str], rows: list[CheckRow]) -> MetaExecutor:
    run = MetaExecutor(gm)
    shape = _input_shape(analysis, sizes)
    try:
        run.run(torch.empty(shape, device="meta", dtype=_model_dtype(gm)))
    except Exception:
        pass
    at = dict(sizes)
    infos = [*ev.nodes, ev.output]
    measured_total = 0
    for info in infos:
        name = info.name
        if name not in run.values:
            if run.failed is not None and run.failed[0] == name:
                for check in ("shape", "macs"):
                    if check in checks:
                        rows.append(CheckRow(name, check, "fail", at, detail=(
                            f"torch fails here at a size rfgraph accepts: {run.failed[1]}"),
                            error=math.inf))
            else:
                for check in ("shape", "macs"):
                    if check in checks:
                        rows.append(CheckRow(name, check, "skip", at,
                                             detail="not run (an earlier node failed)",
                                             reason="not-run"))
            continue
        cpu = run.on_cpu.get(name)
        if "shape" in checks:
            rows.append(_compare_shape(info, run.values[name], ev, at, cpu))
        if "macs" in checks and info.op != "output":
            flops = run.flops.get(name, 0)
            measured_total += flops
            rows.append(_compare_macs(info, flops, ev, at, cpu))
    if "macs" in checks and run.failed is None:
        want = ev.total_macs_at if ev.total_macs_at is not None else ev.value_of(ev.total_macs)
        got = sympy.Rational(measured_total, 2)
        rows.append(_row_equal(TOTAL, "macs", at, want, got, "sum over nodes vs "
                               "FlopCounterMode FLOPs / 2 of the whole run"))
    return run


def _compare_shape(info: NodeInfo, value: Any, ev: Analysis, at: dict[str, int], cpu: str | None,
                   ) -> CheckRow:
    where = f" (ran on CPU zeros: {cpu})" if cpu else ""
    want = _rf_leaves(info.value, ev)
    got = _torch_leaves(value)
    if not want:
        reason = "rfgraph has no value for this node"
        if info.unknown:
            reason = "rfgraph marks the node unknown"
        return CheckRow(info.name, "shape", "skip", at, detail=reason, reason="unknown")
    if [k for k, _ in want] != [k for k, _ in got]:  # compare the tensors alone
        want_t = [v for k, v in want if k == "tensor"]
        got_t = [v for k, v in got if k == "tensor"]
        if len(want_t) != len(got_t):
            return CheckRow(info.name, "shape", "fail", at, "", want_t, got_t, math.inf,
                            f"rfgraph's value holds {len(want_t)} tensor(s) {want_t}, torch's "
                            f"{len(got_t)} {got_t}{where}")
        want, got = [("tensor", v) for v in want_t], [("tensor", v) for v in got_t]
        where += " (non-tensor parts of the value not compared)"
    err = 0.0
    for (_, a), (_, b) in zip(want, got):
        if isinstance(a, tuple):
            if len(a) != len(b) or any(x is None for x in a):
                err = math.inf
                continue
            err = max([err, *(abs(x - y) for x, y in zip(a, b))])
        else:
            err = max(err, math.inf if a is None else abs(a - b))
    exp = [v for _, v in want]
    meas = [v for _, v in got]
    exp_v = exp[0] if len(exp) == 1 else exp
    meas_v = meas[0] if len(meas) == 1 else meas
    if err == 0:
        return CheckRow(info.name, "shape", "pass", at, "", exp_v, meas_v, 0.0, where.strip())
    return CheckRow(info.name, "shape", "fail", at, "", exp_v, meas_v, err,
                    f"rfgraph {exp_v} vs torch {meas_v}{where}")


def _compare_macs(info: NodeInfo, flops: int, ev: Analysis, at: dict[str, int], cpu: str | None,
                  ) -> CheckRow:
    want = ev.value_of(info.macs)
    got = sympy.Rational(flops, 2)
    note = "FlopCounterMode FLOPs / 2" + (f" (ran on CPU zeros: {cpu})" if cpu else "")
    return _row_equal(info.name, "macs", at, want, got, note)


# ------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------
def _params(analysis: Analysis, gm: fx.GraphModule, rows: list[CheckRow]) -> None:
    """Each node's parameters against numel() of the parameters it is the first to use."""
    targets = {n.name: str(n.target) for n in gm.graph.nodes}
    seen: set[int] = set()
    for info in analysis.nodes:
        node_params: list[torch.Tensor] = []
        if info.op == "call_module":
            node_params = list(gm.get_submodule(targets[info.name]).parameters())
        elif info.op == "get_attr":
            obj = resolve_attr(gm, targets[info.name])
            if isinstance(obj, nn.Parameter):
                node_params = [obj]
        elif info.params == 0:
            continue
        fresh = [p for p in node_params if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        numel = sum(p.numel() for p in fresh)
        if info.params == 0 and numel == 0 and info.op != "call_module":
            continue
        shared = len(fresh) < len(node_params)
        note = "numel of the parameters first used here" + (
            " (some were counted at an earlier node)" if shared else "")
        rows.append(_row_equal(info.name, "params", None, info.params, numel, note))
    all_params = sum(p.numel() for p in {id(p): p for p in gm.parameters()}.values())
    rows.append(_row_equal(TOTAL, "params", None, analysis.total_params, all_params,
                           "sum of numel() over the graph module's parameters"))
