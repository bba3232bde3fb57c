"""rfgraph's whole path against the peer tools, side by side in one process (issue 12).

Run from the repository root:

    .venv/bin/python benchmarks/bench_peers.py                  # zoo models, installed peers
    $SIDE_PY benchmarks/bench_peers.py --repeats 5 --write      # + torchvision models, doc update
    .venv/bin/python benchmarks/bench_peers.py --quick          # 3 repeats, two or four models
    .venv/bin/python benchmarks/bench_peers.py --models resnet50,tv_resnet50

(``make bench-peers`` runs it with ``$SIDE_PY`` when set, else the project venv.)

Every call runs in this one process on one torch thread (``torch.set_num_threads(1)``). For each
model, every tool is called once untimed (warm-up), then ``--repeats`` rounds call every tool
once each, in an order rotated by one position per round (interleaved: all tools see the same
machine load); a cell is the median over the rounds, in milliseconds. ``gc.collect()`` runs
before every timed call, and SymPy's global cache is cleared before every timed rfgraph call
(each one pays what the first analysis in a fresh process pays, start-up imports aside;
``--warm-sympy`` keeps the cache, as a long-lived process would).
Everything a tool prints is swallowed (stdout redirected to a buffer, the same for every tool).

Columns (sizes: every spatial dimension at 224; ``small_conv3d``: D=16, H=W=224):

* rfgraph whole: ``rfgraph.analyze(model, (1,3,"H","W"), at={"H":224,"W":224}).to_dict()``:
  trace + symbolic analysis + evaluation at 224 + every node's formulas and values; what
  ``rfgraph analyze --at H=224,W=224 --json`` waits for.
* rfgraph analyze: ``rfgraph.analyze(model, (1,3,"H","W"))``, the symbolic analysis alone.
* torchinfo: ``torchinfo.summary(model, (1,3,224,224), verbose=0)``.
* thop: ``thop.profile(model, inputs=(x,), verbose=False)`` (package ``ultralytics-thop``).
* ptflops-pytorch / ptflops-aten: ``ptflops.get_model_complexity_info(model, (3,224,224),
  as_strings=False, print_per_layer_stat=False, backend=...)``.
* calflops: ``calflops.calculate_flops(model, input_shape=(1,3,224,224), print_results=False,
  print_detailed=False, output_as_string=False)``.
* FlopCounterMode: ``torch.utils.flop_counter.FlopCounterMode(display=False)`` around one
  forward (under ``torch.no_grad()``), then ``get_total_flops()``.
* forward: one plain forward pass at 224 under ``torch.no_grad()``: the floor reference.

Peers are optional: each is imported in a ``try``; a missing one is skipped with a note. Each
peer that attaches hooks or buffers (thop, ptflops, calflops) gets its own deep copy of the model.
Models: every ``examples.zoo.ZOO`` model, and ``tv_resnet50``, ``tv_mobilenet_v2``,
``tv_efficientnet_b0``, ``tv_densenet121``, ``tv_vgg16`` (torchvision, ``weights=None``) when
torchvision is importable.

``--write`` replaces this script's section of docs/performance.md (between the markers
``<!-- peers:begin -->`` and ``<!-- peers:end -->``, created after the file's introduction when
absent). Inside it, each run is a block keyed by ``--tag`` (default ``torchvision`` when
torchvision is importable, else ``zoo``), so a side-venv run and a project-venv run both stay.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import gc
import importlib.metadata as _md
import io
import os
import platform
import re
import statistics
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import rfgraph  # noqa: E402
import rfgraph.symbolic  # noqa: E402
from examples.zoo import ZOO, ZOO_INPUTS  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
SIZE = 224
SIZE_OVERRIDES = {"D": 16}  # small_conv3d's depth: 224 frames would be a different workload
TV_MODELS = ("resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121", "vgg16")
QUICK_MODELS = ("resnet50", "mobilenet_v2", "tv_resnet50", "tv_mobilenet_v2")

NOTES: list[str] = []
CLEARED = "cleared (rfgraph.symbolic.clear_caches) before each rfgraph call"
WARM_SYMPY = False  # --warm-sympy: keep SymPy's cache between rfgraph calls (a long-lived process)
TITLES = {"torchvision": "Zoo and torchvision models (side venv: torchvision and the peers)",
          "zoo": "Zoo models (project venv)"}


# -- optional imports -----------------------------------------------------------------------------
def _try_import(name: str, dist: str, skipped: str = "its columns are skipped") -> Any:
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = __import__(name, fromlist=["_"])
        return module
    except Exception as exc:  # ImportError, or a peer broken by its own dependencies
        NOTES.append(f"{dist} not available ({type(exc).__name__}: {exc}): {skipped}")
        return None


def _version(dist: str) -> str:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return "-"


torchvision = _try_import("torchvision.models", "torchvision", "its models are skipped")
torchinfo = _try_import("torchinfo", "torchinfo")
thop = _try_import("thop", "ultralytics-thop")
ptflops = _try_import("ptflops", "ptflops")
calflops = _try_import("calflops", "calflops")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


# -- models ---------------------------------------------------------------------------------------
def model_specs() -> dict[str, tuple[Callable[[], nn.Module], tuple]]:
    specs: dict[str, tuple[Callable[[], nn.Module], tuple]] = {
        name: (factory, ZOO_INPUTS[name]) for name, factory in ZOO.items()}
    if torchvision is not None:
        for name in TV_MODELS:
            factory = getattr(torchvision, name)
            specs[f"tv_{name}"] = (lambda f=factory: f(weights=None), (1, 3, "H", "W"))
    return specs


def concrete(shape: tuple) -> tuple[tuple[int, ...], dict[str, int]]:
    at = {d: SIZE_OVERRIDES.get(d, SIZE) for d in shape if isinstance(d, str)}
    return tuple(at[d] if isinstance(d, str) else d for d in shape), at


# -- the calls ------------------------------------------------------------------------------------
def tools(model: nn.Module, shape: tuple) -> dict[str, Callable[[], Any] | None]:
    """Name -> zero-argument call (``None``: peer not installed)."""
    cshape, at = concrete(shape)

    def rf_whole() -> Any:
        return rfgraph.analyze(model, shape, at=at).to_dict()

    def rf_analyze() -> Any:
        return rfgraph.analyze(model, shape)

    def fresh() -> nn.Module:
        return copy.deepcopy(model).eval()

    calls: dict[str, Callable[[], Any] | None] = {"rfgraph whole": rf_whole,
                                                   "rfgraph analyze": rf_analyze}
    calls["torchinfo"] = None
    if torchinfo is not None:
        calls["torchinfo"] = lambda: torchinfo.summary(model, cshape, verbose=0)
    calls["thop"] = None
    if thop is not None:
        m_thop = fresh()
        calls["thop"] = lambda: thop.profile(m_thop, inputs=(torch.randn(cshape),), verbose=False)
    calls["ptflops-pytorch"] = calls["ptflops-aten"] = None
    if ptflops is not None:
        m_pt, m_aten = fresh(), fresh()
        calls["ptflops-pytorch"] = lambda: ptflops.get_model_complexity_info(
            m_pt, cshape[1:], as_strings=False, print_per_layer_stat=False, backend="pytorch")
        calls["ptflops-aten"] = lambda: ptflops.get_model_complexity_info(
            m_aten, cshape[1:], as_strings=False, print_per_layer_stat=False, backend="aten")
    calls["calflops"] = None
    if calflops is not None:
        m_cal = fresh()
        calls["calflops"] = lambda: calflops.calculate_flops(
            m_cal, input_shape=cshape, print_results=False, print_detailed=False,
            output_as_string=False)

    def flop_counter() -> int:
        x = torch.randn(cshape)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops()

    calls["FlopCounterMode"] = flop_counter
    x_fwd = torch.randn(cshape)

    def forward() -> Any:
        with torch.no_grad():
            return model(x_fwd)

    calls["forward"] = forward
    return calls


RF = ("rfgraph whole", "rfgraph analyze")
PEERS = ("torchinfo", "thop", "ptflops-pytorch", "ptflops-aten", "calflops", "FlopCounterMode")


def _call(name: str, fn: Callable[[], Any]) -> float:
    if name.startswith("rfgraph") and not WARM_SYMPY:
        rfgraph.symbolic.clear_caches()
    gc.collect()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def run_model(name: str, factory: Callable[[], nn.Module], shape: tuple,
              repeats: int) -> dict[str, Any]:
    """Median ms per tool (float), the exception name (str) for a failed call, None if skipped."""
    torch.manual_seed(0)
    model = factory().eval()
    calls = tools(model, shape)
    live = {k: f for k, f in calls.items() if f is not None}
    result: dict[str, Any] = {k: None for k in calls}
    failed: dict[str, str] = {}
    for k, fn in live.items():  # warm-up
        try:
            _call(k, fn)
        except Exception as exc:
            failed[k] = type(exc).__name__
            NOTES.append(f"{name}: {k} raised {type(exc).__name__}: {str(exc)[:200]}")
    order = [k for k in live if k not in failed]
    times: dict[str, list[float]] = {k: [] for k in order}
    for r in range(repeats):
        shift = r % len(order)
        for k in order[shift:] + order[:shift]:
            try:
                times[k].append(_call(k, live[k]))
            except Exception as exc:  # failed after a successful warm-up
                failed[k] = type(exc).__name__
                NOTES.append(f"{name}: {k} raised {type(exc).__name__} in a timed run: "
                             f"{str(exc)[:200]}")
                order.remove(k)
                break
    for k in result:
        if k in failed:
            result[k] = failed[k]
        elif times.get(k):
            result[k] = statistics.median(times[k]) * 1e3
    del model, calls, live
    gc.collect()
    return result


# -- report ---------------------------------------------------------------------------------------
def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return f"**{x}**"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def table(rows: dict[str, dict[str, Any]], peers: list[str]) -> tuple[str, list[str]]:
    head = ["model", "rfgraph whole ms", "rfgraph analyze ms", *(f"{p} ms" for p in peers),
            "fastest peer", "ratio (fastest peer / whole)", "forward ms"]
    lines = ["| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 4) + "---|---:|---:|"]
    verdicts = []
    for model, res in rows.items():
        ok = {p: res[p] for p in peers if isinstance(res.get(p), float)}
        whole, fwd = res.get("rfgraph whole"), res.get("forward")
        fastest = min(ok, key=ok.__getitem__) if ok else None
        ratio = ok[fastest] / whole if fastest and isinstance(whole, float) else None
        ratio_cell = f"{ratio:.2f}" if ratio is not None else "n/a"
        if ratio is not None and ratio < 2:
            ratio_cell = f"**{ratio_cell}**"
        fwd_cell = _fmt(fwd)
        lines.append("| " + " | ".join([
            model, _fmt(whole), _fmt(res.get("rfgraph analyze")),
            *(_fmt(res.get(p)) for p in peers),
            f"{fastest} {_fmt(ok[fastest])}" if fastest else "n/a", ratio_cell, fwd_cell]) + " |")
        two_x = "n/a" if ratio is None else ("met" if ratio >= 2 else "MISSED")
        floor = ("n/a" if not (isinstance(whole, float) and isinstance(fwd, float))
                 else ("met" if whole <= fwd else "MISSED"))
        fwd_ratio = ""
        if isinstance(whole, float) and isinstance(fwd, float):
            q = whole / fwd
            fwd_ratio = f"{q:.3f}x forward" if 0.95 < q < 1.05 else f"{q:.2f}x forward"
        verdicts.append(f"| {model} | {two_x} | {floor} ({fwd_ratio}) |")
    return "\n".join(lines), verdicts


def _revision() -> str:
    """The checked-out commit, and whether rfgraph/ has uncommitted changes (read-only git)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "rfgraph"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "rfgraph (revision unknown)"
    return f"rfgraph {head or '?'}" + (" + uncommitted changes in rfgraph/" if dirty else "")


