"""Seed §1 (pooling) and its average-pooling listing, reproduced with rfgraph.

The seed runs ``nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=False)`` on a 1×64×224×224
*integer* tensor (``torch.randint(0, 225, ...)``, int64, ``torch.random.manual_seed(0)``) and
prints ``output[0][0][:5, :5]``.

This script prints, next to what torch computes:

* the seed's output (int64: torch truncates the mean) and rfgraph's table for the layer
  (rfgraph works from the shape, so the dtype does not matter to it): 1×64×112×112, 0 params;
* the output size with ``ceil_mode`` both ways on an odd size (225 → 112 or 113);
* ``count_include_pad``: with ``padding=1`` it changes the values at the border (the divisor,
  9 or the count of real pixels) but not the output size nor the field, which rfgraph gives
  identically for both settings.

Run: ``python examples/seed/02_average_pooling.py`` (from any directory).
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


def seed_input() -> torch.Tensor:
    torch.random.manual_seed(0)
    return torch.randint(0, 225, (1, 64, 224, 224))


def _row(a: rfgraph.Analysis) -> tuple[str, str, str, str]:
    """(shape, RF, jump, offset) of the output node as rfgraph prints them."""
    f = a.field(a.output)
    return ("×".join(a.text(s) for s in a.output.tensor.shape),
            "×".join(a.text(r.size) for r in f), "×".join(a.text(r.jump) for r in f),
            "×".join(a.text(r.offset) for r in f))


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    x = seed_input()
    pool = nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=False)
    output = pool(x)
    print(f"torch: input dtype {x.dtype}, output dtype {output.dtype}, shape {tuple(output.shape)}")
    print("output[0][0][:5, :5] =\n", output[0, 0, :5, :5], "\n")

    a = rfgraph.analyze(pool, tuple(x.shape))
    print(a, "\n")
    shape = tuple(a.int_of(s) for s in a.output.tensor.shape)

    # ceil_mode on an odd size
    odd = {}
    for ceil in (False, True):
        p = nn.AvgPool2d(2, 2, ceil_mode=ceil)
        s = rfgraph.analyze(p, (1, 64, "H", "W"))
        odd[ceil] = (s.text(s.output.tensor.shape[2]),
                     s.evaluate(H=225, W=225).int_of(s.output.tensor.shape[2]),
                     p(torch.zeros(1, 1, 225, 225)).shape[2])
        print(f"ceil_mode={ceil!s:5}: rfgraph H_out = {odd[ceil][0]:13} at H=225: "
              f"{odd[ceil][1]} (torch {odd[ceil][2]})")

    # count_include_pad: the divisor at the border, nothing else
    ones = torch.ones(1, 1, 4, 4)
    pad = {}
    for include in (True, False):
        p = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=include)
        s = rfgraph.analyze(p, (1, 1, "H", "W"))
        corner = p(ones)[0, 0, 0, 0].item()
        pad[include] = {"corner": corner, "row": _row(s)}
        print(f"count_include_pad={include!s:5}: torch corner of avg(ones) = {corner:.4f}; "
              "rfgraph shape, RF, jump, offset = " + ", ".join(_row(s)))
    print("(the setting changes the divisor at the border only: same shape and field)")

    return {
        "torch_shape": tuple(output.shape),
        "shape": shape,
        "dtype": str(output.dtype),
        "output_00": output[0, 0, :5, :5].tolist(),
        "params": a.total_params,
        "macs": a.int_of(a.total_macs),
        "rf": tuple(int(r.size) for r in a.field(a.output)),
        "ceil_formulas": {k: v[0] for k, v in odd.items()},
        "at_225": {k: v[1] for k, v in odd.items()},
        "count_include_pad_corner": {k: v["corner"] for k, v in pad.items()},
        "count_include_pad_rows": {k: v["row"] for k, v in pad.items()},
    }


if __name__ == "__main__":
    main()
