"""A small MobileNetV3, torchvision layout (``mobilenetv3.py``, "small" configuration).

Howard et al., "Searching for MobileNetV3", ICCV 2019. ``InvertedResidual``: expand 1x1
conv-BN-act (skipped when the expanded width equals the input), depthwise kxk conv-BN-act,
optional ``SqueezeExcitation`` with ``scale_activation=nn.Hardsigmoid`` and squeeze width
``_make_divisible(expanded // 4, 8)``, project 1x1 conv-BN; residual add when stride 1 and widths
match. Activations ReLU or ``nn.Hardswish``; widths from ``_make_divisible(c * width_mult, 8)``
with ``width_mult`` 0.75. Last conv 6x the last width, avgpool, classifier Linear -> Hardswish
-> Dropout(0.2) -> Linear. Stride 32.
"""

from functools import partial

import torch
from torch import nn

from .efficientnet import Conv2dNormActivation, SqueezeExcitation, _make_divisible


class InvertedResidualConfig:
    def __init__(self, input_channels: int, kernel: int, expanded_channels: int,
                 out_channels: int, use_se: bool, activation: str, stride: int,
                 dilation: int, width_mult: float) -> None:
        self.input_channels = self.adjust_channels(input_channels, width_mult)
        self.kernel = kernel
        self.expanded_channels = self.adjust_channels(expanded_channels, width_mult)
        self.out_channels = self.adjust_channels(out_channels, width_mult)
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride = stride
        self.dilation = dilation

    @staticmethod
    def adjust_channels(channels: int, width_mult: float) -> int:
        return _make_divisible(channels * width_mult, 8)


class InvertedResidual(nn.Module):
    def __init__(self, cnf: InvertedResidualConfig) -> None:
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        layers: list[nn.Module] = []
        activation_layer = nn.Hardswish if cnf.use_hs else nn.ReLU
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, cnf.expanded_channels, 1,
                                               activation_layer=activation_layer))
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.expanded_channels,
                                           cnf.kernel, cnf.stride, groups=cnf.expanded_channels,
                                           activation_layer=activation_layer))
        if cnf.use_se:
            squeeze_channels = _make_divisible(cnf.expanded_channels // 4, 8)
            layers.append(partial(SqueezeExcitation, scale_activation=nn.Hardsigmoid)(
                cnf.expanded_channels, squeeze_channels))
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.out_channels, 1,
                                           activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result += input
        return result


class MobileNetV3(nn.Module):
    def __init__(self, width_mult: float = 0.75, last_channel: int = 256,
                 dropout: float = 0.2, num_classes: int = 10) -> None:
        super().__init__()
        bneck = partial(InvertedResidualConfig, width_mult=width_mult)
        settings = [
            bneck(16, 3, 16, 16, True, "RE", 2, 1),  # C1
            bneck(16, 3, 72, 24, False, "RE", 2, 1),  # C2
            bneck(24, 3, 88, 24, False, "RE", 1, 1),
            bneck(24, 5, 96, 40, True, "HS", 2, 1),  # C3
            bneck(40, 5, 240, 40, True, "HS", 1, 1),
            bneck(40, 5, 120, 48, True, "HS", 1, 1),
            bneck(48, 5, 288, 96, True, "HS", 2, 1),  # C4
            bneck(96, 5, 576, 96, True, "HS", 1, 1),
        ]
        first = settings[0].input_channels
        layers: list[nn.Module] = [Conv2dNormActivation(3, first, 3, 2,
                                                        activation_layer=nn.Hardswish)]
        layers += [InvertedResidual(cnf) for cnf in settings]
        last_in = settings[-1].out_channels
        last_out = 6 * last_in
        layers.append(Conv2dNormActivation(last_in, last_out, 1, activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_out, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def mobilenet_v3_small() -> MobileNetV3:
    return MobileNetV3()
