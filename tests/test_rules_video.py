"""Video-model rules (rfgraph/rules/video.py): torchvision's 3-D Swin and MViT helpers,
tensor_split, repeat_interleave, addcmul/addcdiv, nn.RNN/nn.GRU.

No torchvision import: the fx-wrapped helpers are copied here (as torchvision writes them) and
given torchvision's module name, so the by-name registry finds them. Shapes are compared with
torch at two sizes (one odd), parameters with ``sum(p.numel())``, MACs with FlopCounterMode / 2.
"""

from __future__ import annotations

import math

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from rfgraph.rules import base
from rfgraph.rules.video import tv_window_and_shift_size
from rfgraph.symbolic import axis_symbol

D, H, W = axis_symbol("D"), axis_symbol("H"), axis_symbol("W")
_SWIN3D = "torchvision.models.video.swin_transformer"
_MVIT = "torchvision.models.video.mvit"


def _as_torchvision(module: str):
    def deco(fn):
        fn.__module__ = module
        return fn
    return deco


# -- torchvision 3-D Swin helpers (copied; torchvision/models/video/swin_transformer.py) ---------
@_as_torchvision(_SWIN3D)
def _get_window_and_shift_size(shift_size, size_dhw, window_size):
    for i in range(3):
        if size_dhw[i] <= window_size[i]:
            window_size[i] = size_dhw[i]
            shift_size[i] = 0
    return window_size, shift_size


@_as_torchvision(_SWIN3D)
def _get_relative_position_bias(relative_position_bias_table, relative_position_index,
                                window_size):
    window_vol = window_size[0] * window_size[1] * window_size[2]
    bias = relative_position_bias_table[
        relative_position_index[:window_vol, :window_vol].flatten()]
    bias = bias.view(window_vol, window_vol, -1)
    return bias.permute(2, 0, 1).contiguous().unsqueeze(0)


@_as_torchvision(_SWIN3D)
def _compute_pad_size_3d(size_dhw, patch_size):
    pad_size = [(patch_size[i] - size_dhw[i] % patch_size[i]) % patch_size[i] for i in range(3)]
    return pad_size[0], pad_size[1], pad_size[2]


