r"""MACs and parameter counts of rfgraph and its peers on the same models, against ground truth.

Issue 14. Run from the repository root with the side venv (torchvision and the peers):

    /work/sidevenv/bin/python benchmarks/compare_counts.py                  # Markdown to stdout
    /work/sidevenv/bin/python benchmarks/compare_counts.py \
        --json benchmarks/results/compare_counts.json   # + the raw numbers
    /work/sidevenv/bin/python benchmarks/compare_counts.py --only convT,mha  # some cases
    /work/sidevenv/bin/python benchmarks/compare_counts.py \
        --backward-python /work/main/.venv/bin/python  # backward probe under another torch

Every case is one small model (one op each) or a real network, at one input size. Each tool gets
its own deep copy of the model in eval mode and a tensor of the same shape, on one torch thread:

* rfgraph: ``rfgraph.analyze(model, shape, at=sizes)``, ``total_macs_at``, ``total_params``
  (shape symbolic: ``(1, C, "H", "W")`` or ``(1, "L", E)``, evaluated at the sizes below).
* torchinfo: ``summary(model, input_data=[x], verbose=0)``: ``total_mult_adds``, ``total_params``.
* thop (ultralytics-thop): ``profile(model, inputs=(x,), verbose=False)`` -> (MACs, params).
* ptflops: ``get_model_complexity_info(model, tuple(x.shape[1:]), input_constructor=...,
  as_strings=False, print_per_layer_stat=False, backend="pytorch" | "aten")`` -> (MACs, params).
* calflops: ``calculate_flops(model, args=[x], output_as_string=False, ...)`` -> (FLOPs, MACs,
  params); the MACs are used.
* fvcore: ``FlopCountAnalysis(model, (x,)).total()``: fvcore's "flop" is one multiply-add, so
  the total is MACs; params from ``fvcore.nn.parameter_count(model)[""]``. Unsupported ops fvcore
  skipped are recorded.
* FlopCounterMode (``torch.utils.flop_counter``): FLOPs around one forward, divided by 2 (it
  counts 2 FLOPs per multiply-add); ``no_grad`` column: forward under ``torch.no_grad()`` (how
  inference is run); ``grad`` column: with autograd enabled (another code path for
  ``nn.MultiheadAttention``).
* torchview: ``draw_graph(model, input_data=[x], save_graph=False)``; it reports shapes, not
  MACs or params: the output tensor's shape is compared with torch's.

Ground truth: MACs are multiply-accumulates of the contractions (convolution, linear, matmul,
attention scores and weighting, LSTM gates), the convention of rfgraph and of FlopCounterMode;
bias additions, norms, activations, pooling, softmax and interpolation are 0 under it (the
elementwise count is stated beside such cases, since several peers count those). Each ground
truth is a closed form written out in the case (its arithmetic is printed), or, for the
convolutional networks, the sum of the per-layer closed forms over the model's conv, transposed
conv and linear layers (``module_sum``; valid because those models call no functional product).
Parameters: ``sum(p.numel())`` over the model's distinct parameters.

ptflops and calflops patch functions of ``torch``, ``torch.nn.functional`` and ``torch.Tensor``;
after every call the script puts back whatever a tool left changed (and notes it), since calflops
leaves its patches in place when it raises and later counts in the process then double.
``calflops_leak_probe`` measures that effect on purpose. A tool that raises gets
``error: <Exception>`` in its cell. Output: Markdown tables (stdout) and,
with ``--json``, the raw numbers. ``--backward-python`` also runs the FlopCounterMode backward
probe (grouped conv weight gradient) under another interpreter, e.g. the project venv's torch.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import functools
import importlib.metadata as _md
import io
import json
import logging
import math
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)  # fvcore logs its unsupported ops; they are recorded instead


def _version(dist: str) -> str:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return "not installed"


# -- targeted one-op models -----------------------------------------------------------------------
class Stem(nn.Module):
    """A conv whose weight is a parameter of the module but applied with F.conv2d."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 16, 3, 3) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1)


class StemConv(Stem):
    """The same module under a class name that contains "Conv" (torchinfo keys on the name)."""


