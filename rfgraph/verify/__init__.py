"""``rfgraph verify``: run the layers with torch and check every formula of an :class:`Analysis`.

Per node and per input size (``at``) the checks compare rfgraph's formulas with what torch does:

* ``shape``: the output shape(s) against a real execution of the graph on the meta device
  (:class:`rfgraph.execute.MetaExecutor`; a node that cannot run on meta runs on CPU zeros);
* ``macs``: MACs against ``FlopCounterMode`` FLOPs / 2, per node, in the same pass;
* ``params``: parameters against ``numel()`` (each parameter counted at its first use; size
  independent, checked once);
* ``rf``: receptive field size, jump and offset against the gradient probe (DESIGN.md), on the
  linearised float64 copy of the graph (:func:`rfgraph.verify.probing.probe_graph_module`);
* ``semantics``: what each layer computes against an independent reference
  (:mod:`rfgraph.semantics`); size independent, checked once on small random inputs;
* ``memory`` (an analysis with costs, ``analyze(..., costs=...)``): out bytes and saved bytes
  per node, the saved total, the backward's MACs and the peak against the graph run for real on
  the CPU (:mod:`rfgraph.verify.memory`).

Everything here only *reads* the analysis; expected values never feed the measurements except to
choose where to measure (which output element, how large an input). See docs/verify.md.

Every row passes, fails, or is skipped with a reason (:data:`SKIP_REASONS`): a skip *by design*
(nothing to compare: an unknown field, an integer tensor, ...) keeps the result OK; a check that
applies but could not run (no input size fits, over the time budget, an error) makes it "could
not check" (exit status 4) unless something failed (exit status 1).

The package, one module per stage: :mod:`~rfgraph.verify.report` (rows, report, skip reasons,
progress), :mod:`~rfgraph.verify.sizes` (which sizes), :mod:`~rfgraph.verify.checks` (shapes,
MACs, parameters), :mod:`~rfgraph.verify.probing` and :mod:`~rfgraph.verify.fields` (receptive
fields), :mod:`~rfgraph.verify.layers` (layer semantics), :mod:`~rfgraph.verify.memory` (memory and
training costs). The command line is in
:mod:`rfgraph.cli`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import RfgraphError
from ..execute import MetaExecutor
from ..util import first_line
from ..verify_terms import (
    CHECKS,
    EXIT_COULD_NOT_CHECK,
    EXIT_MISMATCH,
    EXIT_OK,
    NODE_BUDGET,
    SKIP_BY_DESIGN,
    SKIP_COULD_NOT_CHECK,
    SKIP_REASONS,
    TOTAL,
)
from .checks import _params, _shape_and_macs
from .fields import check_rf
from .layers import _Semantics
from .memory import check_memory
from .report import CheckRow, VerifyReport, _error_row, _fmt_sizes, _Progress, format_report
from .sizes import choose_sizes

if TYPE_CHECKING:
    from ..analysis import Analysis

__all__ = ["CHECKS", "EXIT_COULD_NOT_CHECK", "EXIT_MISMATCH", "EXIT_OK", "NODE_BUDGET",
           "SKIP_BY_DESIGN", "SKIP_COULD_NOT_CHECK", "SKIP_REASONS", "TOTAL", "CheckRow",
           "VerifyReport", "choose_sizes", "format_report", "verify"]


def verify(analysis: Analysis, at: Sequence[Mapping[str, int]] | Mapping[str, int] | None = None,
           checks: Iterable[str] | None = None,
           progress: bool | Callable[[int, int, str], Any] | None = None,
           rf_nodes: str = "auto", node_budget: float | None = NODE_BUDGET) -> VerifyReport:
    """Execute the model's layers with torch and compare every formula of ``analysis``.

    ``at``: a list of size dicts (``[{"H": 224, "W": 224}, ...]``) or one dict; None takes the
    analysis' own sizes when it is evaluated, else picks a typical, an odd/prime and the smallest
    valid size (:func:`choose_sizes`). ``checks``: a
    subset of :data:`CHECKS`. ``progress``: True for a bar on stderr, or ``fn(done, total,
    label)``. ``rf_nodes``: "auto" (a representative subset of nodes on big graphs) or "all".
    ``node_budget``: seconds one node's semantics check may take (None or 0: no limit); a check
    over it is reported as "not checked: too slow".

    ``report.status`` is "ok" (every check passed or was skipped by design), "mismatch" or
    "could not check" (some check applies but did not run); ``report.exit_status`` 0, 1, 4.
    """
    started = time.perf_counter()
    wanted = tuple(CHECKS if checks is None else [c.strip() for c in checks if c.strip()])
    unknown = [c for c in wanted if c not in CHECKS]
    if unknown or not wanted:
        raise RfgraphError(f"unknown check(s) {', '.join(unknown) or '(none)'}: choose from "
                           f"{', '.join(CHECKS)}")
    wanted = tuple(c for c in CHECKS if c in wanted)
    if "memory" in wanted and getattr(analysis, "costs", None) is None and checks is not None:
        raise RfgraphError("the memory check needs an analysis with costs: analyze(..., "
                           "costs=('memory', 'train')), or verify --costs memory,train")
    if node_budget is not None and not node_budget >= 0:
        raise RfgraphError(f"node_budget must be a number of seconds >= 0 (or None), not "
                           f"{node_budget!r}")
    gm = analysis.graph_module
    if gm is None:
        raise RfgraphError("verify needs the analysed graph module (analysis.graph_module)")
    if isinstance(at, Mapping):
        at = [at]
    if at is None and analysis.at:  # an evaluated analysis: its own sizes
        at = [dict(analysis.at)]
    sizes = choose_sizes(analysis) if at is None else [dict(s) for s in at]
    evaluated = []
    for s in sizes:
        evaluated.append(analysis.evaluate(**s))  # raises a one-line RfgraphError if invalid
    if not sizes:
        raise RfgraphError("verify needs at least one size")

    rows: list[CheckRow] = []
    notes: list[str] = []
    timings: dict[str, float] = {}
    prog = _Progress(progress)
    training = {name: m.training for name, m in gm.named_modules()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mode = getattr(analysis, "mode", "eval")
    try:
        for m in gm.modules():  # the analysis' mode (set directly: exported modules refuse
            m.training = mode == "train"  # .eval())
        special = sorted({type(m).__name__ for m in gm.modules()
                          if isinstance(m, (nn.modules.batchnorm._BatchNorm,
                                            nn.modules.dropout._DropoutNd))})
        if special and mode == "eval":
            notes.append(f"ran in eval mode ({', '.join(special)}: running statistics, no "
                         "dropout)")
        if at is None and analysis.symbols:
            notes.append("sizes chosen by verify: typical, odd/prime, smallest valid")
        memory = "memory" in wanted and getattr(analysis, "costs", None) is not None
        if "memory" in wanted and not memory:
            notes.append("memory: not checked, the analysis has no costs (verify --costs "
                         "memory,train; analyze(..., costs=('memory', 'train')))")
        prog.add(len(sizes) * (2 if memory else 1) + (1 if "params" in wanted else 0))
        if "params" in wanted:
            t0 = time.perf_counter()
            try:
                _params(analysis, gm, rows)
            except Exception as exc:  # reported as a check that did not run (see _error_row)
                rows.append(_error_row(TOTAL, "params", None, "", exc, "the parameter check "
                                       "(stopped here; please report it with the model)"))
            timings["params"] = time.perf_counter() - t0
            prog.step("params")
        meta_first: MetaExecutor | None = None
        t0 = time.perf_counter()
        for s, ev in zip(sizes, evaluated):
            try:
                run = _shape_and_macs(analysis, gm, s, ev, wanted, rows)
            except Exception as exc:
                for check in ("shape", "macs"):
                    if check in wanted:
                        rows.append(_error_row(TOTAL, check, s, "", exc, "the shape and MACs "
                                               "pass (stopped here; please report it with the "
                                               "model)"))
                prog.step(f"shapes and MACs at {_fmt_sizes(s)}")
                continue
            if run.on_cpu:
                notes.append(f"at {_fmt_sizes(s)} {len(run.on_cpu)} node(s) ran on CPU zeros "
                             f"(no meta kernel): {', '.join(sorted(run.on_cpu))}")
            meta_first = meta_first or run
            prog.step(f"shapes and MACs at {_fmt_sizes(s)}")
        timings["shape+macs"] = time.perf_counter() - t0
        if memory:
            t0 = time.perf_counter()
            try:
                check_memory(analysis, gm, sizes, evaluated, rows, notes, prog)
            except Exception as exc:
                rows.append(_error_row(TOTAL, "memory", None, "", exc, "the memory check "
                                       "(stopped here; please report it with the model)"))
            timings["memory"] = time.perf_counter() - t0
        if "rf" in wanted:
            t0 = time.perf_counter()
            try:
                check_rf(analysis, gm, sizes, evaluated, rows, notes, prog, rf_nodes)
            except Exception as exc:  # reported as checks that did not run (or, when one of
                rows.append(_error_row(  # rfgraph's formulas raised, as a failure)
                    TOTAL, "rf", None, "", exc, "the receptive-field check (stopped here; "
                    "please report it with the model)"))
            timings["rf"] = time.perf_counter() - t0
        if "semantics" in wanted:
            t0 = time.perf_counter()
            try:
                _Semantics(analysis, gm, meta_first, rows, prog, node_budget, notes).run()
            except Exception as exc:
                rows.append(CheckRow(TOTAL, "semantics", "skip", None, detail=(
                    f"the semantics check stopped: internal error in verify: "
                    f"{first_line(exc, 160)} (please report it with the model)"), reason="error"))
            timings["semantics"] = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
        for name, m in gm.named_modules():
            m.training = training.get(name, m.training)
        prog.close()
    timings["total"] = time.perf_counter() - started
    order = {n.name: i for i, n in enumerate([*analysis.nodes, analysis.output])}
    order[TOTAL] = len(order)
    check_order = {c: i for i, c in enumerate(CHECKS)}
    size_order = {_fmt_sizes(s): i for i, s in enumerate(sizes)}
    rows.sort(key=lambda r: (order.get(r.node, len(order)), check_order[r.check],
                             -1 if r.at is None else size_order.get(_fmt_sizes(r.at), 0)))
    labels = []
    for info in [*analysis.nodes, analysis.output]:
        labels.append((info.name, info.module or info.module_type or str(info.target)))
    return VerifyReport(analysis.model_name, tuple(str(s) for s in analysis.input_shape), sizes,
                        rows, labels, wanted, notes, timings)
