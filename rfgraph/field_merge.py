"""Fields of tensors that meet: the union of the fields of merged branches (add, mul, cat
along channels; ``merge_rfs``) and the field of a concatenation along the axis itself
(``concat_rfs``), exact at every position. The one-axis algebra is in
:mod:`rfgraph.receptive_field`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import sympy
from sympy import Expr, Integer

from .receptive_field import (
    AxisRF,
    _affine_rf,
    _decided,
    _number,
    global_rf,
    largest,
    smallest,
)

__all__ = ["concat_rfs", "join_reasons", "merge_rfs"]


def _before(y: Expr, end: Expr) -> bool | None:
    """y < end: True/False when certain (numbers, positive sizes), None when undecided."""
    d = sympy.expand(sympy.sympify(end) - sympy.sympify(y))
    v = _number(d)
    if v is not None:
        return bool(v > 0)
    if (d - 1).is_nonnegative:
        return True
    if d.is_nonpositive:
        return False
    return None


def concat_rfs(parts: list[tuple[AxisRF, Expr]]) -> AxisRF:
    """The field of a concatenation along this axis: element y of the result is element
    y - o_k of piece k, o_k = the lengths of the pieces before it. Exact at every position
    (a Piecewise where the piece of y depends on a symbolic size)."""
    pieces: list[tuple[AxisRF, Expr, Expr]] = []
    offset: Expr = Integer(0)
    for rf, length in parts:
        pieces.append((rf, offset, sympy.sympify(length)))
        offset = sympy.expand(offset + length)

    def value(which: int, y: Expr) -> Expr:
        y = sympy.sympify(y)
        cases = []
        for k, (rf, off, length) in enumerate(pieces):
            local = _decided(sympy.expand(y - off))
            if k == len(pieces) - 1:
                cases.append((rf._eval(which, local), True))
                break
            inside = _before(y, off + length)
            if inside is False:
                continue
            cases.append((rf._eval(which, local), True if inside else y < off + length))
            if inside:
                break
        if len(cases) == 1 or cases[0][1] is True:
            return cases[0][0]
        return sympy.Piecewise(*cases)

    def live(y: int) -> bool:
        for k, (rf, off, length) in enumerate(pieces):
            inside = _before(Integer(y), off + length)
            if inside is None:  # undecided at symbolic sizes (evaluating re-decides)
                return True
            if k == len(pieces) - 1 or inside:
                return rf.is_live(_decided(sympy.expand(Integer(y) - off)))
        return True

    jumps = list(dict.fromkeys(rf.jump for rf, _ in parts))
    aligned = all(rf.aligned for rf, _ in parts) and len(jumps) == 1
    reasons = [rf.reason for rf, _ in parts if rf.reason]
    if len(jumps) > 1:
        reasons.append("jumps differ: " + ", ".join(str(j) for j in jumps))
    notes: tuple[str, ...] = ()
    for rf, _ in parts:
        notes += tuple(n for n in rf.notes if n not in notes)
    period = 1
    for rf, _ in parts:
        period = period * rf.period // math.gcd(period, rf.period)
    out = AxisRF(lambda y: value(0, y), lambda y: value(1, y), jumps[0], period, aligned,
                 join_reasons(reasons), notes,
                 live=live if any(rf.gappy for rf, _ in parts) else None,
                 monotone=False,
                 periodic=False)
    out._pieces = pieces
    out.pad_run = max(rf.pad_run for rf, _ in parts)
    return out._upper_if(any(rf.upper for rf, _ in parts))


MAX_REASONS = 4


def join_reasons(reasons: list[str]) -> str:
    """The distinct reasons a merged field is unaligned, the first few of them: every merge
    inherits its inputs' reasons, so without a cap the text doubles at each merge of a
    branching net (GhostNet-V3 ran out of memory)."""
    parts: list[str] = []
    for text in reasons:
        parts.extend(p for p in text.split("; ") if p and not p.startswith("and "))
    parts = list(dict.fromkeys(parts))
    if len(parts) > MAX_REASONS:
        parts = parts[:MAX_REASONS] + ["and others"]
    return "; ".join(parts)


def _at_most(a: Expr, b: Expr) -> bool:
    """True when a <= b is certain (their difference is a number)."""
    d = _number(sympy.expand(sympy.sympify(b) - sympy.sympify(a)))
    return bool(d is not None and d >= 0)


@overload
def merge_rfs(rfs: Sequence[AxisRF], broadcast: list[bool],
              lengths: list[Expr | None] | None = None) -> AxisRF: ...


@overload
def merge_rfs(rfs: Sequence[AxisRF | None], broadcast: list[bool],
              lengths: list[Expr | None] | None = None) -> AxisRF | None: ...


def merge_rfs(rfs: Sequence[AxisRF | None], broadcast: list[bool],
              lengths: list[Expr | None] | None = None) -> AxisRF | None:
    """Union of the fields of the inputs of an add/mul/cat at each output position.

    ``broadcast[i]`` is True when input i has size 1 on this axis and is broadcast: its field is
    the same for every output element and it takes no part in the alignment check.
    ``lengths[i]``: input i's length along this axis (lets a local field that lies inside a
    global one be absorbed into it). Returns None when any input field is unknown.
    """
    if any(r is None for r in rfs):
        return None
    present: list[AxisRF] = [r for r in rfs if r is not None]
    unique = list({id(r): r for r in present}.values())
    if len(unique) == 1:
        return unique[0]
    out = _merge(present, unique, broadcast, lengths)
    run = min(r.pad_run for r in unique)
    return out if out.pad_run == run or out in unique else out.with_pad_run(run)


def _merge(present: list[AxisRF], unique: list[AxisRF], broadcast: list[bool],
           lengths: list[Expr | None] | None) -> AxisRF:
    merged_global = _merge_with_global(present, broadcast, lengths)
    if merged_global is not None:
        return merged_global
    # broadcast inputs and global fields are the same for every element: in the union, not in
    # the alignment check
    local = [r for r, b in zip(present, broadcast) if not b and not r.is_global] or present
    local = list({id(r): r for r in local}.values())
    aligned = all(r.aligned for r in unique)
    reasons = [r.reason for r in unique if r.reason]
    period = 1
    for r in unique:
        period = period * r.period // math.gcd(period, r.period)
    jumps = list(dict.fromkeys(r.jump for r in local))
    periodic = all(r.periodic for r in unique)
    if len(jumps) > 1:
        aligned = False
        reasons.append("jumps differ: " + ", ".join(str(j) for j in jumps))
        periodic = False  # the branches drift apart: sizes change along the axis
    elif len(local) > 1:
        for y in range(period):
            centres = {r.centre_twice(y) for r in local if r.is_live(y)}
            if len(centres) > 1:
                aligned = False
                spans = ", ".join(f"[{r.start_at(y)}, {r.end_at(y)}]" for r in local)
                reasons.append(f"field centres differ (element {y}: {spans})")
                break
    notes: tuple[str, ...] = ()
    for r in unique:
        notes += tuple(n for n in r.notes if n not in notes)
    reason = join_reasons(reasons)
    affines = [r.affine for r in unique if r.affine is not None]
    if len(affines) == len(unique) and len({a[1] for a in affines}) == 1:
        if all(isinstance(a[2], int) for a in affines):  # the usual case: plain ints
            lo, hi = min(a[2] for a in affines), max(a[2] + a[0] - 1 for a in affines)
            width = Integer(hi - lo + 1)
        else:
            lo = smallest([a[2] for a in affines])
            hi = largest([a[2] + a[0] - 1 for a in affines])
            width = sympy.expand(hi - lo + 1)
        if width.is_Integer:  # offsets that differ by numbers: still one affine field
            j = affines[0][1]
            return _affine_rf(int(width), j, lo, aligned, reason, notes)._upper_if(
                any(r.upper for r in unique))

    def branches(y: Expr) -> list[AxisRF]:  # a branch that reads nothing at y adds nothing
        return [r for r in unique if r.is_live(y)] or unique

    def start(y: Expr) -> Expr:
        return smallest([r._eval(0, y) for r in branches(y)])

    def end(y: Expr) -> Expr:
        return largest([r._eval(1, y) for r in branches(y)])

    def live(y: int) -> bool:
        return any(r.is_live(y) for r in unique)

    return AxisRF(start, end, local[0].jump, period, aligned, reason, notes,
                  live=live if any(r.gappy for r in unique) else None,
                  is_global=all(r.is_global for r in unique),
                  monotone=all(r.monotone for r in unique),
                  periodic=periodic)._upper_if(
                      any(r.upper for r in unique))


def _merge_with_global(present: list[AxisRF], broadcast: list[bool],
                       lengths: list[Expr | None] | None) -> AxisRF | None:
    """The union when global fields take part and every local field lies inside their extent
    (a squeeze-and-excitation gate times the tensor it pooled): one global field. None when
    there is no global field or a local one may stick out (the general path handles it)."""
    globals_ = list({id(r): r for r in present if r._extent is not None}.values())
    if not globals_:
        return None
    extents = [g._extent for g in globals_ if g._extent is not None]  # (every one of them)
    lo = smallest([e[0] for e in extents])
    hi = largest([e[1] for e in extents])
    sources = {id(g._source) for g in globals_ if g._source is not None}
    local_jumps: list[Expr] = []
    seen: set[int] = set()
    for i, r in enumerate(present):
        if r._extent is not None or id(r) in seen:
            continue
        seen.add(id(r))
        if not (broadcast[i] if i < len(broadcast) else False):
            local_jumps.append(r.jump)
        if id(r) in sources:
            continue  # the field the global one was pooled from: inside it by construction
        n = lengths[i] if lengths is not None and i < len(lengths) else None
        if n is None or r.gappy or r.affine is None:
            # only an affine field is certainly monotone (its first and last elements bound
            # the others); anything else takes the general, element-wise path
            return None
        if not (_at_most(lo, r.start_at(0)) and _at_most(r.end_at(sympy.sympify(n) - 1), hi)):
            return None
    aligned = all(r.aligned for r in present)
    reason = join_reasons([r.reason for r in present if r.reason])
    notes: tuple[str, ...] = ()
    for r in present:
        notes += tuple(x for x in r.notes if x not in notes)
    jump = local_jumps[0] if local_jumps else globals_[0].jump
    g = global_rf(lo, hi, jump, aligned, reason, notes, normalized=True)  # extents are
    g._source = globals_[0]._source
    return g._upper_if(any(r.upper for r in present))

