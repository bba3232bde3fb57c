"""ShuffleNetV2 x1.0, torchvision layout.

Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", ECCV 2018. 2,278,604 parameters.

Differences from torchvision, numerically equivalent: the channel shuffle is
``nn.ChannelShuffle(2)`` rather than view/transpose/view, and the global pool is
``nn.AdaptiveAvgPool2d(1)`` + ``torch.flatten`` rather than ``x.mean([2, 3])``.
"""

import torch
from torch import nn


def depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


def pointwise_bn_relu(inp: int, oup: int) -> list[nn.Module]:
    return [nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True)]


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch_features = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                depthwise(inp, stride),
                nn.BatchNorm2d(inp),
                *pointwise_bn_relu(inp, branch_features),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            *pointwise_bn_relu(inp if stride > 1 else branch_features, branch_features),
            depthwise(branch_features, stride),
            nn.BatchNorm2d(branch_features),
            *pointwise_bn_relu(branch_features, branch_features),
        )
        self.shuffle = nn.ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:  # fixed at construction, not shape-dependent
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return self.shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(
        self, stages_repeats: list[int], stages_out_channels: list[int], num_classes: int = 1000
    ) -> None:
        super().__init__()
        input_channels = 3
        output_channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        input_channels = output_channels
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages = zip(
            ["stage2", "stage3", "stage4"], stages_repeats, stages_out_channels[1:-1], strict=True
        )
        for name, repeats, output_channels in stages:
            seq = [InvertedResidual(input_channels, output_channels, 2)]
            seq += [
                InvertedResidual(output_channels, output_channels, 1) for _ in range(repeats - 1)
            ]
            setattr(self, name, nn.Sequential(*seq))
            input_channels = output_channels
        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(*pointwise_bn_relu(input_channels, output_channels))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def shufflenet_v2_x1_0() -> ShuffleNetV2:
    return ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024])