def render(rows: dict[str, dict[str, Any]], args: argparse.Namespace, load0: tuple,
           load1: tuple, started: str, elapsed: float) -> str:
    peers = [p for p in PEERS if any(res.get(p) is not None for res in rows.values())]
    body, verdicts = table(rows, peers)
    versions = ", ".join(f"{d} {_version(d)}" for d in (
        "torch", "torchvision", "sympy", "torchinfo", "ultralytics-thop", "ptflops", "calflops"))
    out = [
        f"Run {started} UTC, {elapsed:.0f} s, `{Path(sys.executable).parent.parent}`: "
        f"{_revision()}, Python {platform.python_version()}, {versions}. "
        f"One torch thread, {args.repeats} "
        f"interleaved rounds after one warm-up, medians in ms; SymPy cache "
        f"{'kept (--warm-sympy)' if WARM_SYMPY else CLEARED}. "
        f"Load average (1/5/15 min) at start {load0[0]:.2f}/{load0[1]:.2f}/"
        f"{load0[2]:.2f}, at end {load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} on "
        f"{os.cpu_count()} CPUs.",
    ]
    out = [textwrap.fill(out[0], 100, break_on_hyphens=False), "",
        body,
        "",
        "| model | whole path >= 2x faster than the fastest peer | whole path <= one forward |",
        "|---|---|---|",
        *verdicts,
    ]
    if NOTES:
        out += ["", "Notes:", *(f"- {n}" for n in dict.fromkeys(NOTES))]
    return "\n".join(out)


