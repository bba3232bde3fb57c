"""Seed §2.2 (3-D convolution), reproduced with rfgraph.

A 3-D kernel slides in three directions: over the frames of a video or the slices of a medical
volume as well as over height and width. The input gains a depth axis D: (N, C, D, H, W).

This script analyses a small C3D-style stack on the input ``(1, 3, "D", "H", "W")``:
``Conv3d(3, 8, 3, padding=1)`` → ``MaxPool3d((1, 2, 2))`` (pool space only) →
``Conv3d(8, 16, 3, padding=1)`` → ``MaxPool3d(2)``, and prints, next to what torch computes:

* rfgraph's table: every shape, field, jump and offset as formulas in D, H, W;
* the MACs formula and its value at two clip sizes, and the output shape there against
  torch's (tests/test_examples_seed.py also counts torch's FLOPs).

Run: ``python examples/seed/04_conv3d.py`` (from any directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402

CLIPS = ({"D": 16, "H": 56, "W": 56}, {"D": 7, "H": 13, "W": 10})


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(),
        nn.MaxPool3d((1, 2, 2)),
        nn.Conv3d(8, 16, 3, padding=1), nn.ReLU(),
        nn.MaxPool3d(2),
    )


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    net = model()
    a = rfgraph.analyze(net, (1, 3, "D", "H", "W"))
    print(a, "\n")
    out = a.output
    field = a.field(out)
    print("output D×H×W:", " × ".join(a.text(s) for s in out.tensor.shape[2:]))
    print("RF (D, H, W):", [a.text(r.size) for r in field],
          " jump:", [a.text(r.jump) for r in field],
          " offset:", [a.text(r.offset) for r in field])

    at = {}
    for sizes in CLIPS:
        e = a.evaluate(**sizes)
        shape = tuple(e.int_of(s) for s in e.output.tensor.shape)
        x = torch.zeros(1, 3, sizes["D"], sizes["H"], sizes["W"])
        with torch.no_grad():
            y = net(x)
        at[tuple(sizes.values())] = {"shape": shape, "torch_shape": tuple(y.shape),
                                     "macs": e.total_macs_at}
        print(f"at D×H×W = {sizes['D']}×{sizes['H']}×{sizes['W']}: rfgraph {shape}, "
              f"MACs {e.total_macs_at:,}; torch {tuple(y.shape)}")
    return {
        "out_dims": tuple(a.text(s) for s in out.tensor.shape[2:]),
        "rf": tuple(int(r.size) for r in field),
        "jump": tuple(int(r.jump) for r in field),
        "offset": tuple(int(r.offset) for r in field),
        "macs": a.text(a.total_macs),
        "params": a.total_params,
        "at": at,
    }


if __name__ == "__main__":
    main()
