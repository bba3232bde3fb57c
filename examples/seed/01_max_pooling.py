"""Seed §1 (pooling, 1.1-1.6) and its max-pooling listing, reproduced with rfgraph.

The seed runs ``nn.MaxPool2d(kernel_size=2, stride=2, return_indices=True)`` on a
1×64×224×224 float tensor of integers 0..224 (``torch.random.manual_seed(0)``) and prints
the input, the 112×112 output and the indices (flat positions in each 224×224 plane).

This script prints, next to what torch computes:

* rfgraph's table for the seed's layer: 1×64×112×112, field 2×2, jump 2, 0 parameters;
* that every index torch returns lies inside rfgraph's field of its output element (§1.2);
* the symbolic output size for ``ceil_mode`` False and True, with padding and dilation (§1.2-1.4),
  checked against torch at H = 5..40;
* that channels are pooled separately: 64 in, 64 out, no sum over channels (§1.5);
* why pool (§1.6): a 3×3 conv after the pool costs 1/4 of the same conv before it, from
  rfgraph's MAC formulas.

Run: ``python examples/seed/01_max_pooling.py`` (from any directory).
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

# (label, MaxPool2d keyword arguments): the seed's layer, then padding and dilation (§1.2-1.4)
CONFIGS = [
    ("k=2 s=2 (seed)", {"kernel_size": 2, "stride": 2}),
    ("k=3 s=2", {"kernel_size": 3, "stride": 2}),
    ("k=3 s=2 p=1", {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("k=3 s=2 d=2", {"kernel_size": 3, "stride": 2, "dilation": 2}),
]


class SeedPool(nn.Module):
    """The seed's layer; forward returns (values, indices) as the seed unpacks them."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2, return_indices=True)

    def forward(self, x):
        output, indices = self.pool(x)
        return output, indices


def seed_input() -> torch.Tensor:
    torch.random.manual_seed(0)
    return torch.randint(0, 225, (1, 64, 224, 224), dtype=torch.float32)


def size_formulas() -> dict[str, tuple[str, str]]:
    """Per config: rfgraph's output height formula with ceil_mode False and True."""
    out = {}
    for label, kw in CONFIGS:
        pair = []
        for ceil in (False, True):
            a = rfgraph.analyze(nn.MaxPool2d(**kw, ceil_mode=ceil), (1, 64, "H", "W"))
            pair.append(a.text(a.output.tensor.shape[2]))
        out[label] = (pair[0], pair[1])
    return out


def formulas_match_torch(sizes=range(5, 41)) -> bool:
    """rfgraph's formulas (evaluated by rfgraph) against torch's output height."""
    for _, kw in CONFIGS:
        for ceil in (False, True):
            pool = nn.MaxPool2d(**kw, ceil_mode=ceil)
            a = rfgraph.analyze(pool, (1, 1, "H", "W"))
            for h in sizes:
                got = a.evaluate(H=h, W=h).int_of(a.output.tensor.shape[2])
                if got != pool(torch.zeros(1, 1, h, h)).shape[2]:
                    return False
    return True


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    x = seed_input()
    model = SeedPool()
    output, indices = model(x)
    print("torch, the seed's prints (cut to fit):")
    print("input[0][0][:4, :6] =\n", x[0, 0, :4, :6])
    print("output[0][0][:2, :3] =\n", output[0, 0, :2, :3])
    print("indices[0][0][:5, :5] =\n", indices[0, 0, :5, :5])
    print("torch output shape:", tuple(output.shape), "\n")

    a = rfgraph.analyze(model, tuple(x.shape))
    print(a, "\n")
    shape = tuple(a.int_of(s) for s in a.output.tensor.shape)

    # every index lies in rfgraph's field of its output element (channel 0, all 112×112)
    fh, fw = a.field(a["pool"])
    rows, cols = indices[0, 0] // 224, indices[0, 0] % 224
    r0, r1, c0, c1 = (torch.tensor([int(f(i)) for i in range(n)]) for f, n in (
        (fh.start_at, shape[2]), (fh.end_at, shape[2]), (fw.start_at, shape[3]),
        (fw.end_at, shape[3])))
    inside = bool(((r0[:, None] <= rows) & (rows <= r1[:, None])
                   & (c0[None, :] <= cols) & (cols <= c1[None, :])).all())
    print(f"every index of channel 0 lies in rfgraph's 2×2 field of its output: {inside}")

    formulas = size_formulas()
    print("\noutput height, rfgraph formula (ceil_mode=False | ceil_mode=True):")
    for label, (floor_f, ceil_f) in formulas.items():
        print(f"  {label:15} {floor_f:18} | {ceil_f}")
    agree = formulas_match_torch()
    print(f"torch agrees at H = 5..40, both modes: {agree}")

    # §1.5: each channel is pooled on its own
    alone = nn.MaxPool2d(2, 2)(x[:, 5:6])
    separate = torch.equal(alone[0, 0], output[0, 5])
    print(f"\n§1.5 channels: in {x.shape[1]}, out {shape[1]} (rfgraph), "
          f"channel 5 pooled alone = channel 5 of the output: {separate}; "
          f"params {a.total_params}")

    # §1.6: the conv after a pool runs on a quarter of the positions
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    before = rfgraph.analyze(conv, (1, 64, "H", "W"))
    after = rfgraph.analyze(nn.Sequential(nn.MaxPool2d(2, 2), conv), (1, 64, "H", "W"))
    ratio = (before.evaluate(H=224, W=224).total_macs_at
             / after.evaluate(H=224, W=224).total_macs_at)
    print(f"§1.6 conv 64→64 3×3 MACs: without pool {before.text(before.total_macs)}, "
          f"after pool {after.text(after.total_macs)}; at 224×224 ×{ratio:g} fewer")

    return {
        "torch_shape": tuple(output.shape),
        "shape": shape,
        "indices_row0": indices[0, 0, 0, :5].tolist(),
        "indices_in_field": inside,
        "rf": (int(fh.size), int(fw.size)),
        "jump": (int(fh.jump), int(fw.jump)),
        "formulas": formulas,
        "formulas_match_torch": agree,
        "params": a.total_params,
        "channels": shape[1],
        "channels_separate": separate,
        "macs_no_pool": before.text(before.total_macs),
        "macs_after_pool": after.text(after.total_macs),
        "macs_ratio_224": ratio,
    }


if __name__ == "__main__":
    main()