INTRO = """## Peers: the whole path against torchinfo, thop, ptflops, calflops, FlopCounterMode

Issue 12's targets: rfgraph's whole path (trace + `analyze` + evaluation at 224 + `to_dict()`)
at least 2x faster than the fastest peer on every model, and never slower than one forward pass
at 224. `benchmarks/bench_peers.py` measures all of them in one process on one torch thread,
interleaved (its docstring defines every column); `make bench-peers` runs it (with `$SIDE_PY`, a
Python that has torchvision and the peers, when set). Peers are optional and never a CI
requirement. `--write` replaces the block of its `--tag` below. A ratio below 2 is bold. The
machine is a shared 2-core VM: other jobs ran during these measurements (load averages in each
block); ratios within a block are comparable, absolute times are not across blocks.

Reading the tables: every peer runs (at least) one forward pass at 224 with hooks or a dispatch
mode around it, so a peer costs about one forward plus a per-layer overhead, and grows with the
input size; rfgraph runs no forward, so its cost is per fx node and the same at any size. rfgraph
therefore wins by a wide margin on heavy-per-node nets (VGG-16, the 3-D net) and loses on light
ones whose forward at 224 takes a few tens of ms (MobileNetV2, ShuffleNetV2, EfficientNet-B0,
DenseNet-121, AlexNet). "whole - analyze" is the cost of evaluating at 224 plus `to_dict()`."""


