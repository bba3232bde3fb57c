"""Sweep rfgraph over the torchvision model zoo and a sample of timm models.

Needs torchvision (and timm for the timm part), which are NOT project dependencies: run it with
a side environment that has them and rfgraph installed (editable), from the repository root:

    /path/to/sidevenv/bin/python benchmarks/sweep_models.py                 # everything
    /path/to/sidevenv/bin/python benchmarks/sweep_models.py --no-timm       # torchvision only
    /path/to/sidevenv/bin/python benchmarks/sweep_models.py --groups classification
    /path/to/sidevenv/bin/python benchmarks/sweep_models.py --only resnet50,timm:levit_128s
    /path/to/sidevenv/bin/python benchmarks/sweep_models.py --list          # names, no run

Every model runs in its own subprocess (``--timeout`` seconds, default 120; ``--jobs`` at a
time, default 1) with ``torch.set_num_threads(1)``, built with ``weights=None`` /
``pretrained=False`` and in eval mode. The subprocess

1. times ``rfgraph.analyze(model, (1, 3, "H", "W"))`` (video: ``(1, 3, "D", "H", "W")``) and
   records the one-line error if it raised, the unknown nodes and ``a.unknown_ops``, and
   ``to_dict()["totals"]["complete"]`` when that key exists;
2. at up to two sizes (the first two of the model's candidate sizes that torch itself accepts,
   e.g. 224 and 193; fixed-size models get one) evaluates the analysis and compares the total
   MACs with ``FlopCounterMode`` / 2 (grad enabled, SDPA forced to the math kernel), the params
   (rfgraph's ``params`` + ``params_unreached`` when present) with ``sum(p.numel())``, and every
   output tensor's shape with the real output's;
3. records the time of each step.

Partial results survive a timeout (the worker rewrites its result file after every step).
Writes ``benchmarks/results/sweep.md`` (table + failure summary) and ``sweep.json``
(``--out-dir`` to change); with ``--only`` the files are named ``sweep_only.*`` unless
``--out-dir``/``--name`` say otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# The model list
# ---------------------------------------------------------------------------------------------

IMG = ["224", "193", "256"]             # candidate sizes for 2-D models, first two valid are used
VIDEO = ["16x112", "9x97", "16x224"]    # DxH(=W) candidates for video models

# Fixed-size or otherwise special torchvision models (sizes just save failing torch runs).
TV_SIZES: dict[str, list[str]] = {
    "s3d": ["16x224", "13x241"],
    "mvit_v1_b": ["16x224"],
    "mvit_v2_s": ["16x224"],
    "swin3d_t": ["8x112", "7x97"],
    "swin3d_s": ["8x112", "7x97"],
    "swin3d_b": ["8x112", "7x97"],
}

# A broad timm sample: (label, timm name, create_model kwargs). "[dyn]" = dynamic_img_size=True.
TIMM: list[tuple[str, str, dict[str, Any]]] = [
    ("resnet18", "resnet18", {}),
    ("resnet50d", "resnet50d", {}),
    ("seresnext26d_32x4d", "seresnext26d_32x4d", {}),
    ("resnest14d", "resnest14d", {}),
    ("res2net50_26w_4s", "res2net50_26w_4s", {}),
    ("efficientnet_b0", "efficientnet_b0", {}),
    ("tf_efficientnet_b0", "tf_efficientnet_b0", {}),
    ("mobilenetv3_large_100", "mobilenetv3_large_100", {}),
    ("lcnet_050", "lcnet_050", {}),
    ("regnety_008", "regnety_008", {}),
    ("regnetz_b16", "regnetz_b16", {}),
    ("convnext_nano", "convnext_nano", {}),
    ("vit_tiny_patch16_224", "vit_tiny_patch16_224", {}),
    ("vit_small_patch16_224[dyn]", "vit_small_patch16_224", {"dynamic_img_size": True}),
    ("vit_base_patch16_224[dyn]", "vit_base_patch16_224", {"dynamic_img_size": True}),
    ("deit_tiny_patch16_224", "deit_tiny_patch16_224", {}),
    ("deit_small_distilled_patch16_224", "deit_small_distilled_patch16_224", {}),
    ("eva02_tiny_patch14_224", "eva02_tiny_patch14_224", {}),
    ("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224", {}),
    ("swin_tiny_patch4_window7_224[dyn]", "swin_tiny_patch4_window7_224",
     {"dynamic_img_size": True}),
    ("maxvit_nano_rw_256", "maxvit_nano_rw_256", {}),
    ("coatnet_nano_rw_224", "coatnet_nano_rw_224", {}),
    ("levit_128s", "levit_128s", {}),
    ("mixer_s16_224", "mixer_s16_224", {}),
    ("resmlp_12_224", "resmlp_12_224", {}),
    ("poolformer_s12", "poolformer_s12", {}),
    ("edgenext_xx_small", "edgenext_xx_small", {}),
    ("ghostnet_100", "ghostnet_100", {}),
    ("rexnet_100", "rexnet_100", {}),
    ("densenet121", "densenet121", {}),
    ("inception_v3", "inception_v3", {}),
    ("legacy_xception", "legacy_xception", {}),
    ("xception41", "xception41", {}),
    ("cspresnet50", "cspresnet50", {}),
    ("cspdarknet53", "cspdarknet53", {}),
    ("dla34", "dla34", {}),
    ("hrnet_w18_small", "hrnet_w18_small", {}),
    ("mobilevit_xxs", "mobilevit_xxs", {}),
    ("efficientformer_l1", "efficientformer_l1", {}),
    ("fastvit_t8", "fastvit_t8", {}),
    ("repvgg_a0", "repvgg_a0", {}),
    ("dm_nfnet_f0", "dm_nfnet_f0", {}),
    ("pit_ti_224", "pit_ti_224", {}),
    ("crossvit_tiny_240", "crossvit_tiny_240", {}),
    ("twins_svt_small", "twins_svt_small", {}),
    ("pvt_v2_b0", "pvt_v2_b0", {}),
    ("focalnet_tiny_srf", "focalnet_tiny_srf", {}),
    ("tresnet_m", "tresnet_m", {}),
    ("gcvit_xxtiny", "gcvit_xxtiny", {}),
    ("mobileone_s0", "mobileone_s0", {}),
    ("hgnetv2_b0", "hgnetv2_b0", {}),
    ("efficientvit_b0", "efficientvit_b0", {}),
    ("cait_xxs24_224", "cait_xxs24_224", {}),
    ("xcit_nano_12_p16_224", "xcit_nano_12_p16_224", {}),
    ("sequencer2d_s", "sequencer2d_s", {}),
]


def model_specs(groups: list[str], with_timm: bool) -> list[dict[str, Any]]:
    """Every model of the sweep as a JSON-able spec (built later, in the worker)."""
    import torchvision

    specs: list[dict[str, Any]] = []
    if "classification" in groups:
        for n in torchvision.models.list_models(module=torchvision.models):
            specs.append({"id": n, "group": "classification", "src": "tv", "name": n,
                          "kwargs": {}, "video": False, "sizes": TV_SIZES.get(n, IMG)})
    if "segmentation" in groups:
        for n in torchvision.models.list_models(module=torchvision.models.segmentation):
            specs.append({"id": n, "group": "segmentation", "src": "tv-seg", "name": n,
                          "kwargs": {"weights_backbone": None}, "video": False,
                          "sizes": TV_SIZES.get(n, IMG)})
    if "video" in groups:
        for n in torchvision.models.list_models(module=torchvision.models.video):
            specs.append({"id": n, "group": "video", "src": "tv-video", "name": n,
                          "kwargs": {}, "video": True, "sizes": TV_SIZES.get(n, VIDEO)})
    if "timm" in groups and with_timm:
        for label, n, kw in TIMM:
            specs.append({"id": "timm:" + label, "group": "timm", "src": "timm", "name": n,
                          "kwargs": kw, "video": False, "sizes": None})  # None: from its cfg
    return specs


# ---------------------------------------------------------------------------------------------
# The worker (one model, in a subprocess)
# ---------------------------------------------------------------------------------------------

def one_line(e: BaseException, limit: int = 300) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    text = text.splitlines()[0] if text else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def build(spec: dict[str, Any]):
    import torch

    torch.manual_seed(0)
    if spec["src"] == "timm":
        import timm

        model = timm.create_model(spec["name"], pretrained=False, **spec["kwargs"])
    else:
        import torchvision

        mod = {"tv": torchvision.models, "tv-seg": torchvision.models.segmentation,
               "tv-video": torchvision.models.video}[spec["src"]]
        model = torchvision.models.get_model(spec["name"], weights=None, **spec["kwargs"]) \
            if spec["src"] == "tv" else getattr(mod, spec["name"])(weights=None,
                                                                   **spec["kwargs"])
    return model.eval()


def size_candidates(spec: dict[str, Any], model) -> list[str]:
    if spec["sizes"] is not None:
        return list(spec["sizes"])
    cfg = getattr(model, "pretrained_cfg", None) or {}
    h = (cfg.get("input_size") or (3, 224, 224))[1]
    out = [str(h)]
    for s in IMG:
        if s not in out:
            out.append(s)
    return out


def parse_size(text: str, video: bool) -> dict[str, int]:
    if video:
        d, h = text.split("x")
        return {"D": int(d), "H": int(h), "W": int(h)}
    return {"H": int(text), "W": int(text)}


def shapes_of(value: Any) -> list[Any]:
    """Leaf shapes of a (nested) output, in order: torch tensors or rfgraph TensorInfos."""
    if isinstance(value, dict):
        return [s for k in value for s in shapes_of(value[k])]
    if isinstance(value, (list, tuple)) and not hasattr(value, "shape"):
        return [s for v in value for s in shapes_of(v)]
    if hasattr(value, "shape"):
        return [value.shape]
    return []


def worker(spec: dict[str, Any], out_path: str) -> None:
    import torch

    torch.set_num_threads(1)
    res: dict[str, Any] = {"id": spec["id"], "group": spec["group"], "times": {}, "sizes": [],
                           "size_notes": [], "phase": "start"}

    def save(phase: str) -> None:
        res["phase"] = phase
        tmp = out_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, default=str)
        os.replace(tmp, out_path)

    save("import")
    t0 = time.perf_counter()
    from torch.utils.flop_counter import FlopCounterMode

    import rfgraph

    res["rfgraph_file"] = rfgraph.__file__

    try:
        model = build(spec)
    except Exception as e:  # noqa: BLE001
        res["build_error"] = one_line(e)
        save("done")
        return
    res["times"]["build"] = round(time.perf_counter() - t0, 2)
    res["params_torch"] = int(sum(p.numel() for p in model.parameters()))
    save("analyze")

    shape = (1, 3, "D", "H", "W") if spec["video"] else (1, 3, "H", "W")
    t0 = time.perf_counter()
    a = None
    try:
        a = rfgraph.analyze(model, shape)
        res["sym_ok"] = True
    except Exception as e:  # noqa: BLE001
        res["sym_ok"] = False
        res["sym_error"] = one_line(e)
    res["times"]["analyze"] = round(time.perf_counter() - t0, 2)
    if a is not None:
        res["n_nodes"] = len(a.nodes)
        res["unknown_nodes"] = len(a.unknown_nodes)
        res["unknown_ops"] = {k: sum(v.values()) for k, v in a.unknown_ops.items()}
        res["warnings"] = [str(w).splitlines()[0][:200] for w in a.warnings][:10]
        res["n_warnings"] = len(a.warnings)
        res["params_rfgraph"] = int(a.total_params)
        save("to_dict")
        t0 = time.perf_counter()
        try:
            totals = a.to_dict()["totals"]
            res["complete"] = totals.get("complete")          # None: key absent (unknown)
            res["has_complete"] = "complete" in totals
            unreached = totals.get("params_unreached")      # {module: count} or a count
            res["params_unreached"] = unreached
            n_unreached = sum(unreached.values()) if isinstance(unreached, dict) else int(
                unreached or 0)
            res["params_rfgraph_total"] = int(a.total_params) + n_unreached
        except Exception as e:  # noqa: BLE001
            res["to_dict_error"] = one_line(e)
            res["params_rfgraph_total"] = int(a.total_params)
        res["times"]["to_dict"] = round(time.perf_counter() - t0, 2)
        res["params_equal"] = res["params_rfgraph_total"] == res["params_torch"]
    save("sizes")

    for cand in size_candidates(spec, model):
        if len(res["sizes"]) >= 2:
            break
        sizes = parse_size(cand, spec["video"])
        x_shape = [1, 3] + ([sizes["D"]] if spec["video"] else []) + [sizes["H"], sizes["W"]]
        entry: dict[str, Any] = {"size": cand}
        save(f"oracle {cand}")
        t0 = time.perf_counter()
        try:
            x = torch.randn(*x_shape)
            with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH), \
                    FlopCounterMode(display=False) as counter:
                y = model(x)
            entry["macs_torch"] = int(counter.get_total_flops() // 2)
            entry["out_torch"] = [list(s) for s in shapes_of(y)]
            del y
        except Exception as e:  # noqa: BLE001
            res["size_notes"].append(f"torch rejects {cand}: {one_line(e, 160)}")
            continue
        entry["t_torch"] = round(time.perf_counter() - t0, 2)
        res["sizes"].append(entry)
        if a is None:
            continue
        save(f"evaluate {cand}")
        t0 = time.perf_counter()
        try:
            b = a.evaluate(**sizes)
            entry["eval_ok"] = True
            # the evaluated total (formula + MACs measured at these sizes for nodes without a
            # rule); older rfgraph versions only have the formula
            macs = getattr(b, "total_macs_at", None)
            if macs is None:
                macs = b.int_of(b.total_macs)
            entry["macs_rfgraph"] = macs
            entry["macs_equal"] = macs == entry["macs_torch"]
            outs = [[b.int_of(d) for d in s] for s in shapes_of(b.output.value)]
            entry["out_rfgraph"] = outs
            entry["out_equal"] = outs == entry["out_torch"]
            unk = b.unknown_nodes
            entry["unknown_nodes"] = len(unk)
        except Exception as e:  # noqa: BLE001
            entry["eval_ok"] = False
            entry["eval_error"] = one_line(e)
        entry["t_eval"] = round(time.perf_counter() - t0, 2)
    save("done")


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------

_print_lock = threading.Lock()


def run_one(spec: dict[str, Any], timeout: float, python: str,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    fd, path = tempfile.mkstemp(prefix="sweep_", suffix=".json")
    os.close(fd)
    t0 = time.perf_counter()
    cmd = [python, str(Path(__file__).resolve()), "--worker", json.dumps(spec), "--result", path]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=str(ROOT), env=env)
    timed_out = False
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # the worker's own process group
        except ProcessLookupError:
            pass
        _, err = proc.communicate()
    wall = round(time.perf_counter() - t0, 1)
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, ValueError):
        res = {"id": spec["id"], "group": spec["group"], "times": {}, "sizes": [],
               "size_notes": [], "phase": "no result"}
    for p in (path, path + ".tmp"):
        try:
            os.unlink(p)
        except OSError:
            pass
    res["wall"] = wall
    if timed_out:
        res["timeout"] = f"timeout after {timeout:g} s in phase '{res.get('phase')}'"
    elif proc.returncode != 0:
        tail = (err or "").strip().splitlines()[-1:] or [""]
        res["crash"] = f"worker exit {proc.returncode}: {tail[0][:200]}"
    with _print_lock:
        print(f"  {res['id']:<40} {summary_cell(res)}  ({wall:.1f} s)", file=sys.stderr,
              flush=True)
    return res


def summary_cell(r: dict[str, Any]) -> str:
    bits = []
    if r.get("build_error"):
        return "BUILD ERROR " + r["build_error"]
    bits.append("sym ok" if r.get("sym_ok") else
                ("SYM FAIL" if "sym_ok" in r else "sym ?"))
    if r.get("unknown_ops"):
        bits.append("unknown " + ",".join(r["unknown_ops"]))
    for s in r.get("sizes", []):
        bits.append(f"{s['size']}:" + macs_cell(s))
    if "params_equal" in r:
        bits.append("params " + ("ok" if r["params_equal"] else "DIFF"))
    if r.get("timeout"):
        bits.append("TIMEOUT")
    if r.get("crash"):
        bits.append("CRASH")
    return "; ".join(bits)


def macs_cell(s: dict[str, Any]) -> str:
    if "eval_ok" not in s:
        return "-"
    if not s["eval_ok"]:
        return "eval error"
    if s.get("macs_rfgraph") is None:
        return "symbolic?"
    if s["macs_equal"]:
        return "=" if s.get("out_equal", True) else "= (out shape DIFF)"
    ratio = s["macs_rfgraph"] / s["macs_torch"] if s["macs_torch"] else float("inf")
    cell = f"x{ratio:.4f}"
    return cell + ("" if s.get("out_equal", True) else " (out shape DIFF)")


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# rfgraph model sweep", "",
             f"Run {meta['date']}, rfgraph from the {meta.get('rfgraph', '?')}, "
             f"{meta['versions']}, timeout {meta['timeout']:g} s, "
             f"jobs {meta['jobs']}, wall {meta['wall']:.0f} s"
             + (f" over {meta['runs']} merged runs" if meta.get("runs", 1) > 1 else "") + ". "
             "Generated by `benchmarks/sweep_models.py`; see docs/models.md for the columns.", ""]
    n = len(results)
    sym = sum(1 for r in results if r.get("sym_ok"))
    clean = sum(1 for r in results if r.get("sym_ok") and not r.get("unknown_ops"))
    macs_all = sum(1 for r in results if r.get("sizes") and all(
        s.get("macs_equal") and s.get("out_equal") for s in r["sizes"]))
    params = sum(1 for r in results if r.get("params_equal"))
    tos = sum(1 for r in results if r.get("timeout"))
    lines += [f"**{n} models**: symbolic analysis ok {sym}, of which without unknown ops {clean}; "
              f"MACs and output shape equal at every size tried {macs_all}; params equal "
              f"{params}; timeouts {tos}.", ""]
    for group in dict.fromkeys(r["group"] for r in results):
        rows = [r for r in results if r["group"] == group]
        lines += [f"## {group} ({len(rows)})", "",
                  "| model | symbolic | unknown ops | complete | size 1 | MACs 1 | size 2 | "
                  "MACs 2 | params | out shape | t analyze | t total | note |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(row(r))
        lines.append("")
    lines += failure_summary(results)
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row(r: dict[str, Any]) -> str:
    if r.get("build_error"):
        sym = "build error"
    elif "sym_ok" not in r:
        sym = "?"
    else:
        sym = "ok" if r["sym_ok"] else "**error**"
    unk = ", ".join(f"{k}×{v}" for k, v in (r.get("unknown_ops") or {}).items()) or (
        "" if r.get("sym_ok") else "")
    complete = {True: "yes", False: "no", None: "n/a"}[r.get("complete")] if r.get(
        "sym_ok") else ""
    cells = []
    for i in range(2):
        if i < len(r.get("sizes", [])):
            s = r["sizes"][i]
            cells += [s["size"], macs_cell(s)]
        else:
            cells += ["", ""]
    params = "" if "params_equal" not in r else ("=" if r["params_equal"] else
                                                 f"{r['params_rfgraph_total']:,} vs "
                                                 f"{r['params_torch']:,}")
    outs = [s.get("out_equal") for s in r.get("sizes", []) if "out_equal" in s]
    out = "" if not outs else ("=" if all(outs) else "**DIFF**")
    notes = []
    for key in ("build_error", "sym_error", "timeout", "crash", "to_dict_error"):
        if r.get(key):
            notes.append(r[key])
    for s in r.get("sizes", []):
        if s.get("eval_error"):
            notes.append(f"evaluate {s['size']}: {s['eval_error']}")
        if s.get("out_equal") is False:
            notes.append(f"out {s['out_rfgraph']} vs {s['out_torch']}")
    if len(r.get("sizes", [])) < 2 and not r.get("timeout") and r.get("size_notes"):
        notes.append("one size only: " + r["size_notes"][0])
    t_an = r.get("times", {}).get("analyze")
    return "| " + " | ".join(_esc(str(c)) for c in [
        r["id"], sym, unk, complete, *cells, params, out,
        "" if t_an is None else f"{t_an:.1f}", f"{r.get('wall', 0):.0f}",
        "; ".join(notes)[:400]]) + " |"


_NORMALISE = [(re.compile(r"0x[0-9a-f]+"), "0x…"), (re.compile(r"'[^']*'"), "'…'"),
              (re.compile(r"\b\d+\b"), "N")]


def pattern(text: str) -> str:
    for rx, rep in _NORMALISE:
        text = rx.sub(rep, text)
    return text[:160]


def failure_summary(results: list[dict[str, Any]]) -> list[str]:
    classes: dict[str, list[str]] = defaultdict(list)
    for r in results:
        mid = r["id"]
        if r.get("build_error"):
            classes["build error: " + pattern(r["build_error"])].append(mid)
        if r.get("sym_error"):
            classes["analyze raised: " + pattern(r["sym_error"])].append(mid)
        for op in r.get("unknown_ops") or {}:
            classes[f"unknown op: {op}"].append(mid)
        for s in r.get("sizes", []):
            if s.get("eval_error"):
                classes["evaluate raised: " + pattern(s["eval_error"])].append(mid)
        if any(s.get("eval_ok") and s.get("macs_rfgraph") is not None and not s["macs_equal"]
               for s in r.get("sizes", [])):
            classes["MACs differ from FlopCounterMode"].append(mid)
        if any(s.get("eval_ok") and s.get("macs_rfgraph") is None for s in r.get("sizes", [])):
            classes["MACs not an integer after evaluate"].append(mid)
        if any(s.get("out_equal") is False for s in r.get("sizes", [])):
            classes["output shape differs"].append(mid)
        if r.get("params_equal") is False:
            classes["params differ"].append(mid)
        if r.get("timeout"):
            phase = r.get("phase", "?").split(" ")[0]
            classes["timeout after the last step (results complete)" if phase == "done" else
                    f"timeout (phase {phase})"].append(mid)
        if r.get("crash"):
            classes["worker crashed: " + pattern(r["crash"])].append(mid)
    lines = ["## Failure classes", "", "| class | models | examples |", "|---|---|---|"]
    for cls, mids in sorted(classes.items(), key=lambda kv: (-len(set(kv[1])), kv[0])):
        mids = list(dict.fromkeys(mids))
        ex = ", ".join(mids[:6]) + (" …" if len(mids) > 6 else "")
        lines.append(f"| {_esc(cls)} | {len(mids)} | {_esc(ex)} |")
    return lines + [""]


def _timm_version() -> str:
    try:
        import timm
    except ImportError:
        return "absent"
    return timm.__version__


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", help="comma-separated model ids (timm ones as timm:label)")
    p.add_argument("--groups", default="classification,segmentation,video,timm",
                   help="comma-separated subset of classification,segmentation,video,timm")
    p.add_argument("--timm", dest="timm", action="store_true", default=True)
    p.add_argument("--no-timm", dest="timm", action="store_false")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per model (120)")
    p.add_argument("--jobs", type=int, default=1, help="models in parallel (1; at most 2 "
                   "on a 2-core machine)")
    p.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default=None, help="output file stem (sweep, or sweep_only)")
    p.add_argument("--merge", action="store_true",
                   help="merge into an existing <name>.json (replace rows with the same id)")
    p.add_argument("--commit", default=None,
                   help="sweep the rfgraph package as committed at this git revision (e.g. "
                   "HEAD; extracted with git archive into a temporary directory) instead of "
                   "the working tree, which others may be editing")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite <name>.md from an existing <name>.json without running models")
    p.add_argument("--list", action="store_true", help="print the model ids and exit")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        worker(json.loads(args.worker), args.result)
        return 0

    if args.report_only:
        stem = args.name or ("sweep_only" if args.only else "sweep")
        data = json.loads((Path(args.out_dir) / f"{stem}.json").read_text())
        md = markdown(data["results"], data["meta"])
        (Path(args.out_dir) / f"{stem}.md").write_text(md)
        print(md)
        return 0

    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    if args.only:
        groups = ["classification", "segmentation", "video", "timm"]
    specs = model_specs(groups, args.timm)
    if args.only:
        want = [w.strip() for w in args.only.split(",") if w.strip()]
        by_id = {s["id"]: s for s in specs}
        missing = [w for w in want if w not in by_id]
        if missing:
            print(f"unknown model ids: {', '.join(missing)} (see --list)", file=sys.stderr)
            return 2
        specs = [by_id[w] for w in want]
    if args.list:
        for s in specs:
            print(s["id"])
        return 0

    import torch
    import torchvision

    stem = args.name or ("sweep_only" if args.only else "sweep")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"sweeping {len(specs)} models, timeout {args.timeout:g} s, jobs {args.jobs}",
          file=sys.stderr)
    env = None
    source = "working tree"
    snapshot = None
    if args.commit:
        snapshot = tempfile.TemporaryDirectory(prefix="sweep_rfgraph_")
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.commit],
                             check=True, capture_output=True, text=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.commit, "rfgraph"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", snapshot.name], input=archive, check=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = snapshot.name + os.pathsep + env.get("PYTHONPATH", "")
        source = f"commit {rev}"
    print(f"sweeping {len(specs)} models with rfgraph from the {source}", file=sys.stderr)
    t0 = time.perf_counter()
    jobs = max(1, min(args.jobs, 2))
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        results = list(ex.map(lambda s: run_one(s, args.timeout, sys.executable, env), specs))
    wall = time.perf_counter() - t0
    if snapshot is not None:
        snapshot.cleanup()

    json_path = out_dir / f"{stem}.json"
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "timeout": args.timeout, "jobs": jobs,
            "rfgraph": source,
            "wall": wall, "versions": f"torch {torch.__version__}, torchvision "
            f"{torchvision.__version__}, timm {_timm_version()}"}
    if args.merge and json_path.exists():
        old_data = json.loads(json_path.read_text())
        old = old_data["results"]
        runs = old_data["meta"].get("runs", 1) + 1
        meta["runs"] = runs
        meta["wall"] = wall + old_data["meta"].get("wall", 0)
        if old_data["meta"].get("rfgraph") != source:
            meta["rfgraph"] = f"{old_data['meta'].get('rfgraph')} + {source}"
        new_ids = {r["id"] for r in results}
        results = [r for r in old if r["id"] not in new_ids] + results
        order = {s["id"]: i for i, s in enumerate(model_specs(
            ["classification", "segmentation", "video", "timm"], True))}
        results.sort(key=lambda r: order.get(r["id"], 10**6))
    md = markdown(results, meta)
    (out_dir / f"{stem}.md").write_text(md)
    json_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    print(md)
    print(f"wrote {out_dir / (stem + '.md')} and {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