@_as_torchvision(_SWIN3D)
def _compute_attention_mask_3d(x, size_dhw, window_size, shift_size):
    attn_mask = x.new_zeros(*size_dhw)
    num_windows = ((size_dhw[0] // window_size[0]) * (size_dhw[1] // window_size[1])
                   * (size_dhw[2] // window_size[2]))
    slices = [((0, -window_size[i]), (-window_size[i], -shift_size[i]), (-shift_size[i], None))
              for i in range(3)]
    count = 0
    for d in slices[0]:
        for h in slices[1]:
            for w in slices[2]:
                attn_mask[d[0]:d[1], h[0]:h[1], w[0]:w[1]] = count
                count += 1
    attn_mask = attn_mask.view(size_dhw[0] // window_size[0], window_size[0],
                               size_dhw[1] // window_size[1], window_size[1],
                               size_dhw[2] // window_size[2], window_size[2])
    attn_mask = attn_mask.permute(0, 2, 4, 1, 3, 5).reshape(
        num_windows, window_size[0] * window_size[1] * window_size[2])
    attn_mask = attn_mask.unsqueeze(1) - attn_mask.unsqueeze(2)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)


@_as_torchvision(_SWIN3D)
def shifted_window_attention_3d(input, qkv_weight, proj_weight, relative_position_bias,
                                window_size, num_heads, shift_size, qkv_bias=None,
                                proj_bias=None):
    b, t, h, w, c = input.shape
    pad_size = _compute_pad_size_3d((t, h, w), (window_size[0], window_size[1], window_size[2]))
    x = F.pad(input, (0, 0, 0, pad_size[2], 0, pad_size[1], 0, pad_size[0]))
    _, tp, hp, wp, _ = x.shape
    padded_size = (tp, hp, wp)
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(-shift_size[0], -shift_size[1], -shift_size[2]),
                       dims=(1, 2, 3))
    num_windows = ((padded_size[0] // window_size[0]) * (padded_size[1] // window_size[1])
                   * (padded_size[2] // window_size[2]))
    x = x.view(b, padded_size[0] // window_size[0], window_size[0],
               padded_size[1] // window_size[1], window_size[1],
               padded_size[2] // window_size[2], window_size[2], c)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(
        b * num_windows, window_size[0] * window_size[1] * window_size[2], c)
    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(x.size(0), x.size(1), 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q = q * (c // num_heads) ** -0.5
    attn = q.matmul(k.transpose(-2, -1)) + relative_position_bias
    if sum(shift_size) > 0:
        attn_mask = _compute_attention_mask_3d(x, padded_size, window_size, shift_size)
        attn = attn.view(x.size(0) // num_windows, num_windows, num_heads, x.size(1), x.size(1))
        attn = attn + attn_mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, x.size(1), x.size(1))
    attn = F.softmax(attn, dim=-1)
    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), c)
    x = F.linear(x, proj_weight, proj_bias)
    x = x.view(b, padded_size[0] // window_size[0], padded_size[1] // window_size[1],
               padded_size[2] // window_size[2], window_size[0], window_size[1],
               window_size[2], c)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, tp, hp, wp, c)
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(shift_size[0], shift_size[1], shift_size[2]), dims=(1, 2, 3))
    return x[:, :t, :h, :w, :].contiguous()


for _name in ("_get_window_and_shift_size", "_get_relative_position_bias",
              "_compute_pad_size_3d", "_compute_attention_mask_3d",
              "shifted_window_attention_3d"):
    torch.fx.wrap(_name)


class WindowAttention3d(nn.Module):
    def __init__(self, dim: int, window: list[int], shift: list[int], heads: int) -> None:
        super().__init__()
        self.window, self.shift, self.heads = window, shift, heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn(math.prod(2 * w - 1 for w in window), heads))
        coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij"))
        coords = coords.flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        for i in range(3):
            rel[:, :, i] += window[i] - 1
        rel[:, :, 0] *= (2 * window[1] - 1) * (2 * window[2] - 1)
        rel[:, :, 1] *= 2 * window[2] - 1
        self.register_buffer("index", rel.sum(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, t, h, w, _ = x.shape
        window, shift = _get_window_and_shift_size(self.shift.copy(), [t, h, w],
                                                   self.window.copy())
        bias = _get_relative_position_bias(self.table, self.index, window)
        return shifted_window_attention_3d(x, self.qkv.weight, self.proj.weight, bias, window,
                                           self.heads, shift_size=shift,
                                           qkv_bias=self.qkv.bias, proj_bias=self.proj.bias)


class Swin3dLike(nn.Module):
    def __init__(self, dim: int = 8, window=(2, 3, 3), heads: int = 2) -> None:
        super().__init__()
        self.patch = (1, 2, 2)
        self.embed = nn.Conv3d(3, dim, self.patch, self.patch)
        self.norm0 = nn.LayerNorm(dim)
        self.block1 = WindowAttention3d(dim, list(window), [0, 0, 0], heads)
        self.block2 = WindowAttention3d(dim, list(window), [w // 2 for w in window], heads)
        self.head = nn.Linear(dim, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, t, h, w = x.size()
        pad = _compute_pad_size_3d((t, h, w), self.patch)
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        x = self.norm0(self.embed(x).permute(0, 2, 3, 4, 1))
        x = x + self.block1(x)
        x = x + self.block2(x)
        return self.head(x.mean(dim=(1, 2, 3)))


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def _ints(analysis: rfgraph.Analysis, shape) -> tuple[int, ...]:
    return tuple(analysis.int_of(s) for s in shape)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def swin3d():
    torch.manual_seed(0)
    model = Swin3dLike().eval()
    return model, rfgraph.analyze(model, (1, 3, "D", "H", "W"))


def test_swin3d_helpers_found_by_torchvision_name(swin3d):
    _, analysis = swin3d
    assert analysis.complete, analysis.unknown_ops
    targets = {n.target for n in analysis.nodes}
    for name in ("_get_window_and_shift_size", "_get_relative_position_bias",
                 "_compute_pad_size_3d", "shifted_window_attention_3d"):
        assert f"{_SWIN3D}.{name}" in targets


# large sizes (every map above its window), a map equal to a window, maps below the window
@pytest.mark.parametrize("size", [(6, 16, 20), (5, 13, 11), (2, 5, 7), (1, 3, 4)])
def test_swin3d_like_shapes_params_macs(swin3d, size):
    model, analysis = swin3d
    at = analysis.evaluate(D=size[0], H=size[1], W=size[2])
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert _ints(at, at.output.tensor.shape) == tuple(y.shape)
    attn = [n for n in at.nodes if n.target.endswith("shifted_window_attention_3d")]
    assert len(attn) == 2
    t, h, w = -(-size[0] // 1), -(-size[1] // 2), -(-size[2] // 2)
    for n in attn:
        assert _ints(at, n.tensor.shape) == (1, t, h, w, 8)
    assert at.total_params + at.total_params_unreached == _params(model)
    assert at.total_macs_at == _macs(model, x)


def test_swin3d_symbolic_formula_assumes_large_maps(swin3d):
    model, analysis = swin3d
    conds = {c for n in analysis.nodes for c in n.conditions}
    t = D  # patch depth 1
    assert sympy.Gt(t, 2) in conds and sympy.Ge(t, 2) in conds  # shifted and plain blocks
    assert any(n.needs_at for n in analysis.nodes)
    # the formula itself (no re-annotation) is exact where the conditions hold
    for size in ((6, 16, 20), (3, 9, 7)):
        subs = dict(zip((D, H, W), size))
        assert all(bool(c.subs(subs)) for c in conds)
        assert int(analysis.total_macs.subs(subs)) == _macs(model, torch.randn(1, 3, *size))
    # the window attention's field is global along every axis, marked as an upper bound
    node = next(n for n in analysis.nodes if n.target.endswith("shifted_window_attention_3d"))
    field = analysis.field(node)
    assert field is not None and all(f.is_global and f.upper for f in field)


def _window_call(sizes, at=None, shift=(1, 1, 1), window=(2, 3, 3)):
    return base.Call("n", None, "", _get_window_and_shift_size,
                     (list(shift), list(sizes), list(window)), {}, at)


def test_window_and_shift_size_rule_decides_or_states_the_condition():
    res = tv_window_and_shift_size(_window_call([sympy.Integer(2), 7, sympy.Integer(1)]))
    assert res.value == ([2, 3, 1], [0, 1, 0]) and not res.conditions
    res = tv_window_and_shift_size(_window_call([D, 2 * H + 2, W]))  # 2H + 2 > 3 always
    assert res.value == ([2, 3, 3], [1, 1, 1])
    assert set(res.conditions) == {sympy.Gt(D, 2), sympy.Gt(W, 3)} and res.needs_at
    res = tv_window_and_shift_size(_window_call([D, H, W], shift=(0, 0, 0)))
    assert set(res.conditions) == {sympy.Ge(D, 2), sympy.Ge(H, 3), sympy.Ge(W, 3)}
    # at concrete sizes the rule picks torchvision's branch (sizes stay symbolic values)
    res = tv_window_and_shift_size(_window_call([D, H, W], at={D: 2, H: 9, W: 1}))
    assert res.value == ([D, 3, W], [0, 1, 0]) and not res.conditions


# -- torchvision MViT helpers (copied; torchvision/models/video/mvit.py) -------------------------
@_as_torchvision(_MVIT)
def _unsqueeze(x, target_dim, expand_dim):
    tensor_dim = x.dim()
    if tensor_dim == target_dim - 1:
        x = x.unsqueeze(expand_dim)
    elif tensor_dim != target_dim:
        raise ValueError(f"Unsupported input dimension {x.shape}")
    return x, tensor_dim


@_as_torchvision(_MVIT)
def _squeeze(x, target_dim, expand_dim, tensor_dim):
    if tensor_dim == target_dim - 1:
        x = x.squeeze(expand_dim)
    return x


def _interpolate(embedding, d):
    if embedding.shape[0] == d:
        return embedding
    return F.interpolate(embedding.permute(1, 0).unsqueeze(0), size=d,
                         mode="linear").squeeze(0).permute(1, 0)


@_as_torchvision(_MVIT)
def _add_rel_pos(attn, q, q_thw, k_thw, rel_pos_h, rel_pos_w, rel_pos_t):
    q_t, q_h, q_w = q_thw
    k_t, k_h, k_w = k_thw
    dh, dw, dt = (int(2 * max(q_h, k_h) - 1), int(2 * max(q_w, k_w) - 1),
                  int(2 * max(q_t, k_t) - 1))

    def dist(qn, kn):
        q_ratio, k_ratio = max(kn / qn, 1.0), max(qn / kn, 1.0)
        return (torch.arange(qn)[:, None] * q_ratio
                - (torch.arange(kn)[None, :] + (1.0 - kn)) * k_ratio)

    rh = _interpolate(rel_pos_h, dh)[dist(q_h, k_h).long()]
    rw = _interpolate(rel_pos_w, dw)[dist(q_w, k_w).long()]
    rt = _interpolate(rel_pos_t, dt)[dist(q_t, k_t).long()]
    B, n_head, _, dim = q.shape
    r_q = q[:, :, 1:].reshape(B, n_head, q_t, q_h, q_w, dim)
    rel_h_q = torch.einsum("bythwc,hkc->bythwk", r_q, rh)
    rel_w_q = torch.einsum("bythwc,wkc->bythwk", r_q, rw)
    r_q = r_q.permute(2, 0, 1, 3, 4, 5).reshape(q_t, B * n_head * q_h * q_w, dim)
    rel_q_t = torch.matmul(r_q, rt.transpose(1, 2)).transpose(0, 1)
    rel_q_t = rel_q_t.view(B, n_head, q_h, q_w, q_t, k_t).permute(0, 1, 4, 2, 3, 5)
    rel_pos = (rel_h_q[:, :, :, :, :, None, :, None] + rel_w_q[:, :, :, :, :, None, None, :]
               + rel_q_t[:, :, :, :, :, :, None, None]).reshape(
        B, n_head, q_t * q_h * q_w, k_t * k_h * k_w)
    attn[:, :, 1:, 1:] += rel_pos
    return attn


@_as_torchvision(_MVIT)
def _add_shortcut(x, shortcut, residual_with_cls_embed):
    if residual_with_cls_embed:
        x.add_(shortcut)
    else:
        x[:, :, 1:, :] += shortcut[:, :, 1:, :]
    return x


for _name in ("_unsqueeze", "_squeeze", "_add_rel_pos", "_add_shortcut"):
    torch.fx.wrap(_name)


class Pool(nn.Module):
    def __init__(self, pool: nn.Module, norm: nn.Module | None) -> None:
        super().__init__()
        self.pool, self.norm = pool, norm

    def forward(self, x, thw):
        x, tensor_dim = _unsqueeze(x, 4, 1)
        class_token, x = torch.tensor_split(x, indices=(1,), dim=2)
        x = x.transpose(2, 3)
        B, N, C = x.shape[:3]
        x = x.reshape((B * N, C) + thw).contiguous()
        x = self.pool(x)
        T, H, W = x.shape[2:]
        x = x.reshape(B, N, C, -1).transpose(2, 3)
        x = torch.cat((class_token, x), dim=2)
        if self.norm is not None:
            x = self.norm(x)
        return _squeeze(x, 4, 1, tensor_dim), (T, H, W)


class MultiscaleAttention(nn.Module):
    def __init__(self, dim: int, heads: int, stride_q, stride_kv, rel_pos: bool,
                 with_cls: bool) -> None:
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.with_cls = with_cls
        self.qkv = nn.Linear(dim, 3 * dim)
        self.project = nn.Linear(dim, dim)

        def pool(stride):
            return Pool(nn.Conv3d(self.hd, self.hd, 3, stride, 1, groups=self.hd, bias=False),
                        nn.LayerNorm(self.hd))

        self.pool_q, self.pool_k, self.pool_v = pool(stride_q), pool(stride_kv), pool(stride_kv)
        self.rel_pos = rel_pos
        if rel_pos:
            self.rel_pos_h = nn.Parameter(torch.randn(7, self.hd))
            self.rel_pos_w = nn.Parameter(torch.randn(7, self.hd))
            self.rel_pos_t = nn.Parameter(torch.randn(3, self.hd))

    def forward(self, x, thw):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, self.hd).transpose(1, 3).unbind(dim=2)
        k, k_thw = self.pool_k(k, thw)
        v = self.pool_v(v, thw)[0]
        q, thw = self.pool_q(q, thw)
        attn = torch.matmul(self.hd ** -0.5 * q, k.transpose(2, 3))
        if self.rel_pos:
            attn = _add_rel_pos(attn, q, thw, k_thw, self.rel_pos_h, self.rel_pos_w,
                                self.rel_pos_t)
        x = torch.matmul(attn.softmax(dim=-1), v)
        _add_shortcut(x, q, self.with_cls)
        x = x.transpose(1, 2).reshape(B, -1, C)
        return self.project(x), thw


class MViTLike(nn.Module):
    def __init__(self, rel_pos: bool, with_cls: bool, dim: int = 8) -> None:
        super().__init__()
        self.conv_proj = nn.Conv3d(3, dim, (3, 7, 7), (2, 4, 4), (1, 3, 3))
        self.class_token = nn.Parameter(torch.randn(dim))
        self.temporal_pos = nn.Parameter(torch.randn(3, dim))
        self.attn1 = MultiscaleAttention(dim, 2, (1, 2, 2), (1, 2, 2), rel_pos, with_cls)
        self.attn2 = MultiscaleAttention(dim, 2, (1, 1, 1), (2, 2, 2), rel_pos, with_cls)
        self.head = nn.Linear(dim, 4)

    def forward(self, x):
        x = _unsqueeze(x, 5, 2)[0]
        x = self.conv_proj(x)
        thw = (x.shape[2], x.shape[3], x.shape[4])
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat((self.class_token.expand(x.size(0), -1).unsqueeze(1), x), dim=1)
        # a temporal position code repeated over the tokens of each frame (as MViT v1 builds
        # its embedding): 3 frames of thw[1]·thw[2] tokens each
        pos = torch.repeat_interleave(self.temporal_pos, thw[1] * thw[2], dim=0)
        x = x + F.pad(pos, (0, 0, 1, 0)).unsqueeze(0)
        x, thw = self.attn1(x, thw)
        x, thw = self.attn2(x, thw)
        return self.head(x[:, 0])


@pytest.mark.parametrize("rel_pos,with_cls", [(True, False), (False, True)])
def test_mvit_like(rel_pos, with_cls):
    torch.manual_seed(0)
    model = MViTLike(rel_pos, with_cls).eval()
    analysis = rfgraph.analyze(model, (1, 3, "D", "H", "W"))
    assert analysis.complete, analysis.unknown_ops
    targets = {n.target for n in analysis.nodes}
    assert {f"{_MVIT}._unsqueeze", f"{_MVIT}._squeeze", f"{_MVIT}._add_shortcut",
            "torch.tensor_split", "torch.repeat_interleave"} <= targets
    assert (f"{_MVIT}._add_rel_pos" in targets) == rel_pos
    for size in ((5, 32, 28), (6, 29, 35)):  # three frames after the stem
        at = analysis.evaluate(D=size[0], H=size[1], W=size[2])
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            y = model(x)
        assert _ints(at, at.output.tensor.shape) == tuple(y.shape)
        assert at.total_params + at.total_params_unreached == _params(model)
        assert at.total_macs_at == _macs(model, x)
    # the position code has 3 frames: other depths break the broadcast (so does torch)
    with pytest.raises(rfgraph.RfgraphError, match="sizes do not fit"):
        analysis.evaluate(D=9, H=32, W=32)


# -- tensor_split, repeat_interleave ---------------------------------------------------------------
class Splits(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(2, 3, 3)

    def forward(self, x):
        x = self.conv(x)
        if self.how == "sections":
            parts = torch.tensor_split(x, 3, dim=2)
        elif self.how == "indices":
            parts = x.tensor_split((1, 4), dim=-1)
        else:
            parts = torch.tensor_split(x, 2, 1)
        return parts[0].sum() + parts[1].sum() + parts[-1].mean(dim=(2, 3)).sum()


@pytest.mark.parametrize("how", ["sections", "indices", "channels"])
def test_tensor_split_piece_shapes(how):
    model = Splits(how).eval()
    analysis = rfgraph.analyze(model, (1, 2, "H", "W"))
    assert analysis.complete, analysis.unknown_ops
    node = next(n for n in analysis.nodes if "tensor_split" in n.target)
    for size in ((12, 10), (13, 9)):
        at = analysis.evaluate(H=size[0], W=size[1])
        with torch.no_grad():
            conv = model.conv(torch.randn(1, 2, *size))
        want = {"sections": torch.tensor_split(conv, 3, dim=2),
                "indices": conv.tensor_split((1, 4), dim=-1),
                "channels": torch.tensor_split(conv, 2, 1)}[how]
        got = [_ints(at, t.shape) for t in at[node.name].value]
        assert got == [tuple(t.shape) for t in want]


def test_tensor_split_fields_follow_the_slices():
    model = Splits("sections").eval()
    analysis = rfgraph.analyze(model, (1, 2, "H", "W"))
    at = analysis.evaluate(H=13, W=9)  # conv rows 11: pieces of 4, 4, 3 rows
    node = next(n for n in analysis.nodes if "tensor_split" in n.target)
    pieces = at[node.name].value
    starts = [int(p.rf[0].start_at(0).subs({H: 13, W: 9})) for p in pieces]
    assert starts == [0, 4, 8]
    assert all(int(p.rf[0].size.subs({H: 13})) == 3 for p in pieces)


class Repeated(nn.Module):
    def __init__(self, flat: bool) -> None:
        super().__init__()
        self.flat = flat
        self.conv = nn.Conv2d(1, 1, 3, bias=False)

    def forward(self, x):
        if self.flat:
            return self.conv(x).repeat_interleave(2)
        return self.conv(torch.repeat_interleave(x, 2, dim=3))


@pytest.mark.parametrize("flat", [False, True])
def test_repeat_interleave_shapes_and_field(flat):
    model = Repeated(flat).eval()
    analysis = rfgraph.analyze(model, (1, 1, "H", "W"))
    assert analysis.complete, analysis.unknown_ops
    for size in ((8, 6), (7, 9)):
        at = analysis.evaluate(H=size[0], W=size[1])
        x = torch.randn(1, 1, *size, requires_grad=True)
        y = model(x)
        assert _ints(at, at.output.tensor.shape) == tuple(y.shape)
        assert at.total_macs_at == _macs(model, x.detach())
        if flat:
            assert all(f.is_global for f in analysis.field(analysis.output))
            continue
        fh, fw = analysis.field(analysis.output)
        subs = {H: size[0], W: size[1]}
        for col in range(y.shape[-1]):  # by gradient: the input columns each output reads
            x.grad = None
            y[0, 0, 1, col].backward(retain_graph=True)
            cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
            assert int(fw.start_at(col).subs(subs)) == int(cols.min())
            assert int(fw.end_at(col).subs(subs)) == int(cols.max())


# -- addcmul / addcdiv -------------------------------------------------------------------------
class AddC(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(4, 1, 1) + 1)

    def forward(self, x):
        y = self.conv(x)
        g = y.mean(dim=(2, 3), keepdim=True)
        z = torch.addcmul(y, g, self.scale, value=0.5)
        z = torch.addcdiv(z, y, self.scale)
        return z.addcmul(y, y)


def test_addcmul_addcdiv_broadcast_merges_without_macs():
    model = AddC().eval()
    analysis = rfgraph.analyze(model, (1, 2, "H", "W"))
    assert analysis.complete, analysis.unknown_ops
    assert {n.family for n in analysis.nodes if "addc" in n.target} == {"merge"}
    assert all(n.macs == 0 for n in analysis.nodes if "addc" in n.target)
    for size in ((8, 8), (7, 11)):
        at = analysis.evaluate(H=size[0], W=size[1])
        x = torch.randn(1, 2, *size)
        assert _ints(at, at.output.tensor.shape) == tuple(model(x).shape)
        assert at.total_macs_at == _macs(model, x)
        assert at.total_params == _params(model)
    # the gate g reads the whole map: every output sees it all
    assert all(f.is_global for f in analysis.field(analysis.output))


# -- recurrent layers ------------------------------------------------------------------------------
class ConvRNN(nn.Module):
    """CRNN-style: conv features along W read as a sequence."""

    def __init__(self, cell: type, bidirectional: bool, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.conv = nn.Conv2d(1, 6, (4, 3), (4, 1))
        self.rnn = cell(6, 5, num_layers=2, bidirectional=bidirectional,
                        batch_first=batch_first)
        self.head = nn.Linear(5 * (2 if bidirectional else 1), 3)

    def forward(self, x):  # (N, 1, 4, W)
        x = self.conv(x).squeeze(2)  # (N, 6, W')
        x = x.permute(0, 2, 1) if self.batch_first else x.permute(2, 0, 1)
        out, h = self.rnn(x)
        return self.head(out), h


@pytest.mark.parametrize("cell", [nn.GRU, nn.RNN])
@pytest.mark.parametrize("bidirectional,batch_first", [(True, False), (False, True)])
def test_gru_rnn_macs_params_shapes(cell, bidirectional, batch_first):
    torch.manual_seed(0)
    model = ConvRNN(cell, bidirectional, batch_first).eval()
    analysis = rfgraph.analyze(model, (2, 1, 4, "W"))
    assert analysis.complete, analysis.unknown_ops
    rnn = analysis["rnn"]
    assert rnn.family == "recurrent" and rnn.params == _params(model.rnn)
    for w in (9, 12):
        at = analysis.evaluate(W=w)
        x = torch.randn(2, 1, 4, w)
        with torch.no_grad():
            out, h = model(x)
            seq = model.rnn(model.conv(x).squeeze(2).permute(
                *((0, 2, 1) if batch_first else (2, 0, 1))))
        assert _ints(at, at.output.value[0].shape) == tuple(out.shape)
        assert _ints(at, at.output.value[1].shape) == tuple(h.shape)
        assert _ints(at, at["rnn"].value[0].shape) == tuple(seq[0].shape)
        assert at.total_params == _params(model)
        assert at.total_macs_at == _macs(model, x)
    field = analysis.field(analysis.output)
    assert field is not None and field[1].is_global and field[1].upper == (not bidirectional)


def test_lstm_stays_measured():
    """FlopCounterMode counts nothing for nn.LSTM on the CPU: no rule, so the node is reported
    and measured, never a silent zero in a formula."""
    assert base.lookup_module(nn.LSTM(3, 4)) is None
    class ConvLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.lstm = nn.Conv1d(2, 3, 3), nn.LSTM(3, 4)

        def forward(self, x):
            return self.lstm(self.conv(x).permute(2, 0, 1))[0]

    analysis = rfgraph.analyze(ConvLSTM().eval(), (1, 2, "L"))
    assert not analysis.complete and any("LSTM" in k for k in analysis.unknown_ops)
