"""Independent oracles for the rule tests, and the harness that checks one model against them.

Nothing here derives an expected value from rfgraph's own formulas:

* shapes come from torch itself (an fx ``Interpreter`` over the traced graph, on the meta device,
  falling back to CPU for an op without a meta kernel);
* the smallest valid input size is found by brute force: the smallest size at which torch runs the
  graph on CPU without an error and without an empty intermediate tensor;
* parameters are ``sum(p.numel())``;
* MACs are ``FlopCounterMode`` FLOPs / 2 (total and per module);
* receptive fields come from the gradient probe (:mod:`rfgraph.probe`, which imports nothing else
  from rfgraph).

rfgraph's own field is only used to *choose* where to look (which output positions have a field
inside the image, how big an input to use); the values compared always come from the probe.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from rfgraph.probe import ProbeError, probe_rf_many

AXES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


# -- torch oracles ---------------------------------------------------------------------------------
def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def to_meta(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to("meta")


def torch_output_shape(model: nn.Module, shape: Sequence[int], device: str = "meta",
                       ) -> tuple[int, ...]:
    """Shape of the (first) output tensor of ``model`` on an input of ``shape``."""
    m = to_meta(model) if device == "meta" else model
    with torch.no_grad():
        out = m(torch.zeros(tuple(shape), device=device))
    return tuple(_first_tensor(out).shape)


class _Recorder(fx.Interpreter):
    """Runs a GraphModule node by node, remembering every node's (first) output shape and the
    first node that raised or produced an empty tensor."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.failed: str | None = None

    def run_node(self, n: fx.Node) -> Any:
        try:
            out = super().run_node(n)
        except Exception:
            if self.failed is None:
                self.failed = n.name
            raise
        t = _first_tensor(out)
        if t is not None and n.op != "output":
            self.shapes[n.name] = tuple(t.shape)
            if t.numel() == 0 and self.failed is None:
                self.failed = n.name
        return out


def torch_node_shapes(gm: fx.GraphModule, shape: Sequence[int],
                      meta_gm: fx.GraphModule | None = None) -> dict[str, tuple[int, ...]]:
    """Every node's output shape, as torch computes it (meta device, CPU fallback)."""
    for module, device in ((meta_gm, "meta"), (gm, "cpu")):
        if module is None:
            continue
        rec = _Recorder(module)
        try:
            with torch.no_grad():
                rec.run(torch.zeros(tuple(shape), device=device))
        except NotImplementedError:
            continue
        return rec.shapes
    raise AssertionError("torch could not run the graph")


def torch_failure(gm: fx.GraphModule, shape: Sequence[int]) -> str | None:
    """Name of the first node at which torch (CPU) fails or yields an empty tensor; None if the
    whole graph runs."""
    rec = _Recorder(gm)
    try:
        with torch.no_grad():
            rec.run(torch.zeros(tuple(shape)))
    except Exception:
        assert rec.failed is not None
    return rec.failed


def flop_macs(model: nn.Module, shape: Sequence[int]) -> int:
    """FlopCounterMode FLOPs / 2 of one forward on CPU zeros (the model itself, no copy)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(tuple(shape)))
    return counter.get_total_flops() // 2


def torch_macs(model: nn.Module, shape: Sequence[int]) -> tuple[int, dict[str, int]]:
    """FlopCounterMode FLOPs / 2: the total and per qualified module name."""
    m = to_meta(model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(torch.zeros(tuple(shape), device="meta"))
    total = counter.get_total_flops()
    assert total % 2 == 0
    root = type(model).__name__
    per_module = {}
    for key, ops in counter.get_flop_counts().items():
        if key.startswith(root + "."):
            flops = sum(ops.values())
            assert flops % 2 == 0
            per_module[key[len(root) + 1:]] = flops // 2
    return total // 2, per_module


# -- the harness -----------------------------------------------------------------------------------
@dataclass
class Expect:
    """What a case expects beyond the oracles."""

    rf_known: bool = True  # False: rfgraph must say the output field is unknown (None)
    zero_padding: bool = True  # False: padded pixels are real pixels (reflect/circular/...)
    fixed: tuple[int, ...] | None = None  # only valid at this spatial size (flatten + linear)


def _input_shape(cin: int, sizes: Sequence[int]) -> tuple[int, ...]:
    return (1, cin, *sizes)


def _at(nd: int, sizes: Sequence[int]) -> dict[str, int]:
    return dict(zip(AXES[nd], (int(s) for s in sizes), strict=True))


def smallest_sizes(gm: fx.GraphModule, nd: int, cin: int, limit: int = 80,
                   ) -> tuple[int | None, list[int]]:
    """Brute force: the smallest cube size n0 at which torch runs the graph, then per axis the
    smallest size with the other axes at n0."""
    n0 = next((n for n in range(1, limit) if torch_failure(gm, _input_shape(cin, [n] * nd))
               is None), None)
    if n0 is None:
        return None, []
    mins = []
    for i in range(nd):
        for n in range(1, n0 + 1):
            sizes = [n0] * nd
            sizes[i] = n
            if torch_failure(gm, _input_shape(cin, sizes)) is None:
                mins.append(n)
                break
    return n0, mins


def check_too_small(a: rfgraph.Analysis, gm: fx.GraphModule, nd: int, cin: int, n0: int,
                    mins: Sequence[int]) -> None:
    """rfgraph rejects exactly the sizes torch rejects (around the smallest valid size), and its
    message names torch's failing node and the brute-force smallest size."""
    for i, n_min in enumerate(mins):
        sym = AXES[nd][i]
        for n in range(max(1, n_min - 2), n_min + 2):
            sizes = [n0] * nd
            sizes[i] = n
            failing = torch_failure(gm, _input_shape(cin, sizes))
            if failing is None:
                a.evaluate(**_at(nd, sizes))
                continue
            try:
                a.evaluate(**_at(nd, sizes))
            except rfgraph.InputTooSmall as exc:
                msg = str(exc)
                assert "\n" not in msg
                assert f"node '{failing}'" in msg, (msg, failing)
                if n == n_min - 1:
                    assert f"{sym} >= {n_min}" in msg, (msg, n_min)
            else:
                raise AssertionError(f"rfgraph accepts {_at(nd, sizes)}; torch fails at "
                                     f"node {failing}")


