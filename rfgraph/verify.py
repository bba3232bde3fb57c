"""``rfgraph verify``: run the layers with torch and check every formula of an :class:`Analysis`.

Per node and per input size (``at``) the checks compare rfgraph's formulas with what torch does:

* ``shape``: the output shape(s) against a real execution of the graph on the meta device (an
  :class:`torch.fx.Interpreter`; a node that cannot run on meta runs on CPU zeros);
* ``macs``: MACs against ``FlopCounterMode`` FLOPs / 2, per node, in the same pass;
* ``params``: parameters against ``numel()`` (each parameter counted at its first use; size
  independent, checked once);
* ``rf``: receptive field size, jump and offset against the gradient probe (DESIGN.md), on the
  linearised float64 copy of the graph (:func:`rfgraph.probe.prepare_probe_model`);
* ``semantics``: what each layer computes against an independent reference
  (:mod:`rfgraph.semantics`); size independent, checked once on small random inputs.

Everything here only *reads* the analysis; expected values never feed the measurements except to
choose where to measure (which output element, how large an input). See docs/verify.md.

Every row passes, fails, or is skipped with a reason (:data:`SKIP_REASONS`): a skip *by design*
(nothing to compare: an unknown field, an integer tensor, ...) keeps the result OK; a check that
applies but could not run (no input size fits, over the time budget, an error) makes it "could
not check" (exit status 4) unless something failed (exit status 1).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import math
import operator
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import sympy
import torch
import torch.nn.functional as F
from torch import fx, nn

from . import semantics as ref
from .annotate import first_of
from .errors import RfgraphError
from .symbolic import axis_symbol
from .tensor import TensorInfo

__all__ = ["CHECKS", "CheckRow", "VerifyReport", "choose_sizes", "verify"]

CHECKS = ("shape", "params", "macs", "rf", "semantics")
TOTAL = "(total)"
#: fields larger than this many input pixels along one axis are not probed
MAX_PROBE = 8192
#: above this many probe-able nodes only a representative subset is probed (see _rf_subset)
FULL_PROBE_LIMIT = 90
#: ... or when the model costs more than this many MACs per input pixel (VGG-16: ~309k)
BIG_MACS_PER_PIXEL = 50_000
#: nn.Linear layers with more weights than this get a parameter-free stand-in in the probe copy
BIG_LINEAR = 1 << 22
SEMANTICS_TOL = 1e-9
#: above this estimated cost (element operations) the transposed-conv reference is computed
#: matrix-free (the dense conv matrix of a dilated 3-D kernel takes minutes to build)
CONV_MATRIX_COST = 20_000_000


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
#: Why a check was skipped. A skip *by design* (the first group) is a stated, documented case in
#: which there is nothing verify can compare; the result can still be OK. A skip in the second
#: group means the check *could not run* although it applies: the result is "could not check"
#: (exit status 4) unless something failed. A skip row without a known reason counts as "could
#: not check". docs/verify.md lists them all.
SKIP_BY_DESIGN: dict[str, str] = {
    "unknown": "rfgraph gives no value or field here (unknown): nothing to compare",
    "upper-bound": "rfgraph gives only an upper bound of the field (e.g. window attention "
                   "taken as global)",
    "integer": "integer tensor (e.g. pooling indices): no gradient to probe",
    "constant": "the output depends on no input pixel (a constant, or only padding)",
    "padding": "the probed elements read no input pixel (they lie in padding) where rfgraph "
               "extrapolates a field to them",
    "mirrored": "reflect/replicate/circular padding: a padded coordinate stands for a pixel "
                "inside the image",
    "not-probed": "big model: a representative subset of the nodes is probed",
    "same-module": "a shared module, checked at its first node",
    "not-one-conv": "a chain of convolutions that is not one convolution",
    "no-reference": "no independent reference for this configuration of the layer",
}
SKIP_COULD_NOT_CHECK: dict[str, str] = {
    "no-size": "no input size was found at which the check can run (the model, or the part of "
               "it the check needs, rejects every size tried)",
    "too-large": "the field is too large to probe",
    "too-slow": "not checked: too slow (over the per-node time budget)",
    "error": "the check raised an error (a limit of verify or of the probe copy)",
    "not-run": "not run: an earlier node failed in torch",
}
SKIP_REASONS = {**SKIP_BY_DESIGN, **SKIP_COULD_NOT_CHECK}
#: exit statuses of ``rfgraph verify`` (2 = user error and 3 = internal error come from the CLI)
EXIT_OK, EXIT_MISMATCH, EXIT_COULD_NOT_CHECK = 0, 1, 4
#: default time budget (seconds) of one node's semantics check (``node_budget``)
NODE_BUDGET = 5.0


@dataclass
class CheckRow:
    """One comparison: ``status`` is "pass", "fail" or "skip" (skipped is not passed).

    ``reason`` (skips only) is a key of :data:`SKIP_REASONS`: a skip by design
    (:data:`SKIP_BY_DESIGN`) or a check that could not run (:data:`SKIP_COULD_NOT_CHECK`)."""

    node: str
    check: str
    status: str
    at: dict[str, int] | None = None  # None: size independent (checked once)
    what: str = ""  # axis name, or which reference
    expected: Any = None
    measured: Any = None
    error: float = 0.0  # the worst error (pixels, MACs, elements, or relative for semantics)
    detail: str = ""
    reason: str = ""

    @property
    def could_not_check(self) -> bool:
        """A skip that is not one of the documented skips by design: the check applies but
        could not run (no fitting size, too slow, an error, ...)."""
        return self.status == "skip" and self.reason not in SKIP_BY_DESIGN

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "check": self.check, "status": self.status, "at": self.at,
                "what": self.what, "expected": _jsonable(self.expected),
                "measured": _jsonable(self.measured), "error": _jsonable(self.error),
                "detail": self.detail, "reason": self.reason,
                "could_not_check": self.could_not_check}


@dataclass
class VerifyReport:
    """The result of :func:`verify`: every :class:`CheckRow`, and notes on what was done."""

    model: str
    input_shape: tuple[str, ...]
    sizes: list[dict[str, int]]
    rows: list[CheckRow]
    nodes: list[tuple[str, str]]  # (node name, module or target) in graph order
    checks: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (not printed)

    @property
    def ok(self) -> bool:
        """True when no check failed and every check ran or was skipped by design (a stated,
        documented reason, :data:`SKIP_BY_DESIGN`)."""
        return self.status == "ok"

    @property
    def mismatch(self) -> bool:
        """True when some check failed."""
        return any(r.status == "fail" for r in self.rows)

    @property
    def status(self) -> str:
        """"mismatch" (some check failed), "could not check" (no failure, but some check could
        not run) or "ok"."""
        if self.mismatch:
            return "mismatch"
        return "could not check" if self.could_not_check else "ok"

    @property
    def exit_status(self) -> int:
        """``rfgraph verify``'s exit status: 0 ok, 1 a mismatch, 4 could not check."""
        return {"ok": EXIT_OK, "mismatch": EXIT_MISMATCH}.get(self.status, EXIT_COULD_NOT_CHECK)

    @property
    def failures(self) -> list[CheckRow]:
        return [r for r in self.rows if r.status == "fail"]

    @property
    def skipped(self) -> list[CheckRow]:
        """Every skipped row (by design or could not check)."""
        return [r for r in self.rows if r.status == "skip"]

    @property
    def could_not_check(self) -> list[CheckRow]:
        """The skipped rows whose check applies but could not run (not a skip by design)."""
        return [r for r in self.rows if r.could_not_check]

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "skip": 0}
        for r in self.rows:
            out[r.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "exit_status": self.exit_status,
                "model": self.model, "input": list(self.input_shape),
                "sizes": self.sizes, "checks": list(self.checks), "summary": self.counts(),
                "could_not_check": len(self.could_not_check),
                "notes": list(self.notes), "rows": [r.to_dict() for r in self.rows]}

    def format(self) -> str:
        """The node x check table, failures, skips grouped by reason, notes (deterministic)."""
        return format_report(self)

    def __str__(self) -> str:
        return self.format()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (sympy.Rational, sympy.Integer)):
        return int(value) if value.is_Integer else str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return value if value == value else "nan"
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


def _fmt_error(err: float) -> str:
    if err == 0:
        return ""
    if math.isinf(err):
        return " inf"
    if float(err).is_integer():
        return f" Δ{int(err)}"
    return f" {err:.0e}"


def _fmt_sizes(sizes: Mapping[str, int] | None) -> str:
    if sizes is None:
        return "any size"
    return ",".join(f"{k}={v}" for k, v in sizes.items()) or "the given shape"


