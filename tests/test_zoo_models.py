"""Reference architectures: parameter counts against torchvision's published
numbers, output shapes, fx traceability and meta-device forwards."""

import functools

import pytest
import torch
from torch import nn

from examples.zoo import ZOO, ZOO_INPUTS
from rfgraph import models

# Published torchvision parameter counts (torchvision.models docs), an oracle
# independent of our code.
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "shufflenet_v2_x1_0": 2_278_604,
}
IMAGENET = sorted(TORCHVISION_PARAMS)
# Cheap enough for a real CPU forward at 224x224 (AlexNet/VGG go through meta).
CPU_FORWARD = ["alexnet", "mobilenet_v2", "resnet50", "shufflenet_v2_x1_0"]
SEED_SIZES = [(224, 224), (65, 97), (33, 47)]


@functools.cache
def build(name: str) -> nn.Module:
    """One CPU instance per zoo model, shared by the tests (never mutated)."""
    torch.manual_seed(0)
    return ZOO[name]().eval()


def meta_forward(factory, shape: tuple[int, ...]) -> torch.Size:
    model = factory().eval().to("meta")
    assert all(p.is_meta for p in model.parameters())
    with torch.no_grad():
        out = model(torch.empty(shape, device="meta"))
    assert out.is_meta
    return out.shape


def test_zoo_tables_agree():
    assert set(ZOO) == set(ZOO_INPUTS)
    assert set(TORCHVISION_PARAMS) <= set(ZOO)
    for spec in ZOO_INPUTS.values():
        assert spec[0] == 1 and all(isinstance(d, (int, str)) for d in spec)


@pytest.mark.parametrize("name", IMAGENET)
def test_param_count_matches_torchvision(name):
    assert sum(p.numel() for p in build(name).parameters()) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", CPU_FORWARD)
def test_imagenet_forward_cpu(name):
    with torch.no_grad():
        out = build(name)(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_forward_meta(name):
    assert meta_forward(ZOO[name], (1, 3, 224, 224)) == (1, 1000)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_fx_trace_matches_eager(name):
    model = build(name)
    gm = torch.fx.symbolic_trace(model)
    assert any(n.op == "call_module" for n in gm.graph.nodes)
    if name in CPU_FORWARD or name not in TORCHVISION_PARAMS:
        shape = (1, 1, 8, 32, 32) if name == "small_conv3d" else (1, 3, 64, 64)
        x = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(gm(x), model(x))


def test_fx_trace_has_no_reshape_or_size():
    for name in ZOO:
        gm = torch.fx.symbolic_trace(build(name))
        targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_method"}
        assert not targets & {"view", "reshape", "size"}, (name, targets)


def test_shufflenet_uses_channel_shuffle_module():
    shuffles = [
        m for m in build("shufflenet_v2_x1_0").modules() if isinstance(m, nn.ChannelShuffle)
    ]
    assert len(shuffles) == 16 and all(m.groups == 2 for m in shuffles)


@pytest.mark.parametrize("dhw", [(8, 32, 32), (5, 17, 23), (16, 112, 112)])
def test_conv3d_net(dhw):
    model = build("small_conv3d")
    with torch.no_grad():
        assert model(torch.randn(1, 1, *dhw)).shape == (1, 10)
    assert meta_forward(ZOO["small_conv3d"], (1, 1, *dhw)) == (1, 10)
    kinds = {type(m) for m in model.modules()}
    assert {nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d} <= kinds
    assert any(isinstance(m, nn.Conv3d) and m.dilation != (1, 1, 1) for m in model.modules())


@pytest.mark.parametrize("hw", [(64, 64), (96, 128), (224, 224)])
def test_encoder_decoder_preserves_size(hw):
    with torch.no_grad():
        out = build("encoder_decoder")(torch.randn(1, 3, *hw))
    assert out.shape == (1, 21, *hw)
    assert meta_forward(ZOO["encoder_decoder"], (1, 3, *hw)) == (1, 21, *hw)
    ups = [m for m in build("encoder_decoder").modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.kernel_size, m.padding, m.output_padding) for m in ups] == [
        ((2, 2), (0, 0), (0, 0)),
        ((3, 3), (1, 1), (1, 1)),
        ((4, 4), (1, 1), (0, 0)),
    ]


# --- seed tour -------------------------------------------------------------


def test_seed_tour_defaults():
    assert models.DEFAULT_MODEL is models.seed_tour
    assert models.DEFAULT_INPUT == (1, 3, "H", "W")
    assert models.DEFAULT_AT == {"H": 224, "W": 224}


@pytest.mark.parametrize("hw", SEED_SIZES)
def test_seed_tour_runs(hw):
    torch.manual_seed(0)
    model = models.seed_tour().eval()
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 10)
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), out)
    assert meta_forward(models.seed_tour, (1, 3, *hw)) == (1, 10)


def test_seed_tour_covers_the_seed_layers():
    model = models.seed_tour()
    mods = dict(model.named_modules())
    assert mods["pool_ceil"].ceil_mode and mods["pool_ceil"].padding == 1
    assert mods["pool_idx"].return_indices
    assert mods["dilated"].dilation == (3, 3)
    assert isinstance(mods["up"], nn.ConvTranspose2d) and mods["up"].stride == (2, 2)
    assert [m.kernel_size for m in model.spatial_sep if isinstance(m, nn.Conv2d)] == [
        (1, 3),
        (3, 1),
    ]
    dw, pw = (m for m in model.depthwise_sep if isinstance(m, nn.Conv2d))
    assert dw.groups == dw.in_channels == dw.out_channels and pw.kernel_size == (1, 1)
    flat = [m for m in model.flattened if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.groups > 1) for m in flat] == [
        ((1, 1), False),
        ((3, 1), True),
        ((1, 3), True),
    ]
    assert mods["grouped"].groups == 4 and mods["shuffle"].groups == 4
    kinds = {type(m) for m in model.modules()}
    assert {
        nn.AvgPool2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.AdaptiveAvgPool2d,
        nn.Flatten,
        nn.Linear,
    } <= kinds
    assert model.head[-1].out_features == 10

    gm = torch.fx.symbolic_trace(model)
    fns = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.cat in fns
    assert any(getattr(f, "__name__", "") == "add" for f in fns)
