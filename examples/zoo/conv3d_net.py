"""A small 3-D convolutional network for video clips / volumes.

In the spirit of C3D (Tran, Bourdev, Fergus, Torresani, Paluri, "Learning
Spatiotemporal Features with 3D Convolutional Networks", ICCV 2015): the first
pool has kernel (1, 2, 2) so that early temporal information is kept. A dilated
3-D conv (Yu & Koltun, "Multi-Scale Context Aggregation by Dilated
Convolutions", ICLR 2016) widens the receptive field. Input (1, 1, D, H, W).
"""

from torch import nn


def small_conv3d(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(1, 16, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm3d(16),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2)),
        nn.Conv3d(16, 32, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm3d(32),
        nn.ReLU(inplace=True),
        nn.AvgPool3d(kernel_size=2, stride=2),
        nn.Conv3d(32, 64, kernel_size=3, padding=2, dilation=2, bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )
