"""A small GoogLeNet with the two auxiliary classifiers, torchvision layout (``googlenet.py``).

Szegedy et al., "Going Deeper with Convolutions", CVPR 2015. ``BasicConv2d`` (conv without
bias, BN eps 0.001, ReLU), ceil_mode max pools, ``Inception`` blocks (1x1 / 1x1-3x3 /
1x1-3x3 (torchvision's 3x3 in place of 5x5) / maxpool-1x1 branches, ``torch.cat``), and
``InceptionAux`` heads (``F.adaptive_avg_pool2d(x, (4, 4))`` -> 1x1 conv -> flatten -> fc-ReLU
-> Dropout(0.7) -> fc) after inception 4a and 4d, run only ``if self.training``. ``forward``
returns ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`` in training mode and the plain
logits tensor in eval mode (``eager_outputs``), as torchvision does. Widths are 1/4 of
GoogLeNet's; stride 32.
"""

from collections import namedtuple
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])
GoogLeNetOutputs.__annotations__ = {"logits": Tensor, "aux_logits2": Tensor | None,
                                    "aux_logits1": Tensor | None}


class BasicConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        x = self.bn(x)
        return F.relu(x, inplace=True)


class Inception(nn.Module):
    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def _forward(self, x: Tensor) -> list[Tensor]:
        return [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]

    def forward(self, x: Tensor) -> Tensor:
        outputs = self._forward(x)
        return torch.cat(outputs, 1)


class InceptionAux(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 32, kernel_size=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 256)
        self.fc2 = nn.Linear(256, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(x, (4, 4))  # aux1: N x 128 x 4 x 4, aux2: N x 132 x 4 x 4
        x = self.conv(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x), inplace=True)
        x = self.dropout(x)
        return self.fc2(x)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 10, aux_logits: bool = True,
                 transform_input: bool = False, dropout: float = 0.2,
                 dropout_aux: float = 0.7) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.conv1 = BasicConv2d(3, 16, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(16, 16, kernel_size=1)
        self.conv3 = BasicConv2d(16, 48, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(48, 16, 24, 32, 4, 8, 8)
        self.inception3b = Inception(64, 32, 32, 48, 8, 24, 16)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(120, 48, 24, 52, 4, 12, 16)
        self.inception4b = Inception(128, 40, 28, 56, 6, 16, 16)
        self.inception4c = Inception(128, 32, 32, 64, 6, 16, 16)
        self.inception4d = Inception(128, 28, 36, 72, 8, 16, 16)
        self.inception4e = Inception(132, 64, 40, 80, 8, 32, 32)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(208, 64, 40, 80, 8, 32, 32)
        self.inception5b = Inception(208, 96, 48, 96, 12, 32, 32)
        if aux_logits:
            self.aux1: InceptionAux | None = InceptionAux(128, num_classes, dropout=dropout_aux)
            self.aux2: InceptionAux | None = InceptionAux(132, num_classes, dropout=dropout_aux)
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(256, num_classes)

    def _transform_input(self, x: Tensor) -> Tensor:
        if self.transform_input:
            x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
            x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
            x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
            x = torch.cat((x_ch0, x_ch1, x_ch2), 1)
        return x

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1: Tensor | None = None
        if self.aux1 is not None:
            if self.training:
                aux1 = self.aux1(x)
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2: Tensor | None = None
        if self.aux2 is not None:
            if self.training:
                aux2 = self.aux2(x)
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = torch.flatten(self.avgpool(x), 1)
        x = self.dropout(x)
        x = self.fc(x)
        return x, aux2, aux1

    def eager_outputs(self, x: Tensor, aux2: Tensor | None, aux1: Tensor | None,
                      ) -> GoogLeNetOutputs | Tensor:
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x

    def forward(self, x: Tensor) -> GoogLeNetOutputs | Tensor:
        x = self._transform_input(x)
        x, aux2, aux1 = self._forward(x)
        return self.eager_outputs(x, aux2, aux1)


def googlenet_aux() -> GoogLeNet:
    return GoogLeNet()
