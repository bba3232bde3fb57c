"""Reference architectures in plain PyTorch (no torchvision), for tests and docs.

``ZOO`` maps a name to a zero-argument factory; ``ZOO_INPUTS`` gives the symbolic
input shape of each model (strings are free spatial dimensions).
"""

from collections.abc import Callable

from torch import nn

from .alexnet import alexnet
from .conv3d_net import small_conv3d
from .encoder_decoder import encoder_decoder
from .mobilenet_v2 import mobilenet_v2
from .resnet50 import resnet50
from .shufflenet_v2 import shufflenet_v2_x1_0
from .vgg16 import vgg16

ZOO: dict[str, Callable[[], nn.Module]] = {
    "alexnet": alexnet,
    "vgg16": vgg16,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "shufflenet_v2_x1_0": shufflenet_v2_x1_0,
    "small_conv3d": small_conv3d,
    "encoder_decoder": encoder_decoder,
}

ZOO_INPUTS: dict[str, tuple] = {
    "alexnet": (1, 3, "H", "W"),
    "vgg16": (1, 3, "H", "W"),
    "resnet50": (1, 3, "H", "W"),
    "mobilenet_v2": (1, 3, "H", "W"),
    "shufflenet_v2_x1_0": (1, 3, "H", "W"),
    "small_conv3d": (1, 1, "D", "H", "W"),
    "encoder_decoder": (1, 3, "H", "W"),
}

__all__ = [
    "ZOO",
    "ZOO_INPUTS",
    "alexnet",
    "encoder_decoder",
    "mobilenet_v2",
    "resnet50",
    "shufflenet_v2_x1_0",
    "small_conv3d",
    "vgg16",
]
