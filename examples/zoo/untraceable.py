"""A conv net that runs eagerly but cannot be traced by ``torch.fx.symbolic_trace``.

Two submodules branch in Python on traced values, which symbolic tracing cannot
follow (``bool()`` of a Proxy raises ``torch.fx.proxy.TraceError``):

* ``gate`` (``DataGate``) branches on the *data*: ``if x.sum() > 0``;
* ``maybe_pool`` (``ShapeBranchPool``) branches on the *shape*: ``if x.shape[-1] > 32``.

The rest (``stem``, ``body``, ``head``) is ordinary and traceable on its own. Not
in ``ZOO``: it lives in ``UNTRACEABLE`` for tests of the failure path.
"""

import torch
from torch import nn


class DataGate(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.conv(x)
        else:
            return x * 0.5


class ShapeBranchPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 32:
            x = self.pool(x)
        return x


class UntraceableNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        self.gate = DataGate(16)
        self.maybe_pool = ShapeBranchPool()
        self.body = nn.Sequential(
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.gate(x)
        x = self.maybe_pool(x)
        x = self.body(x)
        return self.head(x)


def untraceable_net() -> UntraceableNet:
    return UntraceableNet()
