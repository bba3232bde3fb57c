"""The effective receptive field (Luo, Li, Urtasun, Zemel, NeurIPS 2016) beside the theoretical.

The *theoretical* field of an output element is every input pixel connected to it (rfgraph's
formulas). The *effective* field is how much each of those pixels actually matters: the magnitude
of the gradient of that output element with respect to the input. Luo et al. showed that it is
roughly Gaussian and fills only a fraction of the theoretical field.

:func:`effective_receptive_field` runs the model itself (a float64 copy, eval mode, the graph cut
at the chosen node) on random inputs, back-propagates from the node's centre element (batch 0, all
channels, the spatial centre ``size // 2`` of every axis) and sums ``|grad|`` over the input
channels, over ``samples`` random inputs and, with ``inits=n``, over ``n`` random
re-initialisations of the weights (``reset_parameters()`` of every module, seeds ``seed``,
``seed + 1``, ...). The result holds the map and the theoretical field of that element, so it can
say which fraction of the gradient mass lies inside the theoretical field (1.0 up to rounding:
no gradient can leave it) and how large a centred box holds, say, 95% of it.

:func:`plot_erf` draws the map with matplotlib (an optional extra: ``pip install 'rfgraph[plot]'``).
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import fx, nn

from .errors import RfgraphError
from .util import first_of

if TYPE_CHECKING:
    from .analysis import Analysis
    from .annotate import NodeInfo

__all__ = ["ERF", "default_node", "effective_receptive_field", "plot_erf"]


@dataclass(frozen=True)
class ERF:
    """An effective receptive field map and the theoretical field it lives in.

    ``map``: float64 tensor with the input's spatial shape (H, W), (L) or (D, H, W): the summed
    ``|d out[centre] / d input|``. ``centre``: the output element (index per spatial dim of the
    node's output; empty when the node has no spatial dims). ``field``: per input axis the
    theoretical field ``(start, end)`` of that element (inclusive, unclipped: it may extend into
    the padding), or None when rfgraph does not know it.
    """

    node: str
    map: torch.Tensor
    centre: tuple[int, ...]
    field: tuple[tuple[int, int], ...] | None
    inits: int
    samples: int

    @property
    def total(self) -> float:
        return float(self.map.sum())

    @property
    def field_sizes(self) -> tuple[int, ...] | None:
        if self.field is None:
            return None
        return tuple(hi - lo + 1 for lo, hi in self.field)

    def _mass_in(self, box: Sequence[tuple[int, int]]) -> float:
        """Gradient mass inside an inclusive box (clipped to the image)."""
        index = []
        for (lo, hi), n in zip(box, self.map.shape, strict=True):
            lo, hi = max(lo, 0), min(hi, n - 1)
            if lo > hi:
                return 0.0
            index.append(slice(lo, hi + 1))
        return float(self.map[tuple(index)].sum())

    @property
    def inside(self) -> float | None:
        """Fraction of the gradient mass inside the theoretical field (1.0 up to rounding)."""
        if self.field is None or self.total == 0:
            return None
        return self._mass_in(self.field) / self.total

    def centred_box(self, side: int) -> tuple[tuple[int, int], ...]:
        """The box of about ``side`` pixels per axis centred on the theoretical field: per axis
        ``side`` or ``side + 1`` (same parity as the field, so that it is exactly centred),
        never wider than the field."""
        if self.field is None:
            raise RfgraphError(f"node '{self.node}' has no known theoretical field")
        box = []
        for lo, hi in self.field:
            r = hi - lo + 1
            s = min(r, side + (r - side) % 2)
            first = lo + (r - s) // 2
            box.append((first, first + s - 1))
        return tuple(box)

    def box_for(self, mass: float = 0.95) -> tuple[tuple[int, int], ...] | None:
        """The smallest centred box (:meth:`centred_box`) holding ``mass`` of the gradient."""
        if self.field is None or self.total == 0:
            return None
        if not 0 < mass <= 1:
            raise RfgraphError(f"mass must be in (0, 1], got {mass}")
        need = mass * self.total * (1 - 1e-12)
        lo, hi = 1, max(self.field_sizes or (1,))
        while lo < hi:  # boxes are nested as the side grows: bisect
            mid = (lo + hi) // 2
            if self._mass_in(self.centred_box(mid)) >= need:
                hi = mid
            else:
                lo = mid + 1
        return self.centred_box(lo)

    def summary(self, mass: float = 0.95) -> str:
        """One paragraph: the theoretical field, the share inside it, the box holding ``mass``."""
        how = (f"{self.inits} random initialisation{'s' if self.inits > 1 else ''}"
               if self.inits else "the model's own weights")
        how += f", {self.samples} random input{'s' if self.samples > 1 else ''}"
        head = f"node '{self.node}', output element {self.centre or '(all)'} ({how})"
        if self.field is None:
            return f"{head}: theoretical field unknown; ERF mass {self.total:.6g}"
        sizes = self.field_sizes or ()
        span = ", ".join(f"{lo}..{hi}" for lo, hi in self.field)
        lines = [f"{head}",
                 f"theoretical field: {'×'.join(map(str, sizes))} input pixels ({span}, "
                 "unclipped)"]
        if self.total == 0:
            lines.append("the gradient is zero everywhere (dead units?): no ERF to measure")
            return "\n".join(lines)
        box = self.box_for(mass)
        assert box is not None
        sides = tuple(hi - lo + 1 for lo, hi in box)
        area = math.prod(sides) / math.prod(sizes)
        inside = self.inside
        lines.append(f"ERF mass inside the theoretical field: {100 * (inside or 0):.2f}%")
        lines.append(f"{100 * mass:g}% of the ERF mass lies in the central "
                     f"{'×'.join(map(str, sides))} box: "
                     + ", ".join(f"{100 * s / r:.0f}%" for s, r in zip(sides, sizes, strict=True))
                     + f" of the field's side{'s' if len(sides) > 1 else ''}, "
                     f"{100 * area:.1f}% of its {'area' if len(sides) == 2 else 'extent'}")
        return "\n".join(lines)


# -- the graph, cut at a node ----------------------------------------------------------------

def default_node(a: Analysis) -> str:
    """The last node whose output still has every input spatial axis (the deepest map)."""
    best = None
    for n in a.nodes:
        t = n.tensor
        if t is None or t.const or a.field(n) is None:
            continue
        if all(t.dim_of_axis(ax) is not None for ax in range(a.n_spatial)):
            best = n.name
    if best is None:
        raise RfgraphError("no node keeps the input's spatial axes: give --node")
    return best


def _node(a: Analysis, name: str) -> NodeInfo:
    names = [n.name for n in a.nodes]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            " (the node names are in the table's first column)"
        raise RfgraphError(f"no node named '{name}'{hint}")
    return a[name]


def _cut(gm: fx.GraphModule, name: str) -> fx.GraphModule:
    """A float64 copy of ``gm`` whose output is node ``name`` (the rest of the graph dropped)."""
    model = copy.deepcopy(gm)
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    last = None
    for node in model.graph.nodes:
        if node.op == "output":
            break
        env[node] = graph.node_copy(node, lambda x: env[x])
        if node.name == name:
            last = env[node]
            break
    if last is None:
        raise RfgraphError(f"node '{name}' is not in the traced graph")
    graph.output(last)
    cut = fx.GraphModule(model, graph)
    cut.graph.eliminate_dead_code()
    cut.recompile()
    return cut.double().eval()


def _reinit(model: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    for m in model.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


# -- the measurement -------------------------------------------------------------------------

def effective_receptive_field(a: Analysis, node: str | None = None, inits: int = 0,
                              samples: int = 1, seed: int = 0,
                              position: Sequence[int] | None = None) -> ERF:
    """Measure the effective receptive field of one element of ``node``.

    ``a`` must be evaluated (``a.evaluate(H=..., W=...)`` or ``--at``). ``inits=0`` uses the
    model's own weights; ``inits=n`` sums over ``n`` random initialisations. ``samples`` random
    normal inputs per weight set. ``position``: the output element (default: the centre,
    ``size // 2`` per spatial dim). The model is never modified (a float64 copy runs).
    """
    if a.graph_module is None:
        raise RfgraphError("this analysis has no traced graph to run")
    if a.at is None and a.symbols:
        raise RfgraphError("the effective receptive field needs concrete sizes: evaluate the "
                           f"analysis first (e.g. --at {','.join(s + '=128' for s in a.symbols)})")
    if inits < 0 or samples < 1:
        raise RfgraphError("inits must be >= 0 and samples >= 1")
    name = node or default_node(a)
    info = _node(a, name)
    ints = [a.int_of(s) for s in a.input_shape]
    if any(s is None for s in ints):
        raise RfgraphError("the input shape is not concrete")
    shape = cast(list[int], ints)  # no None: checked above
    shape[0] = 1  # batch 0 is the one measured
    cut = _cut(a.graph_module, name)

    t = info.tensor
    if t is None:
        raise RfgraphError(f"node '{name}' has no tensor output")
    dims = [t.dim_of_axis(ax) for ax in range(a.n_spatial)]
    total = torch.zeros(shape[2:], dtype=torch.float64)
    centre: tuple[int, ...] | None = None
    runs = [(w, s) for w in range(max(inits, 1)) for s in range(samples)]
    generator = torch.Generator().manual_seed(seed)
    for w, sample in runs:
        if inits and sample == 0:
            _reinit(cut, seed + w)
        x = torch.randn(shape, dtype=torch.float64, generator=generator, requires_grad=True)
        out = first_of(cut(x), torch.Tensor)
        if out is None:
            raise RfgraphError(f"node '{name}' produced no tensor")
        if centre is None:
            spatial = [out.shape[d] for d in dims if d is not None]
            centre = tuple(position) if position is not None else tuple(n // 2 for n in spatial)
            if len(centre) != len(spatial) or any(not 0 <= c < n for c, n in
                                                  zip(centre, spatial, strict=True)):
                raise RfgraphError(f"position {tuple(centre)} is outside node '{name}''s "
                                   f"spatial size {tuple(spatial)}")
        index: list[Any] = [slice(None)] * out.dim()
        index[0] = 0
        k = 0
        for d in dims:
            if d is not None:
                index[d] = centre[k]
                k += 1
        (grad,) = torch.autograd.grad(out[tuple(index)].sum(), x)
        total += grad[0].abs().sum(dim=0)
    assert centre is not None
    return ERF(name, total, centre, _theoretical(a, info, dims, centre), inits, samples)


def _theoretical(a: Analysis, info: NodeInfo, dims: list[int | None],
                 centre: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
    fields = a.field(info)
    if fields is None:
        return None
    box = []
    k = 0
    for d, rf in zip(dims, fields, strict=True):
        y = 0
        if d is not None:
            y = centre[k]
            k += 1
        lo, hi = a.int_of(rf.start_at(y)), a.int_of(rf.end_at(y))
        if lo is None or hi is None:
            return None
        box.append((lo, hi))
    return tuple(box)


# -- the picture -----------------------------------------------------------------------------

def plot_erf(erf: ERF, path: str | Path, mass: float = 0.95, title: str | None = None,
             log: bool = False, zoom: bool = True) -> Path:
    """Draw the ERF heat map with the theoretical field's box, its centre and the centred box
    holding ``mass`` of the gradient (PNG/SVG/PDF by extension). Needs matplotlib.

    ``log``: logarithmic colour scale (shows the faint tail out to the field's edge); ``zoom``:
    frame the theoretical field (with a margin) instead of the whole input. A 3-D map is drawn
    summed over its first axis.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm, Normalize
        from matplotlib.patches import Rectangle
    except ImportError:
        raise RfgraphError("drawing the ERF needs matplotlib: pip install 'rfgraph[plot]' "
                           "(or pip install matplotlib)") from None
    path = Path(path)
    m = erf.map
    box = erf.box_for(mass)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    note = ""
    if m.dim() == 3:
        m = m.sum(dim=0)
        note = " (summed over D)"
    peak = float(m.max()) or 1.0
    values = (m / peak).tolist()
    if m.dim() == 1:
        ax.plot(range(m.shape[0]), values, color="#b2182b", lw=1.2)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("input position")
        ax.set_ylabel("|gradient| / max")
        if erf.field is not None:
            lo, hi = erf.field[-1]
            ax.axvspan(lo - 0.5, hi + 0.5, color="#4393c3", alpha=0.15, label="theoretical field")
            ax.axvline((lo + hi) / 2, color="#2166ac", lw=1, label="its centre")
        if box is not None:
            lo, hi = box[-1]
            ax.axvspan(lo - 0.5, hi + 0.5, color="#1a9850", alpha=0.2,
                       label=f"{100 * mass:g}% of the mass")
        ax.legend(loc="upper right", fontsize=8)
    else:
        h, w = m.shape
        ax.set_facecolor("#c8c8c8")  # outside the image: the padding the field reaches into
        cmap = matplotlib.colormaps["inferno"].with_extremes(bad="black")  # log scale: zeros
        positive = m[m > 0]
        floor = float(positive.min()) / peak if positive.numel() else 1e-6
        norm = LogNorm(vmin=max(floor, 1e-300), vmax=1.0) if log else Normalize(0.0, 1.0)
        image = ax.imshow(values, cmap=cmap, norm=norm, origin="upper",
                          extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="|gradient| / max")
        ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, ec="#999999", lw=0.8, ls=":"))
        xs, ys = [-0.5, w - 0.5], [-0.5, h - 0.5]
        if erf.field is not None:
            (r0, r1), (c0, c1) = erf.field[-2], erf.field[-1]
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False,
                                   ec="#4fc3f7", lw=1.6, label="theoretical field"))
            ax.plot([(c0 + c1) / 2], [(r0 + r1) / 2], marker="+", color="#4fc3f7", ms=12,
                    mew=1.6, ls="none", label="its centre")
            margin = max(3.0, 0.12 * max(r1 - r0, c1 - c0))
            frame_x, frame_y = [c0 - margin, c1 + margin], [r0 - margin, r1 + margin]
            xs, ys = (frame_x, frame_y) if zoom else (xs + frame_x, ys + frame_y)
            if r0 < 0 or c0 < 0 or r1 >= h or c1 >= w:
                ax.add_patch(Rectangle((0, 0), 0, 0, fc="#c8c8c8", ec="none",
                                       label="outside the image"))
        if box is not None:
            (r0, r1), (c0, c1) = box[-2], box[-1]
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False,
                                   ec="#76ff03", lw=1.4, ls="--",
                                   label=f"{100 * mass:g}% of the mass"))
        ax.set_xlim(min(xs), max(xs))
        ax.set_ylim(max(ys), min(ys))
        ax.set_xlabel("input column")
        ax.set_ylabel("input row")
        ax.legend(loc="lower right", fontsize=8, framealpha=0.85)
    sizes = erf.field_sizes
    sub = []
    if sizes:
        sub.append("theoretical field " + "×".join(map(str, sizes)))
    if box is not None and sizes:
        sides = [hi - lo + 1 for lo, hi in box]
        sub.append(f"{100 * mass:g}% of the mass in the central " + "×".join(map(str, sides)))
    how = f"{erf.inits} random initialisations" if erf.inits else "the model's own weights"
    how += f", {erf.samples} random input{'s' if erf.samples > 1 else ''}"
    where = f"output {erf.centre}" if erf.centre else "all outputs"
    ax.set_title((title or f"ERF of '{erf.node}', {where}{note}") + "\n"
                 + "; ".join(sub) + f"\n{how}{', log scale' if log else ''}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
