"""Draw every figure of docs/concepts.md with rfgraph itself.

    .venv/bin/python docs/make_figures.py            # writes docs/figures/*.svg, prints the numbers
    .venv/bin/python docs/make_figures.py OUT_DIR    # somewhere else

The graphs are rfgraph's own Graphviz drawings (``Analysis.render``). The 1-D field diagrams are
matplotlib pictures of numbers rfgraph computes and nothing else: for every output element y of
a node, the input interval ``rfgraph.solve.region(a, node, [y])`` gives (the field maps
``start_at(y) .. end_at(y)``, unclipped: ``rfgraph solve --region NODE y``), and, as dots, the
input positions where the gradient map of ``rfgraph.erf.effective_receptive_field`` (the ERF of
that element) is non-zero. The models are tiny 1-D nets with one channel, so that each element's
field is a bar one can count.

The ``*_data()`` functions return plain numbers (ints, Fractions, strings):
tests/test_concept_figures.py checks them against independent oracles. ``tables()`` is the text
docs/concepts.md quotes (the test checks that it still does). Deterministic: the weights are
fixed (ones, or ``torch.manual_seed``), the SVGs carry no date and a fixed hash salt, and
rfgraph's DOT text is deterministic (docs/rendering.md). Needs Graphviz ``dot`` and matplotlib.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402
from rfgraph.erf import effective_receptive_field  # noqa: E402
from rfgraph.models import DEFAULT_AT, DEFAULT_INPUT, DEFAULT_MODEL  # noqa: E402
from rfgraph.solve import region  # noqa: E402

FIGURES = HERE / "figures"

#: input lengths of the 1-D examples
STACK_L = 15
ALIGN_L = 8
UP_L = 4
GLOBAL_L = 13
UPPER_L = 8


# -- the models -----------------------------------------------------------------------------------

def stack_model() -> nn.Module:
    """Two 3-wide convs, stride 2, padding 1; all-ones weights (the ERF is then a count)."""
    m = nn.Sequential(OrderedDict(
        conv1=nn.Conv1d(1, 1, 3, stride=2, padding=1, bias=False),
        conv2=nn.Conv1d(1, 1, 3, stride=2, padding=1, bias=False),
    ))
    for c in m:
        nn.init.ones_(c.weight)
    return m


class Misaligned(nn.Module):
    """Two branches whose fields have different centres, merged by ``add``: a centred 3-wide
    conv, and a 3-wide conv after padding 2 on the left only (field shifted by one)."""

    def __init__(self) -> None:
        super().__init__()
        self.centred = nn.Conv1d(1, 1, 3, padding=1)
        self.shift = nn.ConstantPad1d((2, 0), 0.0)
        self.shifted = nn.Conv1d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.centred(x) + self.shifted(self.shift(x))


def up_k3s2() -> nn.Module:
    """A transposed conv, kernel 3, stride 2, no padding."""
    return nn.Sequential(OrderedDict(up1=nn.ConvTranspose1d(1, 1, 3, stride=2)))


def up_k3s2_k2s2() -> nn.Module:
    """The same, then a transposed conv with kernel 2, stride 2."""
    return nn.Sequential(OrderedDict(up1=nn.ConvTranspose1d(1, 1, 3, stride=2),
                                     up2=nn.ConvTranspose1d(1, 1, 2, stride=2)))


def up_k2s3() -> nn.Module:
    """Kernel 2 < stride 3: every third output reads no input."""
    return nn.Sequential(OrderedDict(up1=nn.ConvTranspose1d(1, 1, 2, stride=3)))


def transposed_models() -> dict[str, nn.Module]:
    return {"k3s2": up_k3s2(), "k3s2_k2s2": up_k3s2_k2s2(), "k2s3": up_k2s3()}


class SqueezeExcite(nn.Module):
    """A strided conv, a squeeze-and-excitation gate on it, a global average pool head; and
    an adaptive pool to 3 bins of the conv (a local field, for contrast)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3, stride=2, padding=1)
        self.squeeze = nn.AdaptiveAvgPool1d(1)
        self.excite = nn.Conv1d(2, 2, 1)
        self.gate = nn.Sigmoid()
        self.head = nn.AdaptiveAvgPool1d(1)
        self.bins = nn.AdaptiveAvgPool1d(3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x)
        g = h * self.gate(self.excite(self.squeeze(h)))
        return self.head(g), self.bins(h)


