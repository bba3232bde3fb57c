"""A small DeepLabv3: dilated backbone + ASPP head, torchvision layout.

Chen, Papandreou, Schroff, Adam, "Rethinking Atrous Convolution for Semantic
Image Segmentation", 2017. The backbone strides by 8 (three stride-2 convs) and
then, instead of striding further, uses 3x3 convs with dilation 2 and 4 (output
stride 8, as torchvision's ``replace_stride_with_dilation``). The head is
torchvision's ``DeepLabHead``: ASPP with a 1x1 branch, three dilated 3x3
branches (rates 6 / 12 / 18) and an image-pooling branch upsampled back with
``F.interpolate(size=x.shape[-2:])``, ``torch.cat``, 1x1 projection, 3x3 conv
and a 1x1 classifier. The logits are upsampled to the input size and returned
as ``{"out": logits}`` like torchvision's segmentation models.
"""

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(inp: int, oup: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class ASPPConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class ASPPPooling(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for mod in self:
            x = mod(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(
        self, in_channels: int, atrous_rates: tuple[int, ...], out_channels: int = 32
    ) -> None:
        super().__init__()
        modules: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            )
        ]
        for rate in atrous_rates:
            modules.append(ASPPConv(in_channels, out_channels, rate))
        modules.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(modules)
        self.project = nn.Sequential(
            nn.Conv2d(len(self.convs) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(0.5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = []
        for conv in self.convs:
            res.append(conv(x))
        res = torch.cat(res, dim=1)
        return self.project(res)


class DeepLabHead(nn.Sequential):
    def __init__(self, in_channels: int, num_classes: int, channels: int = 32) -> None:
        super().__init__(
            ASPP(in_channels, (6, 12, 18), channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, num_classes, 1),
        )


class DeepLabV3(nn.Module):
    def __init__(self, num_classes: int = 21) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            conv_bn_relu(3, 16, stride=2),  # /2
            conv_bn_relu(16, 32, stride=2),  # /4
            conv_bn_relu(32, 48, stride=2),  # /8
            conv_bn_relu(48, 64, dilation=2),  # /8, would be /16
            conv_bn_relu(64, 64, dilation=4),  # /8, would be /32
        )
        self.classifier = DeepLabHead(64, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        input_shape = x.shape[-2:]
        features = self.backbone(x)
        out = self.classifier(features)
        out = F.interpolate(out, size=input_shape, mode="bilinear", align_corners=False)
        return {"out": out}


def deeplab_small() -> DeepLabV3:
    return DeepLabV3()
