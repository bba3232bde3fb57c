"""Tests for the receptive-field gradient probe (``rfgraph.probe``).

Every expected box is derived by hand (arithmetic in the comments) or by a tiny pure-Python
set-propagation oracle that does not use autograd.  Conventions: for a layer with kernel k,
stride s, padding p, dilation d, output index i reads input indices i*s - p + t*d, t < k,
clipped to the valid range.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import event, given, settings
from hypothesis import strategies as st
from torch import fx, nn

from rfgraph.probe import (
    ProbeError,
    linear_max_pool,
    output_spatial_shape,
    prepare_probe_model,
    probe_rf,
    probe_rf_many,
    touches_border,
)

# ------------------------------------------------------------------------------------------
# Single layers
# ------------------------------------------------------------------------------------------


def test_single_conv() -> None:
    # k=3, s=1, p=0: output 10 reads inputs 10, 11, 12.
    box = probe_rf(nn.Conv2d(1, 1, 3), (1, 1, 32, 32), (10, 10))
    assert box == [(10, 12), (10, 12)]


def test_two_convs_field_5() -> None:
    # r = 1 + 2 + 2 = 5, no padding: output p reads [p, p + 4].
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 3))
    assert probe_rf(model, (1, 3, 20, 20), (6, 9)) == [(6, 10), (9, 13)]


def test_strided_padded_convs() -> None:
    # Layer 1 (k3 s2 p1): i -> [2i - 1, 2i + 1].  Layer 2 maps j -> layer-1 [2j - 1, 2j + 1]
    # -> input [2(2j - 1) - 1, 2(2j + 1) + 1] = [4j - 3, 4j + 3]: r = 7, jump 4, offset -3.
    model = nn.Sequential(nn.Conv2d(1, 2, 3, 2, 1), nn.Conv2d(2, 1, 3, 2, 1))
    shape = (1, 1, 64, 64)
    boxes = probe_rf_many(model, shape, [(5, 6), (0, 15)])
    assert boxes[0] == [(17, 23), (21, 27)]
    # j = 0 -> [-3, 3] clipped to [0, 3]; j = 15 -> [57, 63] (63 = n - 1, touches border).
    assert boxes[1] == [(0, 3), (57, 63)]
    assert touches_border(boxes[0], shape) == [False, False]
    assert touches_border(boxes[1], shape) == [True, True]


def test_dilated_conv() -> None:
    # k=3, d=3: taps i, i + 3, i + 6 -> field 7.
    box = probe_rf(nn.Conv2d(1, 1, 3, dilation=3), (1, 1, 20, 20), (4, 5))
    assert box == [(4, 10), (5, 11)]


def test_maxpool_whole_window() -> None:
    # MaxPool2d(2, 2): i reads [2i, 2i + 1].  A naive probe (gradient of max) on an all-ones
    # input would reach a single argmax element, so both ends are asserted.
    model = nn.Sequential(nn.MaxPool2d(2, 2))
    for i, j in [(0, 0), (1, 3), (3, 2)]:
        assert probe_rf(model, (1, 2, 8, 8), (i, j)) == [(2 * i, 2 * i + 1), (2 * j, 2 * j + 1)]


def test_maxpool_ceil_mode_padding() -> None:
    # MaxPool2d(3, s2, p1, ceil) on 10: out = floor((10 + 2 - 2 - 1 + 1) / 2) + 1 = 6,
    # (6 - 1) * 2 = 10 < 10 + 1 so no drop.  Window of i: [2i - 1, 2i + 1].
    model = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
    shape = (1, 1, 10, 10)
    assert output_spatial_shape(model, shape) == (6, 6)
    assert model(torch.zeros(shape)).shape[2:] == (6, 6)
    boxes = probe_rf_many(model, shape, [(0, 2), (5, 4)])
    assert boxes[0] == [(0, 1), (3, 5)]  # [-1, 1] clipped; [3, 5]
    assert boxes[1] == [(9, 9), (7, 9)]  # [9, 11] clipped to the last input; [7, 9]


def test_maxpool_ceil_mode_drop_rule() -> None:
    # MaxPool1d(3, s3, p1, ceil) on 5: floor((5 + 2 - 2 - 1 + 2) / 3) + 1 = 3, but the last
    # window would start at (3 - 1) * 3 = 6 >= 5 + 1, so it is dropped -> 2 outputs.
    # Windows: 0 -> [-1, 1] -> [0, 1]; 1 -> [2, 4].
    model = nn.MaxPool1d(3, stride=3, padding=1, ceil_mode=True)
    assert output_spatial_shape(model, (1, 1, 5)) == (2,)
    assert probe_rf_many(model, (1, 1, 5), [(0,), (1,)]) == [[(0, 1)], [(2, 4)]]


def test_linear_max_pool_shape_matches_pytorch() -> None:
    # Exhaustive small grid: the linear pool must reproduce PyTorch's output shape.
    x = torch.ones(1, 1, 13, dtype=torch.float64)
    checked = 0
    for n in range(1, 14):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, k // 2 + 1):
                    for d in (1, 2):
                        for ceil in (False, True):
                            try:
                                ref = F.max_pool1d(x[..., :n], k, s, p, d, ceil)
                            except RuntimeError:
                                continue
                            got = linear_max_pool(x[..., :n], 1, k, s, p, d, ceil)
                            assert got.shape == ref.shape, (n, k, s, p, d, ceil)
                            checked += 1
    assert checked > 500


class _IndicesPool(nn.Module):
    """Conv then a MaxPool that returns indices (forward unpacks the tuple)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(2, return_indices=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.pool(self.conv(x))
        return x


def test_maxpool_return_indices() -> None:
    # Pool i -> conv [2i, 2i + 1] -> input [2i - 1, 2i + 2]; i = 3 -> [5, 8], i = 1 -> [1, 4].
    assert probe_rf(_IndicesPool(), (1, 1, 16, 16), (3, 1)) == [(5, 8), (1, 4)]


def test_conv_transpose_both_phases() -> None:
    # ConvTranspose2d(k3, s2): output y reads inputs i with 2i <= y <= 2i + 2.
    # y = 10 (even, m = 5): i in [4, 5]; y = 11 (odd, m = 5): i = 5 only.
    model = nn.ConvTranspose2d(1, 1, 3, stride=2)
    shape = (1, 1, 16, 16)
    assert output_spatial_shape(model, shape) == (33, 33)  # (16 - 1) * 2 + 3
    assert probe_rf(model, shape, (10, 11)) == [(4, 5), (5, 5)]
    assert probe_rf(model, shape, (11, 10)) == [(5, 5), (4, 5)]


def test_global_pool_linear_head_sees_everything() -> None:
    # Output (N, F): position ignored, the whole input is reached.
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5))
    shape = (2, 3, 9, 7)
    assert output_spatial_shape(model, shape) == ()
    box = probe_rf(model, shape, (4, 4))
    assert box == [(0, 8), (0, 6)]
    assert touches_border(box, shape) == [True, True]