class PaddedBranch(nn.Module):
    """``F.pad(conv3(x), (2, 0)) + x``: the padded branch's first two elements read only
    padding, so the merge's field there is an upper bound."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(self.conv(x), (2, 0)) + x


def _seeded(make: Any) -> nn.Module:
    torch.manual_seed(0)
    return make()


# -- numbers from rfgraph -------------------------------------------------------------------------

def _length(a: rfgraph.Analysis, node: str) -> int:
    t = a[node].tensor
    assert t is not None
    d = t.dim_of_axis(0)
    return 1 if d is None else int(a.int_of(t.shape[d]))


def _support(a: rfgraph.Analysis, node: str, y: int) -> list[int]:
    """Input positions where rfgraph's ERF map of element y of ``node`` is non-zero."""
    m = effective_receptive_field(a, node, position=(y,)).map
    return [int(i) for i in torch.nonzero(m).flatten()]


def node_fields(a: rfgraph.Analysis, node: str, probe: bool = True) -> dict[str, Any]:
    """One node's field at the evaluated length: size/min_size/jump/offset (``field_at``),
    aligned and reason, upper bound and notes, and per output element y the interval
    ``region(a, node, [y])`` (unclipped, ``end = start - 1`` for a dead element), whether it is
    live, and (``probe``) the input positions where its ERF is non-zero."""
    r = a.field(node)
    f = a.field_at(node)
    assert r is not None and f is not None
    n = _length(a, node)
    intervals = []
    for y in range(n):
        ax = region(a, node, [y]).axes[0]
        intervals.append((ax.start, ax.end))
    out = {
        "node": node, "n": n, "size": f[0].size, "min_size": f[0].min_size,
        "jump": Fraction(int(f[0].jump.p), int(f[0].jump.q)), "offset": f[0].offset,
        "period": r[0].period, "aligned": r[0].aligned, "reason": r[0].reason,
        "upper": bool(r[0].upper), "notes": list(r[0].notes), "global": r[0].is_global,
        "intervals": intervals, "live": [bool(r[0].is_live(y)) for y in range(n)],
    }
    if probe:
        out["support"] = [_support(a, node, y) for y in range(n)]
    return out


def _analyze(model: nn.Module, length: int, name: str) -> rfgraph.Analysis:
    return rfgraph.analyze(model, (1, 1, "L"), name=name).evaluate(L=length)


def field_data(probe: bool = True) -> dict[str, Any]:
    """(a) field, jump, offset of the two-conv stack at L = STACK_L, and the ERF map of
    element 1 of conv2 (all-ones weights: the number of paths from each input pixel)."""
    a = _analyze(stack_model(), STACK_L, "stack")
    out = {"L": STACK_L, "nodes": {n: node_fields(a, n, probe) for n in ("conv1", "conv2")}}
    out["erf_element"] = 1
    out["erf"] = [int(v) for v in effective_receptive_field(a, "conv2", position=(1,)).map]
    return out


def alignment_data(probe: bool = True) -> dict[str, Any]:
    """(b) the two branches and their add, at L = ALIGN_L."""
    a = _analyze(_seeded(Misaligned), ALIGN_L, "misaligned")
    return {"L": ALIGN_L,
            "nodes": {n: node_fields(a, n, probe) for n in ("centred", "shifted", "add")}}


