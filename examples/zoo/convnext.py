"""A small ConvNeXt: two stages of ConvNeXt blocks, official / torchvision layout.

Liu, Mao, Wu, Feichtenhofer, Darrell, Xie, "A ConvNet for the 2020s", CVPR
2022. Patchify stem (conv 4x4 stride 4 + channels-first LayerNorm), blocks of
depthwise 7x7 conv -> ``permute(0, 2, 3, 1)`` -> ``nn.LayerNorm`` -> Linear(C,
4C) -> GELU -> Linear(4C, C) -> layer scale ``self.gamma * x`` -> ``permute(0,
3, 1, 2)`` -> residual add, a LayerNorm + conv 2x2 stride 2 downsampling layer
between the stages, and a ``x.mean([-2, -1])`` -> LayerNorm -> Linear head.
Channels-first LayerNorm is ``permute -> nn.LayerNorm -> permute`` (as
torchvision's ``LayerNorm2d``). Widths 24 / 48, depths 2 / 2, stride 8.
"""

import torch
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an (N, C, H, W) tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        return x.permute(0, 3, 1, 2)


class Block(nn.Module):
    def __init__(self, dim: int, layer_scale_init_value: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        return input + self.drop_path(x)


class ConvNeXt(nn.Module):
    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 10,
        depths: tuple[int, ...] = (2, 2),
        dims: tuple[int, ...] = (24, 48),
    ) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList()
        stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0])
        )
        self.downsample_layers.append(stem)
        for i in range(len(dims) - 1):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)
                )
            )
        self.stages = nn.ModuleList(
            nn.Sequential(*[Block(dim) for _ in range(depth)])
            for dim, depth in zip(dims, depths, strict=True)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
        return self.norm(x.mean([-2, -1]))  # global average pooling, (N, C, H, W) -> (N, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def convnext_small_block_net() -> ConvNeXt:
    return ConvNeXt()
