"""A small ConvNeXt with stochastic depth, torchvision layout (``convnext.py``).

Liu et al., "A ConvNet for the 2020s", CVPR 2022. ``CNBlock``: depthwise 7x7 conv ->
``Permute([0, 2, 3, 1])`` -> LayerNorm -> Linear(C, 4C) -> GELU -> Linear(4C, C) ->
``Permute([0, 3, 1, 2])``; layer scale ``self.layer_scale * self.block(input)`` (a (C, 1, 1)
parameter); ``StochasticDepth(p, "row")`` (torchvision's, see :mod:`.swin`); ``result +=
input``. Stem conv 4x4 stride 4 + ``LayerNorm2d``; ``LayerNorm2d`` + conv 2x2 stride 2 between
stages; head avgpool -> ``LayerNorm2d`` -> flatten -> Linear. Widths 24 / 48 / 96, depths
2 / 2 / 2, stochastic depth rising linearly to 0.1, stride 16.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .swin import Permute, StochasticDepth


class LayerNorm2d(nn.LayerNorm):
    """torchvision's ``LayerNorm2d``: LayerNorm over C of an (N, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        x = x.permute(0, 3, 1, 2)
        return x


class CNBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(in_features=dim, out_features=4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(in_features=4 * dim, out_features=dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        result = self.layer_scale * self.block(input)
        result = self.stochastic_depth(result)
        result += input
        return result


class ConvNeXt(nn.Module):
    def __init__(self, dims: Sequence[int] = (24, 48, 96), depths: Sequence[int] = (2, 2, 2),
                 stochastic_depth_prob: float = 0.1, layer_scale: float = 1e-6,
                 num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(3, dims[0], kernel_size=4, stride=4, padding=0, bias=True),
            LayerNorm2d(dims[0], eps=1e-6),
        )]
        total_stage_blocks = sum(depths)
        stage_block_id = 0
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            stage: list[nn.Module] = []
            for _ in range(depth):
                sd_prob = stochastic_depth_prob * stage_block_id / (total_stage_blocks - 1.0)
                stage.append(CNBlock(dim, layer_scale, sd_prob))
                stage_block_id += 1
            layers.append(nn.Sequential(*stage))
            if i < len(dims) - 1:
                layers.append(nn.Sequential(
                    LayerNorm2d(dim, eps=1e-6),
                    nn.Conv2d(dim, dims[i + 1], kernel_size=2, stride=2),
                ))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1), nn.Linear(dims[-1], num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(x)


def convnext_sd_small() -> ConvNeXt:
    return ConvNeXt()
