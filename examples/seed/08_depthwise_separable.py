"""Seed §2.5.2 (depthwise separable convolution), reproduced with rfgraph.

A depthwise conv (``groups`` = channels: one kernel per input channel) followed by a 1×1
pointwise conv. The seed's listing: ``Network`` is ``Conv2d(8, 8, (3, 3), bias=False)``,
``Network2`` is ``Conv2d(8, 8, (3, 3), groups=8, bias=False)`` then ``Conv2d(8, 8, (1, 1),
bias=False)``, run on a 1×8×32×32 input; it prints the parameter shapes, with the comments
"8*8*3*3 = 576" and "8*1*3*3 + 8*8 = 136".

This script prints, next to what torch computes:

* the seed's ``named_parameters`` shapes and their ``numel`` sums (torch);
* rfgraph's tables: 576 vs 136 parameters, the same 3×3 field, MACs formulas;
* the MAC ratio as a formula: 17/72 here, ``1/C_out + 1/(k_h·k_w)`` in general (from
  ``rfgraph.advise``), and the recognised (depthwise, pointwise) pair.

Run: ``python examples/seed/08_depthwise_separable.py`` (from any directory).
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
from rfgraph.advise import DEPTHWISE, alternatives, variants  # noqa: E402
from rfgraph.symbolic import format_expr  # noqa: E402


class Network(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels=8, out_channels=8, kernel_size=(3, 3), bias=False)

    def forward(self, x):
        x = self.conv(x)
        return x


class Network2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels=8, out_channels=8, kernel_size=(3, 3), groups=8,
                              bias=False)
        self.conv2 = nn.Conv2d(in_channels=8, out_channels=8, kernel_size=(1, 1), bias=False)

    def forward(self, x):
        x = self.conv(x)
        x = self.conv2(x)
        return x


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    torch.random.manual_seed(0)
    input = torch.randint(0, 225, (1, 8, 32, 32), dtype=torch.float32)
    model1, model2 = Network(), Network2()
    output1, output2 = model1(input), model2(input)
    numel = []
    for label, model in (("model1", model1), ("model2", model2)):
        shapes = [f"{name} {tuple(p.shape)}" for name, p in model.named_parameters()]
        numel.append(sum(p.numel() for p in model.parameters()))
        print(f"torch {label}: {', '.join(shapes)} -> {numel[-1]} params")
    print(f"torch outputs: {tuple(output1.shape)}, {tuple(output2.shape)}\n")

    a = rfgraph.analyze(model1, (1, 8, "H", "W"))
    b = rfgraph.analyze(model2, (1, 8, "H", "W"))
    print(a, "\n")
    print(b, "\n")
    ratio = sympy.cancel(b.total_macs / a.total_macs)
    general = next(alt for alt in alternatives(a, "conv").alternatives if alt.name == DEPTHWISE)
    print(f"params: standard {a.total_params} (8·8·3·3), separable {b.total_params} "
          "(8·1·3·3 + 8·8)")
    print(f"MACs: {format_expr(sympy.factor(a.total_macs))} vs "
          f"{format_expr(sympy.factor(b.total_macs))}: ratio {format_expr(ratio)} "
          f"= {general.macs_ratio_formula} with C_out = 8, k = 3 (rfgraph.advise)")
    found = {name: v.label for name, v in variants(b).items()}
    print("rfgraph advise recognises:", found)

    return {
        "torch_numel": tuple(numel),
        "params": (a.total_params, b.total_params),
        "macs": (format_expr(a.total_macs), format_expr(b.total_macs)),
        "macs_32": (a.evaluate(H=32, W=32).total_macs_at, b.evaluate(H=32, W=32).total_macs_at),
        "macs_ratio": format_expr(ratio),
        "macs_ratio_formula": general.macs_ratio_formula,
        "params_ratio_formula": general.params_ratio_formula,
        "rf": (tuple(int(r.size) for r in a.field(a.output)),
               tuple(int(r.size) for r in b.field(b.output))),
        "variants": found,
    }


if __name__ == "__main__":
    main()
