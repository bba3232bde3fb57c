"""A grid of single layers, two-layer stacks and small graphs in 1-D, 2-D and 3-D, each checked
against torch (shapes, the smallest valid size), sum(p.numel()) (params), FlopCounterMode (MACs)
and the gradient probe (receptive fields). See tests/oracles.py for the harness."""

from __future__ import annotations

import pytest
import torch
from oracles import Expect, Layer, PerAxis, check_model, stack
from torch import nn

T = PerAxis
CIN = 4

SINGLE: dict[str, Layer] = {
    # convolution
    "conv-k3": Layer("conv", 4, kernel_size=3),
    "conv-k3s2p1-nobias": Layer("conv", 6, kernel_size=3, stride=2, padding=1, bias=False),
    "conv-tuple": Layer("conv", 4, kernel_size=T((3, 1, 2)), stride=T((2, 1, 3)),
                        padding=T((1, 0, 1))),
    "conv-same-k4-d2": Layer("conv", 4, kernel_size=4, padding="same", dilation=2),
    "conv-same-tuple": Layer("conv", 4, kernel_size=T((2, 3, 4)), padding="same",
                             dilation=T((1, 2, 1))),
    "conv-valid-k5": Layer("conv", 4, kernel_size=5, padding="valid"),
    "conv-d2s2p2": Layer("conv", 4, kernel_size=3, stride=2, padding=2, dilation=2),
    "conv-k1s3": Layer("conv", 2, kernel_size=1, stride=3),
    "conv-k2d2": Layer("conv", 4, kernel_size=2, dilation=2),
    "conv-k2s3p3": Layer("conv", 4, kernel_size=2, stride=3, padding=3),
    "conv-groups2": Layer("conv", 6, kernel_size=3, padding=1, groups=2),
    "conv-depthwise": Layer("conv", 8, kernel_size=3, stride=2, padding=1, groups="dw"),
    "conv-reflect": Layer("conv", 4, kernel_size=3, padding=1, padding_mode="reflect"),
    "conv-replicate": Layer("conv", 4, kernel_size=3, padding=2, padding_mode="replicate"),
    "conv-circular": Layer("conv", 4, kernel_size=5, stride=2, padding=2,
                           padding_mode="circular"),
    # transposed convolution
    "convt-k3": Layer("convt", 4, kernel_size=3),
    "convt-k3s2p1op1": Layer("convt", 4, kernel_size=3, stride=2, padding=1, output_padding=1),
    "convt-k4s2p1": Layer("convt", 4, kernel_size=4, stride=2, padding=1, bias=False),
    "convt-k2s2": Layer("convt", 2, kernel_size=2, stride=2),
    "convt-k1s2": Layer("convt", 2, kernel_size=1, stride=2),  # odd outputs see nothing
    "convt-k5s3p2op2-g2": Layer("convt", 6, kernel_size=5, stride=3, padding=2,
                                output_padding=2, groups=2),
    "convt-d2s1p1": Layer("convt", 4, kernel_size=3, dilation=2, padding=1),
    "convt-d2s2": Layer("convt", 4, kernel_size=3, stride=2, dilation=2),
    "convt-d2s3op2": Layer("convt", 4, kernel_size=2, stride=3, dilation=2, output_padding=2),
    "convt-tuple": Layer("convt", 4, kernel_size=T((3, 2, 4)), stride=T((2, 1, 2)),
                         padding=T((1, 0, 1)), output_padding=T((1, 0, 0))),
    # max pooling
    "maxpool-k2": Layer("maxpool", kernel_size=2),
    "maxpool-k3s2p1": Layer("maxpool", kernel_size=3, stride=2, padding=1),
    "maxpool-k3s2-ceil": Layer("maxpool", kernel_size=3, stride=2, ceil_mode=True),
    "maxpool-k3s2p1-ceil": Layer("maxpool", kernel_size=3, stride=2, padding=1, ceil_mode=True),
    # p + s > d(k-1) + 1: ceil_mode's last window may start in the right padding
    "maxpool-k2s2p1-ceil": Layer("maxpool", kernel_size=2, stride=2, padding=1, ceil_mode=True),
    "maxpool-k3s3p1-ceil": Layer("maxpool", kernel_size=3, stride=3, padding=1, ceil_mode=True),
    "maxpool-k2s3p1d2-ceil": Layer("maxpool", kernel_size=2, stride=3, padding=1, dilation=2,
                                   ceil_mode=True),
    "maxpool-k3p1d2": Layer("maxpool", kernel_size=3, stride=1, padding=1, dilation=2),
    "maxpool-k2s4": Layer("maxpool", kernel_size=2, stride=4),
    "maxpool-tuple-ceil": Layer("maxpool", kernel_size=T((3, 2, 2)), stride=T((2, 1, 2)),
                                padding=T((1, 0, 1)), ceil_mode=True),
    "maxpool-indices": Layer("maxpool", kernel_size=3, stride=2, padding=1,
                             return_indices=True),
    "maxpool-indices-ceil": Layer("maxpool", kernel_size=2, stride=2, padding=1, ceil_mode=True,
                                  return_indices=True),
    # average pooling
    "avgpool-k2": Layer("avgpool", kernel_size=2),
    "avgpool-k3s2p1-ceil": Layer("avgpool", kernel_size=3, stride=2, padding=1, ceil_mode=True),
    "avgpool-k3s2p1-ceil-nopad": Layer("avgpool", kernel_size=3, stride=2, padding=1,
                                       ceil_mode=True, count_include_pad=False),
    "avgpool-k2s2p1-ceil": Layer("avgpool", kernel_size=2, stride=2, padding=1, ceil_mode=True),
    "avgpool-divisor": Layer("avgpool", kernel_size=3, stride=2, padding=1, divisor_override=2),
    "avgpool-tuple": Layer("avgpool", kernel_size=T((2, 3, 1)), stride=T((3, 1, 1)),
                           padding=T((1, 1, 0))),
    # adaptive pooling
    "adaptive-avg-1": Layer("adaptive_avg", output_size=1),
    "adaptive-avg-3": Layer("adaptive_avg", output_size=3),
    "adaptive-avg-2-none": Layer("adaptive_avg", output_size=T((2, None, 3))),
    "adaptive-max-1": Layer("adaptive_max", output_size=1),
    "adaptive-max-3": Layer("adaptive_max", output_size=3),
    "adaptive-max-2-none": Layer("adaptive_max", output_size=T((2, None, 3))),
    "adaptive-max-indices": Layer("adaptive_max", output_size=3, return_indices=True),
    # channel shuffle
    "shuffle-2": Layer("shuffle", groups=2),
}

