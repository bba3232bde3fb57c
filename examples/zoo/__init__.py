"""Reference architectures in plain PyTorch (no torchvision), for tests and docs.

``ZOO`` maps a name to a zero-argument factory; ``ZOO_INPUTS`` gives the symbolic
input shape of each model (strings are free spatial dimensions).

``GRAPH_ZOO`` / ``GRAPH_ZOO_INPUTS`` (same format) hold small graph-level architectures
written the way real code bases write them: functional calls, ``x.size()`` / ``view``,
``F.interpolate(size=x.shape[-2:])``, ``F.pad``, ``x.mean(dim)``, ``permute``, ``torch.cat``,
dict outputs. They are kept out of ``ZOO`` because tests/test_zoo_models.py asserts that
no ``ZOO`` graph contains ``view`` / ``reshape`` / ``size`` and tests/test_zoo_analysis.py
requires a ``SIZES`` entry for every ``ZOO`` model. ``UNTRACEABLE`` holds models that run
eagerly but fail ``torch.fx.symbolic_trace``.
"""

from collections.abc import Callable

from torch import nn

from .alexnet import alexnet
from .channel_shuffle_view import shufflenet_view_small
from .conv3d_net import small_conv3d
from .convnext import convnext_small_block_net
from .densenet import densenet_small
from .encoder_decoder import encoder_decoder
from .fcn_deeplab import deeplab_small
from .inception import inception_small
from .mobilenet_v2 import mobilenet_v2
from .resnet50 import resnet50
from .se_net import se_resnet_small
from .shufflenet_v2 import shufflenet_v2_x1_0
from .unet import unet_small
from .untraceable import untraceable_net
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

GRAPH_ZOO: dict[str, Callable[[], nn.Module]] = {
    "densenet_small": densenet_small,
    "inception_small": inception_small,
    "se_resnet_small": se_resnet_small,
    "unet_small": unet_small,
    "deeplab_small": deeplab_small,
    "convnext_small_block_net": convnext_small_block_net,
    "shufflenet_view_small": shufflenet_view_small,
}

GRAPH_ZOO_INPUTS: dict[str, tuple] = {name: (1, 3, "H", "W") for name in GRAPH_ZOO}

UNTRACEABLE: dict[str, Callable[[], nn.Module]] = {"untraceable_net": untraceable_net}

__all__ = [
    "GRAPH_ZOO",
    "GRAPH_ZOO_INPUTS",
    "UNTRACEABLE",
    "ZOO",
    "ZOO_INPUTS",
    "alexnet",
    "convnext_small_block_net",
    "deeplab_small",
    "densenet_small",
    "encoder_decoder",
    "inception_small",
    "mobilenet_v2",
    "resnet50",
    "se_resnet_small",
    "shufflenet_v2_x1_0",
    "shufflenet_view_small",
    "small_conv3d",
    "unet_small",
    "untraceable_net",
    "vgg16",
]

# -- modern architectures -------------------------------------------------------------------------
# ``MODERN_ZOO``: transformers (ViT, Swin), stochastic depth (ConvNeXt, EfficientNet, Swin),
# squeeze-and-excitation stacks (EfficientNet, RegNet-Y, MobileNetV3) and a GoogLeNet whose
# auxiliary heads run only in training mode. ``MODERN_ZOO_SIZES`` lists the (H, W) sizes the tests
# use: two per model, one of them odd; ``vit_fixed`` (torchvision style, ``torch._assert(h ==
# image_size)``) is valid at its one image size only, 67 x 67. Swin's shifted-window masks are
# buffers built for a 64 x 64 input: valid for H, W in 52..67.
from .convnext_sd import convnext_sd_small  # noqa: E402
from .efficientnet import efficientnet_small  # noqa: E402
from .googlenet_aux import googlenet_aux  # noqa: E402
from .mobilenet_v3 import mobilenet_v3_small  # noqa: E402
from .regnet_y import regnet_y_small  # noqa: E402
from .swin import swin_tiny_small  # noqa: E402
from .vit import vit_dynamic, vit_fixed  # noqa: E402

MODERN_ZOO: dict[str, Callable[[], nn.Module]] = {
    "vit_dynamic": vit_dynamic,
    "vit_fixed": vit_fixed,
    "swin_tiny_small": swin_tiny_small,
    "convnext_sd_small": convnext_sd_small,
    "efficientnet_small": efficientnet_small,
    "regnet_y_small": regnet_y_small,
    "mobilenet_v3_small": mobilenet_v3_small,
    "googlenet_aux": googlenet_aux,
}

MODERN_ZOO_INPUTS: dict[str, tuple] = {name: (1, 3, "H", "W") for name in MODERN_ZOO}

MODERN_ZOO_SIZES: dict[str, list[tuple[int, int]]] = {
    "vit_dynamic": [(64, 64), (59, 77)],
    "vit_fixed": [(67, 67)],
    "swin_tiny_small": [(64, 64), (61, 55)],
    "convnext_sd_small": [(64, 64), (67, 93)],
    "efficientnet_small": [(64, 64), (67, 93)],
    "regnet_y_small": [(64, 64), (67, 93)],
    "mobilenet_v3_small": [(64, 64), (67, 93)],
    "googlenet_aux": [(64, 64), (67, 93)],
}

__all__ += [
    "MODERN_ZOO",
    "MODERN_ZOO_INPUTS",
    "MODERN_ZOO_SIZES",
    "convnext_sd_small",
    "efficientnet_small",
    "googlenet_aux",
    "mobilenet_v3_small",
    "regnet_y_small",
    "swin_tiny_small",
    "vit_dynamic",
    "vit_fixed",
]