def format_report(report: VerifyReport) -> str:
    """The node x check table, then every failure, the skips grouped by reason, the notes."""
    cells: dict[tuple[str, str], list[CheckRow]] = {}
    for r in report.rows:
        cells.setdefault((r.node, r.check), []).append(r)
    lines = [f"rfgraph verify: {report.model}, input ({', '.join(report.input_shape)}), "
             f"sizes {' | '.join(_fmt_sizes(s) for s in report.sizes)}"]
    names = [n for n, _ in report.nodes] + [TOTAL]
    labels = dict(report.nodes)
    header = ["node", "module/target", *report.checks]
    table = []
    for name in names:
        row = [name, labels.get(name, "")[:32]]
        present = False
        for check in report.checks:
            rows = cells.get((name, check))
            if not rows:
                row.append("-")
                continue
            present = True
            worst = max((r.error for r in rows if r.status != "skip"), default=0.0)
            if any(r.status == "fail" for r in rows):
                worst = max(r.error for r in rows if r.status == "fail")
                row.append("FAIL" + _fmt_error(worst))
            elif any(r.could_not_check for r in rows):
                row.append("n/c")
            elif any(r.status == "pass" for r in rows):
                part = any(r.status == "skip" for r in rows)
                row.append(("ok" if not part else "ok*") + _fmt_error(worst))
            else:
                row.append("skip")
        if present:
            table.append(row)
    widths = [max(len(str(x[i])) for x in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    counts = report.counts()
    unchecked = report.could_not_check
    by_design = [r for r in report.skipped if not r.could_not_check]
    lines.append(f"checks: {counts['pass']} passed, {counts['fail']} failed, "
                 f"{len(by_design)} skipped by design, {len(unchecked)} could not be checked "
                 "(ok* = some of the cell's checks were skipped by design; n/c = some could not "
                 "be checked)")
    if report.failures:
        lines.append("failures:")
        for r in report.failures:
            lines.append(f"  {r.node} {r.check}{' ' + r.what if r.what else ''} at "
                         f"{_fmt_sizes(r.at)}: {r.detail}")
    if unchecked:
        lines.append("not checked (these checks apply but did not run):")
        groups: dict[tuple[str, str, str], list[str]] = {}
        for r in unchecked:
            why = SKIP_COULD_NOT_CHECK.get(r.reason, "no stated reason")
            key = (f"{r.check} at {_fmt_sizes(r.at)}", why, r.detail[:300])
            groups.setdefault(key, []).append(r.node + (f" {r.what}" if r.what else ""))
        for (where, why, detail), nodes in groups.items():
            uniq = list(dict.fromkeys(nodes))
            shown = ", ".join(uniq[:8]) + (f", ... ({len(uniq)} in all)" if len(uniq) > 8 else "")
            lines.append(f"  {where}: {why}: {detail} [{shown}]")
    if by_design:
        reasons: dict[str, list[str]] = {}
        for r in by_design:
            reasons.setdefault(f"{r.check}: {r.detail}", []).append(r.node)
        lines.append("skipped: by design (docs/verify.md)")
        for reason, nodes in reasons.items():
            uniq = list(dict.fromkeys(nodes))
            shown = ", ".join(uniq[:6]) + (f", ... ({len(uniq)} nodes)" if len(uniq) > 6 else "")
            lines.append(f"  {reason[:200]} [{shown}]")
    if report.notes:
        lines.append("notes:")
        lines.extend(f"  - {n}" for n in report.notes)
    if report.status == "mismatch":
        result = "MISMATCH" + (f" ({len(unchecked)} check(s) could not run either)"
                               if unchecked else "")
    elif report.status == "could not check":
        result = (f"COULD NOT CHECK ({len(unchecked)} check(s) did not run, listed under "
                  "'not checked'; no mismatch)")
    else:
        result = "OK"
    lines.append("result: " + result)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Progress
# ------------------------------------------------------------------------------------------------
class _Progress:
    """Calls ``fn(done, total, label)``; ``True`` draws a bar on stderr when it is a terminal."""

    def __init__(self, progress: bool | Callable[[int, int, str], Any] | None) -> None:
        self.fn: Callable[[int, int, str], Any] | None
        if progress is True:
            self.fn = _bar if sys.stderr.isatty() else None
        elif callable(progress):
            self.fn = progress
        else:
            self.fn = None
        self.done = 0
        self.total = 0

    def add(self, n: int) -> None:
        self.total += n

    def step(self, label: str, n: int = 1) -> None:
        self.done += n
        if self.fn is not None:
            self.fn(min(self.done, self.total), max(self.total, self.done), label)

    def close(self) -> None:
        if self.fn is _bar:
            sys.stderr.write("\r" + " " * 78 + "\r")
            sys.stderr.flush()


def _bar(done: int, total: int, label: str) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    text = f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}"[:78]
    sys.stderr.write(text.ljust(78))
    sys.stderr.flush()


# ------------------------------------------------------------------------------------------------
# Sizes
# ------------------------------------------------------------------------------------------------
def _valid(analysis: Any, sizes: Mapping[str, int]) -> bool:
    try:
        analysis.evaluate(**sizes)
    except RfgraphError:
        return False
    return True


def _roles(analysis: Any) -> dict[str, int | None]:
    """symbol -> spatial axis index (None for batch/channel symbols)."""
    roles: dict[str, int | None] = {}
    for d, dim in enumerate(analysis.input_shape):
        for s in sorted(sympy.sympify(dim).free_symbols, key=lambda s: s.name):
            if s.name not in roles or roles[s.name] is None:
                roles[s.name] = d - 2 if d >= 2 else None
    return roles


_PRIMES = [p for p in range(2, 5000) if all(p % q for q in range(2, int(p ** 0.5) + 1))]


def _next_prime(n: int, k: int = 0) -> int:
    ps = [p for p in _PRIMES if p >= n]
    return ps[min(k, len(ps) - 1)]


def choose_sizes(analysis: Any) -> list[dict[str, int]]:
    """A typical size (224, or D=16 x 112 x 112 in 3-D), an odd/prime one (97 x 131) and the
    smallest valid one, each moved to the nearest size rfgraph accepts; duplicates dropped."""
    syms = analysis.symbols
    if not syms:
        return [{}]
    roles = _roles(analysis)
    nd = analysis.n_spatial

    def typical(s: str) -> int:
        a = roles.get(s)
        if a is None:
            return 2
        if nd == 3:
            return 16 if a == 0 else 112
        return 224

    def prime(s: str, k: int) -> int:
        a = roles.get(s)
        if a is None:
            return _next_prime(3, k)
        base = {1: (97,), 2: (97, 131), 3: (13, 61, 67)}.get(nd, (97, 131, 61))
        return _next_prime(base[a % len(base)], k)

    found: list[dict[str, int]] = []
    search = _SizeSearch(analysis)  # axes moved one by one when a common step finds nothing
    for k in range(65):
        cand = {s: typical(s) + k for s in syms}
        if _valid(analysis, cand):
            found.append(cand)
            break
    else:
        cand = search.find({s: typical(s) for s in syms})
        if cand is not None:
            found.append(cand)
    for k in range(30):
        cand = {s: prime(s, k) for s in syms}
        if _valid(analysis, cand):
            found.append(cand)
            break
    else:
        cand = search.find({s: prime(s, 0) for s in syms})
        if cand is not None:
            found.append(cand)
    smallest = _smallest(analysis, syms)
    if smallest is None:
        smallest = search.find(dict.fromkeys(syms, 1))
    if smallest is not None:
        found.append(smallest)
    unique = []
    for f in found:
        if f not in unique:
            unique.append(f)
    if not unique:
        raise RfgraphError("verify could not find an input size the model accepts; pass "
                           "sizes with --at (e.g. --at H=224,W=224)")
    return unique


def _smallest(analysis: Any, syms: list[str]) -> dict[str, int] | None:
    def ok(n: int, only: str | None = None, base: int = 0) -> bool:
        if only is None:
            return _valid(analysis, dict.fromkeys(syms, n))
        sizes = dict.fromkeys(syms, base)
        sizes[only] = n
        return _valid(analysis, sizes)

    def first(pred: Callable[[int], bool], hi_cap: int = 4096) -> int | None:
        from .analysis import smallest_true

        return smallest_true(pred, cap=hi_cap)

    n0 = first(ok)
    if n0 is None:
        return None
    sizes = {}
    for s in syms:
        m = first(lambda n, s=s: n >= n0 or ok(n, s, n0), hi_cap=n0)
        sizes[s] = m if m is not None else n0
    if _valid(analysis, sizes):
        return sizes
    return dict.fromkeys(syms, n0)


class _SizeSearch:
    """Finds sizes the analysis accepts near a wanted size, axis by axis.

    The min sizes and conditions that involve one symbol alone (``H - 3 >= 1``, ``Mod(H + 1, 2)
    = 0``) are tested directly on their formulas (cheap); a candidate combination is then
    confirmed with :meth:`Analysis.evaluate` (conditions that couple axes, size-dependent
    parts)."""

    def __init__(self, analysis: Any) -> None:
        self.a = analysis
        self.mins: dict[str, list[Any]] = {}
        self.conds: dict[str, list[Any]] = {}
        self._memo: dict[tuple[str, int], bool] = {}
        for node in analysis.nodes:
            for expr, _ in node.min_sizes:
                self._add(self.mins, expr)
            for cond in node.conditions:
                self._add(self.conds, cond)

    @staticmethod
    def _add(table: dict[str, list[Any]], expr: Any) -> None:
        expr = sympy.sympify(expr)
        free = getattr(expr, "free_symbols", set())
        if len(free) == 1:
            (sym,) = free
            bucket = table.setdefault(sym.name, [])
            if expr not in bucket:
                bucket.append(expr)

    def _holds(self, sym: str, n: int, table: dict[str, list[Any]], kind: str) -> bool:
        for expr in table.get(sym, ()):
            value = expr.xreplace({s: sympy.Integer(n) for s in expr.free_symbols})
            if kind == "min" and value.is_Integer and int(value) < 1:
                return False
            if kind == "cond" and value is sympy.false:
                return False
        return True

    def axis_ok(self, sym: str, n: int) -> bool:
        """Every single-axis min size and condition of ``sym`` holds at ``n``."""
        key = (sym, n)
        if key not in self._memo:
            self._memo[key] = (self._holds(sym, n, self.conds, "cond")
                               and self._holds(sym, n, self.mins, "min"))
        return self._memo[key]

    def values(self, sym: str, start: int, count: int = 6, span: int = 1024) -> list[int]:
        """The first ``count`` sizes n >= start (up to start + span) that pass :meth:`axis_ok`."""
        out: list[int] = []
        n = max(1, start)
        while len(out) < count and n <= start + span:
            if self.axis_ok(sym, n):
                out.append(n)
            n += 1
        return out

    def find(self, base: Mapping[str, int], vary: Sequence[str] | None = None,
             tries: int = 40) -> dict[str, int] | None:
        """A size the analysis accepts: ``base`` with the symbols in ``vary`` (default: all)
        moved up as little as possible (candidates in order of the sum of their ranks)."""
        base = {k: int(v) for k, v in base.items()}
        vary = [s for s in (self.a.symbols if vary is None else vary) if s in base]
        choices = [self.values(s, base[s]) for s in vary]
        if any(not c for c in choices):
            return None
        combos = sorted(itertools.product(*(range(len(c)) for c in choices)),
                        key=lambda ranks: (sum(ranks), ranks))
        for ranks in combos[:tries]:
            trial = dict(base)
            trial.update({s: c[r] for s, c, r in zip(vary, choices, ranks)})
            if _valid(self.a, trial):
                return trial
        return None


# ------------------------------------------------------------------------------------------------
# Values: flatten rfgraph's and torch's node values the same way
# ------------------------------------------------------------------------------------------------
def _rf_leaves(value: Any, ev: Any) -> list[tuple[str, Any]]:
    if isinstance(value, TensorInfo):
        return [("tensor", tuple(ev.int_of(s) for s in value.shape))]
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _rf_leaves(v, ev)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _rf_leaves(v, ev)]
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, sympy.Expr)):
        v = ev.int_of(value) if isinstance(value, sympy.Expr) else value
        return [("int", v)]
    return []


def _torch_leaves(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, torch.Tensor):
        return [("tensor", tuple(int(s) for s in value.shape))]
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _torch_leaves(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _torch_leaves(v)]
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [("int", int(value))]
    return []


