"""A small SE-ResNet: ResNet basic blocks with squeeze-and-excitation.

Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018. Two idiomatic SE
variants are mixed so that both appear in the graph:

* ``SqueezeExcitation`` (torchvision style): ``x.mean((2, 3), keepdim=True)``,
  1x1 conv, ReLU, 1x1 conv, sigmoid, ``x * w``;
* ``SELayer`` (the widely copied ``senet.pytorch`` style): ``b, c, _, _ =
  x.size()``, ``AdaptiveAvgPool2d(1)``, ``.view(b, c)``, Linear-ReLU-Linear-Sigmoid,
  ``.view(b, c, 1, 1)``, ``x * y.expand_as(x)``.

Stages of 16 / 32 / 64 channels, two blocks each, stride 16 overall.
"""

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        squeeze = channels // reduction
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean((2, 3), keepdim=True)
        w = self.fc2(self.relu(self.fc1(w)))
        w = torch.sigmoid(w)
        return x * w


class SELayer(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SEBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, se: str = "conv") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcitation(planes) if se == "conv" else SELayer(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.se(out)
        if self.downsample is not None:  # fixed at construction
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class SEResNet(nn.Module):
    def __init__(
        self,
        widths: tuple[int, ...] = (16, 32, 64),
        blocks: tuple[int, ...] = (2, 2, 2),
        se_kinds: tuple[str, ...] = ("conv", "linear", "conv"),
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = widths[0]
        layers = []
        for i, (planes, n, se) in enumerate(zip(widths, blocks, se_kinds, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [SEBasicBlock(inplanes, planes, stride, se)]
            stage += [SEBasicBlock(planes, planes, 1, se) for _ in range(n - 1)]
            layers.append(nn.Sequential(*stage))
            inplanes = planes
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def se_resnet_small() -> SEResNet:
    return SEResNet()
