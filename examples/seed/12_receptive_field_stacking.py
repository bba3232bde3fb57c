"""Seed §3 (receptive field: 3.1 what it is, 3.2 why it matters), reproduced with rfgraph.

The receptive field of an output value is the region of the input it depends on. Stacked small
kernels reach the field of one large kernel with fewer parameters and more non-linearities: two
3×3 convs see 5×5, like one 5×5 conv, with 2·9·C² weights instead of 25·C².

This script prints, next to what torch computes:

* rfgraph's tables (RF, jump, offset for every node) for two 3×3 convs with a ReLU between and
  for one 5×5 conv, C = 16 channels: both RF 5, params 2·9·16² = 4608 vs 25·16² = 6400;
* three 3×3 convs against one 7×7 (RF 7; 27·C² vs 49·C²);
* a strided stack (3×3 stride 2 pad 1, then 3×3 pad 1): RF 7, jump 2, offset −3, and the
  field of output element y, [−3 + 2y, 3 + 2y], against the input pixels torch's gradient
  reaches (clipped to the image).

Run: ``python examples/seed/12_receptive_field_stacking.py`` (from any directory).
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

C = 16


def stack(n: int, c: int = C) -> nn.Module:
    """n 3×3 convs with ReLUs between (no padding)."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(c, c, 3, bias=False)] + ([nn.ReLU()] if i < n - 1 else [])
    return nn.Sequential(*layers)


def strided() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(1, 1, 3, padding=1))


def summary(a: rfgraph.Analysis) -> dict:
    f = a.field(a.output)[0]
    return {"rf": int(f.size), "jump": int(f.jump), "offset": int(f.offset),
            "params": a.total_params, "macs": a.text(a.total_macs)}


def gradient_rows(model: nn.Module, size: int, y: int) -> tuple[int, int]:
    """First and last input row torch's gradient of output (y, y) reaches (weights > 0, so a
    ReLU passes everything and no tap is zero)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand_like(p) + 0.1)
    x = torch.rand(1, 1, size, size, requires_grad=True)
    model(x)[0, 0, y, y].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    return int(rows.min()), int(rows.max())


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    torch.manual_seed(0)
    two = rfgraph.analyze(stack(2), (1, C, "H", "W"))
    one = rfgraph.analyze(nn.Conv2d(C, C, 5, bias=False), (1, C, "H", "W"))
    print(two, "\n")
    print(one, "\n")
    out = {"two_3x3": summary(two), "one_5x5": summary(one)}
    print(f"two 3×3: RF {out['two_3x3']['rf']}, params {out['two_3x3']['params']} "
          f"(2·9·{C}²); one 5×5: RF {out['one_5x5']['rf']}, params "
          f"{out['one_5x5']['params']} (25·{C}²)")

    three = rfgraph.analyze(stack(3), (1, C, "H", "W"))
    seven = rfgraph.analyze(nn.Conv2d(C, C, 7, bias=False), (1, C, "H", "W"))
    out["three_3x3"], out["one_7x7"] = summary(three), summary(seven)
    print(f"three 3×3: RF {out['three_3x3']['rf']}, params {out['three_3x3']['params']} "
          f"(27·{C}²); one 7×7: RF {out['one_7x7']['rf']}, params "
          f"{out['one_7x7']['params']} (49·{C}²)")
    torch_numel = {k: sum(p.numel() for p in m.parameters()) for k, m in
                   (("two_3x3", stack(2)), ("one_5x5", nn.Conv2d(C, C, 5, bias=False)))}
    print(f"torch numel: {torch_numel}\n")
    out["torch_numel"] = torch_numel

    model = strided()
    s = rfgraph.analyze(model, (1, 1, "H", "W"))
    print(s, "\n")
    out["strided"] = summary(s)
    f = s.field(s.output)[0]
    size = 16
    probe = {}
    for y in (0, 3, 7):
        field = (int(f.start_at(y)), int(f.end_at(y)))
        clipped = (max(field[0], 0), min(field[1], size - 1))
        probe[y] = {"field": field, "clipped": clipped,
                    "torch": gradient_rows(model, size, y)}
        print(f"output row {y}: rfgraph field {field} -> in the {size}-row image {clipped}; "
              f"torch gradient reaches rows {probe[y]['torch']}")
    out["strided_probe"] = probe
    return out


if __name__ == "__main__":
    main()