def transposed_data(probe: bool = True) -> dict[str, Any]:
    """(c) each transposed model's last node, at L = UP_L, and its symbolic size/min_size."""
    out: dict[str, Any] = {"L": UP_L, "models": {}}
    for name, model in transposed_models().items():
        torch.manual_seed(0)
        for p in model.parameters():  # fresh weights per model, deterministic
            nn.init.uniform_(p, 0.5, 1.5)
        sym = rfgraph.analyze(model, (1, 1, "L"), name=name)
        a = sym.evaluate(L=UP_L)
        last = a.nodes[-1].name
        d = node_fields(a, last, probe)
        r = sym.field(last)
        assert r is not None
        d["size_formula"], d["min_size_formula"] = sym.text(r[0].size), sym.text(r[0].min_size)
        d["length_formula"] = sym.text(sym[last].tensor.shape[2])
        out["models"][name] = d
    return out


def global_data(probe: bool = True) -> dict[str, Any]:
    """(d) the SE model at L = GLOBAL_L, with the symbolic field sizes."""
    sym = rfgraph.analyze(_seeded(SqueezeExcite), (1, 1, "L"), name="se")
    a = sym.evaluate(L=GLOBAL_L)
    names = ("conv", "bins", "squeeze", "mul", "head")
    nodes = {n: node_fields(a, n, probe) for n in names}
    for n in names:
        r = sym.field(n)
        assert r is not None
        nodes[n]["size_formula"] = sym.text(r[0].size)
        nodes[n]["extent"] = (tuple(sym.text(e) for e in r[0].extent)
                              if r[0].extent is not None else None)
    return {"L": GLOBAL_L, "nodes": nodes}


def upper_data(probe: bool = True) -> dict[str, Any]:
    """The upper bound of a merge with a padding-only branch, at L = UPPER_L."""
    a = _analyze(_seeded(PaddedBranch), UPPER_L, "padded_branch")
    return {"L": UPPER_L, "nodes": {n: node_fields(a, n, probe) for n in ("pad", "add")}}


def seed_tour_analysis() -> rfgraph.Analysis:
    """The seed tour (``rfgraph.models.DEFAULT_MODEL``), symbolic."""
    return rfgraph.analyze(DEFAULT_MODEL(), DEFAULT_INPUT, name="seed_tour")


def seed_tour_data(sym: rfgraph.Analysis | None = None) -> dict[str, Any]:
    """(e) the seed tour's field (size, jump, offset along H) at a few nodes, at 224x224."""
    sym = sym or seed_tour_analysis()
    a = sym.evaluate(**DEFAULT_AT)
    rows = {}
    for n in ("stem_0", "pool_ceil", "dilated", "pool_idx", "add", "cat", "up", "head_0"):
        f = a.field_at(n)
        assert f is not None
        rows[n] = (f[0].size, Fraction(int(f[0].jump.p), int(f[0].jump.q)), f[0].offset)
    sym_head = sym.field("head_0")
    assert sym_head is not None
    return {"rows": rows, "head_formula": sym.text(sym_head[0].size),
            "total_params": a.total_params, "total_macs": a.total_macs_at}


# -- the printed tables (quoted in docs/concepts.md) ----------------------------------------------

def _iv(iv: tuple[int, int]) -> str:
    return "-" if iv[1] < iv[0] else f"[{iv[0]}, {iv[1]}]"


def _clip(iv: tuple[int, int], n: int) -> tuple[int, int] | None:
    lo, hi = max(iv[0], 0), min(iv[1], n - 1)
    return (lo, hi) if lo <= hi else None


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = [head] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fields_table(nodes: dict[str, Any], names: list[str] | None = None) -> str:
    rows = []
    for name in names or list(nodes):
        d = nodes[name]
        rows.append([name, d["size"] if d["size"] == d["min_size"]
                     else f"{d['size']} (min {d['min_size']})", d["jump"], d["offset"],
                     " ".join(_iv(iv) for iv in d["intervals"])])
    return _table(["node", "RF", "jump", "offset", "fields of elements 0, 1, ..."], rows)