def test_one_d() -> None:
    # Conv1d(k5, s2, p2): i -> [2i - 2, 2i + 2]; MaxPool1d(3, 2): j -> conv [2j, 2j + 2]
    # -> input [2(2j) - 2, 2(2j + 2) + 2] = [4j - 2, 4j + 6].  Lengths: 64 -> 32 -> 15.
    model = nn.Sequential(nn.Conv1d(2, 4, 5, stride=2, padding=2), nn.MaxPool1d(3, 2))
    assert output_spatial_shape(model, (1, 2, 64)) == (15,)
    assert probe_rf(model, (1, 2, 64), (7,)) == [(26, 34)]


def test_three_d() -> None:
    # Conv3d k=(3, 5, 1), s=(1, 2, 1), p=(1, 0, 0): axis 0 [i - 1, i + 1], axis 1 [2i, 2i + 4],
    # axis 2 [i, i].  Position (3, 2, 1) -> [(2, 4), (4, 8), (1, 1)].
    model = nn.Conv3d(1, 2, (3, 5, 1), stride=(1, 2, 1), padding=(1, 0, 0))
    assert probe_rf(model, (1, 1, 8, 16, 4), (3, 2, 1)) == [(2, 4), (4, 8), (1, 1)]


def test_default_position_is_centre_and_negative_wraps() -> None:
    # Output 30 x 30, centre (15, 15) -> [15, 17]; position -1 -> 29 -> [29, 31].
    model = nn.Conv2d(1, 1, 3)
    assert probe_rf(model, (1, 1, 32, 32)) == [(15, 17), (15, 17)]
    assert probe_rf(model, (1, 1, 32, 32), (-1, 0)) == [(29, 31), (0, 2)]
    with pytest.raises(ValueError):
        probe_rf(model, (1, 1, 32, 32), (30, 0))
    with pytest.raises(ValueError):
        probe_rf(model, (1, 1, 32, 32), (3,))


