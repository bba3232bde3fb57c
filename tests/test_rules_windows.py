"""Swin / MaxViT style shape plumbing: window partition and reverse with symbolic sizes, roll,
relative-position-bias gathers from constants, patch merging with symbolic padding.

Plain torch models only (no torchvision). Shapes are compared with torch at two sizes (one odd),
parameters with ``sum(p.numel())``, MACs with FlopCounterMode / 2.
"""

from __future__ import annotations

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from rfgraph.symbolic import axis_symbol, ceildiv, floordiv

H, W = axis_symbol("H"), axis_symbol("W")


class WindowAttention(nn.Module):
    """Swin's shifted-window attention, written out: pad to window multiples, roll, partition,
    attention with a relative-position bias gathered from a table, reverse, roll back, unpad."""

    def __init__(self, dim: int, ws: int, heads: int, shift: int) -> None:
        super().__init__()
        self.ws, self.heads, self.shift = ws, heads, shift
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn((2 * ws - 1) ** 2, heads))
        c = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
        c = c.flatten(1)
        rel = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0) + (ws - 1)
        self.register_buffer("index", rel[..., 0] * (2 * ws - 1) + rel[..., 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        B, H, W, C = x.shape
        ws, n = self.ws, self.ws * self.ws
        x = F.pad(x, (0, 0, 0, (ws - W % ws) % ws, 0, (ws - H % ws) % ws))
        _, Hp, Wp, _ = x.shape
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(-1, n, C)
        qkv = self.qkv(x).reshape(-1, n, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * (C // self.heads) ** -0.5) @ k.transpose(-2, -1)
        bias = self.table[self.index.view(-1)].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        attn = (attn + bias).softmax(dim=-1)
        x = self.proj((attn @ v).transpose(1, 2).reshape(-1, n, C))
        x = x.view(B, Hp // ws, Wp // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(B, Hp, Wp, C)
        if self.shift:
            x = x.roll((self.shift, self.shift), (1, 2))
        return x[:, :H, :W, :]


class PatchMerging(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W, _ = x.shape[-3:]
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :],
                       x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


class SwinLike(nn.Module):
    def __init__(self, dim: int = 8, ws: int = 3, heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, 4)
        self.norm0 = nn.LayerNorm(dim)
        self.block1 = WindowAttention(dim, ws, heads, 0)
        self.block2 = WindowAttention(dim, ws, heads, 1)
        self.merge = PatchMerging(dim)
        self.norm = nn.LayerNorm(2 * dim)
        self.head = nn.Linear(2 * dim, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm0(self.embed(x).permute(0, 2, 3, 1))
        x = x + self.block1(x)
        x = x + self.block2(x)
        x = self.merge(x)
        return self.head(self.norm(x).mean(dim=(1, 2)))


class WindowsNoPad(nn.Module):
    """MaxViT-style partition without padding: the map must divide into windows."""

    def __init__(self, dim: int = 4, ws: int = 3) -> None:
        super().__init__()
        self.ws = ws
        self.embed = nn.Conv2d(3, dim, 2, 2)
        self.mix = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        B, C, H, W = x.shape
        ws = self.ws
        x = x.view(B, C, H // ws, ws, W // ws, ws).permute(0, 2, 4, 3, 5, 1)
        x = self.mix(x.reshape(-1, ws * ws, C))  # (B * windows, tokens, C)
        x = x.view(B, H // ws, W // ws, ws, ws, C).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(B, C, H, W)


def _leaf_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(
        lambda m, i, o, name=name: shapes.__setitem__(name.replace(".", "_"), tuple(o.shape)))
        for name, m in model.named_modules() if name and not list(m.children())]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return shapes


def _ints(analysis: rfgraph.Analysis, shape) -> tuple[int, ...]:
    return tuple(analysis.int_of(s) for s in shape)


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


@pytest.fixture(scope="module")
def swin():
    torch.manual_seed(0)
    model = SwinLike().eval()
    return model, rfgraph.analyze(model, (1, 3, "H", "W"))


@pytest.mark.parametrize("size", [(64, 64), (50, 37)])
def test_swin_like_shapes_and_params(swin, size):
    model, analysis = swin
    at = analysis.evaluate(H=size[0], W=size[1])
    x = torch.randn(1, 3, *size)
    expected = _leaf_shapes(model, x)
    seen = 0
    for node in at.nodes:
        if node.name in expected:
            assert _ints(at, node.tensor.shape) == expected[node.name], node.name
            seen += 1
    assert seen == len(expected)
    assert _ints(at, at.output.tensor.shape) == tuple(model(x).shape)
    assert at.total_params == sum(p.numel() for p in model.parameters())


def test_swin_like_symbolic_sizes(swin):
    _, analysis = swin
    assert not analysis.unknown_ops or set(analysis.unknown_ops) <= {"operator.matmul"}
    h4, w4 = floordiv(H, 4), floordiv(W, 4)
    # padding to window multiples: 3·ceiling(H'/3), not H' + Mod(...)
    pad = analysis["pad"].tensor.shape
    assert sympy.expand(pad[1] - 3 * ceildiv(h4, 3)) == 0
    assert not pad[1].has(sympy.Mod)
    # x[:, :H, :W] after the padding: the stop lies inside, so the size is H' (no Min)
    for node in analysis.nodes:
        if node.name.startswith("getitem") and node.tensor is not None \
                and node.tensor.ndim == 4 and node.inputs and node.inputs[0].startswith("roll"):
            assert sympy.expand(node.tensor.shape[1] - h4) == 0
            assert sympy.expand(node.tensor.shape[2] - w4) == 0
    # patch merging: pad by H' % 2 then take every other row: ceiling(H'/2)
    out = analysis["merge_reduction"].tensor.shape
    assert sympy.expand(out[1] - ceildiv(h4, 2)) == 0
    assert sympy.expand(out[2] - ceildiv(w4, 2)) == 0
    # the relative position bias is a constant of shape (1, heads, N, N)
    bias = [n for n in analysis.nodes if n.tensor is not None and n.tensor.const
            and tuple(n.tensor.shape) == (1, 2, 9, 9)]
    assert len(bias) == 2
    assert all(not n.conditions for n in analysis.nodes), "padding makes every window fit"


@pytest.mark.parametrize("size", [(64, 64), (50, 37)])
def test_swin_like_macs(swin, size):
    model, analysis = swin
    at = analysis.evaluate(H=size[0], W=size[1])
    assert analysis.complete
    assert at.int_of(analysis.total_macs) == _macs(model, torch.randn(1, 3, *size))


def test_window_partition_without_padding_states_the_condition():
    model = WindowsNoPad().eval()
    analysis = rfgraph.analyze(model, (1, 3, "H", "W"))
    assert not analysis.unknown_ops
    conds = [c for n in analysis.nodes for c in n.conditions]
    h2 = floordiv(H, 2)
    assert sympy.Eq(3 * floordiv(h2, 3), h2) in conds or sympy.Eq(h2, 3 * floordiv(h2, 3)) \
        in conds
    for size in ((36, 54), (18, 42)):  # H/2, W/2 multiples of 3
        at = analysis.evaluate(H=size[0], W=size[1])
        x = torch.randn(1, 3, *size)
        assert _ints(at, at.output.tensor.shape) == tuple(model(x).shape)
        assert at.int_of(analysis.total_macs) == _macs(model, x)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 3, 40, 36))  # torch refuses 20 rows in windows of 3
    with pytest.raises(rfgraph.RfgraphError, match="sizes do not fit"):
        analysis.evaluate(H=40, W=36)
    # the windows merge a spatial axis with others: its field is global (the union)
    field = analysis.field(analysis.output)
    assert field is not None and all(f.is_global for f in field)
    at = analysis.evaluate(H=36, W=54)
    assert at.field_at(at.output)[0].size == 36 and at.field_at(at.output)[1].size == 54


class Rolled(nn.Module):
    def __init__(self, method: bool) -> None:
        super().__init__()
        self.method = method
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.method:
            return x.roll(2, 2)
        return torch.roll(x, shifts=(2, -1), dims=(2, 3))


@pytest.mark.parametrize("method", [False, True])
def test_roll_moves_the_field_cyclically(method):
    model = Rolled(method).eval()
    analysis = rfgraph.analyze(model, (1, 1, "H", "W"))
    at = analysis.evaluate(H=10, W=9)
    assert _ints(at, at.output.tensor.shape) == (1, 1, 8, 7)
    assert at.int_of(analysis.total_macs) == _macs(model, torch.randn(1, 1, 10, 9))
    fh, fw = analysis.field(analysis.output)
    subs = {H: 10, W: 9}
    # by gradient: output row y reads conv row (y - 2) mod 8, i.e. input rows of that window
    x = torch.randn(1, 1, 10, 9, requires_grad=True)
    y = model(x)
    for row, col in ((0, 0), (1, 6), (5, 3)):
        x.grad = None
        y[0, 0, row, col].backward(retain_graph=True)
        rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
        cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
        assert int(fh.start_at(row).subs(subs)) == int(rows.min())
        assert int(fh.end_at(row).subs(subs)) == int(rows.max())
        if not method:
            assert int(fw.start_at(col).subs(subs)) == int(cols.min())
            assert int(fw.end_at(col).subs(subs)) == int(cols.max())


def test_roll_keeps_a_global_field():
    class M(nn.Module):
        def forward(self, x):
            x = x.softmax(dim=2)
            return torch.roll(x, 1, 2)

    analysis = rfgraph.analyze(M(), (1, 1, "H", "W"))
    fh = analysis.field(analysis.output)[0]
    assert fh.is_global and sympy.expand(fh.size - H) == 0


class Gathers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(25, 3))
        self.register_buffer("index", torch.randint(0, 25, (9, 9)))
        self.register_buffer("gidx", torch.randint(0, 25, (6, 3)))

    def forward(self, x):
        a = self.table[self.index.view(-1)].view(9, 9, -1).permute(2, 0, 1)
        b = self.table[self.index[:4, :4].reshape(-1)]
        c = torch.gather(self.table, 0, self.gidx)
        d = torch.index_select(self.table, 0, self.index.view(-1))
        e = self.table.index_select(0, self.index[0])
        f = self.table[self.index[:2], 1:]
        return x, a, b, c, d, e, f


def test_gathers_from_constants_are_constants():
    model = Gathers()
    analysis = rfgraph.analyze(model, (1, 3, "H", "W"))
    assert not analysis.unknown_ops
    got = [t for t in analysis.output.value[1:]]
    want = model(torch.randn(1, 3, 8, 8))[1:]
    assert [tuple(int(s) for s in t.shape) for t in got] == [tuple(t.shape) for t in want]
    assert all(t.const for t in got)
    assert analysis.total_params == 75 and analysis.int_of(analysis.total_macs) == 0


def test_patch_merging_field_through_the_symbolic_pad():
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 4, 4, 4)
            self.merge = PatchMerging(4)

        def forward(self, x):
            return self.merge(self.embed(x).permute(0, 2, 3, 1))

    model = M().eval()
    analysis = rfgraph.analyze(model, (1, 3, "H", "W"))
    assert not analysis.conditions if hasattr(analysis, "conditions") else True
    for size in ((36, 44), (37, 29)):  # H' = 9 is odd: one row of padding
        at = analysis.evaluate(H=size[0], W=size[1])
        x = torch.randn(1, 3, *size)
        assert _ints(at, at.output.tensor.shape) == tuple(model(x).shape)
        assert at.int_of(analysis.total_macs) == _macs(model, x)
        # each output reads a 2×2 block of 4×4 patches; right padding does not move the offset
        for f in at.field_at(at.output):
            assert (f.size, f.jump, f.offset) == (8, 8, 0)