PAIRS: list[tuple[str, ...]] = [
    ("conv-k3s2p1-nobias", "maxpool-k3s2p1-ceil"),
    ("conv-k3", "maxpool-k2s2p1-ceil"),
    ("convt-k3s2p1op1", "conv-k3"),
    ("convt-k4s2p1", "convt-k5s3p2op2-g2"),  # period 6
    ("convt-k1s2", "conv-k3"),  # fills the gaps
    ("convt-k1s2", "maxpool-k2s2p1-ceil"),
    ("maxpool-k2", "convt-k2s2"),
    ("conv-d2s2p2", "avgpool-k2s2p1-ceil"),
    ("conv-k3s2p1-nobias", "adaptive-max-3"),
    ("convt-k3s2p1op1", "adaptive-avg-3"),
    ("conv-depthwise", "shuffle-2"),
    ("conv-tuple", "convt-tuple"),
    ("convt-tuple", "maxpool-tuple-ceil"),
    ("avgpool-divisor", "conv-same-k4-d2"),
    ("conv-k1s3", "convt-k2s2"),
    ("maxpool-k2s3p1d2-ceil", "conv-valid-k5"),
    ("maxpool-indices", "convt-d2s1p1"),
    ("convt-d2s2", "conv-k3"),  # sparse taps, then a window over them
    ("conv-reflect", "conv-k3s2p1-nobias"),
    ("conv-groups2", "convt-d2s3op2"),
    # gaps (k < s) after overlapping fields: the odd outputs read no pixel at all
    ("conv-k3", "convt-k1s2"),
    ("conv-k3", "convt-k1s2", "conv-k2d2"),
    ("convt-k2s2", "convt-k1s2", "conv-k2d2"),
]

GRID = [pytest.param(nd, (name,), id=f"{nd}d-{name}") for nd in (1, 2, 3) for name in SINGLE]
GRID += [pytest.param(nd, names, id=f"{nd}d-{'+'.join(names)}") for nd in (1, 2, 3)
         for names in PAIRS]


@pytest.mark.parametrize(("nd", "names"), GRID)
def test_layer_grid(nd, names):
    build, expect = stack([SINGLE[n] for n in names], nd, CIN)
    check_model(build, nd, CIN, expect)


# -- small graphs: linear, residual add, concatenation ---------------------------------------------
def _conv(nd, *args, **kw):
    return getattr(nn, f"Conv{nd}d")(*args, **kw)


class Residual(nn.Module):
    def __init__(self, body: nn.Module, skip: nn.Module | None = None) -> None:
        super().__init__()
        self.body, self.skip = body, skip

    def forward(self, x):
        return self.body(x) + (x if self.skip is None else self.skip(x))


class Cat(nn.Module):
    def __init__(self, a: nn.Module, b: nn.Module, dim: int = 1) -> None:
        super().__init__()
        self.a, self.b, self.dim = a, b, dim

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=self.dim)


