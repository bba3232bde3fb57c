"""Seed §2.4 (dilated / atrous convolution), reproduced with rfgraph.

A dilation rate L inserts L − 1 gaps between the kernel taps (L = 1 is a standard conv), which
enlarges the receptive field at the same number of weights. The seed's listing:
``Conv2d(1, 1, (3, 3), stride=1, padding=0, dilation=3)`` on a 1×1×32×32 input (integers
0..254, ``torch.random.manual_seed(0)``) prints ``torch.Size([1, 1, 26, 26])``.

This script prints, next to what torch computes:

* the seed's output shape from torch and rfgraph's table: 26×26, field 7×7, 10 params;
* the size formula H − 6 = H − d·(k − 1), and the field d·(k − 1) + 1 for L = 1, 2, 3, 4;
* that the dilated 3×3 kernel is the 7×7 kernel with zeros between the taps (torch).

Run: ``python examples/seed/06_dilated_conv.py`` (from any directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402


class Network(nn.Module):
    """The seed's model."""

    def __init__(self, dilation: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels=1, out_channels=1, kernel_size=(3, 3), stride=1,
                              padding=0, dilation=dilation)

    def forward(self, x):
        x = self.conv(x)
        return x


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    torch.random.manual_seed(0)
    input = torch.randint(0, 255, (1, 1, 32, 32), dtype=torch.float32)
    model = Network()
    output = model(input)
    print("torch:", output.shape, "\n")

    a = rfgraph.analyze(model, (1, 1, 32, 32))
    print(a, "\n")
    sym = rfgraph.analyze(model, (1, 1, "H", "W"))
    formula = sym.text(sym.output.tensor.shape[2])
    print(f"rfgraph H_out = {formula}  (= H - d·(k - 1) with d = 3, k = 3)")

    fields = {}
    for d in (1, 2, 3, 4):
        s = rfgraph.analyze(Network(d), (1, 1, "H", "W"))
        fields[d] = int(s.field(s.output)[0].size)
    print("field per rate L (rfgraph):", ", ".join(f"L={d}: {r}×{r}" for d, r in fields.items()),
          " (= L·(3 - 1) + 1)")

    # the dilated kernel is the 7×7 kernel with L - 1 = 2 zeros between the taps
    w = model.conv.weight
    big = torch.zeros(1, 1, 7, 7)
    big[..., ::3, ::3] = w
    spread = torch.allclose(F.conv2d(input, big, model.conv.bias), output, rtol=1e-5,
                            atol=1e-3)
    print(f"dilated 3×3 == 7×7 with zeros between the taps (torch): {spread}")

    rf = a.field(a.output)
    return {
        "torch_shape": tuple(output.shape),
        "shape": tuple(a.int_of(s) for s in a.output.tensor.shape),
        "formula": formula,
        "rf": (int(rf[0].size), int(rf[1].size)),
        "rf_by_rate": fields,
        "params": a.total_params,
        "macs": a.int_of(a.total_macs),
        "equals_spread_kernel": spread,
    }


if __name__ == "__main__":
    main()
