"""A small Swin Transformer: shifted windows, relative position bias, patch merging.

Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", ICCV
2021. Written after torchvision's ``swin_transformer.py`` (window padding with ``F.pad``,
``torch.roll`` for the shift, ``_patch_merging_pad``, ``stochastic_depth``, channels-last
``Permute`` modules, avg-pool head) and the official code (``window_partition`` /
``window_reverse`` with ``//`` sizes, ``relative_position_index`` and the shifted-window
attention mask registered as buffers at construction).

The mask buffers are built for the window-padded feature maps of a 64x64 input (16x16 after
the 4x4 patch embedding, 8x8 after merging), so the model is valid for every input whose
padded maps have those sizes (H, W in 52..67); the pads are computed from the input, as
torchvision does. Window 4, dims 24 / 48 / 96, depths 2 / 2 / 1, heads 2 / 4 / 8; the last
stage (4x4 map, one window) does not shift, as torchvision sets the shift to 0 when the window
covers the map. Stochastic depth rates rise linearly to 0.1.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


# -- torchvision/ops/stochastic_depth.py ----------------------------------------------------------
def stochastic_depth(input: torch.Tensor, p: float, mode: str, training: bool = True,
                     ) -> torch.Tensor:
    """Stochastic depth from "Deep Networks with Stochastic Depth"; ``mode`` "batch" drops the
    whole batch, "row" drops random rows."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ["batch", "row"]:
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input

    survival_rate = 1.0 - p
    if mode == "row":
        size = [input.shape[0]] + [1] * (input.ndim - 1)
    else:
        size = [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device)
    noise = noise.bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


torch.fx.wrap("stochastic_depth")


class StochasticDepth(nn.Module):
    """See :func:`stochastic_depth`."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(input, self.p, self.mode, self.training)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p}, mode={self.mode})"


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


# -- windows (official Swin / timm) ---------------------------------------------------------------
def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (num_windows*B, window_size, window_size, C)."""
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, C)
    return windows


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """(num_windows*B, window_size, window_size, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window_size, W // window_size, window_size, window_size, C)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, H, W, C)
    return x


def relative_position_index(window_size: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size),
                                        indexing="ij"))  # 2, Wh, Ww
    coords_flatten = torch.flatten(coords, 1)  # 2, Wh*Ww
    relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]  # 2, N, N
    relative_coords = relative_coords.permute(1, 2, 0).contiguous()  # N, N, 2
    relative_coords[:, :, 0] += window_size - 1  # shift to start from 0
    relative_coords[:, :, 1] += window_size - 1
    relative_coords[:, :, 0] *= 2 * window_size - 1
    return relative_coords.sum(-1).flatten()  # N*N


def shifted_window_mask(pad_h: int, pad_w: int, window_size: int, shift_size: int,
                        ) -> torch.Tensor:
    """(num_windows, N, N) additive mask: -100 between tokens from different regions of the
    rolled map (official Swin ``attn_mask``)."""
    img_mask = torch.zeros((1, pad_h, pad_w, 1))
    slices = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    cnt = 0
    for h in slices:
        for w in slices:
            img_mask[:, h, w, :] = cnt
            cnt += 1
    mask_windows = window_partition(img_mask, window_size)  # nW, ws, ws, 1
    mask_windows = mask_windows.view(-1, window_size * window_size)
    attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: int, shift_size: int, num_heads: int,
                 padded_size: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) * (2 * window_size - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        if shift_size > 0:
            self.register_buffer("attn_mask", shifted_window_mask(padded_size, padded_size,
                                                                  window_size, shift_size))
        else:
            self.attn_mask = None

    def get_relative_position_bias(self) -> torch.Tensor:
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index]  # N*N, nH
        bias = bias.view(n, n, -1).permute(2, 0, 1).contiguous()
        return bias.unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        ws = self.window_size
        # pad feature maps to multiples of window size
        pad_r = (ws - W % ws) % ws
        pad_b = (ws - H % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        _, pad_H, pad_W, _ = x.shape
        # cyclic shift
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        # partition windows
        x = window_partition(x, ws)  # B*nW, ws, ws, C
        x = x.view(-1, ws * ws, C)
        B_, N, _ = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (C // self.num_heads) ** -0.5
        attn = q.matmul(k.transpose(-2, -1))
        attn = attn + self.get_relative_position_bias()
        if self.attn_mask is not None:
            num_windows = self.attn_mask.shape[0]
            attn = attn.view(B_ // num_windows, num_windows, self.num_heads, N, N)
            attn = attn + self.attn_mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = F.softmax(attn, dim=-1)
        x = attn.matmul(v).transpose(1, 2).reshape(B_, N, C)
        x = self.proj(x)
        # merge windows
        x = x.view(-1, ws, ws, C)
        x = window_reverse(x, ws, pad_H, pad_W)  # B, H', W', C
        # reverse cyclic shift
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        # unpad features
        return x[:, :H, :W, :].contiguous()


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int,
                 padded_size: int, mlp_ratio: float = 4.0,
                 stochastic_depth_prob: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = ShiftedWindowAttention(dim, window_size, shift_size, num_heads, padded_size)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(hidden, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        x = x + self.stochastic_depth(self.mlp(self.norm2(x)))
        return x


def _patch_merging_pad(x: torch.Tensor) -> torch.Tensor:
    H, W, _ = x.shape[-3:]
    x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
    x0 = x[..., 0::2, 0::2, :]  # ... H/2 W/2 C
    x1 = x[..., 1::2, 0::2, :]  # ... H/2 W/2 C
    x2 = x[..., 0::2, 1::2, :]  # ... H/2 W/2 C
    x3 = x[..., 1::2, 1::2, :]  # ... H/2 W/2 C
    x = torch.cat([x0, x1, x2, x3], -1)  # ... H/2 W/2 4*C
    return x


class PatchMerging(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _patch_merging_pad(x)
        x = self.norm(x)
        return self.reduction(x)  # ... H/2 W/2 2*C


class SwinTransformer(nn.Module):
    def __init__(self, img_size: int = 64, patch_size: int = 4, embed_dim: int = 24,
                 depths: Sequence[int] = (2, 2, 1), num_heads: Sequence[int] = (2, 4, 8),
                 window_size: int = 4, stochastic_depth_prob: float = 0.1,
                 num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(embed_dim, eps=1e-5),
        )]
        total_blocks = sum(depths)
        block_id = 0
        size = img_size // patch_size
        for i_stage, depth in enumerate(depths):
            dim = embed_dim * 2**i_stage
            padded = -(-size // window_size) * window_size
            stage: list[nn.Module] = []
            for i_layer in range(depth):
                sd_prob = stochastic_depth_prob * float(block_id) / (total_blocks - 1)
                shift = 0 if i_layer % 2 == 0 or window_size >= size else window_size // 2
                stage.append(SwinTransformerBlock(dim, num_heads[i_stage], window_size, shift,
                                                  padded, stochastic_depth_prob=sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i_stage < len(depths) - 1:
                layers.append(PatchMerging(dim))
                size = -(-size // 2)
        self.features = nn.Sequential(*layers)
        num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(num_features, eps=1e-5)
        self.permute = Permute([0, 3, 1, 2])  # B H W C -> B C H W
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.norm(x)
        x = self.permute(x)
        x = self.avgpool(x)
        x = self.flatten(x)
        return self.head(x)


def swin_tiny_small() -> SwinTransformer:
    return SwinTransformer()
