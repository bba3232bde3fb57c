"""Regenerate the gallery: ``.venv/bin/python docs/gallery/make_gallery.py`` (needs Graphviz `dot`
and matplotlib). Every picture here comes from this script; see README.md next to it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402
from examples.zoo import GRAPH_ZOO, ZOO  # noqa: E402
from rfgraph.erf import effective_receptive_field, plot_erf  # noqa: E402
from rfgraph.models import seed_tour  # noqa: E402
from rfgraph.render import render  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    seed = rfgraph.analyze(seed_tour(), (1, 3, "H", "W"), name="seed_tour")
    seed224 = seed.evaluate(H=224, W=224)
    resnet = rfgraph.analyze(ZOO["resnet50"](), (1, 3, "H", "W"), at="H=224,W=224",
                             name="resnet50")
    unet = rfgraph.analyze(GRAPH_ZOO["unet_small"](), (1, 3, "H", "W"), at="H=256,W=256",
                           name="unet_small")
    drawings = [
        ("seed_tour.png", seed224, {}),
        ("seed_tour_symbolic_depth1.png", seed, {"depth": 1}),
        ("resnet50_depth1.png", resnet, {"depth": 1}),
        ("resnet50_depth2.png", resnet, {"depth": 2}),
        ("resnet50_full.png", resnet, {}),
        ("unet_small_depth1.png", unet, {"depth": 1}),
        ("unet_small_full.png", unet, {"show_offset": True}),
    ]
    for name, analysis, options in drawings:
        start = time.perf_counter()
        render(analysis, HERE / name, **options)
        print(f"{name}: {time.perf_counter() - start:.2f} s")

    torch.set_num_threads(1)
    start = time.perf_counter()
    erf = effective_receptive_field(seed224, "grouped", samples=4)
    plot_erf(erf, HERE / "erf_seed_tour_grouped.png")
    print(erf.summary(), f"({time.perf_counter() - start:.2f} s)")
    start = time.perf_counter()
    erf = effective_receptive_field(resnet, "layer2_3_relu_2", inits=4)
    plot_erf(erf, HERE / "erf_resnet50_layer2.png")
    plot_erf(erf, HERE / "erf_resnet50_layer2_log.png", log=True)
    print(erf.summary(), f"({time.perf_counter() - start:.2f} s)")


if __name__ == "__main__":
    main()
