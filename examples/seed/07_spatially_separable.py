"""Seed §2.5.1 (spatially separable convolution), reproduced with rfgraph.

A 3×3 kernel that is an outer product is split into a 1×3 conv followed by a 3×1 conv. The
seed's listing sets the 3×3 weights [[0.15, 0.20, 0.25], [0.21, 0.28, 0.35], [0.24, 0.32, 0.40]]
(= [0.5, 0.7, 0.8]ᵀ · [0.3, 0.4, 0.5]) on ``Network`` and the 1×3 weights [0.3, 0.4, 0.5] then
the 3×1 weights [0.5, 0.7, 0.8] on ``Network2``, runs both on a 1×1×32×32 input (integers
0..254, ``torch.random.manual_seed(0)``) and prints ``output[:, :, :5, :5]`` of each: they match.

This script prints, next to what torch computes:

* the two outputs and ``torch.allclose``;
* rfgraph's tables: both give 30×30 with the same 3×3 field; 9 vs 6 parameters;
* the MAC formulas 9·(H−2)·(W−2) vs 3·H·(W−2) + 3·(H−2)·(W−2) (the 1×3 runs on the full
  height), their ratio at 32×32 and its limit 2/3;
* that rfgraph's ``advise`` recognises the (1×3, 3×1) pair.

Run: ``python examples/seed/07_spatially_separable.py`` (from any directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

import sympy
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402
from rfgraph.advise import variants  # noqa: E402
from rfgraph.symbolic import axis_symbol, format_expr  # noqa: E402


class Network(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels=1, out_channels=1, kernel_size=(3, 3), bias=False)

    def forward(self, x):
        x = self.conv(x)
        return x


class Network2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels=1, out_channels=1, kernel_size=(1, 3), bias=False)
        self.conv2 = nn.Conv2d(in_channels=1, out_channels=1, kernel_size=(3, 1), bias=False)

    def forward(self, x):
        x = self.conv(x)
        x = self.conv2(x)
        return x


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    torch.random.manual_seed(0)
    input = torch.randint(0, 255, (1, 1, 32, 32), dtype=torch.float32)
    model1 = Network()
    model2 = Network2()
    model1.conv.weight.data = torch.tensor([[[[0.1500, 0.2000, 0.2500],
                                              [0.2100, 0.2800, 0.3500],
                                              [0.2400, 0.3200, 0.4000]]]])
    model2.conv.weight.data = torch.tensor([[[[0.3, 0.4, 0.5]]]])
    model2.conv2.weight.data = torch.tensor([[[[0.5], [0.7], [0.8]]]])
    with torch.no_grad():
        output1 = model1(input)
        output2 = model2(input)
    print("torch output1[:, :, :2, :5] =", output1[:, :, :2, :5])
    print("torch output2[:, :, :2, :5] =", output2[:, :, :2, :5])
    same = torch.allclose(output1, output2)
    print(f"allclose: {same} (largest difference {(output1 - output2).abs().max().item():.1e})\n")

    a = rfgraph.analyze(model1, (1, 1, "H", "W"))
    b = rfgraph.analyze(model2, (1, 1, "H", "W"))
    print(a, "\n")
    print(b, "\n")
    macs_a, macs_b = sympy.factor(a.total_macs), b.total_macs
    ratio = sympy.cancel(macs_b / macs_a)
    h = axis_symbol("H")
    limit = sympy.limit(ratio.subs(axis_symbol("W"), h), h, sympy.oo)
    at32 = a.evaluate(H=32, W=32).total_macs_at, b.evaluate(H=32, W=32).total_macs_at
    print(f"params: 3×3 {a.total_params}, 1×3 + 3×1 {b.total_params}")
    per_layer = " + ".join(format_expr(sympy.factor(b[n].macs)) for n in ("conv", "conv2"))
    print(f"MACs:   3×3 {format_expr(macs_a)}, 1×3 + 3×1 {per_layer} = "
          f"{format_expr(sympy.factor(macs_b))}")
    print(f"        at 32×32: {at32[0]:,} vs {at32[1]:,} (×{at32[1] / at32[0]:.3f}); "
          f"ratio -> {limit} for large H = W")
    found = {name: v.label for name, v in variants(b).items()}
    print("rfgraph advise recognises:", found)

    fa, fb = a.field(a.output), b.field(b.output)
    return {
        "allclose": same,
        "torch_shapes": (tuple(output1.shape), tuple(output2.shape)),
        "shapes": (tuple(a.text(s) for s in a.output.tensor.shape),
                   tuple(b.text(s) for s in b.output.tensor.shape)),
        "params": (a.total_params, b.total_params),
        "macs": (format_expr(macs_a), format_expr(macs_b)),
        "macs_32": at32,
        "macs_ratio_limit": str(limit),
        "rf": (tuple(int(r.size) for r in fa), tuple(int(r.size) for r in fb)),
        "variants": found,
    }


if __name__ == "__main__":
    main()