def tables(data: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The text blocks docs/concepts.md quotes, by figure."""
    out = {}
    f = data["field"]
    out["field"] = (_fields_table(f["nodes"]) + f"\nERF of conv2 element {f['erf_element']} "
                    f"(all-ones weights), inputs 0..{f['L'] - 1}: {f['erf']}")
    al = data["alignment"]
    add = al["nodes"]["add"]
    out["alignment"] = (_fields_table(al["nodes"])
                        + f"\nadd: aligned={add['aligned']}, reason: {add['reason']}")
    rows = []
    for name, d in data["transposed"]["models"].items():
        dead = [y for y, live in enumerate(d["live"]) if not live]
        sizes = [iv[1] - iv[0] + 1 for iv in d["intervals"]]
        rows.append([name, d["n"], d["size"], d["min_size"], d["jump"], d["period"],
                     " ".join(map(str, sizes)), ",".join(map(str, dead)) or "none"])
    out["transposed"] = _table(["model", "outputs", "RF", "min", "jump", "period",
                                "sizes of elements 0, 1, ...", "dead"], rows)
    g = data["global"]
    rows = []
    for name, d in g["nodes"].items():
        formula = "widest bin (varies with L)" if d["notes"] else d["size_formula"]
        rows.append([name, d["n"], d["size"], formula, d["jump"],
                     " ".join(_iv(iv) for iv in d["intervals"])])
    out["global"] = _table(["node", "outputs", "RF", "RF formula", "jump",
                            f"fields at L={g['L']}"], rows)
    up = data["upper"]
    d = up["nodes"]["add"]
    rows = []
    for y, iv in enumerate(d["intervals"]):
        c = _clip(iv, up["L"])
        s = d.get("support")
        rows.append([y, _iv(iv), _iv(c) if c else "-",
                     "-" if s is None else (f"[{s[y][0]}, {s[y][-1]}]" if s[y] else "-")])
    out["upper"] = (_table(["add element", "field (rfgraph)", "clipped", "gradient != 0"], rows)
                    + f"\nupper bound: {d['upper']}; note: {'; '.join(d['notes'])}")
    s = data["seed_tour"]
    rows = [[n, size, jump, off] for n, (size, jump, off) in s["rows"].items()]
    out["seed_tour"] = (_table(["node", "RF (H)", "jump", "offset"], rows)
                        + f"\nhead field: {s['head_formula']}")
    return out


# -- drawing --------------------------------------------------------------------------------------

PAD_COLOUR = "#d9d9d9"
BAR = "#4393c3"
BAR_EDGE = "#2166ac"
DEAD = "#d6604d"
DOT = "#1a1a1a"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "rfgraph-concepts", "svg.fonttype": "none",
                         "font.size": 8, "axes.titlesize": 9, "font.family": "DejaVu Sans"})
    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _input_background(ax: Any, n: int, lo: float, hi: float, vertical: bool = False) -> None:
    """Grey where the coordinate lies outside the input 0..n-1 (padding, virtual elements)."""
    span = ax.axhspan if vertical else ax.axvspan
    span(lo, -0.5, color=PAD_COLOUR, zorder=0, lw=0)
    span(n - 0.5, hi, color=PAD_COLOUR, zorder=0, lw=0)


def _bars(ax: Any, d: dict[str, Any], rows: list[float], height: float = 0.6,
          colour: str = BAR, label: str | None = None, dots: bool = True) -> None:
    """Each element's interval as a horizontal bar on its row; ERF support as dots."""
    for y, (row, (s, e)) in enumerate(zip(rows, d["intervals"], strict=True)):
        if e < s:
            ax.plot([s - 0.5], [row], marker="x", color=DEAD, ms=6, mew=1.5, ls="none")
            continue
        ax.broken_barh([(s - 0.5, e - s + 1)], (row - height / 2, height), facecolors=colour,
                       edgecolors=BAR_EDGE, lw=0.8, alpha=0.85, zorder=2,
                       label=label if y == 0 else None)
        if dots and "support" in d:
            xs = d["support"][y]
            ax.plot(xs, [row] * len(xs), marker="o", ms=2.5, color=DOT, ls="none", zorder=3)


def draw_field(f: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    n = f["L"]
    c1, c2 = f["nodes"]["conv1"], f["nodes"]["conv2"]
    lo, hi = -5.5, n + 3.5
    fig, axes = plt.subplots(3, 1, figsize=(6.4, 5.6), sharex=True,
                             gridspec_kw={"height_ratios": [c1["n"] + 1, c2["n"] + 2, 3]})
    for ax, d, name in ((axes[0], c1, "conv1"), (axes[1], c2, "conv2")):
        _input_background(ax, n, lo, hi)
        rows = list(range(d["n"]))
        _bars(ax, d, rows)
        ax.set_yticks(rows, [f"{name}[{y}]" for y in rows])
        ax.set_ylim(d["n"] - 0.4, -1.4)
        ax.set_title(f"{name}: RF {d['size']}, jump {d['jump']}, offset {d['offset']}",
                     loc="left")
    # annotate conv2: offset, jump, size on elements 0 and 1
    ax = axes[1]
    (s0, e0), (s1, _) = c2["intervals"][0], c2["intervals"][1]
    ax.annotate("", xy=(s1 - 0.5, 0.5), xytext=(s0 - 0.5, 0.5),
                arrowprops={"arrowstyle": "<->", "color": "#b2182b", "lw": 1.2})
    ax.text((s0 + s1) / 2 - 0.5, 0.5, f"jump {c2['jump']}", color="#b2182b", ha="center",
            va="center", fontsize=7, bbox={"fc": "white", "ec": "none", "pad": 0.5})
    ax.annotate("", xy=(e0 + 0.5, -0.7), xytext=(s0 - 0.5, -0.7),
                arrowprops={"arrowstyle": "|-|", "color": "#4d4d4d", "lw": 1,
                            "mutation_scale": 3})
    ax.text((s0 + e0) / 2, -0.75, f"size {c2['size']}", ha="center", va="bottom", fontsize=7)
    ax.axvline(s0 - 0.5, color="#b2182b", ls="--", lw=0.8)
    ax.text(s0 - 0.7, c2["n"] - 0.6, f"offset {c2['offset']}", color="#b2182b", ha="right",
            va="bottom", fontsize=7)
    # the ERF of one element of conv2
    ax = axes[2]
    k = f["erf_element"]
    s, e = c2["intervals"][k]
    _input_background(ax, n, lo, hi)
    ax.axvspan(s - 0.5, e + 0.5, color=BAR, alpha=0.2, lw=0, label=f"field of conv2[{k}]")
    ax.bar(range(n), f["erf"], width=0.8, color="#b2182b", label="|d conv2[1] / d x|")
    ax.set_ylim(0, max(f["erf"]) + 0.8)
    ax.set_ylabel("ERF")
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    ax.set_xlim(lo, hi)
    ax.set_xticks(range(-4, n + 3, 2))
    ax.set_xlabel(f"input position (the input is 0..{n - 1}; grey: padding)")
    axes[0].plot([], [], marker="o", ms=2.5, color=DOT, ls="none",
                 label="input where the gradient is non-zero")
    axes[0].legend(loc="upper right", fontsize=7, frameon=False)
    fig.suptitle("Receptive field, jump and offset: two convs, kernel 3, stride 2, padding 1",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def draw_alignment(al: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    n = al["L"]
    a, b, add = (al["nodes"][k] for k in ("centred", "shifted", "add"))
    lo, hi = -3.5, n + 1.5
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    _input_background(ax, n, lo, hi)
    rows = list(range(n))
    for y in rows:
        s, e = add["intervals"][y]
        ax.add_patch(plt.Rectangle((s - 0.5, y - 0.42), e - s + 1, 0.84, fill=False,
                                   ec="#4d4d4d", lw=0.8, ls=":", zorder=1,
                                   label="add: the union" if y == 0 else None))
    _bars(ax, a, [y - 0.18 for y in rows], height=0.3, colour=BAR, label="centred", dots=False)
    _bars(ax, b, [y + 0.18 for y in rows], height=0.3, colour="#f4a582", label="shifted",
          dots=False)
    for d, off in ((a, -0.18), (b, 0.18)):
        for y, (s, e) in enumerate(d["intervals"]):
            ax.plot([(s + e) / 2], [y + off], marker="|", ms=7, mew=1.5, color="#1a1a1a",
                    zorder=4)
    for y, xs in enumerate(add.get("support", [])):
        ax.plot(xs, [y] * len(xs), marker="o", ms=2.5, color=DOT, ls="none", zorder=5,
                label="gradient != 0" if y == 0 else None)
    ax.set_yticks(rows, [f"add[{y}]" for y in rows])
    ax.set_ylim(n - 0.5, -0.6)
    ax.set_xlim(lo, hi)
    ax.set_xticks(range(-3, n + 2))
    ax.set_xlabel(f"input position (the input is 0..{n - 1}; |: field centre)")
    ax.legend(loc="upper right", fontsize=7, ncol=2, framealpha=0.9)
    ax.set_title(f"add: RF {add['size']} !   {add['reason']}", loc="left", color="#b2182b")
    fig.tight_layout()
    return _save(fig, path)


def draw_transposed(t: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    n = t["L"]
    models = t["models"]
    fig, axes = plt.subplots(len(models), 1, figsize=(6.4, 6.4))
    for ax, (name, d) in zip(axes, models.items(), strict=True):
        lo, hi = -2.4, n + 0.8
        _input_background(ax, n, lo, hi, vertical=True)
        dead = "dead: reads nothing"
        for y, (s, e) in enumerate(d["intervals"]):
            if e < s:
                ax.plot([y], [s - 0.5], marker="x", color=DEAD, ms=7, mew=1.8, ls="none",
                        label=dead)
                dead = None
                continue
            ax.bar(y, e - s + 1, bottom=s - 0.5, width=0.62, color=BAR, ec=BAR_EDGE, lw=0.8,
                   alpha=0.85, zorder=2)
            ax.text(y, s - 0.6, str(e - s + 1), ha="center", va="bottom", fontsize=7)
            xs = d.get("support", [[]] * d["n"])[y]
            ax.plot([y] * len(xs), xs, marker="o", ms=2.5, color=DOT, ls="none", zorder=3)
        ax.set_xlim(-0.7, d["n"] - 0.3)
        ax.set_ylim(hi, lo)
        ax.set_xticks(range(d["n"]))
        ax.set_yticks(range(-1, n + 1))
        ax.set_ylabel("input")
        label = {"k3s2": "ConvTranspose1d(k=3, s=2)",
                 "k3s2_k2s2": "then ConvTranspose1d(k=2, s=2)",
                 "k2s3": "ConvTranspose1d(k=2, s=3): kernel < stride"}[name]
        ax.set_title(f"{label}: RF {d['size']} (min {d['min_size']}), jump {d['jump']}, "
                     f"period {d['period']}", loc="left", fontsize=8)
        if any(not live for live in d["live"]):
            ax.legend(loc="lower right", fontsize=7, frameon=False)
    axes[-1].set_xlabel(f"output element (input 0..{n - 1}; bar: its field, number: its "
                        "size, dots: gradient != 0)")
    fig.tight_layout()
    return _save(fig, path)


def draw_global(g: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    n = g["L"]
    order = ["conv", "bins", "squeeze", "mul", "head"]
    colours = {"conv": BAR, "bins": "#92c5de", "squeeze": "#b2182b", "mul": "#b2182b",
               "head": "#b2182b"}
    lo, hi = -3.5, n + 2.5
    total = sum(g["nodes"][k]["n"] for k in order) + len(order) - 1
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    _input_background(ax, n, lo, hi)
    row, ticks, labels = 0.0, [], []
    for k in order:
        d = g["nodes"][k]
        rows = [row + y for y in range(d["n"])]
        _bars(ax, d, rows, colour=colours[k])
        ticks += rows
        labels += [f"{k}[{y}]" for y in range(d["n"])]
        text = (f"RF {d['size_formula']} = {d['size']}" if d["global"]
                else f"RF {d['size']}" + (" (widest bin)" if d["notes"] else ""))
        ax.text(1.01, rows[0], text, ha="left", va="center", fontsize=7,
                transform=ax.get_yaxis_transform())
        row = rows[-1] + 2
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_ylim(total + 0.5, -1)
    ax.set_xlim(lo, hi)
    ax.set_xticks(range(-2, n + 2))
    ax.set_xlabel(f"input position (L = {n}: the input is 0..{n - 1}; grey: padding; "
                  "dots: gradient != 0)")
    sq = g["nodes"]["squeeze"]
    ax.set_title(f"Global fields: squeeze, SE-gated mul and head see [{sq['intervals'][0][0]}, "
                 f"{sq['intervals'][0][1]}] = {sq['extent'][0]} .. {sq['extent'][1]}",
                 loc="left")
    fig.tight_layout()
    return _save(fig, path)


def draw_upper(u: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    n = u["L"]
    d = u["nodes"]["add"]
    lo, hi = -3.5, n + 1.5
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    _input_background(ax, n, lo, hi)
    rows = list(range(n))
    _bars(ax, d, rows, colour="#fddbc7", label="field (upper bound)")
    for y, (s, e) in enumerate(d["intervals"]):
        c = _clip((s, e), n)
        xs = d.get("support", [[]] * n)[y]
        if c and xs and (c[0] < xs[0] or c[1] > xs[-1]):
            ax.text(e + 0.7, y, f"bound {_iv(c)} > read [{xs[0]}, {xs[-1]}]", va="center",
                    fontsize=7, color="#b2182b")
    ax.plot([], [], marker="o", ms=2.5, color=DOT, ls="none", label="gradient != 0")
    ax.set_yticks(rows, [f"add[{y}]" for y in rows])
    ax.set_ylim(n - 0.5, -0.6)
    ax.set_xlim(lo, hi + 4)
    ax.set_xticks(range(-3, n + 2))
    ax.set_xlabel(f"input position (the input is 0..{n - 1}; grey: padding)")
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    ax.set_title("F.pad(conv3(x), (2, 0)) + x: RF "
                 f"≤{d['size']} (elements 0, 1 of the padded branch read only padding)",
                 loc="left")
    fig.tight_layout()
    return _save(fig, path)


#: every file main() writes into docs/figures (concepts.md shows each)
FIGURE_FILES = ("fields.svg", "alignment.svg", "alignment_graph.svg", "transposed.svg",
                "global.svg", "upper_bound.svg", "seed_tour.svg")


def all_data(probe: bool = True, seed: rfgraph.Analysis | None = None) -> dict[str, Any]:
    return {"field": field_data(probe), "alignment": alignment_data(probe),
            "transposed": transposed_data(probe), "global": global_data(probe),
            "upper": upper_data(probe), "seed_tour": seed_tour_data(seed)}


def main(out: Path = FIGURES) -> dict[str, Any]:
    torch.set_num_threads(1)
    out = Path(out)
    seed = seed_tour_analysis()
    data = all_data(seed=seed)
    seed = seed.evaluate(**DEFAULT_AT)
    draw_field(data["field"], out / "fields.svg")
    draw_alignment(data["alignment"], out / "alignment.svg")
    rfgraph.analyze(_seeded(Misaligned), (1, 1, "L"), at=f"L={ALIGN_L}",
                    name="misaligned").render(out / "alignment_graph.svg", show_offset=True)
    draw_transposed(data["transposed"], out / "transposed.svg")
    draw_global(data["global"], out / "global.svg")
    draw_upper(data["upper"], out / "upper_bound.svg")
    seed.render(out / "seed_tour.svg", depth=1, show_offset=True)
    for name, text in tables(data).items():
        print(f"== {name}\n{text}\n")
    return data


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else FIGURES)
