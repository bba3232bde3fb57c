"""The facts of the seed document ("Vision processing basics 2"), reproduced by rfgraph.

Run: ``python examples/seed_facts.py``. Every number printed comes from ``rfgraph.analyze``;
``tests/test_examples.py`` checks each one against torch and closed forms.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rfgraph  # noqa: E402
from rfgraph.symbolic import format_expr  # noqa: E402


def dilated() -> tuple[int, ...]:
    """§2.4: Conv2d(1, 1, 3, dilation=3) on 1x1x32x32 -> 1x1x26x26 (k_eff = 3*(3-1)+1 = 7)."""
    a = rfgraph.analyze(nn.Conv2d(1, 1, 3, stride=1, padding=0, dilation=3), (1, 1, 32, 32))
    return tuple(a.int_of(s) for s in a.output.tensor.shape)


def max_pool_indices() -> tuple[int, ...]:
    """Seed code: MaxPool2d(2, 2, return_indices=True) on 1x64x224x224 -> 1x64x112x112."""
    class Pool(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.MaxPool2d(kernel_size=2, stride=2, return_indices=True)

        def forward(self, x):
            values, indices = self.pool(x)
            return values

    a = rfgraph.analyze(Pool(), (1, 64, 224, 224))
    return tuple(a.int_of(s) for s in a.output.tensor.shape)


def transposed_full_padding() -> tuple[int, ...]:
    """§2.3: 2x2 input, 3x3 kernel, stride 1 ("full" padding) -> 4x4: (2-1)*1 + 3 = 4."""
    a = rfgraph.analyze(nn.ConvTranspose2d(1, 1, 3, stride=1), (1, 1, 2, 2))
    return tuple(a.int_of(s) for s in a.output.tensor.shape)


def depthwise_separable(channels: int = 8) -> tuple[int, int, str]:
    """§2.5.2: standard 8*8*3*3 = 576 params vs depthwise 8*1*3*3 + pointwise 8*8 = 136."""
    standard = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    separable = nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
    )
    a = rfgraph.analyze(standard, (1, channels, "H", "W"))
    b = rfgraph.analyze(separable, (1, channels, "H", "W"))
    ratio = format_expr(b.total_macs / a.total_macs)
    return a.total_params, b.total_params, ratio


def flattened(c: int = 16, y: int = 3, x: int = 3) -> tuple[int, int, str, str]:
    """§2.6: one C x Y x X filter (params X*Y*C, MACs M*N*C*X*Y) vs three 1-D filters
    (params C + Y + X, MACs M*N*(C + X + Y)) on an M x N map ('same' padding)."""
    standard = nn.Conv2d(c, 1, (y, x), padding="same", bias=False)
    flat = nn.Sequential(
        nn.Conv2d(c, 1, 1, bias=False),                          # channel: C
        nn.Conv2d(1, 1, (y, 1), padding=(y // 2, 0), bias=False),  # vertical: Y
        nn.Conv2d(1, 1, (1, x), padding=(0, x // 2), bias=False),  # horizontal: X
    )
    a = rfgraph.analyze(standard, (1, c, "M", "N"))
    b = rfgraph.analyze(flat, (1, c, "M", "N"))
    return a.total_params, b.total_params, format_expr(a.total_macs), format_expr(b.total_macs)


def grouped(groups: int = 4, c: int = 64) -> tuple[int, int]:
    """§2.7: groups g divide weights and MACs by g (64*64*9 = 36864 vs 36864/4 = 9216)."""
    a = rfgraph.analyze(nn.Conv2d(c, c, 3, padding=1, bias=False), (1, c, "H", "W"))
    b = rfgraph.analyze(nn.Conv2d(c, c, 3, padding=1, groups=groups, bias=False),
                        (1, c, "H", "W"))
    return a.total_params, b.total_params


def stacked_small_kernels(c: int = 16) -> tuple[int, int, int, int]:
    """§3.2: two 3x3 convs see 5x5 like one 5x5 conv, with 2*9*C^2 vs 25*C^2 weights."""
    two = nn.Sequential(nn.Conv2d(c, c, 3, bias=False), nn.ReLU(), nn.Conv2d(c, c, 3, bias=False))
    one = nn.Conv2d(c, c, 5, bias=False)
    a = rfgraph.analyze(two, (1, c, "H", "W"))
    b = rfgraph.analyze(one, (1, c, "H", "W"))
    ra = a.field(a.output)[0].size
    rb = b.field(b.output)[0].size
    return int(ra), a.total_params, int(rb), b.total_params


def spatially_separable() -> tuple[bool, int, int]:
    """§2.5.1: the 3x3 kernel [[0.15,0.20,0.25],[0.21,0.28,0.35],[0.24,0.32,0.40]] equals the
    (3x1) [0.5,0.7,0.8] times (1x3) [0.3,0.4,0.5] outer product: same outputs, 9 vs 6 weights."""
    full = nn.Conv2d(1, 1, 3, bias=False)
    pair = nn.Sequential(nn.Conv2d(1, 1, (1, 3), bias=False), nn.Conv2d(1, 1, (3, 1), bias=False))
    with torch.no_grad():
        full.weight.copy_(torch.tensor([[0.15, 0.20, 0.25], [0.21, 0.28, 0.35],
                                        [0.24, 0.32, 0.40]]).view(1, 1, 3, 3))
        pair[0].weight.copy_(torch.tensor([0.3, 0.4, 0.5]).view(1, 1, 1, 3))
        pair[1].weight.copy_(torch.tensor([0.5, 0.7, 0.8]).view(1, 1, 3, 1))
        x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        same = torch.allclose(full(x), pair(x), atol=1e-6)
    a = rfgraph.analyze(full, (1, 1, "H", "W"))
    b = rfgraph.analyze(pair, (1, 1, "H", "W"))
    return same, a.total_params, b.total_params


def main() -> None:
    print("§2.4 dilated conv output:", dilated())
    print("max pool with indices output:", max_pool_indices())
    print("§2.3 transposed conv (2x2, k3, s1):", transposed_full_padding())
    std, sep, ratio = depthwise_separable()
    print(f"§2.5.2 depthwise separable: {std} vs {sep} params; MAC ratio {ratio}")
    same, p_full, p_pair = spatially_separable()
    print(f"§2.5.1 spatially separable: outputs equal={same}; params {p_full} vs {p_pair}")
    pa, pb, ma, mb = flattened()
    print(f"§2.6 flattened: params {pa} vs {pb}; MACs {ma} vs {mb}")
    full, grouped_params = grouped()
    print(f"§2.7 grouped (g=4): params {full} vs {grouped_params}")
    r2, p2, r1, p1 = stacked_small_kernels()
    print(f"§3.2 two 3x3 convs: RF {r2}, {p2} params; one 5x5: RF {r1}, {p1} params")


if __name__ == "__main__":
    main()