def _linear_adaptive(nd):
    return nn.Sequential(_conv(nd, CIN, 3, 3), getattr(nn, f"AdaptiveAvgPool{nd}d")(2),
                         nn.Flatten(), nn.Linear(3 * 2**nd, 5))


def _linear_fixed(nd):
    # conv k3 s2 without padding: out = (n - 1)//2; at n = 9 that is 4 per axis
    return nn.Sequential(_conv(nd, CIN, 2, 3, stride=2), nn.Flatten(), nn.Linear(2 * 4**nd, 3),
                         nn.ReLU(), nn.Linear(3, 2, bias=False))


GRAPHS = {
    "linear-after-adaptive": (_linear_adaptive, Expect()),
    "linear-fixed": (_linear_fixed, None),  # Expect(fixed=...) filled in per nd
    "residual-identity": (lambda nd: Residual(_conv(nd, CIN, CIN, 3, padding=1)), Expect()),
    "residual-downsample": (lambda nd: Residual(
        nn.Sequential(_conv(nd, CIN, 6, 3, stride=2, padding=1), nn.ReLU(),
                      _conv(nd, 6, 6, 3, padding=1)),
        _conv(nd, CIN, 6, 1, stride=2, bias=False)), Expect()),
    "residual-pool-skip": (lambda nd: Residual(
        _conv(nd, CIN, CIN, 3, stride=2, padding=1),
        getattr(nn, f"MaxPool{nd}d")(3, 2, 1)), Expect()),
    "cat-channels": (lambda nd: Cat(_conv(nd, CIN, 2, 3, padding=1),
                                    _conv(nd, CIN, 3, 5, padding=2, dilation=1)), Expect()),
    "cat-channels-strided": (lambda nd: Cat(
        _conv(nd, CIN, 2, 3, stride=2, padding=1),
        getattr(nn, f"AvgPool{nd}d")(2, ceil_mode=True)), Expect()),
    "cat-spatial": (lambda nd: Cat(_conv(nd, CIN, 2, 3, padding=1),
                                   _conv(nd, CIN, 2, 3, stride=T((2, 1, 1))[:nd], padding=1),
                                   dim=2),
                    Expect()),
    "cat-gappy": (lambda nd: Cat(
        nn.Sequential(_conv(nd, CIN, 2, 3, padding=1),
                      getattr(nn, f"ConvTranspose{nd}d")(2, 2, 1, 2, output_padding=1)),
        getattr(nn, f"ConvTranspose{nd}d")(CIN, 2, 2, 2)), Expect()),
    "add-gappy": (lambda nd: Residual(
        nn.Sequential(_conv(nd, CIN, 2, 3, padding=1),
                      getattr(nn, f"ConvTranspose{nd}d")(2, 2, 1, 2, output_padding=1)),
        getattr(nn, f"ConvTranspose{nd}d")(CIN, 2, 2, 2)), Expect()),
    "add-gappy-both": (lambda nd: Residual(
        nn.Sequential(_conv(nd, CIN, 2, 3, padding=1),
                      getattr(nn, f"ConvTranspose{nd}d")(2, 2, 1, 2, output_padding=1)),
        getattr(nn, f"ConvTranspose{nd}d")(CIN, 2, 1, 2, output_padding=1)), Expect()),
    "cat-then-conv": (lambda nd: nn.Sequential(
        Cat(_conv(nd, CIN, 2, 1), getattr(nn, f"MaxPool{nd}d")(3, 1, 1)),
        _conv(nd, 6, 2, 3, stride=2)), Expect()),
}


# A branch with gaps (transposed conv, kernel < stride) is dead at odd positions along *every*
# axis, so at (odd, even) it adds nothing along axis 1 either: the true box is not a product of
# per-axis fields. rfgraph merges fields axis by axis (merge_rfs), so in 2-D/3-D it reports the
# union with the dead branch there. 1-D is exact.
PER_AXIS_MERGE = pytest.mark.xfail(
    strict=True, reason="merge_rfs is per axis: a branch dead along one axis still widens the "
    "merged field along the others (cross-axis emptiness is not representable)")
GRAPH_PARAMS = [
    pytest.param(name, nd, id=f"{name}-{nd}",
                 marks=[PER_AXIS_MERGE] if name in ("cat-gappy", "add-gappy") and nd > 1 else [])
    for name in GRAPHS for nd in (1, 2, 3)
]


@pytest.mark.parametrize(("name", "nd"), GRAPH_PARAMS)
def test_graph_grid(name, nd):
    factory, expect = GRAPHS[name]
    if name == "linear-fixed":
        expect = Expect(fixed=(9,) * nd)
    check_model(lambda: factory(nd), nd, CIN, expect)

