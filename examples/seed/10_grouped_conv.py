"""Seed §2.7 (grouped convolution), reproduced with rfgraph.

AlexNet (2012) split its convolutions into two groups, one per GPU: each group convolves half of
the input channels into half of the output channels. With g groups a conv has C_out·(C_in/g)·k²
weights and does 1/g of the multiply-accumulates.

This script prints, next to what torch computes:

* AlexNet's second conv, ``Conv2d(96, 256, 5, padding=2)``, with and without ``groups=2``: rfgraph's
  params and MAC formulas (the grouped one is half), torch's ``numel``;
* that the grouped conv is two independent convs on the channel halves, concatenated (torch);
* ``Conv2d(64, 64, 3, padding=1, bias=False)`` for g = 1, 2, 4, 8, 16, 64: params 36864/g and
  MACs 36864·H·W/g from rfgraph, the ratio to g = 1 exactly 1/g, the spatial field unchanged.

Run: ``python examples/seed/10_grouped_conv.py`` (from any directory).
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
from rfgraph.symbolic import format_expr  # noqa: E402

GROUPS = (1, 2, 4, 8, 16, 64)


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    torch.manual_seed(0)
    alexnet = {}
    for g in (1, 2):
        conv = nn.Conv2d(96, 256, 5, padding=2, groups=g)
        a = rfgraph.analyze(conv, (1, 96, "H", "W"))
        alexnet[g] = {"params": a.total_params, "macs": a.text(a.total_macs),
                      "torch_numel": sum(p.numel() for p in conv.parameters()),
                      "macs_27": a.evaluate(H=27, W=27).total_macs_at}
        print(f"AlexNet conv2, groups={g}: rfgraph params {a.total_params:,} (torch numel "
              f"{alexnet[g]['torch_numel']:,}), MACs {alexnet[g]['macs']} "
              f"= {alexnet[g]['macs_27']:,} at 27×27")
        if g == 2:
            print(a, "\n")
    grouped = conv  # the last one: groups=2

    # the two "GPUs": each half of the weights on its half of the channels
    x = torch.rand(1, 96, 13, 13)
    w, b = grouped.weight, grouped.bias
    halves = [nn.functional.conv2d(x[:, 48 * i:48 * (i + 1)], w[128 * i:128 * (i + 1)],
                                   b[128 * i:128 * (i + 1)], padding=2) for i in range(2)]
    with torch.no_grad():
        split = torch.allclose(grouped(x), torch.cat(halves, 1), atol=1e-5)
    print(f"groups=2 == two convs on the channel halves, concatenated (torch): {split}\n")

    table = {}
    base = None
    print("Conv2d(64, 64, 3, padding=1, bias=False), rfgraph:")
    for g in GROUPS:
        a = rfgraph.analyze(nn.Conv2d(64, 64, 3, padding=1, groups=g, bias=False),
                            (1, 64, "H", "W"))
        base = base or a
        ratio = sympy.cancel(a.total_macs / base.total_macs)
        table[g] = {"params": a.total_params, "macs": a.text(a.total_macs),
                    "ratio": format_expr(ratio),
                    "rf": tuple(int(r.size) for r in a.field(a.output))}
        print(f"  g={g:2}: params {a.total_params:6,}  MACs {table[g]['macs']:11}  "
              f"×{table[g]['ratio']:5} field {table[g]['rf']}")
    return {"alexnet": alexnet, "split_equals_grouped": split, "groups": table}


if __name__ == "__main__":
    main()
