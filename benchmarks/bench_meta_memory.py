"""A 10-billion-parameter conv net built on the meta device: rfgraph analyses it without
allocating weights. Prints parameters, time and peak resident memory (run in a fresh process).

    python benchmarks/bench_meta_memory.py
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import rfgraph  # noqa: E402


def big_net(width: int = 8192, layers: int = 18) -> nn.Module:
    """Conv2d(3, 8192, 3) then 17 Conv2d(8192, 8192, 3): about 10.27 billion parameters."""
    with torch.device("meta"):
        body = []
        for i in range(layers):
            body += [nn.Conv2d(3 if i == 0 else width, width, 3, padding=1), nn.BatchNorm2d(width),
                     nn.ReLU()]
        return nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 1000))


def main() -> None:
    t0 = time.perf_counter()
    model = big_net()
    t1 = time.perf_counter()
    a = rfgraph.analyze(model, (1, 3, "H", "W"))
    b = a.evaluate(H=224, W=224)
    t2 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    numel = sum(p.numel() for p in model.parameters())
    print(f"params (rfgraph): {a.total_params:,}")
    print(f"params (numel):   {numel:,}")
    print(f"MACs at 224x224:  {b.int_of(b.total_macs):,}")
    print(f"build {t1 - t0:.2f} s, analyze + evaluate {t2 - t1:.2f} s, peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
