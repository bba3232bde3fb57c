"""A small U-Net in the style of the popular milesial/Pytorch-UNet.

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical
Image Segmentation", MICCAI 2015. Three down levels (``MaxPool2d(2)`` + double
3x3 conv with padding 1) and three up levels: the two deepest upsample with
``ConvTranspose2d(k=2, s=2)``, the last with ``nn.Upsample(scale_factor=2,
mode="bilinear")``. As in milesial's ``Up``, the upsampled map is padded
asymmetrically to the skip's size with ``F.pad`` (``diffY = skip.size()[2] -
x.size()[2]``), so the output has the input's H and W at *any* size, odd ones
included (flooring max pools lose a row that the padding gives back).
"""

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Module):
    """(conv 3x3 => BN => ReLU) * 2"""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        super().__init__()
        if not mid_channels:
            mid_channels = out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """Downscaling with maxpool then double conv"""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Upscaling, pad to the skip's size, concatenate, double conv.

    ``in_channels`` is the number of channels coming from below, ``skip_channels`` those of
    the skip connection.
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, bilinear: bool = False
    ) -> None:
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            cat_channels = in_channels + skip_channels
            self.conv = DoubleConv(cat_channels, out_channels, cat_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels // 2 + skip_channels, out_channels)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        # input is CHW
        diffY = x2.size()[2] - x1.size()[2]
        diffX = x2.size()[3] - x1.size()[3]

        x1 = F.pad(x1, [diffX // 2, diffX - diffX // 2, diffY // 2, diffY - diffY // 2])
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, n_channels: int = 3, n_classes: int = 2, base: int = 16) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.n_classes = n_classes
        c1, c2, c3, c4 = base, 2 * base, 4 * base, 8 * base
        self.inc = DoubleConv(n_channels, c1)
        self.down1 = Down(c1, c2)
        self.down2 = Down(c2, c3)
        self.down3 = Down(c3, c4)
        self.up1 = Up(c4, c3, c3)  # transposed conv
        self.up2 = Up(c3, c2, c2)  # transposed conv
        self.up3 = Up(c2, c1, c1, bilinear=True)  # nn.Upsample
        self.outc = OutConv(c1, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up1(x4, x3)
        x = self.up2(x, x2)
        x = self.up3(x, x1)
        return self.outc(x)


def unet_small() -> UNet:
    return UNet()
