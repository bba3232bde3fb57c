"""Squeeze-and-excitation chains: analysis time against depth (issue 8: linear in depth).

Run from the repository root:

    .venv/bin/python benchmarks/bench_se_chain.py            # depths 10, 25, 50, 100, 200
    .venv/bin/python benchmarks/bench_se_chain.py --depths 10,100

Each block is conv 3x3 (stride 2 in the first three blocks) -> ReLU -> x * sigmoid(fc(pool(x)))
with a residual add, the pattern of EfficientNet, MobileNetV3 and RegNet-Y. Every SE gate merges
a global field into the block; rfgraph keeps that field as one closed form ("global"), so the
cost per block stays constant. Prints a Markdown table: depth, fx nodes, median seconds of
``rfgraph.analyze`` (symbolic) and of ``to_dict()``, seconds per block, and the length of the
output's field-size formula.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import rfgraph
import rfgraph.symbolic


class SE(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, max(1, c // 4), 1)
        self.fc2 = nn.Conv2d(max(1, c // 4), c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))


class Block(nn.Module):
    def __init__(self, c: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=stride, padding=1)
        self.se = SE(c)
        self.stride = stride

    def forward(self, x):
        y = self.se(torch.relu(self.conv(x)))
        return y if self.stride > 1 else x + y


def se_chain(depth: int, c: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1),
                         *[Block(c, 2 if i < 3 else 1) for i in range(depth)],
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        rfgraph.symbolic.clear_caches()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="10,25,50,100,200")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| SE blocks | fx nodes | analyze (s) | to_dict (s) | analyze per block (ms) | "
          "field formula chars |")
    print("|---:|---:|---:|---:|---:|---:|")
    for depth in (int(d) for d in args.depths.split(",")):
        model = se_chain(depth)
        a = rfgraph.analyze(model, (1, 3, "H", "W"))
        t_an = timed(lambda m=model: rfgraph.analyze(m, (1, 3, "H", "W")), args.repeats)
        t_dict = timed(a.to_dict, args.repeats)
        field = a.field(a.nodes[-1])
        chars = len(str(field[0].size)) if field else 0
        print(f"| {depth} | {len(a.nodes)} | {t_an:.3f} | {t_dict:.3f} | "
              f"{1000 * t_an / depth:.1f} | {chars} |")


if __name__ == "__main__":
    main()