def write_doc(tag: str, block: str) -> None:
    text = DOC.read_text()  # re-read right before editing: others append to this file
    tb, te = f"<!-- peers:run:{tag}:begin -->", f"<!-- peers:run:{tag}:end -->"
    run = f"{tb}\n### {TITLES.get(tag, tag)}\n\n{block}\n{te}"
    if BEGIN not in text or END not in text:
        section = f"{BEGIN}\n{INTRO}\n\n{run}\n{END}\n"
        m = re.search(r"^## ", text, flags=re.M)
        text = (text[:m.start()] + section + "\n" + text[m.start():]) if m else (
            text.rstrip("\n") + "\n\n" + section)
    else:
        i, j = text.index(BEGIN), text.index(END)
        inner = text[i + len(BEGIN):j]
        if tb in inner and te in inner:
            a, b = inner.index(tb), inner.index(te) + len(te)
            inner = inner[:a] + run + inner[b:]
        else:
            inner = inner.rstrip("\n") + "\n\n" + run + "\n"
        text = text[:i] + BEGIN + inner + text[j:]
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per model (default 7)")
    p.add_argument("--models", default=None, help="comma-separated names (default: all)")
    p.add_argument("--quick", action="store_true", help="3 rounds; " + ", ".join(QUICK_MODELS))
    p.add_argument("--write", action="store_true", help="update docs/performance.md")
    p.add_argument("--warm-sympy", action="store_true",
                   help="do not clear SymPy's cache before each rfgraph call")
    p.add_argument("--tag", default=None, help="block name in the doc (default: torchvision/zoo)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 7)
    tag = args.tag or ("torchvision" if torchvision is not None else "zoo")
    global WARM_SYMPY
    WARM_SYMPY = args.warm_sympy
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    specs = model_specs()
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        unknown = [n for n in names if n not in specs]
        if unknown:
            p.error(f"unknown models {unknown}; known: {', '.join(specs)}")
    elif args.quick:
        names = [n for n in QUICK_MODELS if n in specs]
    else:
        names = list(specs)
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load0, t0 = os.getloadavg(), time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        factory, shape = specs[name]
        t = time.perf_counter()
        rows[name] = run_model(name, factory, shape, args.repeats)
        print(f"# {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    block = render(rows, args, load0, os.getloadavg(), started, time.perf_counter() - t0)
    print(block)
    if args.write:
        write_doc(tag, block)
        print(f"\n(wrote block '{tag}' of {DOC.relative_to(ROOT)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