# ------------------------------------------------------------------------------------------
# Linearisation
# ------------------------------------------------------------------------------------------


def test_dead_relu_and_norms_are_linearised() -> None:
    # Bias -100 kills every ReLU in the original model; BN / GN / LN are identities for the
    # probe.  Fields: conv3 + conv3 -> [p, p + 4].
    conv1, conv2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)
    with torch.no_grad():
        conv1.bias.fill_(-100.0)
        conv2.weight.mul_(-1.0)
    model = nn.Sequential(
        conv1,
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.GroupNorm(2, 4),
        conv2,
        nn.Sigmoid(),
        nn.LayerNorm([12, 12]),
        nn.Hardswish(),
        nn.Dropout(0.9),
    )
    assert probe_rf(model, (1, 1, 16, 16), (3, 4)) == [(3, 7), (4, 8)]


def test_original_model_untouched() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    weight = model[0].weight.detach().clone()
    model.train()
    probe_rf(model, (1, 1, 12, 12))
    assert isinstance(model[1], nn.ReLU) and isinstance(model[2], nn.MaxPool2d)
    assert torch.equal(model[0].weight, weight) and model[0].weight.dtype == torch.float32
    assert model.training


def test_prepared_model_is_linear_float64() -> None:
    prepared = prepare_probe_model(nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.MaxPool2d(2)))
    conv = prepared[0]
    assert conv.weight.dtype == torch.float64
    assert torch.all(conv.weight == 1.0 / 18)  # fan_in = 2 * 3 * 3
    assert torch.all(conv.bias == 0)
    assert isinstance(prepared[1], nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) for m in prepared.modules())


class _SharedPool(nn.Module):
    """The same MaxPool instance under two attribute names, and one conv applied twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.a = nn.MaxPool2d(2)
        self.b = self.a
        self.inner = nn.Sequential(nn.Sequential(self.conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.inner(self.a(self.conv(x))))


def test_shared_and_nested_modules() -> None:
    # Both paths of the shared pool must be linearised.  Stepwise for output 2:
    # pool b: [4, 5]; conv (p1): [3, 6]; pool a: [6, 13]; conv (p1): [5, 14].
    assert probe_rf(_SharedPool(), (1, 1, 32, 32), (2, 2)) == [(5, 14), (5, 14)]
    shared = nn.Conv2d(1, 1, 3)
    assert probe_rf(nn.Sequential(shared, shared), (1, 1, 16, 16), (2, 3)) == [(2, 6), (3, 7)]


def test_adaptive_max_pool_with_indices() -> None:
    # AdaptiveMaxPool2d(2) on 8 x 8: cell (0, 1) covers rows [0, 3], cols [4, 7].
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AdaptiveMaxPool2d(2, return_indices=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pool(x)[0]

    assert probe_rf(Model(), (1, 1, 8, 8), (0, 1)) == [(0, 3), (4, 7)]


def test_softmax_and_glu() -> None:
    # Softmax over channels: no spatial mixing (and its channel sum has zero gradient in the
    # original model).  Softmax over the last axis: the whole row.  GLU halves channels only.
    conv = nn.Conv2d(1, 4, 3)
    shape = (1, 1, 10, 10)
    assert probe_rf(nn.Sequential(conv, nn.Softmax(dim=1)), shape, (2, 3)) == [(2, 4), (3, 5)]
    assert probe_rf(nn.Sequential(conv, nn.Softmax(dim=-1)), shape, (2, 3)) == [(2, 4), (0, 9)]
    assert probe_rf(nn.Sequential(conv, nn.GLU(dim=1)), shape, (2, 3)) == [(2, 4), (3, 5)]


class _Functional(nn.Module):
    """Functional max pool / activations / softmax, to be traced with torch.fx."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(F.relu(self.conv(x) - 50.0))
        x, _ = F.max_pool2d(x, 2, return_indices=True)
        x = F.max_pool2d(x, 3, stride=1, padding=1)
        return x.softmax(1)


def test_fx_graph_module_functional_rewrites() -> None:
    # conv(p1): [i-1, i+1]; pool2: [2i, 2i+1]; pool3 s1 p1: [i-1, i+1].
    # Output 3 -> pool3 [2, 4] -> pool2 [4, 9] -> conv [3, 10].
    gm = fx.symbolic_trace(_Functional())
    assert probe_rf(gm, (1, 1, 16, 16), (3, 3)) == [(3, 10), (3, 10)]
    assert "max_pool2d" in gm.code  # the original GraphModule is untouched