def check_costs(model: nn.Module, a: rfgraph.Analysis, meta_gm: fx.GraphModule, nd: int,
                cin: int, sizes: Sequence[int]) -> None:
    """Shapes of every node, params and MACs at one concrete size."""
    shape = _input_shape(cin, sizes)
    ev = a.evaluate(**_at(nd, sizes))
    torch_shapes = torch_node_shapes(a.graph_module, shape, meta_gm)
    for node in ev.nodes:
        t = node.tensor
        if node.name not in torch_shapes or t is None:
            continue
        got = tuple(ev.int_of(s) for s in t.shape)
        assert got == torch_shapes[node.name], (node.name, sizes, got, torch_shapes[node.name])
    out = tuple(ev.int_of(s) for s in ev.output.tensor.shape)
    assert out == torch_output_shape(model, shape), (sizes, out)

    assert ev.total_params == param_count(model)
    total, per_module = torch_macs(model, shape)
    macs = ev.value_of(ev.total_macs)
    assert macs.is_Integer and int(macs) == total, (sizes, macs, total)
    for node in ev.nodes:
        if node.op == "call_module":
            mod = model.get_submodule(node.module)
            assert node.params == param_count(mod), node.name
            assert ev.int_of(node.macs) == per_module.get(node.module, 0), (node.name, sizes)


def _rf_sizes(a: rfgraph.Analysis, nd: int, mins: Sequence[int]) -> list[int]:
    """An input big enough that every phase of the output field has a position whose field lies
    inside the image (>= 2*size + 4*jump*period per axis)."""
    base = [m + 6 for m in mins]
    ev = a.evaluate(**_at(nd, base))
    fields = ev.field(ev.output)
    if fields is None:
        return base
    out = []
    for i, r in enumerate(fields):
        size = ev.value_of(r.size)
        jump = ev.value_of(r.jump)
        if AXES[nd][i] in {s.name for s in r.size.free_symbols}:  # global: grows with n
            out.append(base[i])
            continue
        out.append(max(base[i], math.ceil(2 * size + 4 * jump * r.period) + 1))
    return out


