"""Tensors built from sizes (arange, zeros, masks, Fourier position encodings), dtype casts,
pointwise maths, subclasses that override forward, parameters read twice. Oracles: torch's own
output shapes, FlopCounterMode / 2, sum(p.numel())."""

from __future__ import annotations

import math
import warnings

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from rfgraph.symbolic import axis_symbol

SIZES = [(16, 16), (21, 13)]


def _analyze(model, shape=(2, 3, "H", "W")):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no rule for" warning may be issued
        return rfgraph.analyze(model, shape)


def _oracle(model, shape):
    with FlopCounterMode(display=False) as c, torch.no_grad():
        out = model.eval()(torch.randn(shape))
    return out, c.get_total_flops() // 2


def _shape_at(t, h, w):
    subs = {axis_symbol("H"): h, axis_symbol("W"): w}
    return [int(sympy.sympify(s).subs(subs)) for s in t.shape]


class FourierPos(nn.Module):
    """XCiT / DETR style: a position encoding built from the feature map's size only."""

    def __init__(self, dim: int = 8, hidden: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 3, stride=2, padding=1)
        self.proj = nn.Conv2d(2 * hidden, dim, 1)
        self.hidden = hidden

    def forward(self, x):
        x = self.conv(x)
        b, _, h, w = x.shape
        mask = torch.zeros((b, h, w), device=x.device).bool()
        not_mask = ~mask
        y = not_mask.cumsum(1, dtype=torch.float32)
        xx = not_mask.cumsum(2, dtype=torch.float32)
        y = y / (y[:, -1:, :] + 1e-6) * 2 * math.pi
        xx = xx / (xx[:, :, -1:] + 1e-6) * 2 * math.pi
        dim_t = torch.arange(self.hidden, dtype=torch.float32, device=x.device)
        dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.hidden)
        pos_x = xx[:, :, :, None] / dim_t
        pos_y = y[:, :, :, None] / dim_t
        pos = torch.cat([pos_y.sin(), pos_x.cos()], dim=3).permute(0, 3, 1, 2)
        return x + self.proj(pos.to(self.proj.weight.dtype))


class MaskedAttentionBias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        n = x.shape[-1]
        idx = torch.arange(n, device=x.device)
        keep = (idx[None, :] <= idx[:, None]).float()
        bias = torch.zeros((n, n)).masked_fill(keep == 0, float("-inf"))
        t = x.flatten(2)  # (B, C, H*W)
        scores = t.transpose(1, 2)[:, :n] @ t[:, :, :n] + bias.sqrt().nan_to_num()
        return torch.where(scores > 0, scores, torch.zeros_like(scores)).softmax(-1)


@pytest.mark.parametrize("make", [FourierPos, MaskedAttentionBias])
@pytest.mark.parametrize("hw", SIZES)
def test_size_built_tensors_are_symbolic_and_exact(make, hw):
    torch.manual_seed(0)
    model = make()
    a = _analyze(model)
    assert a.complete, [n.name for n in a.incomplete_nodes]
    h, w = hw
    out, macs = _oracle(model, (2, 3, h, w))
    assert _shape_at(a.output.tensor, h, w) == list(out.shape)
    assert a.evaluate(H=h, W=w).total_macs_at == macs
    assert a.total_params == sum(p.numel() for p in model.parameters())


def test_constants_from_sizes_add_no_field():
    a = _analyze(FourierPos())
    # the encoding depends on sizes only: the output field is the conv's (3, jump 2, offset -1)
    fields = a.field(a.output)
    assert [int(f.size) for f in fields] == [3, 3]
    assert [int(f.offset) for f in fields] == [-1, -1]


class SamePadConv(nn.Conv2d):
    """timm's Conv2dSame: TF 'same' padding computed from the input size in forward."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        pad_h = (-(-ih // self.stride[0]) - 1) * self.stride[0] + kh - ih
        pad_w = (-(-iw // self.stride[1]) - 1) * self.stride[1] + kw - iw
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


@pytest.mark.parametrize("hw", [(17, 17), (20, 23)])
def test_subclass_overriding_forward_is_not_taken_for_its_base(hw):
    model = nn.Sequential(SamePadConv(3, 5, 3, stride=2), nn.ReLU())
    a = _analyze(model)
    h, w = hw
    out, macs = _oracle(model, (2, 3, h, w))
    # nn.Conv2d's rule would say floor((h - 3)/2) + 1 (padding 0): 8 at 17, torch says 9
    assert _shape_at(a.output.tensor, h, w) == list(out.shape)
    assert a.evaluate(H=h, W=w).total_macs_at == macs
    assert a.total_params == 3 * 5 * 9 + 5


class ReadsWeightTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.proj(x.to(self.proj.weight.dtype))


def test_parameter_read_by_get_attr_and_module_counted_once():
    model = ReadsWeightTwice()
    a = _analyze(model)
    assert a.total_params == 3 * 4 + 4 == sum(p.numel() for p in model.parameters())


class TupleSizes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        shape = y.shape[:2] + (y.shape[2] * y.shape[3],)  # tuple + tuple
        return y.reshape(shape)


def test_size_tuples_concatenate():
    a = _analyze(TupleSizes())
    out = TupleSizes()(torch.zeros(2, 3, 9, 7))
    assert _shape_at(a.output.tensor, 9, 7) == list(out.shape) == [2, 4, 35]


def test_casts_keep_shape_and_field():
    model = nn.Sequential(nn.Conv2d(3, 4, 3))

    class Cast(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, x):
            y = self.body(x).half().float().to(torch.float64).double().type(torch.float32)
            return y + y.long().float()

    a = _analyze(Cast())
    assert a.complete
    assert [int(f.size) for f in a.field(a.output)] == [3, 3]


class PinnedReshape(nn.Module):
    """A map reshaped to a constant token count (7·7 = 49): valid only when H·W = 49."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 1)

    def forward(self, x):
        y = self.conv(x).permute(0, 2, 3, 1)
        return y.reshape(1, 49, 2, 32).sum(2)


