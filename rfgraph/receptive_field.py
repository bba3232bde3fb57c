"""Receptive-field algebra along one spatial axis.

Convention (docs/conventions.md, Araujo et al., Distill 2019, unclipped): the field of output
element ``y`` of a node is the interval of input coordinates ``[start(y), end(y)]``. For ordinary
layers ``start(y) = offset + y*jump`` and the size ``end - start + 1`` is the same for every y, so
the triple (size r, jump j, offset o) describes it; through a layer with kernel k, stride s, left
padding p and dilation d (k_eff = d(k-1)+1): r' = r + (k_eff-1)j, j' = js, o' = o - pj.

rfgraph keeps the two *maps* ``start`` and ``end`` instead of the triple, as a chain of index
maps evaluated lazily: output y of a layer reads elements ``first(y) .. last(y)`` of its input, so
``start(y) = start_in(first(y))`` and ``end(y) = end_in(last(y))``. Evaluating the chain at a
concrete y (or at ``n - 1`` for global pooling) keeps every floor collapsible, and the maps stay
exact through transposed convolutions and up-sampling (field size depends on the output position
modulo the stride: ``period``), adaptive pooling (bins of varying width) and global pooling (the
field is a formula in the input size).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sympy
from sympy import Expr, Integer, Max, Min

from .errors import Unsupported
from .symbolic import Y, ceildiv, floordiv, min_max, normalize, numeric_values

__all__ = ["AxisRF", "global_rf", "identity_rf", "Y", "IndexMap"]  # Y, IndexMap: for rules that
# build their own index maps

IndexMap = Callable[[Expr], Expr]
#: the elements output y really reads; None: not known at this y (first(y) .. last(y) then)
TapMap = Callable[[Expr], list[Expr] | None]


#: sizes (symbol -> Integer) at which an evaluated analysis is being annotated: a comparison
#: that SymPy cannot decide for every size is decided at these (the fields of an evaluated
#: analysis only need to hold there; a symbolic analysis never sets it)
_DECIDE_AT: list[dict] = []


@contextmanager
def decided_at(values: dict | None) -> Iterator[None]:
    """Within: undecidable min/max of fields are decided at ``values`` (symbol -> int)."""
    if not values:
        yield
        return
    _DECIDE_AT.append({k: Integer(v) for k, v in values.items()})
    try:
        yield
    finally:
        _DECIDE_AT.pop()


def _number(d: Expr) -> Expr | None:
    """``d`` as a number: itself, or its value at the sizes being evaluated."""
    if d.is_Number:
        return d
    if _DECIDE_AT:
        v = d.xreplace(_DECIDE_AT[-1])
        if v.is_Number:
            return v
    return None


def _decided(d: Expr) -> Expr:
    """``d`` as a number when :func:`_number` can tell, else ``d`` itself."""
    v = _number(d)
    return d if v is None else v


def _pick(values: list[Expr], smallest: bool) -> Expr:
    """min/max of integer-valued expressions without SymPy's Min/Max when every difference is a
    number (the usual case: fields of one chain differ by constants); Min/Max otherwise."""
    vals = list(dict.fromkeys(sympy.sympify(v) for v in values))
    keep: list[Expr] = []  # values no decidable comparison has beaten yet
    for v in vals:
        for i, k in enumerate(keep):
            d = _number(sympy.expand(v - k))
            if d is not None:
                if (d < 0) == smallest and d != 0:
                    keep[i] = v
                break
        else:
            keep.append(v)
    keep = list(dict.fromkeys(keep))
    if len(keep) == 1:
        return keep[0]
    # every pair left differs by a formula whose sign SymPy cannot tell (checked above):
    # Max/Min with evaluate=True would search the same pairs again through the assumptions
    # system (seconds for an adaptive pool's 7 position-dependent sizes); sorted for a
    # deterministic print
    return min_max(Min if smallest else Max, keep)  # flattened, sorted


def smallest(values: list[Expr]) -> Expr:
    return _pick(values, True)


def _exact(value: Any) -> Expr:
    """``value`` as an exact SymPy number or expression: ints and fractions directly, floats
    (a scale factor) through ``nsimplify``. Calling ``nsimplify`` on everything cost ~0.7 ms per
    global field, whose jump is a formula of the input size."""
    if isinstance(value, int):
        return Integer(value)
    value = sympy.sympify(value)
    if not value.is_Rational and value.has(sympy.Float):
        return sympy.nsimplify(value)
    return value


def largest(values: list[Expr]) -> Expr:
    return _pick(values, False)


class AxisRF:
    """The field of every output element of one node along one input axis.

    ``jump``: input pixels between neighbouring output elements (a rational after up-sampling).
    ``period``: a positive int P with ``start(y + P) = start(y) + P*jump`` (same for end); the
    field size depends only on ``y mod P``.
    ``aligned``/``reason``: False when a merge joined branches whose fields do not line up.
    ``live``: None when every element reads at least one input pixel; else a predicate on a
    concrete y, False for a *dead* element that reads none (the gaps of a transposed conv whose
    kernel is shorter than its stride). A dead element's field is empty: ``end_at(y) ==
    start_at(y) - 1``. Internally its maps keep the values that make unions work downstream:
    start = the start of the next live element, end = the end of the previous one.
    """

    def __init__(self, start: Callable[[Expr], Expr], end: Callable[[Expr], Expr], jump: Expr,
                 period: int = 1, aligned: bool = True, reason: str = "",
                 notes: tuple[str, ...] = (), affine: tuple[int, int, int] | None = None,
                 live: Callable[[int], bool] | None = None, is_global: bool = False,
                 monotone: bool = True, periodic: bool = True) -> None:
        self._live = live
        #: start(y) and end(y) never decrease with y, so a window's field is its first tap's
        #: start and its last tap's end. False when neighbouring fields alternate narrow/wide
        #: (a dilated window over the gaps of a transposed conv) or jump back (torch.roll, a
        #: concatenation along this axis): a window then takes the union over all its taps.
        self.monotone = monotone
        #: start(y + period) == start(y) + period*jump for every y (False after a
        #: concatenation along this axis: the pieces follow each other)
        self.periodic = periodic
        #: every output element has the same field (after global pooling, flatten + linear)
        self.is_global = is_global
        #: (r, j, o) as Python ints when start(y) = o + j*y and end(y) = start(y) + r - 1 with
        #: numbers only: the fast path for stacks of ordinary layers (no SymPy needed).
        self.affine = affine
        self._start = start
        self._end = end
        self.jump = _exact(jump)
        self.period = int(period)
        self.aligned = aligned
        self.reason = reason
        self.notes = notes
        self._cache: dict[tuple[int, Expr], Expr] = {}
        #: (base, (a, b, c)) when start(y) = base.start(a*y + b), end(y) = base.end(a*y + c)
        self._window_base: tuple[AxisRF, tuple[int, int, int]] | None = None
        #: (first, last): a global field, every element sees exactly these input pixels
        self._extent: tuple[Expr, Expr] | None = None
        #: the sizes an evaluated analysis was annotated at (see decided_at): the maps are
        #: evaluated lazily, later, under the same decisions
        self._decide = _DECIDE_AT[-1] if _DECIDE_AT else None
        #: the field a global one was collapsed from (a merge with it adds nothing)
        self._source: AxisRF | None = None
        #: True when the field is an upper bound, not exact (window attention taken as global):
        #: said in the table, the JSON and by verify
        self.upper = False
        #: how many elements at either end may read only padding (a constant F.pad of an
        #: intermediate tensor, a window lying wholly in padding; an upper count, 0 = none).
        #: Their fields are the virtual extension of the maps, which may overlap real pixels:
        #: a merge with a branch that has such elements is an upper bound where fields differ
        self.pad_run = 0
        #: [(field, first position, length)]: a concatenation along this axis
        self._pieces: list[tuple[AxisRF, Expr, Expr]] | None = None
        #: (base, first, last): a non-monotone field whose element y reads base elements
        #: first(y) .. last(y), and consecutive elements' reads leave no base element out
        self._derived: tuple[AxisRF, IndexMap, IndexMap] | None = None
        #: (source, n): this field is the source's with its n positions permuted (torch.roll),
        #: so the union over all positions is the source's
        self.permutation_of: tuple[AxisRF, Expr] | None = None

    # -- evaluation ----------------------------------------------------------------------------
    def start_at(self, y: int | Expr) -> Expr:
        """First input pixel of the field of output element ``y``."""
        return self._eval(0, y)

    def end_at(self, y: int | Expr) -> Expr:
        """Last input pixel of the field of output element ``y`` (start - 1 when it is empty)."""
        if not self.is_live(y):
            return self._eval(0, y) - 1
        return self._eval(1, y)

    @property
    def gappy(self) -> bool:
        """True when some elements may read no input pixel at all."""
        return self._live is not None

    def is_live(self, y: int | Expr) -> bool:
        """False when element ``y`` reads no input pixel (True when unknown: symbolic y)."""
        if self._live is None:
            return True
        y = sympy.sympify(y)
        if not y.is_Integer:
            return True
        key = (2, y)
        if key not in self._cache:
            with self._deciding():
                self._cache[key] = bool(self._live(int(y)))
        return bool(self._cache[key])

    @contextmanager
    def _deciding(self) -> Iterator[None]:
        """Within: comparisons decided at the sizes this field was annotated at (its maps are
        evaluated lazily, later, under the same decisions)."""
        if self._decide is None or (_DECIDE_AT and _DECIDE_AT[-1] is self._decide):
            yield
            return
        _DECIDE_AT.append(self._decide)
        try:
            yield
        finally:
            _DECIDE_AT.pop()

    def _live_taps(self, taps: list[Expr]) -> list[Expr]:
        """The taps that are live (all of them when they are symbolic)."""
        return [t for t in taps if self.is_live(t)]

    @property
    def extent(self) -> tuple[Expr, Expr] | None:
        """(first, last) input pixel of a global field (the same for every element), else
        None."""
        return self._extent

    def _eval(self, which: int, y: int | Expr) -> Expr:
        numeric = numeric_values()
        if numeric is not None and self.affine is None:
            return self._eval_numeric(which, y, *numeric)
        if self._extent is not None:
            return self._extent[which]
        if self.affine is not None:
            r, j, o = self.affine
            first = o + j * sympy.sympify(y)
            return sympy.expand(first if which == 0 else first + r - 1)
        key = (which, sympy.sympify(y))
        if key not in self._cache:
            fn = self._start if which == 0 else self._end
            with self._deciding():
                self._cache[key] = normalize(sympy.expand(fn(key[1])))
        return self._cache[key]

    def _eval_numeric(self, which: int, y: int | Expr, token: int, values: dict) -> Expr:
        """:meth:`_eval` at the sizes of :func:`rfgraph.symbolic.numeric_at` (a number): the
        maps run with numbers, no symbolic form is built. Kept apart from the symbolic cache,
        for the latest sizes only."""
        if self._extent is not None:
            return sympy.sympify(self._extent[which]).xreplace(values)
        if getattr(self, "_num_token", None) != token:
            self._num_token = token
            self._num_cache: dict[tuple[int, Expr], Expr] = {}
        key = (which, sympy.sympify(y))
        got = self._num_cache.get(key)
        if got is None:
            fn = self._start if which == 0 else self._end
            with self._deciding():
                got = sympy.sympify(fn(key[1])).xreplace(values)
            if not got.is_Number:
                got = normalize(sympy.expand(got))
            self._num_cache[key] = got
        return got

    @property
    def offset(self) -> Expr:
        """Input coordinate of the first pixel of output element 0's field (= -P, Araujo)."""
        return self.start_at(0)

    def sizes_over_period(self) -> list[Expr]:
        if self._pieces is not None:
            return list(dict.fromkeys(v for piece, _, _ in self._pieces
                                      for v in piece.sizes_over_period()))
        if self._extent is not None:
            return [sympy.expand(self._extent[1] - self._extent[0] + 1)]
        if self.affine is not None:
            return [Integer(self.affine[0])]
        return [sympy.expand(self.end_at(y) - self.start_at(y) + 1) for y in range(self.period)]

    def positions(self, n: int | None) -> list[int]:
        """Output positions that determine the largest/smallest field: one period, cut to the
        ``n`` positions that exist (plus the last one, for unions with a global field)."""
        if n is None:
            return list(range(self.period))
        ys = set(range(min(self.period, n)))
        ys.add(max(0, n - 1))
        return sorted(ys)

    def sizes_within(self, n: int | None) -> list[Expr]:
        """Field sizes at :meth:`positions` (n = the node's output length on this axis)."""
        if self._pieces is not None:
            with self._deciding():
                lengths = [_int_or_none(length) for _, _, length in self._pieces]
            return [v for (piece, _, _), n_k in zip(self._pieces, lengths)
                    for v in piece.sizes_within(n_k)]
        if self._extent is not None:
            return self.sizes_over_period()
        if self.affine is not None:
            return [Integer(self.affine[0])]
        ys = self.positions(n) if self.periodic or n is None else list(range(n))
        return [sympy.expand(self.end_at(y) - self.start_at(y) + 1) for y in ys]

    @property
    def size(self) -> Expr:
        """The largest field size over the output positions (the field size when uniform)."""
        return largest(self.sizes_over_period())

    @property
    def min_size(self) -> Expr:
        return smallest(self.sizes_over_period())

    @property
    def uniform(self) -> bool:
        return len(set(self.sizes_over_period())) == 1

    def centre_twice(self, y: int | Expr) -> Expr:
        if self.affine is not None and isinstance(y, int):
            r, j, o = self.affine
            return sympy.expand(2 * (o + j * y) + r - 1)
        return sympy.expand(self.start_at(y) + self.end_at(y))

    # -- composition ---------------------------------------------------------------------------
    def compose(self, first: IndexMap, last: IndexMap, jump: Expr, period: int,
                note: str | None = None, taps: TapMap | None = None,
                gaps: bool = False, monotone: bool = True,
                regular_taps: bool = True, periodic: bool = True,
                covers: bool = False) -> AxisRF:
        """See :meth:`_compose` (this one also carries :attr:`pad_run`)."""
        out = self._compose(first, last, jump, period, note, taps, gaps, monotone,
                            regular_taps, periodic, covers)
        if not self.pad_run or out is self:
            return out
        ratio = sympy.nsimplify(self.jump / sympy.sympify(jump)) if jump else Integer(1)
        grow = max(1, math.ceil(ratio)) if ratio.is_Rational and ratio > 0 else 10**6
        return out.with_pad_run(self.pad_run * grow)

    def resampled(self, first: IndexMap, last: IndexMap, scale: Expr | int, period: int = 1,
                  note: str | None = None, **options: object) -> AxisRF:
        """A resampling: output y reads this node's elements ``first(y) .. last(y)``, which
        advance by ``scale`` elements per output element and repeat every ``period`` outputs
        (adaptive bins, nearest/linear resizes, a pixel shuffle's ``y div r``). The jump and the
        period compose with this field's own; ``options`` as for :meth:`compose`."""
        return self.compose(first, last, self.jump * scale, self.period * period, note,
                            **options)  # type: ignore[arg-type]

    def _compose(self, first: IndexMap, last: IndexMap, jump: Expr, period: int,
                note: str | None = None, taps: TapMap | None = None,
                gaps: bool = False, monotone: bool = True,
                regular_taps: bool = True, periodic: bool = True,
                covers: bool = False) -> AxisRF:
        """Output y of the next layer reads this node's elements ``first(y) .. last(y)``.

        ``taps(y)``: the elements it really reads, when they are a strict subset of that range
        (dilation); ``gaps``: some y read no element at all (first(y) > last(y));
        ``monotone``: first and last never decrease with y (False for torch.roll);
        ``regular_taps``: taps(y) has the same count for every y, each tap non-decreasing in y;
        ``periodic``: the maps shift by a constant every ``period`` outputs (False for roll);
        ``covers``: the reads of consecutive outputs leave no element between them out.
        """
        notes = self.notes + ((note,) if note and note not in self.notes else ())
        if self._extent is not None and not gaps:  # global: every element has the same field
            return self.as_global(jump, notes)
        flags: dict[str, Any] = dict(is_global=self.is_global,
                                     periodic=self.periodic and periodic)
        if not (self.monotone and monotone):
            out = self._compose_any(first, last, jump, period, notes, taps, gaps, flags)
            if covers:
                out._derived = (self, first, last)
            return out
        if not self.gappy and not gaps and regular_taps:  # every element read is live: the
            # first and last taps are the ends
            return AxisRF(lambda y: self._eval(0, first(y)), lambda y: self._eval(1, last(y)),
                          jump, period, self.aligned, self.reason, notes,
                          **flags)._upper_if(self.upper)

        def read(y: Expr) -> list[Expr]:
            if taps is not None:
                got = taps(y)
                if got is not None:
                    return list(got)
            lo, hi = sympy.sympify(first(y)), sympy.sympify(last(y))
            if lo.is_Integer and hi.is_Integer:
                return [Integer(i) for i in range(int(lo), int(hi) + 1)]
            lo_v, hi_v = _number(lo), _number(hi)  # decided at the sizes being evaluated
            if lo_v is not None and hi_v is not None and lo_v.is_Integer and hi_v.is_Integer:
                return [Integer(i) for i in range(int(lo_v), int(hi_v) + 1)]
            return [lo, hi]

        if self.gappy:
            for y in (Integer(0), Integer(1)):
                got = read(y)
                if any(not sympy.sympify(v).is_Integer for v in got):
                    # which elements are read, so which are live, depends on the input size
                    raise Unsupported("a layer whose reads depend on the input size over a "
                                      "field with gaps: known at concrete sizes")

        def start(y: Expr) -> Expr:  # the start of the first live element read
            live = self._live_taps(read(y)) if taps is not None else []
            return self._eval(0, live[0] if live else first(y))

        def end(y: Expr) -> Expr:  # the end of the last live element read
            live = self._live_taps(read(y)) if taps is not None else []
            return self._eval(1, live[-1] if live else last(y))

        def is_live(y: int) -> bool:
            return bool(self._live_taps(read(Integer(y))))

        # the first *live* tap of a dilated window over gaps jumps back and forth with y
        mono = not (taps is not None and (self.gappy or not regular_taps))
        return AxisRF(start, end, jump, period, self.aligned, self.reason, notes, live=is_live,
                      monotone=mono, **flags)._upper_if(self.upper)

    def _compose_any(self, first: IndexMap, last: IndexMap, jump: Expr, period: int,
                     notes: tuple[str, ...], taps: TapMap | None, gaps: bool,
                     flags: dict) -> AxisRF:
        """compose() when this field or the index maps are not monotone: the field of output y
        is the union over every live element it reads (first(y) .. last(y) must be numbers,
        i.e. y concrete: the fields of a non-monotone chain are only evaluated at positions)."""
        def read(y: Expr) -> list[Expr]:
            if taps is not None:
                got = taps(y)
                if got is not None:
                    return [sympy.sympify(t) for t in got]
            lo, hi = sympy.sympify(first(y)), sympy.sympify(last(y))
            if lo.is_Integer and hi.is_Integer:
                return [Integer(i) for i in range(int(lo), int(hi) + 1)]
            if sympy.expand(hi - lo).is_Integer:
                return [lo + i for i in range(int(sympy.expand(hi - lo)) + 1)]
            lo_v, hi_v = _number(lo), _number(hi)  # decided at the sizes being evaluated
            if lo_v is not None and hi_v is not None and lo_v.is_Integer and hi_v.is_Integer:
                return [Integer(i) for i in range(int(lo_v), int(hi_v) + 1)]
            raise Unsupported("a window whose reads depend on the input size over a field "
                              "that is not monotone: known at concrete sizes")

        def start(y: Expr) -> Expr:
            live = self._live_taps(read(y))
            return smallest([self._eval(0, t) for t in live]) if live else \
                self._eval(0, first(y))

        def end(y: Expr) -> Expr:
            live = self._live_taps(read(y))
            return largest([self._eval(1, t) for t in live]) if live else \
                self._eval(1, last(y))

        def is_live(y: int) -> bool:  # (AxisRF.is_live decides at the field's sizes)
            return bool(self._live_taps(read(Integer(y))))

        for y in range(min(2, max(period, 2))):  # reads that depend on the input size:
            read(Integer(y))                     # Unsupported now, not when printing
        return AxisRF(start, end, jump, period, self.aligned, self.reason, notes,
                      live=is_live if (self.gappy or gaps or taps is not None) else None,
                      monotone=False, **flags)._upper_if(self.upper)

    def with_pad_run(self, run: int) -> AxisRF:
        """This field, with ``run`` elements at either end that may read only padding."""
        if run == self.pad_run:
            return self
        if run > 0 and self._extent is not None and not self.upper:
            # every element of a global field has its extent, the padding ones too: they
            # really read nothing
            out = self.upper_bound("elements that read only padding are given the whole "
                                   "(global) field: an upper bound")
        else:
            out = copy.copy(self)
        out.pad_run = run
        return out

    def through_window(self, kernel: int, stride: int, pad_left: int | Expr, dilation: int = 1,
                       pad_right: int | Expr = 0) -> AxisRF:
        """Conv/pool: output y reads elements [y*s - p, y*s - p + k_eff - 1]."""
        out = self._through_window(kernel, stride, pad_left, dilation)
        k_eff = dilation * (kernel - 1) + 1
        if (out._extent is not None and dilation > 1 and not out.upper
                and any(sympy.sympify(p) != 0 for p in (pad_left, pad_right))):
            # on a tensor shorter than the dilation a window's taps may all fall in the
            # padding, reading nothing, while a global field gives every element the extent
            out = out.upper_bound("a dilated, padded window over a global field: elements "
                                  "whose taps all fall in the padding read nothing")
        run = 0
        for pad in (pad_left, pad_right):
            p = sympy.sympify(pad)
            p = int(p) if p.is_Integer else (0 if p.is_nonpositive else 10**6)
            # the outputs at this end whose window lies wholly in the run + p elements there
            # (a dilated window may also straddle a tensor shorter than its dilation: taps in
            # the padding on both sides; such fields reach past the border on both sides)
            if self.pad_run + p >= k_eff:
                run = max(run, (self.pad_run + p - k_eff) // stride + 1)
        return out.with_pad_run(run)

    def _through_window(self, kernel: int, stride: int, pad_left: int, dilation: int = 1,
                        ) -> AxisRF:
        k_eff = dilation * (kernel - 1) + 1
        if self._extent is not None:  # a window of identical fields: the same field
            return self.as_global(self.jump * stride)
        if self.affine is not None and (isinstance(pad_left, int)
                                        or sympy.sympify(pad_left).is_integer):
            # (a padding that depends on the input size, as TensorFlow SAME padding, only moves
            # the offset: the field stays affine)
            r, j, o = self.affine
            return _affine_rf(r + (k_eff - 1) * j, j * stride, o - pad_left * j, self.aligned,
                              self.reason, self.notes)._upper_if(self.upper)
        period = max(1, self.period // math.gcd(self.period, stride))
        if not self.gappy and self.monotone and isinstance(pad_left, int):
            # a window over a non-affine field: keep one affine index map over the last
            # non-affine node, so a deep stack costs one step, not one step per layer
            base, (a, b, c) = (self._window_base or (self, (1, 0, 0)))
            lin = (a * stride, b - a * pad_left, c + a * (k_eff - 1 - pad_left))
            rf = AxisRF(lambda y: base._eval(0, lin[0] * y + lin[1]),
                        lambda y: base._eval(1, lin[0] * y + lin[2]),
                        self.jump * stride, period, self.aligned, self.reason, self.notes,
                        is_global=self.is_global)
            rf._window_base = (base, lin)
            return rf._upper_if(self.upper)
        taps = None
        if dilation > 1:
            def taps(y: Expr) -> list[Expr]:
                return [stride * y - pad_left + t * dilation for t in range(kernel)]
        return self.compose(lambda y: stride * y - pad_left,
                            lambda y: stride * y - pad_left + k_eff - 1,
                            self.jump * stride, period, taps=taps,
                            covers=k_eff >= stride and (dilation == 1 or stride == 1))

    def through_transposed(self, kernel: int, stride: int, pad_left: int, dilation: int = 1,
                           ) -> AxisRF:
        out = self._through_transposed(kernel, stride, pad_left, dilation)
        return out.with_pad_run(self.pad_run * stride)

    def _through_transposed(self, kernel: int, stride: int, pad_left: int, dilation: int = 1,
                            ) -> AxisRF:
        """Transposed conv: input i feeds outputs i*s - p + t*d (t < k), so output y reads
        inputs ceil((y + p - k_eff + 1)/s) .. floor((y + p)/s) when d == 1 or s == 1 (every
        d-th of them when d > 1). When k_eff < s some outputs read no input (dead elements).
        With d > 1 and s > 1 output y reads the inputs (y + p - t*d)/s that are integers: a
        pattern that repeats every s outputs, in which some outputs may read nothing."""
        k_eff = dilation * (kernel - 1) + 1
        first = lambda y: ceildiv(y + pad_left - k_eff + 1, stride)  # noqa: E731
        last = lambda y: floordiv(y + pad_left, stride)  # noqa: E731
        if dilation > 1 and stride > 1:
            def sparse(y: Expr) -> list[Expr] | None:
                y = sympy.sympify(y)
                if not y.is_Integer:
                    return None
                return [Integer((int(y) + pad_left - t * dilation) // stride)
                        for t in reversed(range(kernel))
                        if (int(y) + pad_left - t * dilation) % stride == 0]

            residues = {(t * dilation) % stride for t in range(kernel)}
            return self.compose(first, last, self.jump / stride, self.period * stride,
                                taps=sparse, gaps=len(residues) < stride, regular_taps=False)
        taps = None
        if dilation > 1:  # stride 1: inputs y + p - t*d
            def taps(y: Expr) -> list[Expr]:
                return [y + pad_left - t * dilation for t in reversed(range(kernel))]
        return self.compose(first, last, self.jump / stride, self.period * stride, taps=taps,
                            gaps=k_eff < stride)

    def through_upsample(self, num: int, den: int, kind: str) -> AxisRF:
        """Reserved for resize rules (nearest/bilinear with a rational scale)."""
        raise NotImplementedError

    def collapsed(self, n: Expr) -> AxisRF:
        """Every output element reads all ``n`` positions of this node (global pooling, flatten
        + linear): the union over positions, size (n-1)*j + r for uniform fields."""
        if self._extent is not None:
            return self.as_global(self.jump * n)
        if self.permutation_of is not None and sympy.expand(self.permutation_of[1] - n) == 0:
            return self.permutation_of[0].collapsed(n)._upper_if(self.upper)
        if not self.monotone:
            s0, e0 = self._union_bounds(n)
        else:
            s0, e0 = self._eval(0, 0), self._eval(1, n - 1)  # first/last live element's ends
        g = global_rf(s0, e0, self.jump * n, self.aligned, self.reason, self.notes,
                      normalized=True)  # _eval's values are normalised
        g._source = self
        return g._upper_if(self.upper)

    def _union_bounds(self, n: Expr) -> tuple[Expr, Expr]:
        """(first, last) input pixel read by any of the ``n`` elements of a non-monotone field:
        every element at a concrete size, else :meth:`_union_range` over 0 .. n - 1."""
        n = sympy.sympify(n)
        nv = _number(n)
        if nv is not None and nv.is_Integer:
            ys = [y for y in range(int(nv)) if self.is_live(y)] or [0]
            return (smallest([self._eval(0, y) for y in ys]),
                    largest([self._eval(1, y) for y in ys]))
        lo, hi = self._union_range(Integer(0), n - 1)
        return normalize(sympy.expand(lo)), normalize(sympy.expand(hi))

    def _union_range(self, lo: Expr, hi: Expr) -> tuple[Expr, Expr]:
        """(first, last) input pixel read by any element lo .. hi (lo <= hi)."""
        if self._extent is not None:
            return self._extent
        if self.monotone:
            return self._eval(0, lo), self._eval(1, hi)
        lo_v, hi_v = _number(sympy.sympify(lo)), _number(sympy.sympify(hi))
        if lo_v is not None and hi_v is not None and lo_v.is_Integer and hi_v.is_Integer:
            ys = [y for y in range(int(lo_v), int(hi_v) + 1) if self.is_live(y)] or [int(lo_v)]
            return (smallest([self._eval(0, y) for y in ys]),
                    largest([self._eval(1, y) for y in ys]))
        if self._pieces is not None:  # a concatenation: its pieces' unions
            bounds = []
            final = len(self._pieces) - 1
            for k, (piece, off, length) in enumerate(self._pieces):
                a = sympy.expand(lo - off) if k == 0 else Integer(0)
                b = sympy.expand(hi - off) if k == final else sympy.expand(length - 1)
                bounds.append(piece._union_range(a, b))
            return smallest([b[0] for b in bounds]), largest([b[1] for b in bounds])
        if self._derived is not None:  # a window whose reads cover its base contiguously
            base, first, last = self._derived
            return base._union_range(first(lo), last(hi))
        if self.periodic and lo_v is not None and lo_v.is_Integer:
            p = self.period
            first_ys = [int(lo_v) + r for r in range(p) if self.is_live(int(lo_v) + r)]
            res = [r for r in range(p) if self.is_live(r)] or [0]
            start = smallest([self._eval(0, y) for y in first_ys or [int(lo_v)]])
            end = largest([self._eval(1, r) + self.jump * p * floordiv(hi - r, p) for r in res])
            return start, end
        raise Unsupported("the union of a field that jumps back and forth along the axis "
                          "(after a roll or a concatenation along it) is known only at "
                          "concrete sizes")

    def as_global(self, jump: Expr, notes: tuple[str, ...] | None = None) -> AxisRF:
        """This global field with another jump (the field itself cannot change)."""
        assert self._extent is not None
        if sympy.sympify(jump) == self.jump and (notes is None or notes == self.notes):
            return self
        g = global_rf(*self._extent, jump, self.aligned, self.reason,
                      self.notes if notes is None else notes, normalized=True)
        g._source = self._source
        return g._upper_if(self.upper)

    def _upper_if(self, flag: bool) -> AxisRF:
        if flag:
            self.upper = True
        return self

    def upper_bound(self, note: str) -> AxisRF:
        """This field, marked as an upper bound of the true one (with the reason)."""
        if self._extent is not None:
            g = global_rf(*self._extent, self.jump, self.aligned, self.reason,
                          self.notes + ((note,) if note not in self.notes else ()),
                          normalized=True)
            g._source = self._source
        else:
            g = self.with_note(note)
        g.upper = True
        return g

    def with_note(self, note: str) -> AxisRF:
        if self._extent is not None:
            return self.as_global(self.jump, self.notes + (note,))
        return AxisRF(self._start, self._end, self.jump, self.period, self.aligned, self.reason,
                      self.notes + (note,), self.affine, self._live,
                      self.is_global, self.monotone, self.periodic)._upper_if(self.upper)

    def __repr__(self) -> str:
        return (f"AxisRF(size={self.size}, jump={self.jump}, offset={self.offset}, "
                f"period={self.period}{'' if self.aligned else ', unaligned'})")


def global_rf(first: Expr, last: Expr, jump: Expr, aligned: bool = True, reason: str = "",
              notes: tuple[str, ...] = (), normalized: bool = False) -> AxisRF:
    """A global field: every output element sees input pixels ``first .. last`` (after global
    pooling, a squeeze-and-excitation gate, attention or a token-mixing MLP). One closed form,
    never a nest of Min/Max."""
    if not normalized:
        first, last = normalize(sympy.expand(first)), normalize(sympy.expand(last))
    rf = AxisRF(lambda y: first, lambda y: last, jump, 1, aligned, reason, notes,
                is_global=True)
    rf._extent = (first, last)
    return rf


def identity_rf() -> AxisRF:
    """The input itself: element y sees pixel y."""
    return _affine_rf(1, 1, 0)


def _affine_rf(r: int, j: int, o: int | Expr, aligned: bool = True, reason: str = "",
               notes: tuple[str, ...] = ()) -> AxisRF:
    """A field with start(y) = o + j*y and size r (r, j ints; the offset o an int or an
    integer-valued expression of the input sizes, e.g. after TensorFlow SAME padding)."""
    o = sympy.sympify(o)
    o = int(o) if o.is_Integer else normalize(sympy.expand(o))
    return AxisRF(lambda y: o + j * y, lambda y: o + j * y + r - 1, Integer(j), 1, aligned,
                  reason, notes, (int(r), int(j), o))


def _int_or_none(v: Expr) -> int | None:
    v = _number(sympy.sympify(v))
    return int(v) if v is not None and v.is_Integer else None
