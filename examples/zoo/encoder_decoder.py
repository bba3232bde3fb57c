"""A small encoder-decoder for dense (per-pixel) prediction, without skips.

After the fully convolutional design of Long, Shelhamer, Darrell, "Fully
Convolutional Networks for Semantic Segmentation", CVPR 2015, with a learned
transposed-convolution decoder as in Noh, Hong, Han, "Learning Deconvolution
Network for Semantic Segmentation", ICCV 2015. The encoder downsamples by 8
(stride-2 conv, 2x2 max pool, stride-2 conv); the decoder upsamples by 8 with
three differently shaped transposed convs. The output has the input's H and W
when both are divisible by 8.
"""

import torch
from torch import nn


def conv_bn_relu(inp: int, oup: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    ]


def up_bn_relu(
    inp: int, oup: int, kernel_size: int, padding: int = 0, output_padding: int = 0
) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(
            inp,
            oup,
            kernel_size,
            stride=2,
            padding=padding,
            output_padding=output_padding,
            bias=False,
        ),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    ]


class EncoderDecoder(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 21) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            *conv_bn_relu(in_channels, 32),
            *conv_bn_relu(32, 64, stride=2),  # H/2
            nn.MaxPool2d(kernel_size=2, stride=2),  # H/4
            *conv_bn_relu(64, 128, stride=2),  # H/8
            *conv_bn_relu(128, 128),
        )
        self.decoder = nn.Sequential(
            *up_bn_relu(128, 64, kernel_size=2),  # H/4
            *up_bn_relu(64, 32, kernel_size=3, padding=1, output_padding=1),  # H/2
            *up_bn_relu(32, 32, kernel_size=4, padding=1),  # H
        )
        self.classifier = nn.Conv2d(32, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.decoder(self.encoder(x)))


def encoder_decoder() -> EncoderDecoder:
    return EncoderDecoder()
