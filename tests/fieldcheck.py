"""Oracle: rfgraph's receptive field at EVERY output position of EVERY node, against torch.

:func:`check_all_positions` compares, for each node of the traced graph whose output is laid out
like the input (``(N, C, *spatial)`` with the input's spatial axes at dims 2..), the field rfgraph
reports at each output position with the set of input pixels that position really depends on.

Measurement (independent of rfgraph's field algebra; it only uses rfgraph's tracer, so that node
names match, and :func:`rfgraph.probe.prepare_probe_model`, which imports nothing else from
rfgraph):

* the traced graph is linearised: Conv/ConvTranspose/Linear weights become ``1/fan_in`` (positive),
  biases 0, max pools become linear pools with the same geometry, norms and activations become
  identities, in float64. With positive weights no two paths cancel, so a value is non-zero iff
  it is connected to a non-zero input;
* ONE forward with a batch of one-hot inputs: batch item ``b`` is 1 over every channel at spatial
  input pixel ``b`` (row-major), 0 elsewhere; the batch size is the number of input pixels. A
  torch.fx Interpreter records every node's output;
* the dependency set of output position ``y`` of node output ``O`` (shape ``(B, C, *out)``) is
  ``{b : O[b, :, y] != 0 for some channel}``; per axis the measured box is the min/max coordinate
  over that set. The output of the same graph on an all-zero input is subtracted first (it is 0
  unless a constant pad has a non-zero value).

rfgraph's field along axis i at position y is the unclipped interval
``[start_at(y_i), end_at(y_i)]`` (end < start: empty, e.g. the gaps of a transposed conv). The
unclipped convention counts zero padding as virtual pixels outside the image, so it is compared
CLIPPED to ``[0, n_i - 1]``; the measured set is empty iff some axis's clipped interval is empty.
Every differing position is classified (:func:`compare_node`): ``missed`` (torch reads a pixel
rfgraph does not report: always wrong), ``extra`` (rfgraph reports a pixel torch does not read,
on a side where no virtual pixel is involved) and ``extra@border`` (the clipped box overstates
only on sides where the unclipped field reaches into the padding: virtual taps next to the border
with unread real pixels between them and the real taps, e.g. a dilated kernel). The returned list
holds all of them (the check is exact); ``result.serious`` only the first two kinds.

Fields marked ``upper`` (upper bounds) and unknown fields (None) are skipped and counted in
``result.stats``. ``field_at`` sizes are checked too: ``size``/``min_size`` must be the largest /
smallest unclipped size over the node's real output positions and ``offset`` the start of
position 0.

Non-zero padding modes (reflect/replicate/circular) map padded coordinates to real pixels, which
the unclipped convention does not: when the graph has one, only positions whose unclipped field
lies inside the image on every axis are compared (approximate: a crop before such a pad can still
map a padded coordinate to a real pixel inside that field).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy
import torch
from torch import fx, nn

import rfgraph
from rfgraph.api import parse_input
from rfgraph.probe import prepare_probe_model
from rfgraph.trace import trace

__all__ = ["EXTRA", "EXTRA_BORDER", "MISSED", "Measured", "Mismatches", "check_all_positions",
           "compare_node", "measure", "one_hot_batch"]


class Mismatches(list):
    """``list[str]`` of human-readable mismatches (empty: exact) plus counters in ``stats``."""

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, Any] = {
            "nodes_checked": 0, "positions_checked": 0, "positions_skipped_padding_mode": 0,
            "unknown": [], "upper": [], "non_spatial": []}
        #: the mismatches that no virtual pixel at the border explains (kinds ``missed`` and
        #: ``extra``, wrong shapes, rfgraph errors, inconsistent ``field_at``): see compare_node
        self.serious: list[str] = []

    def add(self, lines: list[str], serious: bool = True) -> None:
        self.extend(lines)
        if serious:
            self.serious.extend(lines)

    def summary(self) -> str:
        s = self.stats
        return (f"{s['nodes_checked']} nodes / {s['positions_checked']} positions checked; "
                f"skipped: unknown {s['unknown']}, upper {s['upper']}, "
                f"non-spatial {len(s['non_spatial'])}; mismatching positions: "
                f"{ {k: s[k] for k in (MISSED, EXTRA, EXTRA_BORDER) if k in s} }")


@dataclass
class Measured:
    """Measured dependency boxes of one node output: ``lo``/``hi`` (int64, shape
    ``(nd, *out)``: first/last input coordinate per axis) and ``nonempty`` (bool, ``out``)."""

    lo: torch.Tensor
    hi: torch.Tensor
    nonempty: torch.Tensor

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.nonempty.shape)


# -- measurement -----------------------------------------------------------------------------------
def _concrete(input_shape: str | Sequence[int | str], sizes: Mapping[str, int]) -> list[int]:
    dims = parse_input(input_shape)
    out = []
    for d in dims:
        v = sympy.sympify(d).xreplace({s: sympy.Integer(sizes[s.name]) for s in d.free_symbols})
        if not v.is_Integer:
            raise ValueError(f"input dim {d} has no value in {dict(sizes)}")
        out.append(int(v))
    return out


def one_hot_batch(channels: int, spatial: Sequence[int]) -> torch.Tensor:
    """``(B, channels, *spatial)`` float64, B = prod(spatial): item b is 1 over every channel at
    spatial pixel b (row-major order), 0 elsewhere."""
    n = math.prod(spatial)
    x = torch.zeros(n, channels, n, dtype=torch.float64)
    idx = torch.arange(n)
    x[idx, :, idx] = 1.0
    return x.reshape(n, channels, *spatial)


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.values[n.name] = out
        return out


def _record(prepared: fx.GraphModule, x: torch.Tensor) -> dict[str, torch.Tensor]:
    rec = _Recorder(prepared)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec.run(x)
    return rec.values


def _boxes(o: torch.Tensor, spatial: Sequence[int]) -> Measured:
    """Dependency boxes of output ``o`` (``(B, C, *out)``, B one-hot input pixels)."""
    nd = len(spatial)
    mask = (o != 0).any(dim=1)  # (B, *out)
    coords = torch.unravel_index(torch.arange(math.prod(spatial)), tuple(spatial))
    big = max(spatial) + 1
    lo, hi = [], []
    view = (-1,) + (1,) * (mask.dim() - 1)
    for i in range(nd):
        c = coords[i].view(view)
        lo.append(torch.where(mask, c, big).amin(0))
        hi.append(torch.where(mask, c, -1).amax(0))
    return Measured(torch.stack(lo), torch.stack(hi), mask.any(0))


def _graph(model: nn.Module) -> fx.GraphModule:
    return model if isinstance(model, fx.GraphModule) else trace(model.eval())


def measure(model: nn.Module, input_shape: str | Sequence[int | str],
            sizes: Mapping[str, int] | None = None) -> dict[str, Measured]:
    """Measured dependency boxes of every node output with 2 + nd dims whose dim 0 is still the
    batch (nd = number of spatial input axes), by fx node name of rfgraph's trace. The caller
    decides which outputs have the input's spatial axes at dims 2.. (:func:`check_all_positions`
    asks the analysis)."""
    gm = _graph(model)
    return _measure_gm(gm, _concrete(input_shape, sizes or {}))[0]


def _measure_gm(gm: fx.GraphModule, shape: list[int]) -> tuple[dict[str, Measured],
                                                                dict[str, tuple[int, ...]]]:
    channels, spatial = shape[1], shape[2:]
    prepared = prepare_probe_model(gm)
    values = _record(prepared, one_hot_batch(channels, spatial))
    base = _record(prepared, torch.zeros(1, channels, *spatial, dtype=torch.float64))
    b = math.prod(spatial)
    out, shapes = {}, {}
    for name, o in values.items():
        shapes[name] = tuple(o.shape)
        if o.dim() != len(shape) or o.shape[0] != b or not o.is_floating_point():
            continue
        z = base.get(name)
        if z is not None and z.dim() == o.dim() and z.shape[0] == 1 and bool((z != 0).any()):
            o = o - z  # a constant (non-zero constant pad): only the input's part counts
        out[name] = _boxes(o, spatial)
    return out, shapes


# -- comparison ------------------------------------------------------------------------------------
def _interval(lo: int, hi: int) -> str:
    return f"[{lo},{hi}]" if hi >= lo else f"empty[{lo},{hi}]"


#: kinds of mismatch at one output position (see compare_node)
MISSED, EXTRA, EXTRA_BORDER = "missed", "extra", "extra@border"


def input_hull(gm: fx.GraphModule, name: str, measured: Mapping[str, Measured],
               spatial: Sequence[int]) -> tuple[list[int], list[int]]:
    """Per axis, the first and last input pixel that any real element of the node's inputs
    reads (the image itself for the model input): pixels outside it can only reach the node
    through virtual elements of its inputs (padding, the gaps a crop or a stride leave)."""
    nd = len(spatial)
    node = next(n for n in gm.graph.nodes if n.name == name)
    ins = [measured[a.name] for a in node.all_input_nodes
           if a.name in measured and measured[a.name].lo.shape[0] == nd]
    if not ins or node.op == "placeholder":
        return [0] * nd, [n - 1 for n in spatial]
    lo, hi = [], []
    for i in range(nd):
        los = [int(m.lo[i][m.nonempty].min()) for m in ins if bool(m.nonempty.any())]
        his = [int(m.hi[i][m.nonempty].max()) for m in ins if bool(m.nonempty.any())]
        lo.append(min(los) if los else spatial[i])
        hi.append(max(his) if his else -1)
    return lo, hi


def compare_node(name: str, starts: Sequence[Sequence[int]], ends: Sequence[Sequence[int]],
                 in_sizes: Sequence[int], measured: Measured, axis_names: Sequence[str],
                 inside_only: bool = False, max_examples: int = 3,
                 stats: dict | None = None,
                 hull: tuple[Sequence[int], Sequence[int]] | None = None) -> list[str]:
    """Mismatches between the reported unclipped intervals (``starts[i][y_i]``,
    ``ends[i][y_i]`` per axis i) and the measured boxes, at every output position.

    Each differing position is one of (``stats[kind]`` counts them):

    * ``missed``: torch reads a pixel outside the clipped reported box (or reads something where
      rfgraph reports an empty field): wrong under any convention;
    * ``extra``: the reported box is too big on a side where its unclipped interval lies inside
      the image (no virtual pixel can explain the difference), or the reported field is non-empty
      and inside the image on every axis but torch reads nothing;
    * ``extra@border``: the reported box is too big only on sides where the unclipped interval
      reaches outside the image. The unclipped convention counts virtual pixels there, and the
      taps next to the border can be virtual ones with real pixels between them and the real
      taps (dilation, transposed-conv gaps, a merged branch that reads only padding, resize
      border clamping), so the clipped box overstates the real one. Likewise on a side where
      the reported interval reaches past ``hull`` (the pixels any real element of the node's
      inputs reads, see :func:`input_hull`): only virtual elements of an intermediate tensor
      (padding after a crop, a stride's dropped tail) can be read there, and by the convention
      their fields continue the tensor's maps (docs/conventions.md).
    """
    if hull is None:
        hull = ([0] * len(in_sizes), [n - 1 for n in in_sizes])
    nd = len(in_sizes)
    out_shape = measured.out_shape
    s_full, e_full, cs_full, ce_full = [], [], [], []
    rep_empty = torch.zeros(out_shape, dtype=torch.bool)
    inside = torch.ones(out_shape, dtype=torch.bool)
    for i in range(nd):
        view = [1] * nd
        view[i] = out_shape[i]
        s = torch.tensor(list(starts[i]), dtype=torch.int64).view(view).expand(out_shape)
        e = torch.tensor(list(ends[i]), dtype=torch.int64).view(view).expand(out_shape)
        cs, ce = s.clamp(min=0), e.clamp(max=in_sizes[i] - 1)
        rep_empty = rep_empty | (ce < cs)
        inside = inside & (s >= 0) & (e <= in_sizes[i] - 1) & (e >= s)
        s_full.append(s)
        e_full.append(e)
        cs_full.append(cs)
        ce_full.append(ce)
    compare = inside if inside_only else torch.ones(out_shape, dtype=torch.bool)
    if stats is not None:
        stats["positions_checked"] += int(compare.sum())
        stats["positions_skipped_padding_mode"] += int((~compare).sum())
    got, rep = measured.nonempty, ~rep_empty
    both = got & rep
    under = ~rep & got
    differs = got != rep
    outside_any = torch.zeros(out_shape, dtype=torch.bool)
    explained = torch.ones(out_shape, dtype=torch.bool)  # every too-big side is at the border
    for i in range(nd):
        lo, hi = measured.lo[i], measured.hi[i]
        under = under | (both & ((lo < cs_full[i]) | (hi > ce_full[i])))
        differs = differs | (both & ((lo != cs_full[i]) | (hi != ce_full[i])))
        left_out = (s_full[i] < 0) | (s_full[i] < hull[0][i])
        right_out = (e_full[i] > in_sizes[i] - 1) | (e_full[i] > hull[1][i])
        # an element that reads nothing at all (a window wholly in virtual elements) has a
        # virtual field by the convention: explained when it reaches the hull's edge
        outside_any = (outside_any | left_out | right_out | (s_full[i] <= hull[0][i])
                       | (e_full[i] >= hull[1][i]))
        explained = explained & ~((lo > cs_full[i]) & ~left_out) & ~((hi < ce_full[i])
                                                                     & ~right_out)
    explained = torch.where(both, explained, outside_any)  # torch reads nothing at all
    missed = compare & under
    extra = compare & differs & ~under
    kinds = {MISSED: missed, EXTRA: extra & ~explained, EXTRA_BORDER: extra & explained}
    bad = missed | extra
    if not bool(bad.any()):
        return []
    counts = {k: int(v.sum()) for k, v in kinds.items() if bool(v.any())}
    if stats is not None:
        for k, v in counts.items():
            stats[k] = stats.get(k, 0) + v
    lines = [f"{name}: {int(bad.sum())} of {int(compare.sum())} positions differ "
             f"(out {out_shape}): " + ", ".join(f"{v} {k}" for k, v in counts.items())]
    for kind, mask in kinds.items():
        where = torch.nonzero(mask)
        for pos in where[:max_examples].tolist():
            p = tuple(pos)
            txt, clip, box = [], [], []
            for i in range(nd):
                txt.append(f"{axis_names[i]}{_interval(int(s_full[i][p]), int(e_full[i][p]))}")
                clip.append(_interval(int(cs_full[i][p]), int(ce_full[i][p])))
                box.append(_interval(int(measured.lo[i][p]), int(measured.hi[i][p])))
            lines.append(f"  [{kind}] {name} y={p}: reported {' '.join(txt)} -> clipped "
                         f"{'x'.join(clip) if bool(rep[p]) else 'empty'}, measured "
                         f"{'x'.join(box) if bool(got[p]) else 'empty'}")
        if len(where) > max_examples:
            lines.append(f"  ... and {len(where) - max_examples} more {kind}")
    return lines


def _nonzero_padding_mode(gm: fx.GraphModule) -> bool:
    for node in gm.graph.nodes:
        if node.op == "call_module":
            m = gm.get_submodule(str(node.target))
            if getattr(m, "padding_mode", "zeros") != "zeros":
                return True
            if type(m).__name__.startswith(("Reflection", "Replication", "Circular")):
                return True
        elif node.op == "call_function" and getattr(node.target, "__name__", "") == "pad":
            mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
            if mode != "constant":
                return True
    return False


def check_all_positions(model: nn.Module, input_shape: str | Sequence[int | str],
                        sizes: dict, max_examples: int = 3) -> Mismatches:
    """Every output position of every spatial node: rfgraph's field (clipped) against the
    measured dependency box. Returns the mismatches as text (empty list: exact); counters of
    what was checked and skipped are in ``result.stats``.

    ``input_shape``: e.g. ``(1, 2, "H", "W")``; ``sizes``: e.g. ``{"H": 5, "W": 17}``.
    Exceptions from rfgraph (analyze/evaluate) are reported as mismatches; exceptions from torch
    (the model does not run at these sizes) propagate.
    """
    result = Mismatches()
    stats = result.stats
    shape = _concrete(input_shape, sizes)
    nd = len(shape) - 2
    if nd < 1:
        raise ValueError("the input needs spatial axes (N, C, *spatial)")
    spatial = shape[2:]
    gm = _graph(model)
    measured, torch_shapes = _measure_gm(gm, shape)  # torch first: it must run at these sizes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ev = rfgraph.analyze(gm, input_shape).evaluate(**sizes)
    except Exception as exc:  # noqa: BLE001 - an rfgraph failure on a model torch runs
        result.add([f"rfgraph raised {type(exc).__name__}: {str(exc).splitlines()[0]}"])
        return result
    inside_only = _nonzero_padding_mode(gm)
    names = ev.axis_names
    for info in ev.nodes:
        t = info.tensor
        if t is None or info.name not in torch_shapes:
            continue  # not a tensor (size(), getitem of a shape, ...)
        if not (t.ndim == nd + 2 and t.axes[0] is None and t.axes[1] is None
                and tuple(t.axes[2:]) == tuple(range(nd))) or info.name not in measured:
            stats["non_spatial"].append(info.name)
            continue
        m = measured[info.name]
        rep_shape = tuple(ev.int_of(s) for s in t.shape[2:])
        if rep_shape != m.out_shape:
            result.add([f"{info.name}: reported spatial shape {rep_shape}, torch "
                        f"{torch_shapes[info.name][2:]}"])
            continue
        f = ev.field(info)
        if f is None:
            stats["unknown"].append(info.name)
            continue
        if any(r.upper for r in f):
            stats["upper"].append(info.name)
            continue
        try:
            starts, ends, bad_expr = _intervals(ev, info, f, m.out_shape, names)
        except Exception as exc:  # noqa: BLE001 - rfgraph fails on a node torch runs
            result.add([f"{info.name}: rfgraph raised {type(exc).__name__} evaluating the "
                        f"field: {str(exc).splitlines()[0] if str(exc) else ''}"])
            continue
        if bad_expr:
            result.add([bad_expr])
            continue
        stats["nodes_checked"] += 1
        before = {k: stats.get(k, 0) for k in (MISSED, EXTRA)}
        lines = compare_node(info.name, starts, ends, spatial, m, names, inside_only,
                             max_examples, stats, input_hull(gm, info.name, measured, spatial))
        result.add(lines, serious=any(stats.get(k, 0) > v for k, v in before.items()))
        result.add(_check_sizes(ev, info, starts, ends, names))
    return result


def _intervals(ev: Any, info: Any, f: list, out_shape: tuple[int, ...], names: Sequence[str],
               ) -> tuple[list[list[int]], list[list[int]], str | None]:
    """The reported unclipped [start, end] at every output position, per axis (or a message
    when some value is not a number)."""
    starts: list[list[int]] = []
    ends: list[list[int]] = []
    for i in range(len(out_shape)):
        s_i, e_i = [], []
        for y in range(out_shape[i]):
            s, e = ev.int_of(f[i].start_at(y)), ev.int_of(f[i].end_at(y))
            if s is None or e is None:
                return starts, ends, (f"{info.name}: axis {names[i]} y={y}: field is not a "
                                      f"number: start {ev.value_of(f[i].start_at(y))}, "
                                      f"end {ev.value_of(f[i].end_at(y))}")
            s_i.append(s)
            e_i.append(e)
        starts.append(s_i)
        ends.append(e_i)
    return starts, ends, None


def _check_sizes(ev: Any, info: Any, starts: list[list[int]], ends: list[list[int]],
                 names: Sequence[str]) -> list[str]:
    """``field_at``: size / min_size = largest / smallest unclipped size over the node's output
    positions (0 for an element that reads nothing), offset = start of position 0."""
    try:
        fa = ev.field_at(info)
    except Exception as exc:  # noqa: BLE001
        return [f"{info.name}: field_at raised {type(exc).__name__}: {exc}"]
    if fa is None:
        return [f"{info.name}: field_at is None although every field is known"]
    out = []
    for i, fi in enumerate(fa):
        sizes = [max(e - s + 1, 0) for s, e in zip(starts[i], ends[i])]
        want = (max(sizes), min(sizes), starts[i][0])
        got = (fi.size, fi.min_size, fi.offset)
        if got != want:
            out.append(f"{info.name}: axis {names[i]}: field_at (size, min_size, offset) = "
                       f"{got}, but over the {len(sizes)} positions the maps give {want}")
    return out
