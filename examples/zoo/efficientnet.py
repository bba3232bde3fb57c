"""A small EfficientNet (B0 layout, reduced), torchvision style (``efficientnet.py``).

Tan, Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019. ``MBConv``: expand
1x1 conv-BN-SiLU (skipped at expand ratio 1), depthwise kxk conv-BN-SiLU, torchvision
``SqueezeExcitation`` (``AdaptiveAvgPool2d(1)`` -> 1x1 conv -> SiLU -> 1x1 conv -> sigmoid ->
``scale * input``), project 1x1 conv-BN; ``StochasticDepth(p, "row")`` + residual add when
stride 1 and widths match. Stem conv 3x3 stride 2, head 1x1 conv to 4x the last width,
avgpool, flatten, Dropout + Linear. Stages (expand, kernel, stride, in, out, layers):
(1,3,1,16,8,1), (6,3,2,8,16,2), (6,5,2,16,24,2), (6,3,2,24,40,2), stride 16.
"""

from collections.abc import Callable

import torch
from torch import nn

from .swin import StochasticDepth


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # make sure that round down does not go down by more than 10%
        new_v += divisor
    return new_v


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1,
                 activation_layer: Callable[..., nn.Module] | None = nn.ReLU) -> None:
        padding = (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation."""

    def __init__(self, input_channels: int, squeeze_channels: int,
                 activation: Callable[..., nn.Module] = nn.ReLU,
                 scale_activation: Callable[..., nn.Module] = nn.Sigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, input: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(input)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        scale = self._scale(input)
        return scale * input


class MBConv(nn.Module):
    def __init__(self, expand_ratio: float, kernel: int, stride: int, input_channels: int,
                 out_channels: int, stochastic_depth_prob: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and input_channels == out_channels
        layers: list[nn.Module] = []
        expanded_channels = _make_divisible(input_channels * expand_ratio, 8)
        if expanded_channels != input_channels:
            layers.append(Conv2dNormActivation(input_channels, expanded_channels, 1,
                                               activation_layer=nn.SiLU))
        layers.append(Conv2dNormActivation(expanded_channels, expanded_channels, kernel, stride,
                                           groups=expanded_channels, activation_layer=nn.SiLU))
        squeeze_channels = max(1, input_channels // 4)
        layers.append(SqueezeExcitation(expanded_channels, squeeze_channels,
                                        activation=lambda: nn.SiLU(inplace=True)))
        layers.append(Conv2dNormActivation(expanded_channels, out_channels, 1,
                                           activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = out_channels

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += input
        return result


class EfficientNet(nn.Module):
    def __init__(self, stages: tuple = ((1, 3, 1, 16, 8, 1), (6, 3, 2, 8, 16, 2),
                                        (6, 5, 2, 16, 24, 2), (6, 3, 2, 24, 40, 2)),
                 dropout: float = 0.2, stochastic_depth_prob: float = 0.2,
                 num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [Conv2dNormActivation(3, stages[0][3], 3, 2,
                                                        activation_layer=nn.SiLU)]
        total_stage_blocks = sum(s[5] for s in stages)
        stage_block_id = 0
        for expand, kernel, stride, cin, cout, n in stages:
            stage: list[nn.Module] = []
            for i in range(n):
                sd_prob = stochastic_depth_prob * float(stage_block_id) / total_stage_blocks
                stage.append(MBConv(expand, kernel, stride if i == 0 else 1,
                                    cin if i == 0 else cout, cout, sd_prob))
                stage_block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = stages[-1][4]
        last_out = 4 * last_in
        layers.append(Conv2dNormActivation(last_in, last_out, 1, activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True),
                                        nn.Linear(last_out, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def efficientnet_small() -> EfficientNet:
    return EfficientNet()
