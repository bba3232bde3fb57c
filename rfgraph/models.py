"""The seed tour: every covered 2-D layer of the seed document in one small graph.

``seed_tour()`` builds a classifier for input (1, 3, H, W) whose blocks, in
forward order, walk through the seed's sections. Each block is a named submodule
so that the analysed graph reads as a tour. Every add/cat combines branches with
equal spatial sizes for any H, W (stride-1 size-preserving layers, or identical
strided geometry), so the model runs at odd sizes such as 65x97 and 33x47.

References: dilated conv, Yu & Koltun, ICLR 2016; transposed conv, Zeiler et al.,
ICCV 2011 / Long et al., CVPR 2015; depthwise separable conv, Chollet, CVPR 2017;
flattened conv, Jin, Dundar, Culurciello, "Flattened Convolutional Neural
Networks for Feedforward Acceleration", 2014; grouped conv, Krizhevsky et al.,
NeurIPS 2012; channel shuffle, Zhang et al., "ShuffleNet", CVPR 2018.
"""

import torch
from torch import nn


def bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class SeedTour(nn.Module):
    """Blocks in forward order, with the seed section each one illustrates.

    - ``stem``: 3x3 conv + BatchNorm + ReLU (plain convolution).
    - ``pool_ceil``: max pool, padding 1, ``ceil_mode=True`` -- pooling §1.
    - ``dilated``: 3x3 conv with dilation 3 -- dilated convolution §2.4.
    - ``pool_idx``: max pool with ``return_indices=True`` -- pooling §1.
    - ``spatial_sep``: (1, 3) then (3, 1) conv -- spatially separable §2.5.1.
    - ``depthwise_sep``: depthwise 3x3 then pointwise 1x1 -- depthwise separable
      §2.5.2.
    - ``flattened``: 1x1, (3, 1) depthwise, (1, 3) depthwise -- flattened §2.6;
      added to its input (residual add of two branches).
    - ``grouped``: 3x3 conv with 4 groups -- grouped convolution §2.7.
    - ``shuffle``: ``nn.ChannelShuffle(4)`` after ``grouped`` -- shuffled grouped
      convolution §2.8.
    - ``avgpool`` | ``strided``: average pool (pooling §1) and a stride-2 conv with
      the same geometry, concatenated along channels.
    - ``up``: stride-2 transposed conv -- transposed convolution §2.3.
    - ``head``: global average pool, flatten, linear classifier.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), *bn_relu(16))
        # Pooling (§1): max pool with padding and ceil_mode -> ceil((H-1)/2) + 1.
        self.pool_ceil = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        # Dilated convolution (§2.4): 3x3 kernel, dilation 3, effective extent 7.
        self.dilated = nn.Conv2d(16, 32, 3, padding=3, dilation=3, bias=False)
        self.dilated_act = nn.Sequential(*bn_relu(32))
        # Pooling (§1): max pool returning indices; only the values are used.
        self.pool_idx = nn.MaxPool2d(2, stride=2, return_indices=True)
        # Spatially separable convolution (§2.5.1): (1, 3) then (3, 1).
        self.spatial_sep = nn.Sequential(
            nn.Conv2d(32, 32, (1, 3), padding=(0, 1), bias=False),
            nn.Conv2d(32, 32, (3, 1), padding=(1, 0), bias=False),
            *bn_relu(32),
        )
        # Depthwise separable convolution (§2.5.2): depthwise 3x3, then pointwise 1x1.
        self.depthwise_sep = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False),
            nn.Conv2d(32, 64, 1, bias=False),
            *bn_relu(64),
        )
        # Flattened convolution (§2.6, Jin et al. 2014): 1x1 across channels, then
        # vertical (3, 1) and horizontal (1, 3) depthwise; residual branch of an add.
        self.flattened = nn.Sequential(
            nn.Conv2d(64, 64, 1, bias=False),
            nn.Conv2d(64, 64, (3, 1), padding=(1, 0), groups=64, bias=False),
            nn.Conv2d(64, 64, (1, 3), padding=(0, 1), groups=64, bias=False),
            nn.BatchNorm2d(64),
        )
        self.relu = nn.ReLU(inplace=True)
        # Grouped convolution (§2.7): 4 groups ...
        self.grouped = nn.Conv2d(64, 64, 3, padding=1, groups=4, bias=False)
        self.grouped_act = nn.Sequential(*bn_relu(64))
        # ... followed by a channel shuffle: shuffled grouped convolution (§2.8).
        self.shuffle = nn.ChannelShuffle(4)
        # Pooling (§1) and a strided conv as two branches of a cat; identical
        # geometry (k=3, s=2, p=1) so their outputs always have the same size.
        self.avgpool = nn.AvgPool2d(3, stride=2, padding=1)
        self.strided = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        # Transposed convolution (§2.3): stride 2, kernel 4, padding 1 -> 2x upsample.
        self.up = nn.ConvTranspose2d(128, 32, 4, stride=2, padding=1, bias=False)
        self.up_act = nn.Sequential(*bn_relu(32))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.pool_ceil(x)
        x = self.dilated_act(self.dilated(x))
        x, idx = self.pool_idx(x)
        x = self.spatial_sep(x)
        x = self.depthwise_sep(x)
        x = self.relu(x + self.flattened(x))  # residual add of two branches
        x = self.shuffle(self.grouped_act(self.grouped(x)))
        x = torch.cat((self.avgpool(x), self.strided(x)), dim=1)  # cat of two branches
        x = self.up_act(self.up(x))
        return self.head(x)


def seed_tour() -> SeedTour:
    return SeedTour()


DEFAULT_MODEL = seed_tour
DEFAULT_INPUT = (1, 3, "H", "W")
DEFAULT_AT = {"H": 224, "W": 224}
