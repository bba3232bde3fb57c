"""Deep stacks: no recursion limits, exact closed forms."""

from __future__ import annotations

from torch import nn

import rfgraph


def test_deep_chain_behind_transposed_conv():
    # ConvTranspose2d(k=2, s=2): each output reads one input pixel, jump 1/2. Then 600 3x3 convs
    # (padding 1): each adds (3 - 1) * 1/2 = 1 pixel, so r = 1 + 600 = 601, offset -300.
    layers: list[nn.Module] = [nn.ConvTranspose2d(1, 2, 2, stride=2)]
    for _ in range(600):
        layers += [nn.Conv2d(2, 2, 3, padding=1), nn.ReLU()]
    a = rfgraph.analyze(nn.Sequential(*layers), (1, 1, "H", "W")).evaluate(H=8, W=8)
    d = a.to_dict()
    assert d["output"]["rf"]["size"] == ["601", "601"]
    assert d["output"]["rf"]["jump"] == ["1/2", "1/2"]
    assert d["output"]["rf"]["offset"] == ["-300", "-300"]
    assert d["output"]["out_shape_at"] == [1, 2, 16, 16]


def test_deep_plain_chain():
    # 1000 3x3 convs, stride 1, padding 1: r = 1 + 1000 * 2 = 2001, offset -1000
    layers = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(1000)]
    a = rfgraph.analyze(nn.Sequential(*layers), (1, 1, "H", "W"))
    rf = a.field(a.output)
    assert [int(r.size) for r in rf] == [2001, 2001]
    assert [int(r.offset) for r in rf] == [-1000, -1000]
