"""The receptive-field check: every node's field (size, jump, offset per axis) against the
gradient probe on the linearised copy of the graph (:mod:`rfgraph.verify.probing`). Local fields
(independent of the input size) are probed once on inputs sized by the probe itself;
size-dependent fields at every verification size. See docs/verify.md."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import sympy
import torch
import torch.nn.functional as F
from torch import fx

from .probing import (
    _first_tensor,
    _first_y,
    _grad_box,
    _is_local,
    _live_names,
    _live_phase,
    _plan_need,
    _Prober,
    _rf_subset,
    _RfItem,
    _tensor_of,
    _tier,
)
from .report import CheckRow, _error_row, _Progress
from .sizes import _input_shape, _SizeSearch, _valid

if TYPE_CHECKING:
    from ..analysis import Analysis
    from ..receptive_field import AxisRF

#: one run of the probe copy: (input, node values, errors per node)
_Run = tuple[torch.Tensor, dict[str, Any], dict[str, str]]
#: fields larger than this many input pixels along one axis are not probed
MAX_PROBE = 8192
#: above this many probe-able nodes only a representative subset is probed (see _rf_subset)
FULL_PROBE_LIMIT = 90
#: ... or when the model costs more than this many MACs per input pixel (VGG-16: ~309k)
BIG_MACS_PER_PIXEL = 50_000


class _RfChecker:
    """Receptive-field checks for one analysis (see module docstring and docs/verify.md)."""

    def __init__(self, analysis: Analysis, gm: fx.GraphModule, sizes: list[dict[str, int]],
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
    def _candidates(self, ev: Analysis, at: dict[str, int] | None = None,
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
        others: list[list[int | None]] = [list(self.strips()), [None] * self.nd]
        for other in others:
            base = dict(self.sizes[0])
            if own is not None:
                base[own] = need
            for b, sym in enumerate(syms):
                width = other[b]
                if sym is not None and b != axis and width is not None:
                    base[sym] = width
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
        dim = _tensor_of(self.a, it.name).dim_of_axis(it.axis)
        assert dim is not None  # a local field's axis is a dim of the tensor
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
        t = _tensor_of(self.a, it.name)
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
        index: list[slice | int] = [slice(None)] * out.dim()
        if dim is not None and y is not None:
            index[dim] = y
        return tuple(index)

    def _local_positions(self, rf: AxisRF, length: int, m: int) -> list[int] | None:
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
    def _local_positions_scan(rf: AxisRF, length: int, m: int, phase: int) -> list[int] | None:
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
    def check_at(self, ev: Analysis, sizes: dict[str, int], items: list[_RfItem]) -> None:
        if not items:
            return
        strips = self.strips()
        syms = self._axis_symbols()
        groups: dict[tuple[str, int], list[_RfItem]] = {}
        for it in items:
            fs = set()
            if not it.local:
                for v in (it.rf.jump, it.rf.start_at(0), it.rf.end_at(0)):
                    fs |= {s.name for s in sympy.sympify(v).free_symbols}
            symbolic = self.a[it.name].tensor
            known = symbolic is not None and symbolic.rf[it.axis] is not None
            own = syms[it.axis]
            key = ("strip", it.axis) if known and fs <= {own} else ("full", -1)
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
            at_full: _Run | None = None
            moved: list[_RfItem] = []
            if shape != full:
                # a strip that makes the run fail, or that kills a branch live at the real
                # size: those nodes are probed on the real size instead
                runs: list[_Run] = []

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

    def _compare_at(self, ev: Analysis, it: _RfItem, out: torch.Tensor, x: torch.Tensor,
                    shape: tuple[int, ...], sizes: dict[str, int]) -> CheckRow:
        """The size-dependent check: an end of the field that lies inside the image must be
        the probe box's end; an end outside only bounds it (the box stays in the clipped
        field)."""
        rf = it.rf
        dim = _tensor_of(ev, it.name).dim_of_axis(it.axis)
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



def _is_big(analysis: Analysis, ev: Analysis, sizes: dict[str, int], items: list[_RfItem]) -> bool:
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


def check_rf(analysis: Analysis, gm: fx.GraphModule, sizes: list[dict[str, int]],
              evaluated: list[Analysis], rows: list[CheckRow], notes: list[str], prog: _Progress,
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
    per_size: list[tuple[Analysis, dict[str, int], list[_RfItem]]] = []
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