def _first_tensor(value: Any) -> torch.Tensor | None:
    return first_of(value, torch.Tensor)


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_map_tensors(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------------------------
# Shapes and MACs: one pass on meta tensors
# ------------------------------------------------------------------------------------------------
class _MetaRun(fx.Interpreter):
    """Runs the graph on meta tensors, node by node, each under its own FlopCounterMode.

    Modules run through ``torch.func.functional_call`` with meta copies of their parameters and
    buffers (the model itself is not touched); a node that cannot run on meta runs on CPU zeros
    with the real module. Records every node's output value, FLOPs and input shapes.
    """

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.flops: dict[str, int] = {}
        self.values: dict[str, Any] = {}
        self.in_shapes: dict[str, list[tuple[int, ...]]] = {}
        self.on_cpu: dict[str, str] = {}
        self.failed: tuple[str, str] | None = None
        self._meta_cache: dict[int, torch.Tensor] = {}

    def _meta(self, t: torch.Tensor) -> torch.Tensor:
        if t.is_meta:
            return t
        key = id(t)
        if key not in self._meta_cache:
            self._meta_cache[key] = torch.empty_like(t, device="meta")
        return self._meta_cache[key]

    def run_node(self, n: fx.Node) -> Any:
        from torch.utils.flop_counter import FlopCounterMode

        if n.op in ("placeholder", "output"):
            out = super().run_node(n)
            self.values[n.name] = out
            self.flops[n.name] = 0
            return out
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        self.in_shapes[n.name] = [tuple(t.shape) for t in _tensors_in((args, kwargs))]
        try:
            with FlopCounterMode(display=False) as counter:
                out = super().run_node(n)
            flops = counter.get_total_flops()
        except Exception as meta_exc:  # no meta kernel / data-dependent: CPU zeros
            try:
                with FlopCounterMode(display=False) as counter:
                    out = self._on_cpu(n)
                flops = counter.get_total_flops()
                self.on_cpu[n.name] = _one_line(meta_exc)
            except Exception as exc:
                self.failed = (n.name, _one_line(exc))
                raise
        self.values[n.name] = out
        self.flops[n.name] = flops
        return out

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        mod = self.fetch_attr(target)
        state = {name: self._meta(t) for name, t in
                 [*mod.named_parameters(remove_duplicate=False),
                  *mod.named_buffers(remove_duplicate=False)]}
        with torch.no_grad():
            return torch.func.functional_call(mod, state, tuple(args), dict(kwargs))

    def get_attr(self, target: Any, args: Any, kwargs: Any) -> Any:
        value = super().get_attr(target, args, kwargs)
        return self._meta(value) if isinstance(value, torch.Tensor) else value

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        with torch.no_grad():
            return super().call_function(target, args, kwargs)

    def call_method(self, target: Any, args: Any, kwargs: Any) -> Any:
        with torch.no_grad():
            return super().call_method(target, args, kwargs)

    def _on_cpu(self, n: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        args, kwargs = _map_tensors((args, kwargs), _cpu_zeros)
        with torch.no_grad():
            if n.op == "call_module":
                mod = self.fetch_attr(n.target)
                if any(p.is_meta for p in mod.parameters()):
                    raise RfgraphError("the module lives on the meta device")
                out = mod(*args, **kwargs)
            elif n.op == "get_attr":
                out = super().get_attr(n.target, args, kwargs)
            elif n.op == "call_method":
                out = getattr(args[0], str(n.target))(*args[1:], **kwargs)
            else:
                out = n.target(*args, **kwargs)
        return _map_tensors(out, lambda t: torch.empty_like(t, device="meta"))


def _model_dtype(gm: nn.Module) -> torch.dtype:
    """The dtype the model computes in: its (first floating) parameters', else its buffers',
    else float32."""
    for tensors in (gm.parameters(), gm.buffers()):
        for t in tensors:
            if t.is_floating_point():
                return t.dtype
    return torch.float32


def _tensors_in(value: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    _map_tensors(value, out.append)
    return out


def _cpu_zeros(t: torch.Tensor) -> torch.Tensor:
    return torch.zeros(t.shape, dtype=t.dtype) if t.is_meta else t


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__


def _input_shape(analysis: Any, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """The concrete input shape of ``analysis`` at ``sizes``."""
    subs = {axis_symbol(k): sympy.Integer(v) for k, v in sizes.items()}
    shape = []
    for d in analysis.input_shape:
        v = sympy.sympify(sympy.sympify(d).xreplace(subs))
        if not v.is_Integer:
            raise RfgraphError(f"input dim {d} has no value at {_fmt_sizes(sizes)}")
        shape.append(int(v))
    return tuple(shape)


def _shape_and_macs(analysis: Any, gm: fx.GraphModule, sizes: dict[str, int], ev: Any,
                    checks: Sequence[str], rows: list[CheckRow]) -> _MetaRun:
    run = _MetaRun(gm)
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


def _compare_shape(info: Any, value: Any, ev: Any, at: dict[str, int], cpu: str | None,
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


def _compare_macs(info: Any, flops: int, ev: Any, at: dict[str, int], cpu: str | None,
                  ) -> CheckRow:
    want = ev.value_of(info.macs)
    got = sympy.Rational(flops, 2)
    note = "FlopCounterMode FLOPs / 2" + (f" (ran on CPU zeros: {cpu})" if cpu else "")
    return _row_equal(info.name, "macs", at, want, got, note)


def _row_equal(node: str, check: str, at: dict[str, int] | None, want: Any, got: Any,
               note: str, what: str = "") -> CheckRow:
    want = sympy.sympify(want)
    got = sympy.sympify(got)
    if not want.is_number:
        return CheckRow(node, check, "fail", at, what, str(want), _jsonable(got), math.inf,
                        f"rfgraph's formula {want} has no value at these sizes")
    diff = abs(float(want - got))
    status = "pass" if diff == 0 else "fail"
    detail = note if status == "pass" else f"rfgraph {want} vs {got} ({note})"
    return CheckRow(node, check, status, at, what, _jsonable(want), _jsonable(got), diff,
                    detail)


# ------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------
def _params(analysis: Any, gm: fx.GraphModule, rows: list[CheckRow]) -> None:
    """Each node's parameters against numel() of the parameters it is the first to use."""
    targets = {n.name: str(n.target) for n in gm.graph.nodes}
    seen: set[int] = set()
    for info in analysis.nodes:
        node_params: list[torch.Tensor] = []
        if info.op == "call_module":
            node_params = list(gm.get_submodule(targets[info.name]).parameters())
        elif info.op == "get_attr":
            obj = _resolve(gm, targets[info.name])
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


def _resolve(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


# ------------------------------------------------------------------------------------------------
# Receptive fields: the gradient probe
# ------------------------------------------------------------------------------------------------
class _SumLinear(nn.Module):
    """Probe stand-in for a huge nn.Linear: every output is mean(x) over the last dim (the same
    dependency pattern as the probe's constant 1/fan_in weights, without the weight matrix)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(-1, keepdim=True) * x.new_full((self.out_features,), 1.0 / self.in_features)


class _ExactLinearResize(nn.Module):
    """Probe stand-in for a linear-mode nn.Upsample: the same geometry with exact weights.

    torch computes the source coordinate in floating point; where the exact coordinate is an
    integer it may come out a hair above it and give the next pixel a weight of ~1e-15, which
    the probe (an exact ``!= 0`` test) would count as a dependence."""

    def __init__(self, size: Any, scale_factor: Any, mode: str, align_corners: Any,
                 recompute: Any) -> None:
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute = align_corners, recompute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ref.resize_reference(x, self.size, self.scale_factor, self.mode,
                                    self.align_corners, self.recompute)


def _exact_interpolate(x: torch.Tensor, size: Any = None, scale_factor: Any = None,
                       mode: str = "nearest", align_corners: Any = None,
                       recompute_scale_factor: Any = None, antialias: bool = False,
                       ) -> torch.Tensor:
    """Probe stand-in for ``F.interpolate``: exact weights for the linear modes."""
    if mode in ref.LINEAR_MODES and not antialias:
        return ref.resize_reference(x, size, scale_factor, mode, align_corners,
                                    recompute_scale_factor)
    return F.interpolate(x, size, scale_factor, mode, align_corners, recompute_scale_factor,
                         antialias)


def _identity(x: Any, *args: Any, **kwargs: Any) -> Any:
    return x


def _identity_with_stats(x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple:
    """Stand-in for aten's native norms, which return (out, mean, rstd)."""
    return x, x.new_zeros(0), x.new_zeros(0)


def _aten_standins() -> dict[Any, Callable[..., Any]]:
    """Linear stand-ins for the ATen ops of ``torch.export`` graphs (.pt2 files), as
    rfgraph.probe does for nn modules and torch.nn.functional: max pooling becomes a linear pool
    of the same geometry, activations and norms the identity, softmax an axis mix, linear
    interpolation the exact-weight version."""
    from .probe import axis_mix, linear_adaptive_max_pool, linear_max_pool

    aten = torch.ops.aten
    table: dict[Any, Callable[..., Any]] = {}

    def add(name: str, fn: Callable[..., Any]) -> None:
        packet, _, overload = name.partition(".")
        op = getattr(getattr(aten, packet, None), overload or "default", None)
        if op is not None:
            table[op] = fn

    for nd in (1, 2, 3):
        add(f"max_pool{nd}d.default",
            lambda x, *a, nd=nd, **k: linear_max_pool(x, nd, *a, **k))
        add(f"max_pool{nd}d_with_indices.default",
            lambda x, *a, nd=nd, **k: linear_max_pool(x, nd, *a[:5], return_indices=True))
        add(f"adaptive_max_pool{nd}d.default",
            lambda x, out, nd=nd: linear_adaptive_max_pool(x, nd, out, True))
    for name in ("relu", "relu_", "hardtanh", "hardtanh_", "sigmoid", "tanh", "silu", "silu_",
                 "gelu", "hardswish", "hardswish_", "hardsigmoid", "leaky_relu", "elu",
                 "dropout", "clamp", "mish", "softplus", "relu6", "batch_norm", "layer_norm",
                 "group_norm", "instance_norm"):
        add(f"{name}.default", _identity)
    for name in ("_native_batch_norm_legit_no_training", "native_batch_norm",
                 "native_layer_norm", "native_group_norm"):
        add(f"{name}.default", _identity_with_stats)
    add("softmax.int", lambda x, dim, *a, **k: axis_mix(x, dim))
    add("_softmax.default", lambda x, dim, *a, **k: axis_mix(x, dim))
    for nd, mode in ((1, "linear"), (2, "bilinear"), (3, "trilinear")):
        add(f"upsample_{mode}{nd}d.vec", lambda x, size, align, scales, mode=mode:
            ref.resize_reference(x, size, scales, mode, align))
    return table


_CONV_LIKE: dict[Any, str] = {}  # call_function target -> "conv" / "convt" / "linear"


def _conv_like() -> dict[Any, str]:
    if not _CONV_LIKE:
        aten = torch.ops.aten
        for nd in (1, 2, 3):
            _CONV_LIKE[getattr(F, f"conv{nd}d")] = "conv"
            _CONV_LIKE[getattr(F, f"conv_transpose{nd}d")] = "convt"
            for name, kind in ((f"conv{nd}d.default", "conv"), (f"conv{nd}d.padding", "conv"),
                               (f"conv_transpose{nd}d.input", "convt"),
                               (f"conv_transpose{nd}d.default", "convt")):
                packet, _, overload = name.partition(".")
                op = getattr(getattr(aten, packet, None), overload, None)
                if op is not None:
                    _CONV_LIKE[op] = kind
        _CONV_LIKE[F.linear] = "linear"
        _CONV_LIKE[aten.linear.default] = "linear"
    return _CONV_LIKE


def _constant_functional_weights(gm: fx.GraphModule) -> None:
    """Positive constant weights and zero biases for convs and linears called as functions
    with weights read from attributes (functional code, exported graphs), like the probe does
    for modules."""
    table = _conv_like()
    with torch.no_grad():
        for node in gm.graph.nodes:
            kind = _lookup(table, node.target) if node.op == "call_function" else None
            if kind is None:
                continue
            weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
            bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
            if isinstance(weight, fx.Node) and weight.op == "get_attr":
                w = _resolve(gm, str(weight.target))
                groups = node.args[6] if kind == "convt" and len(node.args) > 6 else 1
                fan = (w.shape[0] // max(int(groups), 1) * math.prod(w.shape[2:])
                       if kind == "convt" else w[0].numel())
                w.fill_(1.0 / max(int(fan), 1))
            if isinstance(bias, fx.Node) and bias.op == "get_attr":
                _resolve(gm, str(bias.target)).zero_()


def _materialize(gm: fx.GraphModule) -> fx.GraphModule:
    """A model built on the meta device has no values: give the probe copy real ones (every
    floating parameter and buffer 1; the probe then sets conv/linear weights itself)."""
    if not any(t.is_meta for t in itertools.chain(gm.parameters(), gm.buffers())):
        return gm
    gm = copy.deepcopy(gm).to_empty(device="cpu")
    with torch.no_grad():
        for t in itertools.chain(gm.parameters(), gm.buffers()):
            if t.is_floating_point():
                t.fill_(1.0)
            else:
                t.zero_()
    return gm


_INPLACE_FUNCTIONS = {operator.iadd: operator.add, operator.isub: operator.sub,
                      operator.imul: operator.mul, operator.itruediv: operator.truediv}


def _probe_graph_module(gm: fx.GraphModule) -> fx.GraphModule:
    """A copy of ``gm`` for the probe: same node names, huge Linears replaced by _SumLinear,
    linear-mode resizing by exact-weight stand-ins, in-place arithmetic made out-of-place (so
    every recorded node value keeps its own graph)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(gm.graph, env))
    root: dict[str, Any] = {}
    aten = _aten_standins()
    for node in graph.nodes:
        if node.op == "call_module":
            mod = gm.get_submodule(str(node.target))
            if isinstance(mod, nn.Linear) and mod.weight.numel() > BIG_LINEAR:
                mod = _SumLinear(mod.in_features, mod.out_features)
            elif isinstance(mod, nn.Upsample) and mod.mode in ref.LINEAR_MODES:
                mod = _ExactLinearResize(mod.size, mod.scale_factor, mod.mode,
                                         mod.align_corners, mod.recompute_scale_factor)
            root[str(node.target)] = mod
        elif node.op == "call_function" and node.target is F.interpolate:
            node.target = _exact_interpolate
        elif node.op == "call_function" and _lookup(aten, node.target) is not None:
            node.target = aten[node.target]
        elif node.op == "get_attr":
            root[str(node.target)] = _resolve(gm, str(node.target))
        elif node.op == "call_function" and node.target in _INPLACE_FUNCTIONS:
            node.target = _INPLACE_FUNCTIONS[node.target]
        elif (node.op == "call_method" and isinstance(node.target, str)
              and node.target.endswith("_") and not node.target.startswith("_")
              and callable(getattr(torch.Tensor, node.target[:-1], None))):
            node.target = node.target[:-1]
    return _materialize(fx.GraphModule(root, graph, "probe_copy"))


class _Prober:
    """The linearised float64 copy of the graph, run node by node up to the nodes wanted."""

    def __init__(self, gm: fx.GraphModule) -> None:
        from .probe import prepare_probe_model

        self.gm = prepare_probe_model(_probe_graph_module(gm))
        _constant_functional_weights(self.gm)
        self.order = [n for n in self.gm.graph.nodes]
        self.by_name = {n.name: n for n in self.order}
        self._anc: dict[str, set[str]] = {}

    def ancestors(self, name: str) -> set[str]:
        if name not in self._anc:
            node = self.by_name[name]
            out = {name}
            for inp in node.all_input_nodes:
                out |= self.ancestors(inp.name)
            self._anc[name] = out
        return self._anc[name]

    def run(self, shape: Sequence[int], wanted: Iterable[str], grad: bool = True,
            ) -> tuple[torch.Tensor, dict[str, Any], dict[str, str]]:
        """(input, values of the wanted nodes and their ancestors, errors per failed node);
        ``grad=False``: values only (no autograd graph)."""
        need: set[str] = set()
        for w in wanted:
            need |= self.ancestors(w)
        interp = fx.Interpreter(self.gm, garbage_collect_values=False)
        x = torch.ones(tuple(shape), dtype=torch.float64, requires_grad=grad)
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        first = True
        with torch.set_grad_enabled(grad):
            for node in self.order:
                if node.name not in need or node.op == "output":
                    continue
                if node.op == "placeholder":
                    value = x if first else (node.args[0] if node.args else None)
                    first = False
                    interp.env[node] = value
                    values[node.name] = value
                    continue
                if any(i.name in errors or i not in interp.env for i in node.all_input_nodes):
                    errors[node.name] = "an input failed"
                    continue
                try:
                    value = interp.run_node(node)
                except Exception as exc:
                    errors[node.name] = _one_line(exc)
                    continue
                interp.env[node] = value
                values[node.name] = value
        return x, values, errors


def _live_names(values: Mapping[str, Any]) -> set[str]:
    """The nodes whose (first, floating) tensor has a non-zero element: in the probe copy,
    whose weights are all positive, those that read some input pixel."""
    out = set()
    for name, value in values.items():
        t = _first_tensor(value)
        if t is not None and t.is_floating_point() and bool((t != 0).any()):
            out.add(name)
    return out


def _grad_box(x: torch.Tensor, out: torch.Tensor, index: tuple, axis_dim: int,
              ) -> tuple[int, int] | None:
    """Bounding box along input dim ``axis_dim`` of the non-zero gradient of out[index].sum()."""
    seed = torch.zeros_like(out)
    seed[index] = 1.0
    (grad,) = torch.autograd.grad(out, x, seed, retain_graph=True, allow_unused=True)
    if grad is None:
        return None
    mask = (grad != 0).movedim(axis_dim, 0).reshape(grad.shape[axis_dim], -1).any(1)
    idx = torch.nonzero(mask).flatten()
    if idx.numel() == 0:
        return None
    return int(idx[0]), int(idx[-1])


@dataclass
class _RfItem:
    """One (node, input axis) to probe."""

    name: str
    axis: int
    rf: Any  # AxisRF
    local: bool
    need: int = 0  # probe length along the axis (local fields)
    tries: int = 0
    why: str = ""  # why the last attempt failed
    code: str = ""  # its skip reason (SKIP_REASONS) if it is given up


def _is_local(rf: Any) -> bool:
    """The field does not depend on the input size (so it can be made to fit inside an image)."""
    try:
        vals = [rf.jump, rf.start_at(0), rf.end_at(0), rf.start_at(rf.period),
                rf.end_at(rf.period)]
    except Exception:
        return False
    return not any(sympy.sympify(v).free_symbols for v in vals)


def _first_y(rf: Any, lo: int) -> int:
    """Smallest y >= 0 whose field starts at input pixel >= lo (start_at is non-decreasing)."""
    def s(y: int) -> int:
        return int(rf.start_at(y))

    if s(0) >= lo:
        return 0
    hi = 1
    while s(hi) < lo:
        hi *= 2
        if hi > 1 << 24:
            raise ValueError("field never starts inside the image")
    a = hi // 2
    while a < hi:
        mid = (a + hi) // 2
        if s(mid) >= lo:
            hi = mid
        else:
            a = mid + 1
    return hi


def _live_phase(rf: Any) -> int | None:
    return next((p for p in range(rf.period) if rf.is_live(p)), None)


def _plan_need(rf: Any) -> int:
    """The probe length that leaves room for one full period (+1) of fields inside [1, L-2]."""
    period = rf.period
    phase = _live_phase(rf)
    size = int(rf.size)
    jump = float(rf.jump)
    base = 2 * size + 4 * math.ceil(jump * period) + 2
    if phase is None:
        return max(base, 8)
    y = _first_y(rf, 1)
    y += (phase - y) % period
    return max(base, int(rf.end_at(y + period)) + 2, 8)


_LADDER = sorted({int(b * 2 ** k) for k in range(3, 14) for b in (1, 1.5)})


def _tier(need: int) -> int:
    return next((t for t in _LADDER if t >= need), need)


def _rf_subset(analysis: Any, items: list[_RfItem], mode: str, big: bool, what: str = "",
               ) -> tuple[set[str], str]:
    """The nodes to probe: all of them, or (mode "auto" on big models) every node whose field
    differs from all its inputs' on some axis, plus the first node of each other op type."""
    names = list(dict.fromkeys(i.name for i in items))
    if mode == "all" or not big or not names:
        return set(names), ""
    chosen: set[str] = set()
    kinds: set[str] = set()
    for name in names:
        info = analysis[name]
        t = info.tensor
        inputs = [analysis[i].tensor for i in info.inputs if analysis[i].tensor is not None]
        same = all(any(inp.rf[a] is t.rf[a] for inp in inputs if len(inp.rf) > a)
                   for a in range(len(t.rf)))
        kind = f"{info.op}:{info.module_type or info.target}"
        if not same or kind not in kinds:
            chosen.add(name)
        kinds.add(kind)
    last = names[-1]
    chosen.add(last)
    if len(chosen) == len(names):
        return chosen, ""
    note = (f"rf: {len(names)} nodes have a {what}field; probed {len(chosen)} of them (every node "
            "whose field differs from its inputs', and the first node of every other op type); "
            "the others pass an input's field through unchanged")
    return chosen, note


class _RfChecker:
    """Receptive-field checks for one analysis (see module docstring and docs/verify.md)."""

    def __init__(self, analysis: Any, gm: fx.GraphModule, sizes: list[dict[str, int]],
                 rows: list[CheckRow], notes: list[str], progress: _Progress,
                 subset: str = "auto") -> None:
        self.a = analysis
        self.gm = gm
        self.sizes = sizes
        self.rows = rows
        self.notes = notes
        self.progress = progress
        self.subset = subset
        self.nd = analysis.n_spatial
        self.axis_names = analysis.axis_names
        self._prober: _Prober | None = None
        self._strips: list[int] | None = None
        self._mirrored: set[str] | None = None
        self._search: _SizeSearch | None = None

    @property
    def prober(self) -> _Prober:
        if self._prober is None:
            self._prober = _Prober(self.gm)
        return self._prober

    # -- what to probe --------------------------------------------------------------------------
    def _candidates(self, ev: Any, at: dict[str, int] | None = None,
                    ) -> tuple[list[_RfItem], list[CheckRow]]:
        items, skips = [], []
        for info in ev.nodes:
            t = info.tensor
            if info.op in ("placeholder", "get_attr") or t is None or t.const:
                continue
            for a, rf in enumerate(t.rf):
                name = self.axis_names[a] if a < len(self.axis_names) else str(a)
                if rf is None:
                    skips.append(CheckRow(info.name, "rf", "skip", at, name,
                                          detail="field unknown (None) in rfgraph",
                                          reason="unknown"))
                    continue
                if rf.upper:
                    skips.append(CheckRow(info.name, "rf", "skip", at, name,
                                          detail="rfgraph reports an upper bound here (e.g. "
                                                 "window attention taken as global)",
                                          reason="upper-bound"))
                    continue
                items.append(_RfItem(info.name, a, rf, _is_local(rf)))
        return items, skips

    def strips(self) -> list[int]:
        """Per axis: the narrow size used when another axis is probed."""
        if self._strips is None:
            syms = self._axis_symbols()
            strips = []
            for a in range(self.nd):
                sym = syms[a]
                if sym is None:
                    strips.append(self._fixed_axis(a))
                    continue
                strips.append(self._smallest_with(sym, syms))
            self._strips = strips
        return self._strips

    def _axis_symbols(self) -> list[str | None]:
        out = []
        for d in self.a.input_shape[2:]:
            e = sympy.sympify(d)
            out.append(e.name if isinstance(e, sympy.Symbol) else None)
        return out

    def _fixed_axis(self, a: int) -> int:
        return _input_shape(self.a, self.sizes[0])[2 + a]

    def _smallest_with(self, sym: str, syms: list[str | None]) -> int:
        big = {s: max(512, self.sizes[0].get(s, 0)) for s in self.a.symbols}
        ladder = [*range(3, 65), *range(72, 1025, 8)]
        for n in ladder:
            trial = dict(big)
            trial[sym] = n
            if _valid(self.a, trial):
                return n
        moved = dict(big)  # the other axes at a size they accept alone (e.g. an odd one)
        for s in moved:
            if s != sym:
                moved[s] = (self.search.values(s, moved[s], 1, span=256) or [moved[s]])[0]
        if moved != big:
            for n in ladder:
                if self.search.axis_ok(sym, n) and _valid(self.a, {**moved, sym: n}):
                    return n
        return self.sizes[0].get(sym, 64)

    @property
    def search(self) -> _SizeSearch:
        if self._search is None:
            self._search = _SizeSearch(self.a)
        return self._search

    def _shape(self, lengths: Mapping[int, int], sizes: Mapping[str, int]) -> tuple[int, ...]:
        shape = list(_input_shape(self.a, sizes))
        for a, n in lengths.items():
            shape[2 + a] = n
        return tuple(shape)

    # -- local fields: once, sized by the probe itself -----------------------------------------
    def check_local(self, items: list[_RfItem]) -> None:
        pending: list[_RfItem] = []
        for it in items:
            try:
                it.need = _plan_need(it.rf)
            except Exception as exc:
                self.rows.append(_error_row(it.name, "rf", None, self.axis_names[it.axis], exc,
                                            "placing the field inside an image"))
                self.progress.step(f"rf {it.name}")
                continue
            pending.append(it)
        strips = self.strips() if pending else []
        narrow = self.narrow_strips() if pending else []
        base = self.sizes[0]
        user = list(_input_shape(self.a, base)[2:])
        while pending:
            pending.sort(key=lambda i: (i.axis, _tier(i.need)))
            first = pending[0]
            if first.need > MAX_PROBE:
                pending.pop(0)
                self._skip(first, f"field too large to probe (needs an input of {first.need} "
                                  f"> {MAX_PROBE} along the axis)", reason="too-large")
                continue
            axis, tier = first.axis, _tier(first.need)
            batch = [it for it in pending if it.axis == axis and _tier(it.need) == tier]
            pending = [it for it in pending if it not in batch]
            shapes = []
            # narrow strips first (most prefixes accept them), x2 up to the smallest size the
            # model accepts, x2 up to the verification size, then wider still (last resort)
            top = [max(w, u) for w, u in zip(strips, user)]
            ladder = [narrow]
            for cap in (strips, top):
                while any(w < m for w, m in zip(ladder[-1], cap)):
                    ladder.append([max(w, min(2 * w, m)) for w, m in zip(ladder[-1], cap)])
            ladder.append(top)
            ladder.append([2 * t + 1 for t in top])
            for widths in ladder:
                lengths = {b: widths[b] for b in range(self.nd) if b != axis}
                lengths[axis] = tier
                shape = self._shape(lengths, base)
                if shape not in shapes:
                    shapes.append(shape)
            reference = self._shape({**{b: top[b] for b in range(self.nd) if b != axis},
                                     axis: tier}, base)
            for it in self._probe_local(batch, shapes, reference):
                it.tries += 1
                if it.tries > 4:
                    self._skip(it, f"could not probe: {it.why}", reason=it.code or "no-size")
                    continue
                pending.append(it)

    def narrow_strips(self) -> list[int]:
        """Per axis: 3 pixels (a fixed-size axis keeps its size)."""
        syms = self._axis_symbols()
        return [3 if syms[a] is not None else self._fixed_axis(a) for a in range(self.nd)]

    def _valid_shapes(self, axis: int, need: int) -> list[tuple[int, ...]]:
        """Inputs the analysis accepts with at least ``need`` pixels along ``axis``: the other
        axes narrow, then at the first verification size; each axis moved up to the nearest
        size that fits (e.g. an odd length before a PixelUnshuffle after an even kernel). Then
        the verification sizes themselves (shorter, but the field may still fit)."""
        syms = self._axis_symbols()
        own = syms[axis]
        out: list[tuple[int, ...]] = []
        for other in (self.strips(), [None] * self.nd):
            base = dict(self.sizes[0])
            if own is not None:
                base[own] = need
            for b, sym in enumerate(syms):
                if sym is not None and b != axis and other[b] is not None:
                    base[sym] = other[b]
            if not base:
                continue
            found = self.search.find(base)
            if found is not None:
                shape = _input_shape(self.a, found)
                if shape[2 + axis] <= MAX_PROBE and shape not in out:
                    out.append(shape)
        for sizes in self.sizes:  # the verification sizes themselves (the field may fit)
            user = _input_shape(self.a, sizes)
            if user not in out:
                out.append(user)
        return out

    def _killed(self, values: Mapping[str, Any], reference: Callable[[], set[str] | None],
                ) -> set[str]:
        """Nodes of this run whose output reads no input pixel (all zero in the probe copy,
        where every weight is positive) but that do read pixels at the reference input: a
        branch the narrow strip kills."""
        dead = set()
        for name, value in values.items():
            t = _first_tensor(value)
            if t is not None and t.is_floating_point() and t.requires_grad and t.numel() \
                    and not bool((t != 0).any()):
                dead.add(name)
        if not dead:
            return set()
        live = reference()
        return dead & live if live else set()

    def _probe_local(self, batch: list[_RfItem], shapes: list[tuple[int, ...]],
                     reference_shape: tuple[int, ...]) -> list[_RfItem]:
        """Probe ``batch`` at the first shape whose run gives every node a non-empty value and
        leaves every branch it needs live (the failures move on to the next, wider shape; when
        every shape fails, to the nearest sizes the analysis accepts). Returns the items to
        retry on a longer input."""
        retry: list[_RfItem] = []
        remaining = list(batch)
        shapes = list(shapes)
        live_cache: dict[str, set[str] | None] = {}
        fallback_added = False
        valid: list[tuple[int, ...]] = []  # shapes the analysis accepts

        def reference() -> set[str] | None:
            if "live" not in live_cache:
                wanted = {it.name for it in batch}
                try:
                    _, ref_values, _ = self.prober.run(reference_shape, wanted, grad=False)
                    live_cache["live"] = _live_names(ref_values)
                except Exception:
                    live_cache["live"] = None
            return live_cache["live"]

        k = 0
        while remaining and k < len(shapes):
            shape = shapes[k]
            if k == len(shapes) - 1 and not fallback_added:
                fallback_added = True
                valid = self._valid_shapes(remaining[0].axis,
                                           max(it.need for it in remaining))
                shapes.extend(v for v in valid if v not in shapes)
            last = k == len(shapes) - 1
            k += 1
            x, values, errors = self.prober.run(shape, {it.name for it in remaining})
            killed = set() if last else self._killed(values, reference)
            failed = []
            for it in remaining:
                value = _first_tensor(values.get(it.name))
                if it.name in errors or (value is not None and value.numel() == 0):
                    it.why = (f"the probe copy fails at input {shape}: "
                              f"{errors.get(it.name, 'empty tensor')}")
                    it.code = "error" if shape in valid else "no-size"
                    failed.append(it)
                    continue
                dead = self.prober.ancestors(it.name) & killed
                if dead:
                    it.why = (f"at input {shape} {', '.join(sorted(dead)[:3])} read(s) no input "
                              f"pixel although they do at {reference_shape}")
                    failed.append(it)
                    continue
                try:
                    outcome = self._probe_one(it, x, values.get(it.name), shape, last=last)
                except Exception as exc:  # reported, never hidden
                    self.rows.append(_error_row(it.name, "rf", None, self.axis_names[it.axis],
                                                exc, "the probe"))
                    self.progress.step(f"rf {it.name}")
                    continue
                if outcome == "longer":
                    retry.append(it)
                elif outcome == "wider":
                    failed.append(it)
            remaining = failed
        for it in remaining:  # failed at every width: a longer probed axis may help
            it.need = max(it.need + 1, int(shapes[0][2 + it.axis] * 1.5))
            retry.append(it)
        return retry

    def _probe_one(self, it: _RfItem, x: torch.Tensor, value: Any, shape: tuple[int, ...],
                   last: bool = True) -> str:
        """Probe one item: "done", "longer" (retry on a longer input) or "wider" (the other
        axes are too narrow: every probed element reads no pixel, retry with wider strips)."""
        length = shape[2 + it.axis]
        out, reason, code = self._probe_tensor(it, value)
        if out is None:
            self._skip(it, reason, reason=code)
            return "done"
        dim = self.a[it.name].tensor.dim_of_axis(it.axis)
        m = out.shape[dim]
        ys = self._local_positions(it.rf, length, m)
        if ys is None:
            it.why = (f"no output position with its field inside the probe input (length "
                      f"{length}, {m} outputs)")
            it.code = "no-size"
            it.need = max(it.need + 1, length * 2)
            return "longer"
        boxes = {y: _grad_box(x, out, self._index(out, dim, y), 2 + it.axis) for y in ys}
        if all(b is None for b in boxes.values()) and any(it.rf.is_live(y) for y in ys) \
                and _grad_box(x, out, self._index(out, None, None), 2 + it.axis) is None:
            # the whole tensor reads no pixel: along a narrow axis every element lies in padding
            it.why = f"the whole output reads no input pixel at input {shape}"
            if not last:
                return "wider"
            self._skip(it, f"the output depends on no input pixel at every probe input tried "
                           f"(last {shape}): its elements read only padding",
                       reason="constant")
            return "done"
        touches = any(b is not None and (b[0] == 0 or b[1] == length - 1)
                      for b in boxes.values())
        if touches and it.tries < 2 and length * 2 <= MAX_PROBE:
            it.why = "the probe box keeps reaching the border"
            it.need = length * 2
            return "longer"
        self.rows.append(self._compare_local(it, ys, boxes, length, shape))
        self.progress.step(f"rf {it.name}")
        return "done"

    def _probe_tensor(self, it: _RfItem, value: Any,
                      ) -> tuple[torch.Tensor | None, str, str]:
        """(the tensor to probe, or None with the reason and its SKIP_REASONS code)."""
        out = _first_tensor(value)
        t = self.a[it.name].tensor
        if out is None:
            return None, "no tensor in the probe copy's value", "error"
        if not out.is_floating_point():
            return None, "integer tensor (e.g. pooling indices): no gradient to probe", "integer"
        if not out.requires_grad:
            return None, "does not depend on the input in the probe copy", "constant"
        if out.dim() != len(t.axes):
            return None, (f"the probe copy's tensor has {out.dim()} dims, rfgraph's "
                          f"{len(t.axes)}"), "error"
        return out, "", ""

    @staticmethod
    def _index(out: torch.Tensor, dim: int | None, y: int | None) -> tuple:
        index = [slice(None)] * out.dim()
        if dim is not None and y is not None:
            index[dim] = y
        return tuple(index)

    def _local_positions(self, rf: Any, length: int, m: int) -> list[int] | None:
        period = rf.period
        phase = _live_phase(rf)
        if phase is None:  # no element reads any pixel along this axis
            return [min(m - 1, m // 2)] if m > 0 else None
        try:
            y_first = _first_y(rf, 1)
        except ValueError:
            return None
        y_first += (phase - y_first) % period
        last_ok = m - 1 - period
        if not getattr(rf, "monotone", True):  # fields that alternate or jump back: scan
            return self._local_positions_scan(rf, length, m, phase)
        if y_first > last_ok or int(rf.end_at(y_first + period)) > length - 2:
            return None
        lo, hi = y_first, last_ok  # largest y with end_at(y + period) <= length - 2
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int(rf.end_at(mid + period)) <= length - 2:
                lo = mid
            else:
                hi = mid - 1
        y0 = (y_first + lo) // 2
        y0 -= (y0 - phase) % period
        if y0 < y_first:
            y0 += period
        return list(range(y0, y0 + period + 1))

    @staticmethod
    def _local_positions_scan(rf: Any, length: int, m: int, phase: int) -> list[int] | None:
        """_local_positions for a field whose bounds do not grow with the position: the
        middle run of period + 1 positions whose fields all lie inside the probe input."""
        period = rf.period

        def inside(y: int) -> bool:
            return not rf.is_live(y) or (int(rf.start_at(y)) >= 1
                                         and int(rf.end_at(y)) <= length - 2)

        ok = [inside(y) for y in range(m)]
        runs = [y for y in range(max(0, m - period - 1) + 1)
                if (y - phase) % period == 0 and all(ok[y:y + period + 1])
                and y + period < m]
        if not runs:
            return None
        y0 = runs[len(runs) // 2]
        return list(range(y0, y0 + period + 1))

    def _compare_local(self, it: _RfItem, ys: list[int], boxes: dict[int, Any], length: int,
                       shape: tuple[int, ...]) -> CheckRow:
        rf = it.rf
        period = rf.period
        want = {y: (int(rf.start_at(y)), int(rf.end_at(y))) if rf.is_live(y) else None
                for y in ys}
        err = 0.0
        problems = []
        for y in ys:
            w, b = want[y], boxes[y]
            if w != b:
                if w is None or b is None:
                    err = max(err, (w or b)[1] - (w or b)[0] + 1)
                else:
                    err = max(err, abs(w[0] - b[0]), abs(w[1] - b[1]))
                problems.append(f"element {y}: probe {list(b) if b else 'empty'} vs rfgraph "
                                f"{list(w) if w else 'empty'}")
        sizes: dict[int, list[int]] = {}
        for y, b in boxes.items():
            sizes.setdefault(y % period, []).append(b[1] - b[0] + 1 if b else 0)
        measured: dict[str, Any] = {"boxes": {y: b for y, b in boxes.items()},
                                    "input_length": length}
        expected: dict[str, Any] = {"boxes": want, "size": int(rf.size),
                                    "min_size": int(rf.min_size), "jump": rf.jump,
                                    "offset": int(rf.offset)}
        if len(sizes) == period:
            measured["size"] = max(max(v) for v in sizes.values())
            measured["min_size"] = min(min(v) for v in sizes.values())
            for key in ("size", "min_size"):
                if measured[key] != expected[key]:
                    err = max(err, abs(measured[key] - expected[key]))
                    problems.append(f"{key} {measured[key]} vs rfgraph {expected[key]}")
        y0, y1 = ys[0], ys[0] + period
        if boxes.get(y0) is not None and boxes.get(y1) is not None:
            jump = sympy.Rational(boxes[y1][0] - boxes[y0][0], period)
            measured["jump"] = jump
            if jump != rf.jump:
                err = max(err, abs(float(jump - rf.jump)))
                problems.append(f"jump {jump} vs rfgraph {rf.jump}")
            if y0 % period == 0:
                offset = boxes[y0][0] - jump * y0
                measured["offset"] = offset
                if offset != rf.offset:
                    err = max(err, abs(float(offset - rf.offset)))
                    problems.append(f"offset {offset} vs rfgraph {rf.offset}")
        axis = self.axis_names[it.axis]
        where = f"probe input {tuple(shape)}, elements {ys[0]}..{ys[-1]} along {axis}"
        if problems:
            touched = any(b is not None and (b[0] == 0 or b[1] == length - 1)
                          for b in boxes.values())
            more = " (the probe box reaches the border: the real field is larger)" \
                if touched else ""
            return CheckRow(it.name, "rf", "fail", None, axis, expected, measured, err,
                            "; ".join(problems) + f" [{where}]{more}")
        return CheckRow(it.name, "rf", "pass", None, axis, expected, measured, 0.0,
                        f"size {rf.size}, jump {rf.jump}, offset {rf.offset}"
                        + (f", period {period}" if period > 1 else "") + f" [{where}]")

    def _skip(self, it: _RfItem, detail: str, at: dict[str, int] | None = None,
              reason: str = "error") -> None:
        self.rows.append(CheckRow(it.name, "rf", "skip", at, self.axis_names[it.axis],
                                  detail=detail, reason=reason))
        self.progress.step(f"rf {it.name}")

    # -- size-dependent fields: at every verification size ------------------------------------
    def check_at(self, ev: Any, sizes: dict[str, int], items: list[_RfItem]) -> None:
        if not items:
            return
        strips = self.strips()
        syms = self._axis_symbols()
        groups: dict[Any, list[_RfItem]] = {}
        for it in items:
            fs = set()
            if not it.local:
                for v in (it.rf.jump, it.rf.start_at(0), it.rf.end_at(0)):
                    fs |= {s.name for s in sympy.sympify(v).free_symbols}
            symbolic = self.a[it.name].tensor
            known = symbolic is not None and symbolic.rf[it.axis] is not None
            own = syms[it.axis]
            key = ("strip", it.axis) if known and fs <= {own} else ("full",)
            groups.setdefault(key, []).append(it)
        full = self._shape({}, sizes)
        for key, group in groups.items():
            lengths: dict[int, int] = {}
            if key[0] == "strip":
                lengths = {b: strips[b] for b in range(self.nd) if b != key[1]}
            shape = self._shape(lengths, sizes)
            if lengths and not _valid(self.a, self._sizes_of(shape, sizes)):
                shape = full
            wanted = {it.name for it in group}
            x, values, errors = self.prober.run(shape, wanted)
            at_full: tuple[Any, ...] | None = None
            moved: list[_RfItem] = []
            if shape != full:
                # a strip that makes the run fail, or that kills a branch live at the real
                # size: those nodes are probed on the real size instead
                runs: list[tuple[Any, ...]] = []

                def reference(wanted: set[str] = wanted, runs: list = runs) -> set[str]:
                    runs.append(self.prober.run(full, wanted))
                    return _live_names(runs[0][1])

                killed = self._killed(values, reference)
                at_full = runs[0] if runs else None
                moved = [it for it in group if it.name in errors
                         or self.prober.ancestors(it.name) & killed]
                if moved and at_full is None:
                    at_full = self.prober.run(full, wanted)
            for it in group:
                run_shape, (xx, vals, errs) = shape, (x, values, errors)
                if it in moved and at_full is not None:
                    run_shape, (xx, vals, errs) = full, at_full
                if it.name in errs:
                    self._skip(it, f"the probe copy fails at input {run_shape}: "
                                   f"{errs[it.name]}", sizes, reason="error")
                    continue
                out, reason, code = self._probe_tensor(it, vals.get(it.name))
                if out is None:
                    self._skip(it, reason, sizes, reason=code)
                    continue
                try:
                    row = self._compare_at(ev, it, out, xx, run_shape, sizes)
                except Exception as exc:  # reported, never hidden
                    row = _error_row(it.name, "rf", sizes, self.axis_names[it.axis], exc,
                                     "the probe")
                self.rows.append(row)
                self.progress.step(f"rf {it.name}")

    def _sizes_of(self, shape: tuple[int, ...], sizes: dict[str, int]) -> dict[str, int]:
        out = dict(sizes)
        for a, sym in enumerate(self._axis_symbols()):
            if sym is not None:
                out[sym] = shape[2 + a]
        return out

    def mirrored(self) -> set[str]:
        """Nodes at or after reflect/replicate/circular padding: there a padded coordinate
        stands for a pixel inside the image, so fields reaching past the border are not
        comparable with the probe."""
        if self._mirrored is None:
            flagged: set[str] = set()
            for node in self.gm.graph.nodes:
                own = False
                if node.op == "call_module":
                    mod = self.gm.get_submodule(str(node.target))
                    own = getattr(mod, "padding_mode", "zeros") != "zeros" or type(
                        mod).__name__.startswith(("Reflection", "Replication", "Circular"))
                elif node.op == "call_function" and node.target is F.pad:
                    mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2
                                           else "constant")
                    own = mode != "constant"
                if own or any(i.name in flagged for i in node.all_input_nodes):
                    flagged.add(node.name)
            self._mirrored = flagged
        return self._mirrored

    def _compare_at(self, ev: Any, it: _RfItem, out: torch.Tensor, x: torch.Tensor,
                    shape: tuple[int, ...], sizes: dict[str, int]) -> CheckRow:
        """The size-dependent check: an end of the field that lies inside the image must be
        the probe box's end; an end outside only bounds it (the box stays in the clipped
        field)."""
        rf = it.rf
        t = ev[it.name].tensor
        dim = t.dim_of_axis(it.axis)
        n = shape[2 + it.axis]
        axis = self.axis_names[it.axis]
        mirrored = it.name in self.mirrored()
        if dim is None:
            ys: list[int | None] = [None]
        else:
            m = out.shape[dim]
            count = min(rf.period, 3) + 1
            start = max(0, min(m // 2 - count // 2, m - count))
            ys = list(range(start, min(m, start + count)))
        problems, skipped, err, compared = [], [], 0.0, 0
        mirrored_skip = False
        measured: dict[Any, Any] = {}
        expected: dict[Any, Any] = {}
        exact_all = True
        for y in ys:
            yy = 0 if y is None else y
            key = "all" if y is None else y
            live = rf.is_live(yy)
            s, e = ev.int_of(rf.start_at(yy)), ev.int_of(rf.end_at(yy))
            if s is None or e is None:
                problems.append(f"element {key}: rfgraph's field has no value at these sizes")
                err = math.inf
                continue
            box = _grad_box(x, out, self._index(out, dim, y), 2 + it.axis)
            expected[key], measured[key] = ((s, e) if live else None), box
            clip = (max(s, 0), min(e, n - 1))
            if mirrored and (s < 0 or e > n - 1):
                mirrored_skip = True
                skipped.append(f"element {key}: its field [{s}, {e}] reaches past the border "
                               "and padded coordinates stand for mirrored/wrapped pixels")
                continue
            if not live or clip[0] > clip[1]:
                if box is not None:
                    problems.append(f"element {key}: probe {list(box)} but rfgraph's field "
                                    f"{[s, e] if live else 'is empty'} has no pixel in "
                                    f"[0, {n - 1}]")
                    err = max(err, box[1] - box[0] + 1)
                else:
                    compared += 1
                continue
            if box is None:
                skipped.append(f"element {key} reads no input pixel (it lies in padding); "
                               f"rfgraph extrapolates the field [{s}, {e}] to it")
                continue
            compared += 1
            lo_ok = box[0] == s if s >= 0 else box[0] >= 0
            hi_ok = box[1] == e if e <= n - 1 else box[1] <= n - 1
            if not (lo_ok and hi_ok):
                problems.append(f"element {key}: probe {list(box)} vs rfgraph [{s}, {e}] "
                                f"(clipped to [{clip[0]}, {clip[1]}])")
                err = max(err, abs(box[0] - clip[0]), abs(box[1] - clip[1]))
            elif tuple(box) != clip:
                exact_all = False
        where = f"probe input {tuple(shape)}" + (
            "" if dim is None else f", elements {ys[0]}..{ys[-1]} along {axis}")
        if problems:
            return CheckRow(it.name, "rf", "fail", sizes, axis, expected, measured, err,
                            "; ".join(problems) + f" [{where}]")
        if not compared:
            return CheckRow(it.name, "rf", "skip", sizes, axis, expected, measured, 0.0,
                            "; ".join(skipped) + f" [{where}]",
                            reason="mirrored" if mirrored_skip else "padding")
        how = ("the probe box equals the field clipped to the image" if exact_all else
               "the probe box hits every end of the field that lies inside the image and stays "
               "inside the clipped field")
        more = f"; not compared: {'; '.join(skipped)}" if skipped else ""
        return CheckRow(it.name, "rf", "pass", sizes, axis, expected, measured, 0.0,
                        f"size-dependent field: {how}{more} [{where}]")


# ------------------------------------------------------------------------------------------------
# Semantics: each layer against an independent reference
# ------------------------------------------------------------------------------------------------
_POOL_FUNCS: dict[Any, tuple[str, int]] = {}
for _nd in (1, 2, 3):
    _POOL_FUNCS[getattr(F, f"max_pool{_nd}d")] = ("max", _nd)
    _POOL_FUNCS[getattr(F, f"avg_pool{_nd}d")] = ("avg", _nd)
    _POOL_FUNCS[getattr(F, f"adaptive_avg_pool{_nd}d")] = ("adaptive_avg", _nd)
    _POOL_FUNCS[getattr(F, f"adaptive_max_pool{_nd}d")] = ("adaptive_max", _nd)
_CONV_FUNCS = {getattr(F, f"conv{_nd}d"): ("conv", _nd) for _nd in (1, 2, 3)}
_CONV_FUNCS.update({getattr(F, f"conv_transpose{_nd}d"): ("convt", _nd) for _nd in (1, 2, 3)})
_SHUFFLE_FUNCS = {F.channel_shuffle}


def _aten_op(name: str) -> Any:
    packet, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.aten, packet, None), overload or "default", None)


for _nd in (1, 2, 3):  # the ATen twins found in torch.export graphs take the same arguments
    for _name, _entry in ((f"conv{_nd}d.default", ("conv", _nd)),
                          (f"conv_transpose{_nd}d.input", ("convt", _nd))):
        if _aten_op(_name) is not None:
            _CONV_FUNCS[_aten_op(_name)] = _entry
    for _name, _entry in ((f"max_pool{_nd}d.default", ("max", _nd)),
                          (f"max_pool{_nd}d_with_indices.default", ("max", _nd)),
                          (f"avg_pool{_nd}d.default", ("avg", _nd)),
                          (f"adaptive_avg_pool{_nd}d.default", ("adaptive_avg", _nd)),
                          (f"_adaptive_avg_pool{_nd}d.default", ("adaptive_avg", _nd)),
                          (f"adaptive_max_pool{_nd}d.default", ("adaptive_max", _nd))):
        if _aten_op(_name) is not None:
            _POOL_FUNCS[_aten_op(_name)] = _entry
for _name in ("channel_shuffle.default", "native_channel_shuffle.default"):
    if _aten_op(_name) is not None:
        _SHUFFLE_FUNCS.add(_aten_op(_name))
_SHAPE_METHODS = {"view", "reshape", "transpose", "permute", "contiguous", "flatten", "unflatten",
                  "swapaxes", "swapdims"}
_SHAPE_FUNCS = {torch.reshape, torch.transpose, torch.permute, torch.flatten, torch.swapaxes,
                torch.unflatten}


def _lookup(table: dict, key: Any) -> Any:
    try:
        return table.get(key)
    except TypeError:
        return None


def _conv_padding(m: nn.Module, nd: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    k, d = m.kernel_size, m.dilation
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0,) * nd, (0,) * nd
        total = [di * (ki - 1) for ki, di in zip(k, d)]
        return tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)
    return tuple(m.padding), tuple(m.padding)


_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class _TooSlow(BaseException):
    """Raised by the SIGALRM handler of :func:`_time_budget` (a BaseException: no ``except
    Exception`` on the way may swallow it)."""


@contextlib.contextmanager
def _time_budget(seconds: float | None):
    """Interrupt the block (raise :class:`_TooSlow`) after ``seconds`` of wall time.

    Uses SIGALRM, so only in the main thread and when no other interval timer is armed; the
    value of the ``with`` is whether the budget is enforced. Python code is interrupted
    between bytecodes: one long torch call finishes first."""
    usable = (seconds is not None and 0 < seconds < math.inf and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    if not usable:
        yield False
        return
    state = {"armed": True}

    def on_alarm(signum: int, frame: Any) -> None:
        if state["armed"]:
            state["armed"] = False
            raise _TooSlow()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield True
    finally:
        state["armed"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Semantics:
    """Runs every reference check once per node (random float64 inputs, small sizes)."""

    def __init__(self, analysis: Any, gm: fx.GraphModule, meta: _MetaRun | None,
                 rows: list[CheckRow], progress: _Progress, budget: float | None = NODE_BUDGET,
                 notes: list[str] | None = None) -> None:
        self.a = analysis
        self.gm = gm
        self.meta = meta
        self.rows = rows
        self.progress = progress
        self.budget = budget
        self.notes = notes if notes is not None else []
        self.budget_note = False
        self.gen = torch.Generator().manual_seed(0)
        self.done_modules: dict[int, str] = {}

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen, dtype=torch.float64)

    def row(self, node: str, what: str, err: float, detail: str = "") -> None:
        status = "pass" if err <= SEMANTICS_TOL else "fail"
        text = detail or f"max relative error {err:.1e}"
        if status == "fail":
            text = f"{what}: max relative error {err:.3g} > {SEMANTICS_TOL:g}" + (
                f" ({detail})" if detail else "")
        self.rows.append(CheckRow(node, "semantics", status, None, what, None, None,
                                  float(err), text))

    def skip(self, node: str, what: str, detail: str, reason: str = "no-reference") -> None:
        self.rows.append(CheckRow(node, "semantics", "skip", None, what, detail=detail,
                                  reason=reason))

    def _guarded(self, name: str, what: str, fn: Callable[[], None]) -> None:
        """Run one node's check within the time budget; an error or the budget running out is
        reported as a check that could not run."""
        try:
            with _time_budget(self.budget) as enforced:
                if not enforced and self.budget and not self.budget_note:
                    self.budget_note = True
                    self.notes.append("semantics: the per-node time budget is not enforced "
                                      "here (verify runs outside the main thread, or another "
                                      "timer is active)")
                fn()
        except _TooSlow:
            self.skip(name, what, f"the check took longer than the budget of {self.budget:g} s "
                                  "per node (raise it with --node-budget, or node_budget=)",
                      reason="too-slow")
        except Exception as exc:  # a reference that cannot run is reported, not hidden
            self.skip(name, what, f"reference could not run: {_one_line(exc)}",
                      reason="error")

    def targets(self) -> list[fx.Node]:
        out = []
        for node in self.gm.graph.nodes:
            if node.op == "call_module":
                mod = self.gm.get_submodule(str(node.target))
                if isinstance(mod, (nn.modules.conv._ConvNd, nn.ChannelShuffle, nn.Upsample,
                                    nn.modules.pooling._MaxPoolNd,
                                    nn.modules.pooling._AvgPoolNd,
                                    nn.modules.pooling._AdaptiveAvgPoolNd,
                                    nn.modules.pooling._AdaptiveMaxPoolNd)):
                    out.append(node)
            elif node.op == "call_function" and (
                    _lookup(_POOL_FUNCS, node.target) or _lookup(_CONV_FUNCS, node.target)
                    or node.target in _SHUFFLE_FUNCS or node.target is F.interpolate):
                out.append(node)
        return out

    def run(self) -> None:
        targets = self.targets()
        chains = self._conv_chains()
        shuffles = self._shuffle_idioms()
        self.progress.add(len(targets) + len(chains) + len(shuffles))
        for node in targets:
            self._guarded(node.name, "layer", lambda node=node: self._check_node(node))
            self.progress.step(f"semantics {node.name}")
        for chain in chains:
            self._guarded(chain[-1].name, "conv chain",
                          lambda chain=chain: self._check_chain(chain))
            self.progress.step(f"semantics {chain[-1].name}")
        for src, end, nodes, groups in shuffles:
            self._guarded(end.name, "channel shuffle",
                          lambda a=(src, end, nodes, groups): self._check_shuffle_idiom(*a))
            self.progress.step(f"semantics {end.name}")

    # -- single layers ------------------------------------------------------------------------
    def _in_channels(self, node: fx.Node, default: int = 3) -> int:
        shapes = self.meta.in_shapes.get(node.name) if self.meta is not None else None
        if shapes and len(shapes[0]) >= 2:
            return int(shapes[0][1])
        return default

    def _check_node(self, node: fx.Node) -> None:
        if node.op == "call_module":
            mod = self.gm.get_submodule(str(node.target))
            if id(mod) in self.done_modules:
                self.skip(node.name, "layer", f"same module as node "
                                               f"'{self.done_modules[id(mod)]}' (checked there)",
                          reason="same-module")
                return
            self.done_modules[id(mod)] = node.name
            if isinstance(mod, nn.modules.conv._ConvTransposeNd):
                self._convt(node.name, mod)
            elif isinstance(mod, nn.modules.conv._ConvNd):
                self._conv(node.name, mod)
            elif isinstance(mod, nn.Upsample):
                shapes = self.meta.in_shapes.get(node.name) if self.meta is not None else None
                self._resize(node.name, mod.size, mod.scale_factor, mod.mode,
                             mod.align_corners, mod.recompute_scale_factor,
                             shapes[0] if shapes else None)
            elif isinstance(mod, nn.ChannelShuffle):
                self._shuffle(node.name, lambda x: mod(x), int(mod.groups),
                              self._in_channels(node, 2 * int(mod.groups)))
            else:
                self._pool_module(node, mod)
            return
        pool = _lookup(_POOL_FUNCS, node.target)
        conv = _lookup(_CONV_FUNCS, node.target)
        if node.target is F.interpolate:
            names = ["size", "scale_factor", "mode", "align_corners", "recompute_scale_factor",
                     "antialias"]
            kw = dict(zip(names, [self._measured(a) for a in node.args[1:]]))
            kw.update({k: self._measured(v) for k, v in node.kwargs.items()})
            if kw.get("antialias"):
                self.skip(node.name, "resize", "antialias=True has no reference")
                return
            shapes = self.meta.in_shapes.get(node.name) if self.meta is not None else None
            self._resize(node.name, kw.get("size"), kw.get("scale_factor"),
                         kw.get("mode", "nearest"), kw.get("align_corners"),
                         kw.get("recompute_scale_factor"), shapes[0] if shapes else None)
            return
        if node.target in _SHUFFLE_FUNCS:
            groups = node.args[1] if len(node.args) > 1 else node.kwargs.get("groups")
            try:  # groups computed in forward: the value of the (first) meta run
                groups = self._measured(groups)
            except LookupError:
                pass
            if not isinstance(groups, int):
                self.skip(node.name, "channel shuffle", "groups computed at run time")
                return
            fn = node.target
            self._shuffle(node.name, lambda x: fn(x, groups), groups,
                          self._in_channels(node, 2 * groups))
        elif pool is not None:
            self._pool_function(node, *pool)
        elif conv is not None:
            self._conv_function(node, *conv)

    def real(self, mod: nn.Module) -> nn.Module:
        """A float64 CPU copy of ``mod``; a module on the meta device gets random values."""
        m = copy.deepcopy(mod)
        if any(t.is_meta for t in itertools.chain(m.parameters(), m.buffers())):
            m = m.to_empty(device="cpu")
            with torch.no_grad():
                for t in itertools.chain(m.parameters(), m.buffers()):
                    if t.is_floating_point():
                        t.copy_(torch.randn(t.shape, generator=self.gen))
        return m.double().eval()

    def _conv(self, name: str, mod: nn.Module) -> None:
        nd = len(mod.kernel_size)
        m = self.real(mod)
        left, right = _conv_padding(m, nd)
        k_eff = [d * (k - 1) + 1 for k, d in zip(m.kernel_size, m.dilation)]
        sizes = []
        for a in range(nd):
            n = max(k_eff[a] - left[a] - right[a], 1) + 2 * m.stride[a] + 1
            if m.padding_mode != "zeros":
                n = max(n, max(left[a], right[a]) + 1)
            sizes.append(n)
        x = self.randn(2, m.in_channels, *sizes)
        with torch.no_grad():
            want = m(x)
            weight, bias = m.weight.detach(), None if m.bias is None else m.bias.detach()
            got = ref.conv_reference(x, weight, bias, m.stride, left, m.dilation, m.groups,
                                     right, m.padding_mode)
            self.row(name, "conv == im2col matmul", ref.rel_error(got, want))
            xp = ref.pad_reference(x, left, right, m.padding_mode)
            fn = _CONV_FN[nd]
            if any(d > 1 for d in m.dilation):
                got = fn(xp, ref.dilate_kernel(weight, m.dilation), bias, m.stride, 0, 1,
                         m.groups)
                self.row(name, "dilated conv == conv with the zero-dilated kernel",
                         ref.rel_error(got, want))
            if m.groups > 1:
                got = fn(xp, ref.block_diagonal(weight, m.groups), bias, m.stride, 0,
                         m.dilation, 1)
                self.row(name, "grouped conv == block-diagonal conv", ref.rel_error(got, want))

    def _convt(self, name: str, mod: nn.Module) -> None:
        nd = len(mod.kernel_size)
        m = self.real(mod)
        sizes = []
        for a in range(nd):
            n = 2
            while ref.conv_transpose_output_size(n, m.kernel_size[a], m.stride[a], m.padding[a],
                                                 m.output_padding[a], m.dilation[a]) < 2:
                n += 1
            sizes.append(n + 1)
        x = self.randn(2, m.in_channels, *sizes)
        weight, bias = m.weight.detach(), None if m.bias is None else m.bias.detach()
        with torch.no_grad():
            want = m(x)
        n_out = list(want.shape[2:])
        taps = math.prod(m.kernel_size)
        padded = math.prod(n + 2 * p for n, p in zip(n_out, m.padding))
        cost = taps * (taps * math.prod(n_out) * math.prod(sizes) + math.prod(n_out) * padded)
        if cost <= CONV_MATRIX_COST:
            with torch.no_grad():
                got = ref.conv_transpose_by_matrix(x, weight, bias, m.stride, m.padding,
                                                   m.output_padding, m.groups, m.dilation)
            self.row(name, "transposed conv == transpose of the conv's matrix",
                     ref.rel_error(got, want))
            return
        # the dense matrix would be large (3-D, dilated): M^T x matrix-free, as the gradient
        # of <x, M y> with respect to y, M the im2col conv reference
        got = _conv_transpose_by_adjoint(x, weight, bias, m.stride, m.padding, m.groups,
                                         m.dilation, n_out)
        self.row(name, "transposed conv == adjoint of the im2col conv (the conv's matrix "
                       "transposed, matrix-free)", ref.rel_error(got, want))

    def _measured(self, value: Any) -> Any:
        """A call argument's value from the meta run (sizes read from tensors are ints)."""
        if isinstance(value, fx.Node):
            got = self.meta.values.get(value.name) if self.meta is not None else None
            if isinstance(got, torch.Tensor) or got is None:
                raise LookupError(f"argument '{value.name}' has no plain value")
            return tuple(got) if isinstance(got, (list, tuple)) else got
        if isinstance(value, (list, tuple)):
            return type(value)(self._measured(v) for v in value)
        return value

    def _resize(self, name: str, size: Any, scale_factor: Any, mode: str, align: Any,
                recompute: Any, in_shape: tuple[int, ...] | None) -> None:
        what = f"{mode} resize == exact-coordinate reference"
        if mode not in ("nearest", "nearest-exact", *ref.LINEAR_MODES):
            self.skip(name, what, f"mode {mode!r} has no reference")
            return
        factors = scale_factor if isinstance(scale_factor, (tuple, list)) else [scale_factor]
        for f in factors:
            if f is not None and Fraction(f).denominator & (Fraction(f).denominator - 1):
                self.skip(name, what, f"scale factor {f} is not a binary fraction: torch's "
                                      "float coordinates round differently from exact ones")
                return
        if in_shape is not None and math.prod(in_shape) <= 1 << 20:
            shape = in_shape
        else:
            nd = len(in_shape) - 2 if in_shape else self.a.n_spatial
            shape = (2, 2, *([5] * nd))
        x = self.randn(*shape)
        with torch.no_grad():
            want = F.interpolate(x, size, scale_factor, mode, align, recompute)
        got = ref.resize_reference(x, size, scale_factor, mode, align, recompute)
        self.row(name, what, ref.rel_error(got, want))

    def _static(self, value: Any) -> Any:
        """A call argument that does not depend on the input: constants and get_attr values."""
        if isinstance(value, fx.Node):
            if value.op == "get_attr":
                return _resolve(self.gm, str(value.target))
            raise LookupError(f"argument '{value.name}' is computed in forward")
        if isinstance(value, (list, tuple)):
            return type(value)(self._static(v) for v in value)
        return value

    def _conv_function(self, node: fx.Node, kind: str, nd: int) -> None:
        try:
            args = [self._static(a) for a in node.args[1:]]
            kwargs = {k: self._static(v) for k, v in node.kwargs.items()}
        except LookupError as exc:
            self.skip(node.name, "functional conv", f"{exc}: no fixed weights to check")
            return
        names = (["weight", "bias", "stride", "padding", "dilation", "groups"] if kind == "conv"
                 else ["weight", "bias", "stride", "padding", "output_padding", "groups",
                       "dilation"])
        params = dict(zip(names, args))
        params.update(kwargs)
        weight = params["weight"].detach().double()
        bias = params.get("bias")
        bias = None if bias is None else bias.detach().double()
        groups = int(params.get("groups", 1))
        if kind == "conv":
            mod = getattr(nn, f"Conv{nd}d")(weight.shape[1] * groups, weight.shape[0],
                                            tuple(weight.shape[2:]),
                                            params.get("stride", 1), params.get("padding", 0),
                                            params.get("dilation", 1), groups, bias is not None)
        else:
            mod = getattr(nn, f"ConvTranspose{nd}d")(
                weight.shape[0], weight.shape[1] * groups, tuple(weight.shape[2:]),
                params.get("stride", 1), params.get("padding", 0),
                params.get("output_padding", 0), groups, bias is not None,
                params.get("dilation", 1))
        with torch.no_grad():
            mod.weight.copy_(weight)
            if bias is not None:
                mod.bias.copy_(bias)
        (self._conv if kind == "conv" else self._convt)(node.name, mod)

    def _shuffle(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor], groups: int,
                 channels: int) -> None:
        x = self.randn(2, channels, 3, 4)
        with torch.no_grad():
            want = fn(x)
        perm = ref.channel_shuffle_permutation(channels, groups)
        self.row(name, f"channel shuffle == a permutation ({groups} groups)",
                 ref.rel_error(x[:, perm], want))

    def _pool_module(self, node: fx.Node, mod: nn.Module) -> None:
        name = type(mod).__name__
        nd = int(name[-2])
        if isinstance(mod, nn.modules.pooling._MaxPoolNd):
            kw = {"kernel_size": mod.kernel_size, "stride": mod.stride, "padding": mod.padding,
                  "dilation": mod.dilation, "ceil_mode": mod.ceil_mode}
            kind = "max"
        elif isinstance(mod, nn.modules.pooling._AvgPoolNd):
            kw = {"kernel_size": mod.kernel_size, "stride": mod.stride, "padding": mod.padding,
                  "ceil_mode": mod.ceil_mode,
                  "count_include_pad": getattr(mod, "count_include_pad", True),
                  "divisor_override": getattr(mod, "divisor_override", None)}
            kind = "avg"
        elif isinstance(mod, nn.modules.pooling._AdaptiveAvgPoolNd):
            kw, kind = {"output_size": mod.output_size}, "adaptive_avg"
        else:
            kw, kind = {"output_size": mod.output_size}, "adaptive_max"

        def run(x: torch.Tensor) -> torch.Tensor:
            out = mod(x)
            return out[0] if isinstance(out, tuple) else out

        self._pool(node, kind, nd, kw, run)

    def _pool_function(self, node: fx.Node, kind: str, nd: int) -> None:
        try:  # arguments computed in forward (kernel = x.shape[2:]): the meta run's values
            args = [self._measured(a) for a in node.args[1:]]
            kwargs = {k: self._measured(v) for k, v in node.kwargs.items()}
        except LookupError as exc:
            self.skip(node.name, f"{kind} pool", f"{exc}: no fixed arguments to check")
            return
        names = {"max": ["kernel_size", "stride", "padding", "dilation", "ceil_mode",
                         "return_indices"],
                 "avg": ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                         "divisor_override"],
                 "adaptive_avg": ["output_size"],
                 "adaptive_max": ["output_size", "return_indices"]}[kind]
        kw = dict(zip(names, args))
        kw.update(kwargs)
        fn = node.target

        def run(x: torch.Tensor) -> torch.Tensor:
            out = fn(x, **kw)
            return out[0] if isinstance(out, tuple) else out

        kw_ref = {k: v for k, v in kw.items() if k != "return_indices"}
        self._pool(node, kind, nd, kw_ref, run)

    def _pool(self, node: fx.Node, kind: str, nd: int, kw: dict[str, Any],
              run: Callable[[torch.Tensor], torch.Tensor]) -> None:
        channels = min(self._in_channels(node, 3), 64)
        if kind in ("max", "avg"):
            k = _tuple_of(kw["kernel_size"], nd)
            s = _tuple_of(kw.get("stride") or k, nd)
            d = _tuple_of(kw.get("dilation", 1), nd)
            p = _tuple_of(kw.get("padding", 0), nd)
            sizes = [max(di * (ki - 1) + 1 - 2 * pi, 1) + 2 * si + 1
                     for ki, si, di, pi in zip(k, s, d, p)]
        else:
            outs = _tuple_of(kw["output_size"], nd)
            sizes = [2 * (o or 3) + 1 for o in outs]
        x = self.randn(2, channels, *sizes)
        with torch.no_grad():
            want = run(x)
            if kind == "max":
                got = ref.max_pool_reference(x, nd, kw["kernel_size"], kw.get("stride"),
                                             kw.get("padding", 0), kw.get("dilation", 1),
                                             bool(kw.get("ceil_mode", False)))
            elif kind == "avg":
                got = ref.avg_pool_reference(x, nd, kw["kernel_size"], kw.get("stride"),
                                             kw.get("padding", 0),
                                             bool(kw.get("ceil_mode", False)),
                                             bool(kw.get("count_include_pad", True)),
                                             kw.get("divisor_override"))
            else:
                got = ref.adaptive_pool_reference(x, nd, kw["output_size"], kind[9:])
            self.row(node.name, f"{kind.replace('_', ' ')} pool == window reference",
                     ref.rel_error(got, want))
            n, c = x.shape[:2]
            alone = run(x.reshape(n * c, 1, *sizes)).reshape(want.shape)
            self.row(node.name, "pooling acts per channel", ref.rel_error(alone, want))

    # -- chains of convolutions ---------------------------------------------------------------
    def _conv_module(self, node: fx.Node | None) -> nn.Module | None:
        if node is None or node.op != "call_module":
            return None
        mod = self.gm.get_submodule(str(node.target))
        if isinstance(mod, nn.modules.conv._ConvNd) and not isinstance(
                mod, nn.modules.conv._ConvTransposeNd) and mod.padding_mode == "zeros":
            return mod
        return None

    def _conv_chains(self) -> list[list[fx.Node]]:
        """Maximal runs conv -> conv -> ... where each conv feeds only the next one."""
        def feeds(a: fx.Node, b: fx.Node) -> bool:
            return (len(a.users) == 1 and b in a.users and len(b.all_input_nodes) == 1
                    and b.args[:1] == (a,) and not b.kwargs)

        chains = []
        for node in self.gm.graph.nodes:
            if self._conv_module(node) is None:
                continue
            prev = node.args[0] if node.args else None
            if isinstance(prev, fx.Node) and self._conv_module(prev) is not None \
                    and feeds(prev, node):
                continue  # not the start of a chain
            chain = [node]
            while True:
                users = list(chain[-1].users)
                if len(users) == 1 and self._conv_module(users[0]) is not None \
                        and feeds(chain[-1], users[0]):
                    chain.append(users[0])
                else:
                    break
            if len(chain) >= 2:
                chains.append(chain)
        return chains

    def _spec(self, mod: nn.Module) -> ref.ConvSpec:
        nd = len(mod.kernel_size)
        left, right = _conv_padding(mod, nd)
        return ref.ConvSpec.of(mod.weight.detach(), None if mod.bias is None else
                               mod.bias.detach(), mod.stride, left, mod.dilation, mod.groups,
                               right)

    def _check_chain(self, chain: list[fx.Node]) -> None:
        segments: list[list[fx.Node]] = []
        current = [chain[0]]
        spec = self._spec(self._conv_module(chain[0]))
        reasons = []
        for node in chain[1:]:
            nxt = self._spec(self._conv_module(node))
            composed, why = ref.compose_convs(spec, nxt)
            if composed is None:
                reasons.append(f"{current[-1].name} -> {node.name}: {why}")
                segments.append(current)
                current, spec = [node], nxt
            else:
                current.append(node)
                spec = composed
        segments.append(current)
        for seg in segments:
            if len(seg) < 2:
                continue
            self._check_segment(seg)
        if reasons:
            self.skip(chain[-1].name, "conv chain", "not one convolution (so not compared): "
                      + "; ".join(reasons), reason="not-one-conv")

    def _label(self, mods: list[nn.Module]) -> str:
        def nontrivial(m: nn.Module) -> set[int]:
            return {a for a, k in enumerate(m.kernel_size) if k > 1}

        if len(mods) == 2:
            a, b = mods
            if len(a.kernel_size) >= 2 and len(nontrivial(a)) == 1 and len(nontrivial(b)) == 1 \
                    and nontrivial(a) != nontrivial(b):
                return "spatially separable pair == one conv with the outer-product kernel"
            if a.groups == a.in_channels and a.groups > 1 and not nontrivial(b) \
                    and b.groups == 1:
                return "depthwise-separable pair == their composed conv"
        if len(mods) == 3:
            a, b, c = mods
            if not nontrivial(a) and b.groups == b.in_channels and c.groups == c.in_channels \
                    and len(nontrivial(b)) == 1 and len(nontrivial(c)) == 1 \
                    and nontrivial(b) != nontrivial(c):
                return "flattened triple == their composed conv"
        return f"chain of {len(mods)} convs == their composed conv"

    def _check_segment(self, seg: list[fx.Node]) -> None:
        mods = [self._conv_module(n) for n in seg]
        spec, _ = ref.compose_chain([self._spec(m) for m in mods])
        nd = spec.nd
        k = spec.weight.shape[2:]
        sizes = [max(spec.dilation[a] * (k[a] - 1) + 1 - spec.pad_left[a] - spec.pad_right[a],
                     1) + 2 * spec.stride[a] + 1 for a in range(nd)]
        x = self.randn(2, mods[0].in_channels, *sizes)
        with torch.no_grad():
            want = x
            for m in mods:
                want = self.real(m)(want)
            got = spec(x)
        got = got[(slice(None), slice(None), *(slice(0, n) for n in want.shape[2:]))]
        label = self._label(mods)
        self.row(seg[-1].name, label + f" ({', '.join(n.name for n in seg)})",
                 ref.rel_error(got, want))

    # -- view/transpose/view channel shuffle --------------------------------------------------
    def _is_shape_op(self, node: fx.Node) -> bool:
        if node.op == "call_method":
            return node.target in _SHAPE_METHODS
        return node.op == "call_function" and _lookup({f: 1 for f in _SHAPE_FUNCS},
                                                      node.target) is not None

    def _shuffle_idioms(self) -> list[tuple[fx.Node, fx.Node, list[fx.Node], int]]:
        """The view-transpose-view channel shuffles: in a chain of shape ops, each shortest
        segment from a tensor of shape (N, C, *S) whose first op views it as (N, g, C/g, *S),
        which swaps dims 1 and 2, and whose last op gives (N, C, *S) again (back-to-back
        shuffles are separate segments). Returns (source, end, segment, g) per segment."""
        if self.meta is None:
            return []
        found = []
        for node in self.gm.graph.nodes:
            if not self._is_shape_op(node) or any(self._is_shape_op(u) for u in node.users):
                continue
            chain, cur = [node], node
            while True:
                src = cur.args[0] if cur.args else None
                if isinstance(src, fx.Node) and self._is_shape_op(src):
                    chain.append(src)
                    cur = src
                else:
                    break
            chain.reverse()
            if not isinstance(src, fx.Node) or len(chain) < 3:
                continue
            values = [_first_tensor(self.meta.values.get(n.name)) for n in [src, *chain]]
            shapes = [None if t is None else tuple(t.shape) for t in values]
            i = 0  # values[i] is the segment's source, chain[i] its first op
            while i < len(chain):
                seg = self._shuffle_segment(shapes, chain, i)
                if seg is None:
                    i += 1
                    continue
                j, groups = seg
                found.append((src if i == 0 else chain[i - 1], chain[j], chain[i:j + 1],
                              groups))
                i = j + 1
        return found

    def _shuffle_segment(self, shapes: list[tuple[int, ...] | None], chain: list[fx.Node],
                         i: int) -> tuple[int, int] | None:
        """(index of the last op, g) of the shortest shuffle segment starting at chain[i]."""
        a, split = shapes[i], shapes[i + 1]
        if a is None or split is None or len(a) < 3 or len(split) != len(a) + 1:
            return None
        if split[0] != a[0] or split[1] * split[2] != a[1] or split[3:] != a[2:]:
            return None
        swapped = False
        for j in range(i + 1, len(chain)):
            swapped = swapped or self._swaps_1_2(chain[j])
            if shapes[j + 1] is None:
                return None
            if swapped and shapes[j + 1] == a:
                return j, int(split[1])
        return None

    @staticmethod
    def _swaps_1_2(node: fx.Node) -> bool:
        name = str(getattr(node.target, "__name__", node.target))
        args = node.args[1:]
        if name in ("transpose", "swapaxes", "swapdims"):
            return sorted(int(a) for a in args[:2] if isinstance(a, int)) == [1, 2]
        if name == "permute":
            dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
            return len(dims) > 2 and tuple(dims[:3]) == (0, 2, 1)
        return False

    def _check_shuffle_idiom(self, src: fx.Node, end: fx.Node, chain: list[fx.Node],
                             groups: int) -> None:
        shape = tuple(_first_tensor(self.meta.values[src.name]).shape)
        order = list(self.gm.graph.nodes)
        start, stop = order.index(src), order.index(end)
        interp = fx.Interpreter(self.gm, garbage_collect_values=False)
        for node in order[:stop + 1]:  # sizes computed earlier (x.size() read once for two
            value = self.meta.values.get(node.name)  # shuffles): the meta run's plain values
            if node.op != "output" and value is not None and not _tensors_in(value):
                interp.env[node] = value
        x = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
        interp.env[src] = x
        for node in order[start + 1:stop + 1]:  # the chain and the size arithmetic it uses
            if node.op in ("call_module", "placeholder", "output", "get_attr"):
                continue
            if all(i in interp.env for i in node.all_input_nodes):
                interp.env[node] = interp.run_node(node)
        if end not in interp.env:
            self.skip(end.name, "channel shuffle", "the chain needs values from elsewhere",
                      reason="error")
            return
        perm = ref.channel_shuffle_permutation(shape[1], groups)
        self.row(end.name, f"view/transpose/view == channel shuffle ({groups} groups) "
                 f"({', '.join(n.name for n in chain)})", ref.rel_error(interp.env[end],
                                                                         x[:, perm]))


def _conv_transpose_by_adjoint(x: torch.Tensor, weight: torch.Tensor,
                               bias: torch.Tensor | None, stride: Sequence[int],
                               padding: Sequence[int], groups: int, dilation: Sequence[int],
                               n_out: Sequence[int]) -> torch.Tensor:
    """``M^T x`` for M the im2col convolution with ``weight`` (C_in, C_out/g, *k) from the
    transposed conv's output space (C_out, *n_out) back to (C_in, *n_in), restricted to the
    first n_in outputs (as :func:`rfgraph.semantics.conv_transpose_by_matrix`), computed as the
    gradient of ``<x, M y>`` with respect to ``y`` (M is linear: slicing and matmul)."""
    n_in = x.shape[2:]
    y = torch.zeros(x.shape[0], weight.shape[1] * groups, *n_out, dtype=torch.float64,
                    requires_grad=True)
    with torch.enable_grad():
        back = ref.conv_reference(y, weight.double(), None, tuple(stride), tuple(padding),
                                  tuple(dilation), groups)
        back = back[(slice(None), slice(None), *(slice(0, n) for n in n_in))]
        (got,) = torch.autograd.grad((back * x.double()).sum(), y)
    if bias is not None:
        got = got + bias.double().reshape(1, -1, *([1] * len(n_out)))
    return got


def _tuple_of(v: Any, nd: int) -> tuple:
    if isinstance(v, (tuple, list)):
        return tuple(v) if len(v) == nd else tuple(v) * nd if len(v) == 1 else tuple(v)
    return (v,) * nd


# ------------------------------------------------------------------------------------------------
# The entry point
# ------------------------------------------------------------------------------------------------
def verify(analysis: Any, at: Sequence[Mapping[str, int]] | Mapping[str, int] | None = None,
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
        prog.add(len(sizes) + (1 if "params" in wanted else 0))
        if "params" in wanted:
            t0 = time.perf_counter()
            try:
                _params(analysis, gm, rows)
            except Exception as exc:  # reported as a check that did not run (see _error_row)
                rows.append(_error_row(TOTAL, "params", None, "", exc, "the parameter check "
                                       "(stopped here; please report it with the model)"))
            timings["params"] = time.perf_counter() - t0
            prog.step("params")
        meta_first: _MetaRun | None = None
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
        if "rf" in wanted:
            t0 = time.perf_counter()
            try:
                _check_rf(analysis, gm, sizes, evaluated, rows, notes, prog, rf_nodes)
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
                    f"{_one_line(exc)} (please report it with the model)"), reason="error"))
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


def _from_rfgraph_formula(exc: BaseException) -> bool:
    """True when ``exc`` was raised while evaluating one of rfgraph's formulas (its field
    algebra or a rule), not by verify's own machinery."""
    import os

    tb = exc.__traceback__
    here = os.path.dirname(os.path.abspath(__file__))
    owners = (os.path.join(here, "receptive_field.py"), os.path.join(here, "rules") + os.sep)
    while tb is not None:
        name = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if name.startswith(owners):
            return True
        tb = tb.tb_next
    return False


def _error_row(node: str, check: str, at: dict[str, int] | None, what: str,
               exc: BaseException, doing: str = "") -> CheckRow:
    """An exception during a check: a failure when rfgraph's own formula raised (it has no
    value there), else a check that could not run (reason "error")."""
    if _from_rfgraph_formula(exc):
        return CheckRow(node, check, "fail", at, what, None, None, math.inf,
                        f"rfgraph's formula cannot be evaluated here: {_one_line(exc)}")
    return CheckRow(node, check, "skip", at, what, detail=(
        f"{doing or 'the check'} raised {_one_line(exc)}"), reason="error")


def _is_big(analysis: Any, ev: Any, sizes: dict[str, int], items: list[_RfItem]) -> bool:
    """Probing every node would be slow: many nodes, or many MACs per input pixel."""
    if len({it.name for it in items}) > FULL_PROBE_LIMIT:
        return True
    macs = ev.value_of(analysis.total_macs)
    pixels = math.prod(_input_shape(analysis, sizes)[2:]) or 1
    return bool(macs.is_number) and float(macs) / pixels > BIG_MACS_PER_PIXEL


def _not_probed(checker: _RfChecker, it: _RfItem, at: dict[str, int] | None) -> CheckRow:
    return CheckRow(it.name, "rf", "skip", at, checker.axis_names[it.axis],
                    detail="not probed (big model: representative subset; this node passes "
                           "an input's field through unchanged)", reason="not-probed")


def _check_rf(analysis: Any, gm: fx.GraphModule, sizes: list[dict[str, int]],
              evaluated: list[Any], rows: list[CheckRow], notes: list[str], prog: _Progress,
              rf_nodes: str) -> None:
    checker = _RfChecker(analysis, gm, sizes, rows, notes, prog, rf_nodes)
    symbolic_items, _ = checker._candidates(analysis)
    big = _is_big(analysis, evaluated[0], sizes[0], symbolic_items)
    local = [it for it in symbolic_items if it.local]
    chosen, note = _rf_subset(analysis, local, rf_nodes, big)
    if note:
        notes.append(note)
    rows.extend(_not_probed(checker, it, None) for it in local if it.name not in chosen)
    local = [it for it in local if it.name in chosen]
    known_local = {(it.name, it.axis) for it in symbolic_items if it.local}
    per_size: list[tuple[Any, dict[str, int], list[_RfItem]]] = []
    for s, ev in zip(sizes, evaluated):
        items, unknown = checker._candidates(ev, s)
        items = [it for it in items if (it.name, it.axis) not in known_local]
        chosen, note = _rf_subset(ev, items, rf_nodes, big, "size-dependent ")
        if note and not per_size:
            notes.append(note)
        rows.extend(_not_probed(checker, it, s) for it in items if it.name not in chosen)
        items = [it for it in items if it.name in chosen]
        sane = []
        for it in items:
            try:  # rfgraph's field must have values at this size
                for v in (it.rf.jump, it.rf.start_at(0), it.rf.end_at(0)):
                    sympy.sympify(v)
            except Exception as exc:
                rows.append(_error_row(it.name, "rf", s, checker.axis_names[it.axis], exc))
                continue
            sane.append(it)
        items = sane
        for it in items:
            it.local = False
        per_size.append((ev, s, items))
        rows.extend(unknown)
    prog.add(len(local) + sum(len(items) for _, _, items in per_size))
    checker.check_local(local)
    for ev, s, items in per_size:
        checker.check_at(ev, s, items)
    if checker._strips is not None and local:
        notes.append("rf: local fields probed once on strips (other axes "
                     + ", ".join(f"{checker.axis_names[a]}={n}"
                                 for a, n in enumerate(checker.strips()))
                     + "), input long enough for 2 fields plus 4 jumps along the probed axis; "
                     "size-dependent fields probed at every size")


# ------------------------------------------------------------------------------------------------
# CLI (wired into rfgraph/cli.py)
# ------------------------------------------------------------------------------------------------
_EPILOG = """exit status:
  0  OK: every check passed or was skipped by design (a documented reason)
  1  MISMATCH: some check failed
  4  COULD NOT CHECK: no mismatch, but some check applies and did not run
  2  user error (bad SPEC, --at, --checks, a size the model rejects)
  3  internal error (a bug in rfgraph)

skipped by design (result can be OK):
""" + "\n".join(f"  {k:12} {v}" for k, v in SKIP_BY_DESIGN.items()) + """

could not check (exit 4 unless something failed):
""" + "\n".join(f"  {k:12} {v}" for k, v in SKIP_COULD_NOT_CHECK.items()) + """

See docs/verify.md."""


def add_verify_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``verify`` subcommand's parser (``sub`` is the subparsers object of rfgraph's CLI)."""
    vp = sub.add_parser(
        "verify", help="run the layers with torch and check every formula",
        description="Check rfgraph's shapes, parameters, MACs, receptive fields and layer "
                    "semantics against torch, node by node. SPEC as for analyze.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from .cli import add_model_arguments

    add_model_arguments(vp, "input shape, names are symbols (default 1,3,H,W)")
    vp.add_argument("--at", action="append", default=None, metavar="SIZES",
                    help="a size to check, e.g. H=224,W=224 (repeatable; default: a typical, "
                         "an odd/prime and the smallest valid size)")
    vp.add_argument("--json", action="store_true", help="print the report as JSON")
    vp.add_argument("--checks", default=None, metavar="LIST",
                    help=f"comma-separated subset of {','.join(CHECKS)}")
    vp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    vp.add_argument("--all-nodes", action="store_true",
                    help="probe the receptive field of every node (default: a representative "
                         "subset on big graphs)")
    vp.add_argument("--train", action="store_true",
                    help="analyse and run the model in training mode (default: eval mode)")
    vp.add_argument("--node-budget", type=float, default=NODE_BUDGET, metavar="SECONDS",
                    help=f"time one node's semantics check may take (default {NODE_BUDGET:g}; "
                         "0: no limit); a slower check is reported as 'not checked: too slow'")
    return vp


def cmd_verify(args: argparse.Namespace) -> int:
    """Run ``rfgraph verify``: 0 OK, 1 a mismatch, 4 could not check (see _EPILOG)."""
    import json

    from .api import analyze, parse_at, parse_input
    from .cli import _load

    checks = None
    if args.checks is not None:
        checks = [c.strip() for c in args.checks.split(",") if c.strip()]
        bad = [c for c in checks if c not in CHECKS]
        if bad or not checks:
            raise RfgraphError(f"unknown check(s) {', '.join(bad) or '(none)'} in --checks: "
                               f"choose from {','.join(CHECKS)}")
    budget = getattr(args, "node_budget", NODE_BUDGET)
    if budget is not None and not budget >= 0:
        raise RfgraphError(f"--node-budget must be a number of seconds >= 0, not {budget:g}")
    model, default_input, name = _load(args.spec, getattr(args, "trust_pickle", False))
    shape = parse_input(args.input) if args.input else (default_input or (1, 3, "H", "W"))
    analysis = analyze(model, shape, name=name,
                       mode="train" if getattr(args, "train", False) else "eval")
    at = [parse_at(s) for s in args.at] if args.at else None
    report = verify(analysis, at=at, checks=checks, progress=not args.no_progress,
                    rf_nodes="all" if getattr(args, "all_nodes", False) else "auto",
                    node_budget=budget)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(report.format())
    return report.exit_status
