"""timm's TensorFlow-"SAME" layers, matched by qualified name (timm is not a dependency): copies
of timm's code under timm's module name. Oracles: torch's shapes, FlopCounterMode / 2,
p.numel() and the gradient probe (verify)."""

from __future__ import annotations

import math
import warnings

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from rfgraph.symbolic import axis_symbol
from rfgraph.verify import verify


def get_same_padding(x: int, kernel_size: int, stride: int, dilation: int):
    return max((math.ceil(x / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - x, 0)


def pad_same(x, kernel_size, stride, dilation=(1, 1), value: float = 0):
    ih, iw = x.size()[-2:]
    pad_h = get_same_padding(ih, kernel_size[0], stride[0], dilation[0])
    pad_w = get_same_padding(iw, kernel_size[1], stride[1], dilation[1])
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=value)


class Conv2dSame(nn.Conv2d):  # timm.layers.conv2d_same.Conv2dSame
    def __init__(self, cin, cout, k, stride=1, dilation=1, groups=1, bias=True):
        super().__init__(cin, cout, k, stride, 0, dilation, groups, bias)

    def forward(self, x):
        x = pad_same(x, self.kernel_size, self.stride, self.dilation)
        return F.conv2d(x, self.weight, self.bias, self.stride, (0, 0), self.dilation,
                        self.groups)


class MaxPool2dSame(nn.MaxPool2d):  # timm.layers.pool2d_same.MaxPool2dSame
    def __init__(self, k, stride=None):
        stride = k if stride is None else stride
        super().__init__((k, k), (stride, stride), (0, 0), (1, 1), False)

    def forward(self, x):
        x = pad_same(x, self.kernel_size, self.stride, self.dilation, value=-float("inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride, (0, 0), self.dilation,
                            self.ceil_mode)


Conv2dSame.__module__ = "timm.layers.conv2d_same"
MaxPool2dSame.__module__ = "timm.layers.pool2d_same"


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 1), Conv2dSame(c, c, 3, groups=c),
                                  nn.Conv2d(c, c, 1))

    def forward(self, x):
        return x + self.body(x)


def tf_net(blocks: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        Conv2dSame(1, 4, 3, stride=2), nn.ReLU(),
        Conv2dSame(4, 4, 5, stride=2, groups=4), nn.ReLU(),
        *[Residual(4) for _ in range(blocks)],
        MaxPool2dSame(3, 2),
        Conv2dSame(4, 6, 3, dilation=2),
    )


def test_same_padding_keeps_fields_affine():
    """The padding after a stride-2 SAME layer depends on the input's parity; the field stays
    one affine map with a size-dependent offset, so residual blocks stay cheap and exact."""
    a = rfgraph.analyze(tf_net(blocks=12).eval(), (1, 1, "H", "W"))
    fields = a.field(a.output)
    assert all(f.affine is not None for f in fields)
    assert fields[0].offset.free_symbols  # e.g. -1 - 2*floor(...) : depends on H
    report = verify(a, at=[{"H": 33, "W": 30}, {"H": 32, "W": 31}], checks=["rf", "macs"])
    assert report.ok, report.format()


@pytest.mark.parametrize("hw", [(32, 32), (33, 29), (35, 38)])
def test_same_padding_layers_are_ruled_and_exact(hw):
    model = tf_net().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no rule" warning: the layers have rules
        a = rfgraph.analyze(model, (1, 1, "H", "W"))
    assert a.complete
    h, w = hw
    with FlopCounterMode(display=False) as c, torch.no_grad():
        out = model(torch.randn(1, 1, h, w))
    subs = {axis_symbol("H"): h, axis_symbol("W"): w}
    assert [int(sympy.sympify(s).subs(subs)) for s in a.output.tensor.shape] == list(out.shape)
    assert a.evaluate(H=h, W=w).total_macs_at == c.get_total_flops() // 2
    assert a.total_params == sum(p.numel() for p in model.parameters())
    # output length ceil(n/2) after each stride-2 SAME layer: ceil(ceil(ceil(h/2)/2)/2)
    assert int(a.output.tensor.shape[2].subs(subs)) == math.ceil(h / 8)


def test_same_padding_fields_against_the_probe():
    a = rfgraph.analyze(tf_net(blocks=2).eval(), (1, 1, "H", "W"))
    report = verify(a, at=[{"H": 33, "W": 30}], checks=["rf"], rf_nodes="all")
    assert report.ok, report.format()
    assert any(r.status == "pass" for r in report.rows if r.check == "rf")