def test_tuple_and_dict_outputs() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c3, self.c5 = nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 5)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"small": self.c3(x), "big": self.c5(x)}

    shape = (1, 1, 12, 12)
    assert probe_rf(Model(), shape, (1, 1)) == [(1, 3), (1, 3)]
    assert probe_rf(Model(), shape, (1, 1), output_index="big") == [(1, 5), (1, 5)]
    pair = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2, return_indices=True))
    assert probe_rf(pair, shape, (1, 1)) == [(2, 5), (2, 5)]  # pool [2, 3] -> conv [2, 5]


def test_empty_gradient_raises() -> None:
    class Zero(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 0.0

    with pytest.raises(ProbeError):
        probe_rf(Zero(), (1, 1, 4, 4))


def test_unsupported_module_raises() -> None:
    with pytest.raises(ProbeError):
        prepare_probe_model(nn.Sequential(nn.MaxUnpool2d(2)))


def test_touches_border() -> None:
    shape = (1, 1, 10, 20)
    assert touches_border([(0, 3), (4, 8)], shape) == [True, False]
    assert touches_border([(2, 9), (1, 19)], shape) == [True, True]
    with pytest.raises(ValueError):
        touches_border([(0, 3)], shape)


# ------------------------------------------------------------------------------------------
# Published numbers (Araujo et al., "Computing Receptive Fields of CNNs", Distill 2019)
# ------------------------------------------------------------------------------------------


def _conv(cin: int, cout: int, k: int, s: int = 1, p: int = 0, groups: int = 1) -> nn.Module:
    """Conv + BN + ReLU block."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, p, groups=groups), nn.BatchNorm2d(cout), nn.ReLU()
    )


def _slim_alexnet_v2(c: int = 4) -> nn.Module:
    """alexnet_v2 geometry (slim): conv11/4 VALID, pools 3/2 VALID, other convs SAME."""
    return nn.Sequential(
        _conv(3, c, 11, 4),
        nn.MaxPool2d(3, 2),
        _conv(c, c, 5, p=2),
        nn.MaxPool2d(3, 2),
        _conv(c, c, 3, p=1),
        _conv(c, c, 3, p=1),
        _conv(c, c, 3, p=1),
        nn.MaxPool2d(3, 2),
    )


def test_alexnet_v2_published_rf() -> None:
    # r: 11 -> +2*4 = 19 -> +4*8 = 51 -> +2*8 = 67 -> +2*16 x3 = 163 -> +2*16 = 195 (paper: 195).
    # Start of output i: 4i -> 8i -> 8i - 16 -> 16i - 16 -> 16i - 64 -> 32i - 64 (P = 64).
    # Size 259 -> 63 -> 31 -> 15 -> 7.  i = 3: [32, 226]; i = 4: [64, 258].
    shape = (1, 3, 259, 259)
    model = _slim_alexnet_v2()
    assert output_spatial_shape(model, shape) == (7, 7)
    boxes = probe_rf_many(model, shape, [(3, 3), (4, 3)])
    assert boxes[0] == [(32, 226), (32, 226)]
    assert boxes[0][0][1] - boxes[0][0][0] + 1 == 195
    assert boxes[1][0][0] - boxes[0][0][0] == 32  # effective stride


def _slim_vgg16(c: int = 4) -> nn.Module:
    """VGG-16 geometry: 2-2-3-3-3 convs 3x3 p1, MaxPool 2x2 after each block."""
    layers: list[nn.Module] = []
    cin = 3
    for n_convs in (2, 2, 3, 3, 3):
        for _ in range(n_convs):
            layers.append(_conv(cin, c, 3, p=1))
            cin = c
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def test_vgg16_pool5_published_rf() -> None:
    # r = 1 + 2*2 (block1) + 1 -> 6, j 2; +2*2*2 +2 = 16, j 4; +3*2*4 +4 = 44, j 8;
    # +3*2*8 +8 = 100, j 16; +3*2*16 +16 = 212, j 32 (paper: 212).
    # P = 1*(1+1) + 2*(1+1) + 4*3 + 8*3 + 16*3 = 90: output i -> [32i - 90, 32i + 121].
    # 224 x 224 -> 7 x 7; centre i = 3 -> [6, 217].
    shape = (1, 3, 224, 224)
    boxes = probe_rf_many(_slim_vgg16(), shape, [(3, 3), (4, 3)])
    assert boxes[0] == [(6, 217), (6, 217)]
    assert boxes[1][0] == (38, 223)  # i = 4: [38, 249] clipped at n - 1 = 223


def _slim_mobilenet_v1(c: int = 4) -> nn.Module:
    """MobileNet v1 geometry: conv3/2, then 13 depthwise-separable blocks (3x3 dw + 1x1)."""
    strides = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
    layers: list[nn.Module] = [_conv(3, c, 3, 2, 1)]
    for s in strides:
        layers += [_conv(c, c, 3, s, 1, groups=c), _conv(c, c, 1)]
    return nn.Sequential(*layers)


def test_mobilenet_v1_published_rf() -> None:
    # r: 3 (j 2) -> 7 -> 11 (j 4) -> 19 -> 27 (j 8) -> 43 -> 59 (j 16) -> +5*32 = 219
    # -> 251 (j 32) -> 315 (paper: 315).  PyTorch symmetric padding: P = 1 + 2 + 2 + 4 + 4
    # + 8 + 8 + 5*16 + 16 + 32 = 157, so output i -> [32i - 157, 32i + 157].
    # 352 -> 11; centre i = 5 -> [3, 317].  A strip keeps it cheap (axis 1 is clipped).
    shape = (1, 3, 352, 32)
    boxes = probe_rf_many(_slim_mobilenet_v1(), shape, [(5, 0), (6, 0)])
    assert boxes[0][0] == (3, 317)
    assert boxes[1][0] == (35, 349)
    assert touches_border(boxes[0], shape) == [False, True]


# ------------------------------------------------------------------------------------------
# Property test against a set-propagation oracle (no autograd)
# ------------------------------------------------------------------------------------------

Layer = tuple[str, int, int, int, int, bool]  # kind, k, s, p, d, ceil_mode


def _out_len(layer: Layer, n: int) -> int:
    """Output length of a 1-D layer (PyTorch formulas)."""
    kind, k, s, p, d, ceil = layer
    if kind == "convT":
        return (n - 1) * s - 2 * p + d * (k - 1) + 1
    span = n + 2 * p - d * (k - 1) - 1
    if kind == "conv":
        return span // s + 1
    out = (span + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def _reads(layer: Layer, n_in: int, j: int) -> set[int]:
    """Input indices that output j of a 1-D layer reads."""
    kind, k, s, p, d, _ = layer
    if kind == "convT":  # y = i*s - p + t*d
        return {i for i in range(n_in) for t in range(k) if i * s - p + t * d == j}
    return {j * s - p + t * d for t in range(k)} & set(range(n_in))


def _build(layer: Layer) -> nn.Module:
    kind, k, s, p, d, ceil = layer
    if kind == "conv":
        return nn.Conv1d(2, 2, k, s, p, d)
    if kind == "convT":
        return nn.ConvTranspose1d(2, 2, k, s, p, dilation=d)
    if kind == "max":
        return nn.MaxPool1d(k, s, p, d, ceil_mode=ceil)
    return nn.AvgPool1d(k, s, p, ceil_mode=ceil)


@st.composite
def _layers(draw: st.DrawFn) -> Layer:
    kind = draw(st.sampled_from(["conv", "convT", "max", "avg"]))
    k = draw(st.integers(1, 5))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, k // 2 if kind in ("max", "avg") else k - 1))
    d = draw(st.integers(1, 3)) if kind != "avg" else 1
    if kind == "convT":
        p = min(p, d * (k - 1))  # keep the output non-empty
    return (kind, k, s, p, d, draw(st.booleans()))


@settings(max_examples=60, deadline=None)
@given(layers=st.lists(_layers(), min_size=1, max_size=4), n=st.integers(6, 40), data=st.data())
def test_random_1d_stacks_match_oracle(layers: list[Layer], n: int, data: st.DataObject) -> None:
    lengths = [n]
    for layer in layers:
        lengths.append(_out_len(layer, lengths[-1]))
        if lengths[-1] < 1:
            event("empty output")
            return
    model = nn.Sequential(*(_build(layer) for layer in layers))
    assert output_spatial_shape(model, (1, 2, n)) == (lengths[-1],)
    j = data.draw(st.integers(0, lengths[-1] - 1))
    reached = {j}
    for layer, n_in in zip(reversed(layers), reversed(lengths[:-1]), strict=True):
        reached = set().union(*(_reads(layer, n_in, q) for q in reached))
    if not reached:
        event("output reads only padding")
        with pytest.raises(ProbeError):
            probe_rf(model, (1, 2, n), (j,))
        return
    event("box checked")
    assert probe_rf(model, (1, 2, n), (j,)) == [(min(reached), max(reached))]
