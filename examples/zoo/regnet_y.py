"""A small RegNet-Y, torchvision layout (``regnet.py``).

Radosavovic et al., "Designing Network Design Spaces", CVPR 2020. ``ResBottleneckBlock``:
1x1 conv-BN-ReLU, 3x3 group conv (group width 8, stride on the first block of a stage)
-BN-ReLU, torchvision ``SqueezeExcitation`` (squeeze = round(0.25 * block input width),
ReLU, sigmoid), 1x1 conv-BN; a 1x1 stride conv-BN projection when the shape changes; add;
ReLU. Stem conv 3x3 stride 2 (16 channels); four stages of widths 24 / 56 / 104 / 208 and
depths 1 / 2 / 4 / 2 (nine SE blocks); avgpool, flatten, Linear. Stride 32.
"""

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from .efficientnet import Conv2dNormActivation, SqueezeExcitation


class BottleneckTransform(nn.Sequential):
    def __init__(self, width_in: int, width_out: int, stride: int, group_width: int,
                 bottleneck_multiplier: float, se_ratio: float | None) -> None:
        layers: dict[str, nn.Module] = {}
        w_b = int(round(width_out * bottleneck_multiplier))
        g = w_b // group_width
        layers["a"] = Conv2dNormActivation(width_in, w_b, kernel_size=1, stride=1)
        layers["b"] = Conv2dNormActivation(w_b, w_b, kernel_size=3, stride=stride, groups=g)
        if se_ratio:
            width_se_out = int(round(se_ratio * width_in))
            layers["se"] = SqueezeExcitation(input_channels=w_b, squeeze_channels=width_se_out,
                                             activation=nn.ReLU)
        layers["c"] = Conv2dNormActivation(w_b, width_out, kernel_size=1, stride=1,
                                           activation_layer=None)
        super().__init__(OrderedDict(layers))


class ResBottleneckBlock(nn.Module):
    def __init__(self, width_in: int, width_out: int, stride: int, group_width: int = 8,
                 bottleneck_multiplier: float = 1.0, se_ratio: float | None = 0.25) -> None:
        super().__init__()
        self.proj = None
        should_proj = (width_in != width_out) or (stride != 1)
        if should_proj:
            self.proj = Conv2dNormActivation(width_in, width_out, kernel_size=1, stride=stride,
                                             activation_layer=None)
        self.f = BottleneckTransform(width_in, width_out, stride, group_width,
                                     bottleneck_multiplier, se_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            x = self.proj(x) + self.f(x)
        else:
            x = x + self.f(x)
        return self.activation(x)


class AnyStage(nn.Sequential):
    def __init__(self, width_in: int, width_out: int, stride: int, depth: int,
                 group_width: int, se_ratio: float) -> None:
        super().__init__()
        for i in range(depth):
            block = ResBottleneckBlock(width_in if i == 0 else width_out, width_out,
                                       stride if i == 0 else 1, group_width, 1.0, se_ratio)
            self.add_module(f"block{i + 1}", block)


class RegNet(nn.Module):
    def __init__(self, widths: Sequence[int] = (24, 56, 104, 208),
                 depths: Sequence[int] = (1, 2, 4, 2), group_width: int = 8,
                 se_ratio: float = 0.25, stem_width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = Conv2dNormActivation(3, stem_width, kernel_size=3, stride=2)
        current_width = stem_width
        blocks = []
        for i, (width_out, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks.append((f"block{i + 1}", AnyStage(current_width, width_out, 2, depth,
                                                     group_width, se_ratio)))
            current_width = width_out
        self.trunk_output = nn.Sequential()
        for name, stage in blocks:
            self.trunk_output.add_module(name, stage)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_features=current_width, out_features=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.trunk_output(x)
        x = self.avgpool(x)
        x = x.flatten(start_dim=1)
        return self.fc(x)


def regnet_y_small() -> RegNet:
    return RegNet()
