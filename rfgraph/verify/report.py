"""The verify report: :class:`CheckRow`, :class:`VerifyReport`, its text and JSON forms, the
skip reasons and exit statuses, the progress bar, and the rows every check builds."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy

from ..util import first_line
from ..verify_terms import (
    EXIT_COULD_NOT_CHECK,
    EXIT_MISMATCH,
    EXIT_OK,
    SKIP_BY_DESIGN,
    SKIP_COULD_NOT_CHECK,
    TOTAL,
)


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
# Rows
# ------------------------------------------------------------------------------------------------
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



def _from_rfgraph_formula(exc: BaseException) -> bool:
    """True when ``exc`` was raised while evaluating one of rfgraph's formulas (its field
    algebra or a rule), not by verify's own machinery."""
    tb = exc.__traceback__
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # rfgraph/
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
                        f"rfgraph's formula cannot be evaluated here: {first_line(exc, 160)}")
    return CheckRow(node, check, "skip", at, what, detail=(
        f"{doing or 'the check'} raised {first_line(exc, 160)}"), reason="error")