def check_field(model: nn.Module, a: rfgraph.Analysis, nd: int, cin: int, sizes: Sequence[int],
                expect: Expect) -> None:
    """Probe boxes == (start_at(y), end_at(y)) at interior positions of every phase; the field
    size == the largest measured size over the phases; every box lies in the clipped field."""
    ev = a.evaluate(**_at(nd, sizes))
    fields = ev.field(ev.output)
    if not expect.rf_known:
        assert fields is None
        return
    assert fields is not None and len(fields) == nd
    shape = _input_shape(cin, sizes)
    out_shape = torch_output_shape(model, shape)
    spatial = len(out_shape) == nd + 2
    n_out = list(out_shape[2:]) if spatial else [1] * nd

    def span(i: int, y: int) -> tuple[int, int]:
        return ev.int_of(fields[i].start_at(y)), ev.int_of(fields[i].end_at(y))

    def inside(i: int, y: int) -> bool:
        lo, hi = span(i, y)
        return lo >= 0 and hi <= sizes[i] - 1

    # per axis, per phase: the interior position closest to the middle
    phase_ys: list[list[int | None]] = []
    for i, r in enumerate(fields):
        period = r.period if spatial else 1
        ys: list[int | None] = []
        for p in range(period):
            cands = [y for y in range(p, n_out[i], period) if inside(i, y)]
            ys.append(min(cands, key=lambda y, i=i: abs(2 * y - n_out[i])) if cands else None)
        phase_ys.append(ys)
    # the jump of a field after adaptive pooling grows with the input: its outer bins may
    # always reach past the border however large the input
    adaptive = [bool(sympy.sympify(r.jump).free_symbols) for r in fields]
    # every phase of every axis, the other axes at a phase with the widest field there (or at
    # the middle when no field along that axis is inside the image: the probe box is separable,
    # so the other axes are still measured exactly)
    periods = [len(ys) for ys in phase_ys]
    ref = []
    for i, ys in enumerate(phase_ys):
        found = [y for y in ys if y is not None]
        ref.append(max(found, key=lambda y, i=i: span(i, y)[1] - span(i, y)[0]) if found
                   else n_out[i] // 2)
    positions = [tuple(ref)]
    for i, ys in enumerate(phase_ys):
        for y in ys:
            pos = tuple(y if j == i else ref[j] for j in range(nd))
            if y is not None and pos not in positions:
                positions.append(pos)
    # one more period along every axis, to measure the jump
    extra = tuple(y + p for y, p in zip(positions[0], periods, strict=True))
    check_jump = spatial and all(y < n for y, n in zip(extra, n_out, strict=True)) and all(
        inside(i, y) for i, y in enumerate(extra)) and all(inside(i, y) for i, y in enumerate(ref))
    if check_jump:
        positions.append(extra)
    border = []
    if spatial and expect.zero_padding:
        border = [(0,) * nd, tuple(n - 1 for n in n_out)]

    expected_sizes = [ev.int_of(r.size) for r in fields]
    boxes = _probe(model, shape, positions + border, spatial)
    measured: list[dict[int, int]] = [{} for _ in range(nd)]
    for pos, box in zip(positions, boxes[: len(positions)], strict=True):
        want = [span(i, y) for i, y in enumerate(pos)]
        if box is None:  # empty gradient: some axis has an empty field there (or one that
            # lies wholly in the padding)
            assert any(hi < lo or hi < 0 or lo > n - 1
                       for (lo, hi), n in zip(want, sizes, strict=True)), (pos, want)
            for i, (lo, hi) in enumerate(want):
                if hi < lo:
                    measured[i][pos[i] % periods[i]] = 0
            continue
        for i, ((lo, hi), (s, e)) in enumerate(zip(box, want, strict=True)):
            if inside(i, pos[i]):
                assert (lo, hi) == (s, e), (pos, i, box, want)
                measured[i].setdefault(pos[i] % periods[i], hi - lo + 1)
            elif expect.zero_padding:  # clipped by the border
                assert max(s, 0) <= lo and hi <= min(e, sizes[i] - 1), (pos, i, box, want)
    dead_axis = any(size == 0 for size in expected_sizes)  # no position reads any pixel
    for i in range(nd):
        if len(measured[i]) < periods[i]:
            assert adaptive[i] or dead_axis, (i, measured[i], "enlarge the input")
            continue
        assert max(measured[i].values()) == expected_sizes[i], (i, measured[i])
        assert min(measured[i].values()) == ev.int_of(fields[i].min_size), (i, measured[i])
    if check_jump:
        first, last = boxes[0], boxes[len(positions) - 1]
        if first is not None and last is not None:
            for i in range(nd):
                jump = fields[i].jump
                assert (last[i][0] - first[i][0]) == ev.value_of(jump * periods[i]), i
    for pos, box in zip(border, boxes[len(positions):], strict=True):
        if box is None:
            continue
        for i, (lo, hi) in enumerate(box):
            s, e = span(i, pos[i])
            assert max(s, 0) <= lo and hi <= min(e, sizes[i] - 1), (pos, box, (s, e))


def _probe(model: nn.Module, shape: Sequence[int], positions: list[tuple[int, ...]],
           spatial: bool) -> list[list[tuple[int, int]] | None]:
    """probe_rf_many, with None for a position whose gradient is empty."""
    if not spatial:
        positions = positions[:1]
    try:
        return list(probe_rf_many(model, shape, positions))
    except ProbeError:
        pass
    boxes = []
    for pos in positions:
        try:
            boxes.append(probe_rf_many(model, shape, [pos])[0])
        except ProbeError:
            boxes.append(None)
    return boxes


def check_model(build: Callable[[], nn.Module], nd: int, cin: int,
                expect: Expect | None = None, n_sizes: int = 3) -> None:
    """Every check of the brief for one model: the too-small boundary, shapes/params/MACs at
    three sizes (odd and even, different per axis), and the receptive field."""
    expect = expect or Expect()
    torch.manual_seed(0)
    model = build().eval()
    a = rfgraph.analyze(model, (1, cin, *AXES[nd]))
    gm = a.graph_module
    meta_gm = to_meta(gm)
    if expect.fixed is not None:
        sizes = list(expect.fixed)
        check_costs(model, a, meta_gm, nd, cin, sizes)
        check_field(model, a, nd, cin, sizes, expect)
        other = [s + 2 for s in sizes]
        assert torch_failure(gm, _input_shape(cin, other)) is not None
        try:
            a.evaluate(**_at(nd, other))
        except rfgraph.RfgraphError:
            pass
        else:
            raise AssertionError("rfgraph accepts a size the linear layer cannot take")
        return
    n0, mins = smallest_sizes(gm, nd, cin)
    if n0 is None:  # torch fails at every size: so must rfgraph
        for n in (1, 2, 5, 16, 64):
            with pytest.raises(rfgraph.RfgraphError):
                a.evaluate(**_at(nd, [n] * nd))
        return
    check_too_small(a, gm, nd, cin, n0, mins)
    for sizes in ([m + i for i, m in enumerate(mins)],
                  [m + 3 + 2 * i for i, m in enumerate(mins)],
                  [m + 8 - i for i, m in enumerate(mins)])[:n_sizes]:
        check_costs(model, a, meta_gm, nd, cin, sizes)
    check_field(model, a, nd, cin, _rf_sizes(a, nd, mins), expect)


# -- layer specs shared by the grid and the property tests ----------------------------------------
class PerAxis(tuple):
    """A per-axis value written for 3 axes; trimmed to the first ``nd`` when built."""


class PoolIdx(nn.Module):
    """A max pool with return_indices=True whose forward unpacks ``x, _ = pool(x)``."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.pool(x)
        return x


class Layer:
    """One layer, written once for 1-D, 2-D and 3-D."""

    def __init__(self, kind: str, cout: int | None = None, **kw: Any) -> None:
        self.kind, self.cout, self.kw = kind, cout, kw

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kw.items())
        return f"{self.kind}(cout={self.cout}, {args})"

    def kwargs(self, nd: int, cin: int) -> dict[str, Any]:
        kw = {}
        for k, v in self.kw.items():
            if isinstance(v, PerAxis):
                v = tuple(v[:nd])
            if v == "dw":
                v = cin
            kw[k] = v
        if nd == 1:
            kw.pop("divisor_override", None)  # AvgPool1d has none
        return kw

    def build(self, nd: int, cin: int) -> tuple[nn.Module, int]:
        kw = self.kwargs(nd, cin)
        if self.kind in ("conv", "convt"):
            cls = getattr(nn, f"{'ConvTranspose' if self.kind == 'convt' else 'Conv'}{nd}d")
            cout = self.cout or cin
            return cls(cin, cout, **kw), cout
        if self.kind == "maxpool":
            pool = getattr(nn, f"MaxPool{nd}d")(**kw)
            return (PoolIdx(pool) if kw.get("return_indices") else pool), cin
        if self.kind == "avgpool":
            return getattr(nn, f"AvgPool{nd}d")(**kw), cin
        if self.kind == "adaptive_avg":
            return getattr(nn, f"AdaptiveAvgPool{nd}d")(**kw), cin
        if self.kind == "adaptive_max":
            return getattr(nn, f"AdaptiveMaxPool{nd}d")(**kw), cin
        if self.kind == "shuffle":
            return nn.ChannelShuffle(**kw), cin
        raise ValueError(self.kind)

    def rf_known(self, nd: int) -> bool:
        return True  # every covered layer has an exact field (issue 9 closed the last gap)

    def zero_padding(self) -> bool:
        return self.kw.get("padding_mode", "zeros") == "zeros"


def _per_axis(v: Any, nd: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd


def stack(layers: Sequence[Layer], nd: int, cin: int) -> tuple[Callable[[], nn.Module], Expect]:
    """A builder for nn.Sequential(layers) and what to expect of it."""

    def build() -> nn.Module:
        mods, c = [], cin
        for layer in layers:
            m, c = layer.build(nd, c)
            mods.append(m)
        return nn.Sequential(*mods)

    expect = Expect(rf_known=all(la.rf_known(nd) for la in layers),
                    zero_padding=all(la.zero_padding() for la in layers))
    return build, expect


class ExportNet(nn.Module):
    """A small net with most covered ops, used for torch.export (.pt2) round trips."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.shuffle = nn.ChannelShuffle(2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        y = self.pool(F.relu(self.bn(self.conv(x))))
        y = self.shuffle(self.up(y))
        y = F.interpolate(y, scale_factor=2, mode="bilinear")
        z = torch.cat([y, y * 2], dim=1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(z, 1), 1)), z