class MHA(nn.Module):
    def __init__(self, e: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(e, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]


class SDPA(nn.Module):
    """The same attention as MHA written with nn.Linear and F.scaled_dot_product_attention."""

    def __init__(self, e: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(e, 3 * e)
        self.proj = nn.Linear(e, e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, e = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, e // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(b, n, e))


class MatMul(nn.Module):
    """A product of two activations (a Gram matrix of the tokens)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, x.transpose(-1, -2))


class Interp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class LSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(32, 64, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class Shared(nn.Module):
    """One nn.Linear called twice (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.fc(x)))


# -- ground truths --------------------------------------------------------------------------------
def module_sum(model: nn.Module, x: torch.Tensor) -> int:
    """Sum of per-layer closed forms over Conv/ConvTranspose/Linear modules (shapes from a run).

    Conv: N·C_out·prod(out)·(C_in/g)·prod(k). Transposed conv: N·C_in·prod(in)·(C_out/g)·prod(k)
    (each input element meets each kernel tap of its group once). Linear: prod(lead)·in·out.
    """
    total = 0

    def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        i = inp[0]
        if isinstance(m, nn.Linear):
            total += i.numel() // m.in_features * m.in_features * m.out_features
        elif isinstance(m, nn.modules.conv._ConvTransposeNd):
            total += i.numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)
        elif isinstance(m, nn.modules.conv._ConvNd):
            total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def vit_b_16_gt() -> tuple[int, str]:
    n, d, mlp, layers = 14 * 14, 768, 3072, 12
    t = n + 1  # + class token
    patch = n * d * 3 * 16 * 16
    per_layer = 4 * t * d * d + 2 * t * t * d + 2 * t * d * mlp
    head = d * 1000
    total = patch + layers * per_layer + head
    how = (f"patch {n}·{d}·3·16² + 12·(4·{t}·{d}² qkv+proj + 2·{t}²·{d} scores+weighting "
           f"+ 2·{t}·{d}·{mlp} MLP) + {d}·1000 head")
    return total, how


def swin_t_gt() -> tuple[int, str]:
    dims, depths, win = (96, 192, 384, 768), (2, 2, 6, 2), 49
    r = 56
    total = r * r * 96 * 3 * 16  # patch embedding, Conv2d(3, 96, 4, stride 4)
    for i, (c, dep) in enumerate(zip(dims, depths)):
        tokens = r * r
        total += dep * (12 * tokens * c * c + 2 * tokens * win * c)
        if i < 3:
            total += (tokens // 4) * 4 * c * 2 * c  # patch merging Linear(4C, 2C)
            r //= 2
    total += 768 * 1000
    how = ("56²·96·3·4² patch + Σ_stages depth·(12·R²·C² qkv+proj+MLP + 2·R²·49·C window "
           "attention) + Σ (R/2)²·4C·2C merging + 768·1000 head")
    return total, how


# -- cases ----------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    what: str
    build: Callable[[], nn.Module]
    shape: tuple  # rfgraph's input shape, names are symbols
    at: dict[str, int]
    gt: int | Callable[[nn.Module, torch.Tensor], int] | None
    how: str = ""
    elementwise: str = ""  # the elementwise work a peer may count where the MACs are 0
    real: bool = False

    def concrete(self) -> tuple[int, ...]:
        return tuple(self.at[d] if isinstance(d, str) else d for d in self.shape)


HW = {"H": 32, "W": 32}
L196 = {"L": 196}


def cases() -> list[Case]:
    out = [
        Case("convT", "ConvTranspose2d(16, 8, 2, stride=2), 16×32×32 → 8×64×64",
             lambda: nn.ConvTranspose2d(16, 8, 2, stride=2, bias=False), (1, 16, "H", "W"), HW,
             16 * 32 * 32 * 8 * 4,
             "C_in·H_in·W_in·C_out·k² = 16·32·32·8·2² (= 8·64·64 outputs × 16 products each: "
             "one tap per output)"),
        Case("grouped", "Conv2d(32, 64, 3, pad 1, groups=4), 32×32",
             lambda: nn.Conv2d(32, 64, 3, padding=1, groups=4, bias=False), (1, 32, "H", "W"),
             HW, 64 * 32 * 32 * 8 * 9, "C_out·H·W·(C_in/g)·k² = 64·32·32·8·3²"),
        Case("depthwise", "Conv2d(32, 32, 3, pad 1, groups=32), 32×32",
             lambda: nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), (1, 32, "H", "W"),
             HW, 32 * 32 * 32 * 1 * 9, "C·H·W·1·k² = 32·32·32·3²"),
        Case("dilated", "Conv2d(16, 16, 3, pad 2, dilation 2), 32×32",
             lambda: nn.Conv2d(16, 16, 3, padding=2, dilation=2, bias=False), (1, 16, "H", "W"),
             HW, 16 * 32 * 32 * 16 * 9, "C_out·H·W·C_in·k² = 16·32·32·16·3² (dilation: same taps)"),
        Case("F.conv2d", "class Stem: F.conv2d(x, self.weight) in forward, 16→16, 3×3, 32×32",
             Stem, (1, 16, "H", "W"), HW, 16 * 32 * 32 * 16 * 9,
             "16·32·32·16·3²"),
        Case("F.conv2d*", "the same module, class renamed StemConv",
             StemConv, (1, 16, "H", "W"), HW, 16 * 32 * 32 * 16 * 9, "16·32·32·16·3²"),
        Case("linear3d", "nn.Linear(64, 128) on 1×196×64 tokens",
             lambda: nn.Linear(64, 128), (1, "L", 64), L196, 196 * 64 * 128,
             "L·in·out = 196·64·128", "+ 196·128 = 25,088 bias adds"),
        Case("matmul", "torch.matmul(x, x.transpose(-1, -2)), x 1×196×64",
             MatMul, (1, "L", 64), L196, 196 * 196 * 64, "L²·E = 196²·64"),
        Case("mha", "nn.MultiheadAttention(64, 4 heads), 196 tokens",
             MHA, (1, "L", 64), L196,
             3 * 196 * 64 * 64 + 2 * 196 * 196 * 64 + 196 * 64 * 64,
             "3·L·E² in-proj + 2·L²·E scores+weighting + L·E² out-proj "
             "= 2,408,448 + 4,917,248 + 802,816"),
        Case("sdpa",
             "Linear qkv + F.scaled_dot_product_attention + Linear, 64, 4 heads, 196 tokens",
             SDPA, (1, "L", 64), L196,
             3 * 196 * 64 * 64 + 2 * 196 * 196 * 64 + 196 * 64 * 64, "same as mha"),
        Case("lstm", "nn.LSTM(32, 64), 50 steps", LSTM, (1, "T", 32), {"T": 50},
             50 * 4 * 64 * (32 + 64), "T·4·H·(I + H) = 50·4·64·(32 + 64) (gate products)",
             "+ gate nonlinearities and cell updates"),
        Case("shared", "one nn.Linear(64, 64) called twice, 196 tokens", Shared, (1, "L", 64),
             L196, 2 * 196 * 64 * 64, "2·L·64·64; params 64·64 + 64 = 4,160 (once)",
             "+ ReLU, biases"),
        Case("avgpool", "AdaptiveAvgPool2d(1), 64×32×32",
             lambda: nn.AdaptiveAvgPool2d(1), (1, 64, "H", "W"), HW, 0,
             "no products", "64·32·32 = 65,536 additions"),
        Case("batchnorm", "BatchNorm2d(64) (eval), 64×32×32",
             lambda: nn.BatchNorm2d(64), (1, 64, "H", "W"), HW, 0,
             "no contraction", "65,536 elements, one x·a + b each in eval (foldable into a conv)"),
        Case("upsample", "F.interpolate(×2, bilinear), 16×32×32 → 16×64×64",
             Interp, (1, 16, "H", "W"), HW, 0, "no contraction",
             "65,536 outputs, 4 weighted taps each"),
    ]
    try:
        import torchvision.models as tvm
    except Exception:  # noqa: BLE001
        return out
    from examples.zoo import unet_small

    im = {"H": 224, "W": 224}
    vit_gt, vit_how = vit_b_16_gt()
    swin_gt, swin_how = swin_t_gt()
    out += [
        Case("resnet50", "torchvision resnet50, 224×224", lambda: tvm.resnet50(weights=None),
             (1, 3, "H", "W"), im, module_sum, "module_sum (conv/linear closed forms)", real=True),
        Case("mobilenet_v2", "torchvision mobilenet_v2, 224×224",
             lambda: tvm.mobilenet_v2(weights=None), (1, 3, "H", "W"), im, module_sum,
             "module_sum", real=True),
        Case("vit_b_16", "torchvision vit_b_16, 224×224", lambda: tvm.vit_b_16(weights=None),
             (1, 3, "H", "W"), im, vit_gt, vit_how, real=True),
        Case("swin_t", "torchvision swin_t, 224×224", lambda: tvm.swin_t(weights=None),
             (1, 3, "H", "W"), im, swin_gt, swin_how, real=True),
        Case("unet_small", "examples.zoo unet_small (2 ConvTranspose2d + 1 Upsample), 224×224",
             unet_small, (1, 3, "H", "W"), im, module_sum,
             "module_sum (transposed conv over its input)", real=True),
    ]
    return out


# -- the tools ------------------------------------------------------------------------------------
def _quiet(fn: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn()


_PATCHABLE = (F, torch, torch.Tensor, nn.Module)


@contextlib.contextmanager
def _restore_patches(res: dict):
    """Undo every attribute a tool left changed on torch, torch.nn.functional, torch.Tensor and
    nn.Module (calflops and ptflops replace functions there and, when the model raises, calflops
    does not put them back: every later count by any tool that reads them is then wrong)."""
    saved = [(ns, dict(vars(ns))) for ns in _PATCHABLE]
    try:
        yield
    finally:
        left = []
        for ns, before in saved:
            now = vars(ns)
            for key in [k for k in now if k not in before]:
                value = now[key]
                delattr(ns, key)
                # an "unpatch" that sets the inherited method back on the subclass is harmless
                if not key.startswith("__") and getattr(ns, key, _MISSING) is not value:
                    left.append(key)
            for key, value in before.items():
                if now.get(key, _MISSING) is not value:
                    left.append(key)
                    setattr(ns, key, value)
        if left:
            res["leaked"] = sorted(set(left))


_MISSING = object()


def _import(name: str) -> Any:
    try:
        return _quiet(lambda: __import__(name, fromlist=["_"]))
    except Exception as exc:  # noqa: BLE001
        return exc


def run_rfgraph(m: nn.Module, x: torch.Tensor, case: Case) -> dict:
    import rfgraph

    a = rfgraph.analyze(m, case.shape, at=case.at)
    note = "" if a.complete else "not all symbolic: " + ", ".join(
        f"{n.name} measured" for n in a.incomplete_nodes)
    return {"macs": a.total_macs_at, "params": a.total_params, "note": note,
            "formula": str(a.total_macs)}


def run_torchinfo(m: nn.Module, x: torch.Tensor, case: Case) -> dict:
    import torchinfo

    s = torchinfo.summary(m, input_data=[x], verbose=0)
    return {"macs": int(s.total_mult_adds), "params": int(s.total_params)}


def run_thop(m: nn.Module, x: torch.Tensor, case: Case) -> dict:
    import thop

    macs, params = thop.profile(m, inputs=(x,), verbose=False)
    return {"macs": int(macs), "params": int(params)}


def _ptflops(backend: str) -> Callable[[nn.Module, torch.Tensor, Case], dict]:
    def run(m: nn.Module, x: torch.Tensor, case: Case) -> dict:
        import ptflops

        macs, params = ptflops.get_model_complexity_info(
            m, tuple(x.shape[1:]), input_constructor=lambda _res: x, as_strings=False,
            print_per_layer_stat=False, backend=backend)
        if macs is None:
            return {"error": "returned None (it printed the exception and gave up)"}
        return {"macs": int(macs), "params": int(params)}
    return run


def run_calflops(m: nn.Module, x: torch.Tensor, case: Case) -> dict:
    import calflops

    flops, macs, params = calflops.calculate_flops(
        m, args=[x], print_results=False, print_detailed=False, output_as_string=False)
    return {"macs": int(macs), "params": int(params), "flops": int(flops)}


def run_fvcore(m: nn.Module, x: torch.Tensor, case: Case) -> dict:
    from fvcore.nn import FlopCountAnalysis, parameter_count

    fca = FlopCountAnalysis(m, (x,))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    total = int(fca.total())
    skipped = {k: v for k, v in fca.unsupported_ops().items()}
    note = ("skipped: " + ", ".join(f"{k}×{v}" for k, v in sorted(skipped.items()))) if skipped \
        else ""
    return {"macs": total, "params": int(parameter_count(m)[""]), "note": note}


def _flop_counter(grad: bool) -> Callable[[nn.Module, torch.Tensor, Case], dict]:
    def run(m: nn.Module, x: torch.Tensor, case: Case) -> dict:
        with torch.set_grad_enabled(grad), FlopCounterMode(display=False) as c:
            m(x)
        ops = {str(k): v // 2 for k, v in c.get_flop_counts().get("Global", {}).items()}
        return {"macs": c.get_total_flops() // 2, "ops": ops}
    return run


def run_torchview(m: nn.Module, x: torch.Tensor, case: Case) -> dict:
    from torchview import draw_graph

    g = draw_graph(m, input_data=[x], save_graph=False, depth=1)
    seen, stack, outs, nodes = set(), list(g.root_container), [], 0
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        nodes += 1
        if getattr(node, "name", "") == "output-tensor":
            outs.append(tuple(node.tensor_shape))
        stack.extend(node.children)
    with torch.no_grad():
        ref = tuple(m(x).shape)
    return {"shape": outs, "shape_ok": outs == [ref], "nodes": nodes}


TOOLS: dict[str, Callable[[nn.Module, torch.Tensor, Case], dict]] = {
    "rfgraph": run_rfgraph,
    "torchinfo": run_torchinfo,
    "thop": run_thop,
    "ptflops-pytorch": _ptflops("pytorch"),
    "ptflops-aten": _ptflops("aten"),
    "calflops": run_calflops,
    "fvcore": run_fvcore,
    "FCM no_grad": _flop_counter(False),
    "FCM grad": _flop_counter(True),
    "torchview": run_torchview,
}
IMPORTS = {"rfgraph": "rfgraph", "torchinfo": "torchinfo", "thop": "thop",
           "ptflops-pytorch": "ptflops", "ptflops-aten": "ptflops", "calflops": "calflops",
           "fvcore": "fvcore.nn", "torchview": "torchview"}
DISTS = {"torch": "torch", "torchvision": "torchvision", "rfgraph": "rfgraph",
         "torchinfo": "torchinfo", "thop": "ultralytics-thop", "ptflops": "ptflops",
         "calflops": "calflops", "fvcore": "fvcore", "torchview": "torchview", "timm": "timm"}


def measure(case: Case) -> dict:
    torch.manual_seed(0)
    model = case.build().eval()
    x = torch.randn(case.concrete())
    n_params = sum(p.numel() for p in model.parameters())  # distinct parameters
    gt = case.gt(copy.deepcopy(model), x) if callable(case.gt) else case.gt
    row: dict[str, Any] = {"case": case.name, "what": case.what, "input": list(x.shape),
                           "gt_macs": gt, "gt_how": case.how, "gt_params": n_params,
                           "elementwise": case.elementwise, "tools": {}}
    for tool, fn in TOOLS.items():
        mod = _import(IMPORTS[tool]) if tool in IMPORTS else None
        if isinstance(mod, Exception):
            row["tools"][tool] = {"error": f"not importable: {type(mod).__name__}"}
            continue
        m = copy.deepcopy(model).eval()
        t0 = time.perf_counter()
        leak: dict = {}
        try:
            with _restore_patches(leak):
                res = _quiet(functools.partial(fn, m, x.clone(), case))
        except Exception as exc:  # noqa: BLE001
            msg = str(exc).strip().splitlines()[0][:90] if str(exc).strip() else ""
            res = {"error": f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__}
        res["seconds"] = round(time.perf_counter() - t0, 3)
        if leak:
            res["leaked"] = leak["leaked"]
            res["note"] = (res.get("note", "") + f" left {len(leak['leaked'])} torch functions "
                           f"patched (restored by this script): "
                           + ", ".join(leak["leaked"][:6])).strip()
        row["tools"][tool] = res
    return row


# -- FlopCounterMode backward probe ---------------------------------------------------------------
def backward_probe() -> dict:
    """Forward + backward MACs of a grouped conv: FlopCounterMode against the closed form."""
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 64, 3, padding=1, groups=4, bias=False)
    x = torch.randn(1, 32, 32, 32, requires_grad=True)
    with FlopCounterMode(display=False) as c:
        conv(x).sum().backward()
    ops = {str(k): v // 2 for k, v in c.get_flop_counts()["Global"].items()}
    fwd = 64 * 32 * 32 * 8 * 9
    return {"torch": torch.__version__, "forward": ops.get("aten.convolution"),
            "backward": ops.get("aten.convolution_backward"), "gt_forward": fwd,
            "gt_backward": 2 * fwd, "how": "grad_input + grad_weight = 2 × 64·32·32·8·3²"}


def calflops_leak_probe() -> dict:
    """calflops on a model without parameters raises; count a grouped conv after that, in the same
    process, without repairing anything in between (this script otherwise restores torch)."""
    try:
        import calflops
    except Exception as exc:  # noqa: BLE001
        return {"error": f"calflops not importable: {type(exc).__name__}"}

    def count(m: nn.Module, x: torch.Tensor) -> int:
        return int(_quiet(lambda: calflops.calculate_flops(
            m, args=[x], print_results=False, print_detailed=False,
            output_as_string=False))[1])

    conv = nn.Conv2d(32, 64, 3, padding=1, groups=4, bias=False).eval()
    x = torch.randn(1, 32, 32, 32)
    out: dict[str, Any] = {"gt": 64 * 32 * 32 * 8 * 9}
    leak: dict = {}
    with _restore_patches(leak):
        out["before"] = count(conv, x)
        counts = []
        for _ in range(2):
            try:
                count(MatMul(), torch.randn(1, 196, 64))
                out["raised"] = "nothing"
            except Exception as exc:  # noqa: BLE001
                out["raised"] = type(exc).__name__
            counts.append(count(conv, x))
        out["after_one"], out["after_two"] = counts
    out["leaked"] = len(leak.get("leaked", []))
    return out


# -- formatting -----------------------------------------------------------------------------------
MAC_TOOLS = ("rfgraph", "torchinfo", "thop", "ptflops-pytorch", "ptflops-aten", "calflops",
             "fvcore", "FCM no_grad", "FCM grad")
PARAM_TOOLS = ("rfgraph", "torchinfo", "thop", "ptflops-pytorch", "ptflops-aten", "calflops",
               "fvcore")


def _cell(res: dict, key: str, gt: int | None) -> str:
    if "error" in res:
        return f"error: {res['error']}"
    v = res.get(key)
    if v is None:
        return "—"
    if gt is None:
        return f"{v:,}"
    if v == gt:
        return f"**{v:,}** ✓"
    if gt == 0:
        return f"{v:,}"
    return f"{v:,} ({_ratio(v / gt)}×)"


def _ratio(r: float) -> str:
    """Three significant digits, or as many decimals as it takes to show a ratio is not 1."""
    if abs(r - 1) >= 0.01:
        return f"{r:.3g}" if r < 1 else f"{r:.3f}".rstrip("0").rstrip(".")
    digits = max(3, -math.floor(math.log10(abs(r - 1))) + 1)
    return f"{r:.{digits}f}".rstrip("0")


def markdown(rows: list[dict], probes: list[dict], leak: dict | None = None) -> str:
    out = []
    head = "| case | ground truth | " + " | ".join(MAC_TOOLS) + " |"
    out += ["### MACs", "", head, "|" + "---|" * (len(MAC_TOOLS) + 2)]
    for r in rows:
        cells = [_cell(r["tools"][t], "macs", r["gt_macs"]) for t in MAC_TOOLS]
        out.append(f"| {r['case']} | {r['gt_macs']:,} | " + " | ".join(cells) + " |")
    out += ["", "### Parameters", "",
            "| case | sum(numel) | " + " | ".join(PARAM_TOOLS) + " |",
            "|" + "---|" * (len(PARAM_TOOLS) + 2)]
    for r in rows:
        cells = [_cell(r["tools"][t], "params", r["gt_params"]) for t in PARAM_TOOLS]
        out.append(f"| {r['case']} | {r['gt_params']:,} | " + " | ".join(cells) + " |")
    out += ["", "### Cases and ground truth", "", "| case | model, input | ground truth | "
            "elementwise work (0 MACs here) | rfgraph's MACs formula |", "|---|---|---|---|---|"]
    for r in rows:
        f = r["tools"]["rfgraph"].get("formula", "")
        f = f if len(f) <= 70 else f[:67] + "..."
        out.append(f"| {r['case']} | {r['what']} | {r['gt_how']} | {r['elementwise']} | "
                   f"`{f}` |")
    out += ["", "### torchview (shapes only)", "", "| case | output shape | equals torch | nodes |",
            "|---|---|---|---|"]
    for r in rows:
        tv = r["tools"]["torchview"]
        if "error" in tv:
            out.append(f"| {r['case']} | error: {tv['error']} | | |")
        else:
            out.append(f"| {r['case']} | {tv['shape']} | {tv['shape_ok']} | {tv['nodes']} |")
    out += ["", "### Notes per cell", ""]
    for r in rows:
        for t, res in r["tools"].items():
            if res.get("note"):
                out.append(f"- {r['case']} / {t}: {res['note']}")
        fc = r["tools"]["FCM no_grad"].get("ops")
        fg = r["tools"]["FCM grad"].get("ops")
        out.append(f"- {r['case']} / FlopCounterMode MACs per op: no_grad {fc}, grad {fg}")
    out += ["", "### FlopCounterMode backward of a grouped conv", "",
            "Conv2d(32, 64, 3, padding=1, groups=4), input 1×32×32×32 requiring grad, "
            "`conv(x).sum().backward()`:", "",
            "| torch | forward MACs | backward MACs | closed form backward | ratio |",
            "|---|---|---|---|---|"]
    for p in probes:
        if "error" in p:
            out.append(f"| {p.get('python', '?')} | error: {p['error']} | | | |")
            continue
        ratio = p["backward"] / p["gt_backward"] if p["backward"] else float("nan")
        out.append(f"| {p['torch']} | {p['forward']:,} | {p['backward']:,} | "
                   f"{p['gt_backward']:,} ({p['how']}) | {ratio:.3g}× |")
    if leak:
        out += ["", "### calflops after a failed call", ""]
        if "error" in leak:
            out.append(f"error: {leak['error']}")
        else:
            out += [f"calflops on the matmul model (no parameters) raises {leak['raised']} and "
                    f"leaves {leak['leaked']} torch functions patched. The grouped conv "
                    f"(ground truth {leak['gt']:,} MACs), counted by calflops in the same "
                    f"process: {leak['before']:,} before, {leak['after_one']:,} after one failed "
                    f"call, {leak['after_two']:,} after two."]
    out += ["", "### Seconds per call", "", "| case | " + " | ".join(TOOLS) + " |",
            "|" + "---|" * (len(TOOLS) + 1)]
    for r in rows:
        out.append(f"| {r['case']} | " + " | ".join(
            str(r["tools"][t].get("seconds", "")) for t in TOOLS) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--json", help="write the raw numbers to this file")
    ap.add_argument("--backward-python", action="append", default=[],
                    help="another interpreter to run the backward probe with (repeatable)")
    ap.add_argument("--probe-backward", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe_backward:
        print(json.dumps(backward_probe()))
        return
    selected = cases()
    if args.only:
        names = set(args.only.split(","))
        selected = [c for c in selected if c.name in names]
    t0 = time.perf_counter()
    rows = []
    for case in selected:
        rows.append(measure(case))
        print(f"{case.name}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    probes = [backward_probe()]
    for py in args.backward_python:
        try:
            got = subprocess.run([py, __file__, "--probe-backward"], capture_output=True,
                                 text=True, timeout=120, check=True)
            probes.append(json.loads(got.stdout.strip().splitlines()[-1]))
        except Exception as exc:  # noqa: BLE001
            probes.append({"python": py, "error": f"{type(exc).__name__}: {exc}"[:120]})
    leak = calflops_leak_probe()
    versions = {k: _version(v) for k, v in DISTS.items()}
    header = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "python": platform.python_version(), "versions": versions,
              "torch_threads": torch.get_num_threads(),
              "seconds": round(time.perf_counter() - t0, 1)}
    print(f"<!-- {json.dumps(header)} -->")
    print(markdown(rows, probes, leak))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"header": header, "rows": rows,
                                               "backward": probes, "calflops_leak": leak},
                                              indent=1) + "\n")


if __name__ == "__main__":
    main()