def test_reshape_to_a_pinned_token_count_states_the_condition():
    a = _analyze(PinnedReshape(), (1, 3, "H", "W"))
    assert a.complete and "H*W = 49" in a.conditions
    b = a.evaluate(H=7, W=7)
    out = PinnedReshape()(torch.zeros(1, 3, 7, 7))
    assert [b.int_of(s) for s in b.output.tensor.shape] == list(out.shape) == [1, 49, 32]
    with pytest.raises(rfgraph.RfgraphError, match="H\\*W = 49"):
        a.evaluate(H=7, W=8)  # torch cannot view 56 positions as 49 either


def test_unmatched_symbolic_reshape_is_unsupported_not_fatal():
    """gcvit's (n, ceil(H/32), ceil(W/32), 64) -> (n, 49, 2, 32): rfgraph cannot group it
    symbolically; the rule says Unsupported (the node is then measured), not a user error."""
    from rfgraph.rules.base import Call, Unsupported
    from rfgraph.rules.shape import reshape_core
    from rfgraph.symbolic import ceildiv, floordiv
    from rfgraph.tensor import TensorInfo

    H, W = axis_symbol("H"), axis_symbol("W")
    n = floordiv(H + 3, 28) * floordiv(W + 3, 28)
    x = TensorInfo((n, ceildiv(H, 32), ceildiv(W, 32), sympy.Integer(64)), (None,) * 4,
                   (None, None))
    call = Call("reshape_3", None, "attn", "reshape", (x, n, 49, 2, 32), {})
    with pytest.raises(Unsupported):
        reshape_core(call, x, [n, 49, 2, 32])
    with pytest.raises(rfgraph.RfgraphError, match="cannot view"):  # numbers: a real mismatch
        y = TensorInfo((sympy.Integer(2), sympy.Integer(6)), (None, None), ())
        reshape_core(Call("r", None, "", "reshape", (y, 5, 2), {}), y, [5, 2])


class Opaque(nn.Module):
    def forward(self, x):
        return x * 2


def test_a_rule_raising_unsupported_makes_the_node_measured():
    from rfgraph.rules.base import _REGISTRY, Unsupported

    def refuse(call):
        raise Unsupported("not this variant")

    rfgraph.register_rule(Opaque, refuse)
    try:
        model = nn.Sequential(nn.Conv2d(3, 4, 3), Opaque(), nn.Conv2d(4, 2, 1))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a = rfgraph.analyze(model, (1, 3, "H", "W"))
        assert any("not this variant" in str(w.message) for w in caught)
        assert not a.complete and [n.name for n in a.unknown_nodes][:1] == ["_1"]
        b = a.evaluate(H=9, W=11)
        _, macs = _oracle(model, (1, 3, 9, 11))
        assert b.total_macs_at == macs
    finally:
        _REGISTRY.pop(Opaque, None)


class Reductions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):  # ConvNeXt-V2's GRN: x.norm over the spatial dims
        y = self.conv(x)
        g = y.norm(p=2, dim=(2, 3), keepdim=True)
        s = y.std(dim=(2, 3), keepdim=True) + torch.logsumexp(y, dim=1, keepdim=True)
        return y * g / (g.mean(dim=1, keepdim=True) + 1e-6) + s


@pytest.mark.parametrize("hw", SIZES)
def test_norm_and_statistics_reduce_like_mean(hw):
    model = Reductions()
    a = _analyze(model)
    assert a.complete
    h, w = hw
    out, macs = _oracle(model, (2, 3, h, w))
    assert _shape_at(a.output.tensor, h, w) == list(out.shape)
    assert a.evaluate(H=h, W=w).total_macs_at == macs
    # the norm over H and W makes the field global: the whole (h - 2)-row map of 3-row fields
    assert int(a.evaluate(H=h, W=w).field_at(a.output)[0].size) == h
