"""Seed §2.1 (2-D convolution: 2.1.1 single channel, 2.1.2 multi-channel), reproduced with rfgraph.

Single channel: one kernel slides over one plane. Multi-channel (RGB): each input channel is
convolved with its own slice of the kernel and the three results are summed element-wise.

This script prints, next to what torch computes:

* the single-channel conv ``Conv2d(1, 1, 3)``: rfgraph's table and MAC formula 9·(H−2)·(W−2);
* the RGB conv: torch's output equals the sum of the three per-channel convolutions;
* the MAC formula C_out·H_out·W_out·(C_in/g)·k_h·k_w from rfgraph for ``Conv2d(3, 16, 3,
  padding=1)`` and for a strided, grouped conv, against ``torch.utils.flop_counter`` (MACs =
  FLOPs / 2) at two input sizes.

Run: ``python examples/seed/03_conv2d_single_multi_channel.py`` (from any directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402
from rfgraph.symbolic import format_expr  # noqa: E402

SIZES = ((32, 32), (17, 23))


def torch_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape))
    return counter.get_total_flops() // 2


def check(name: str, conv: nn.Conv2d) -> dict:
    """rfgraph's formula for one conv, its value at SIZES and torch's count there."""
    a = rfgraph.analyze(conv, (1, conv.in_channels, "H", "W"))
    print(a, "\n")
    k_h, k_w = conv.kernel_size
    c_in, c_out, g = conv.in_channels, conv.out_channels, conv.groups
    h_out, w_out = a.output.tensor.shape[2:]
    factored = format_expr(sympy.factor(a.total_macs))
    closed = sympy.expand(c_out * h_out * w_out * sympy.Rational(c_in, g) * k_h * k_w)
    same = sympy.expand(a.total_macs - closed) == 0
    print(f"{name}: H_out = {a.text(h_out)}, W_out = {a.text(w_out)}")
    print(f"  C_out·H_out·W_out·(C_in/g)·k_h·k_w = {c_out}·H_out·W_out·({c_in}/{g})·{k_h}·{k_w}"
          f"; rfgraph MACs = {factored} (the same formula: {same})")
    values = {}
    for h, w in SIZES:
        ours = a.evaluate(H=h, W=w).total_macs_at
        theirs = torch_macs(conv, (1, c_in, h, w))
        values[(h, w)] = (ours, theirs)
        print(f"  at {h}×{w}: rfgraph {ours:,}  torch FlopCounterMode/2 {theirs:,}")
    print()
    return {"formula": a.text(a.total_macs), "factored": factored, "closed_form": same,
            "h_out": a.text(h_out), "w_out": a.text(w_out), "params": a.total_params, "at": values,
            "rf": tuple(int(r.size) for r in a.field(a.output))}


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    torch.manual_seed(0)
    single = check("single channel", nn.Conv2d(1, 1, 3))

    # §2.1.2: per-channel convolutions, summed element-wise
    rgb = nn.Conv2d(3, 1, 3, bias=False)
    x = torch.rand(1, 3, 8, 8)
    per_channel = [F.conv2d(x[:, c:c + 1], rgb.weight[:, c:c + 1]) for c in range(3)]
    summed = torch.allclose(rgb(x), sum(per_channel), atol=1e-6)
    print(f"RGB: Conv2d(3, 1, 3)(x) == Σ_c conv(x[c], w[c]) (torch): {summed}\n")

    multi = check("RGB → 16", nn.Conv2d(3, 16, 3, padding=1))
    strided = check("strided, grouped", nn.Conv2d(4, 8, (3, 5), stride=2, padding=1, groups=2))
    return {"single": single, "rgb_sum_of_channels": summed, "multi": multi,
            "strided": strided}


if __name__ == "__main__":
    main()
