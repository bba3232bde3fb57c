"""Attention rules (rfgraph/rules/attention.py): matmul/bmm/mm/addmm/baddbmm, two-operand einsum,
scaled dot-product attention, nn.MultiheadAttention, RMS norm, unbind, and a tiny ViT.

Oracles: the real torch output's shape, sum(p.numel()) for params, FlopCounterMode (FLOPs / 2,
math attention kernel, grad enabled so MultiheadAttention skips its uncounted fast path) for
MACs, each at two sizes (one odd); fields against hand-derived values."""

from __future__ import annotations

import inspect
import re

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from rfgraph.rules.attention import Unsupported
from rfgraph.rules.base import Call, lookup
from rfgraph.tensor import TensorInfo

D = 8


def oracle_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, object]:
    model.eval()
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH), \
            FlopCounterMode(display=False) as counter:
        out = model(x)
    return counter.get_total_flops() // 2, out


def shapes_of(value) -> list:
    """Shapes of the tensors in a (nested) output, None kept."""
    if value is None:
        return [None]
    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, TensorInfo):
        return [tuple(value.shape)]
    if isinstance(value, (tuple, list)):
        return [s for v in value for s in shapes_of(v)]
    raise TypeError(type(value))


def check(model: nn.Module, spec: tuple, sizes: list[dict[str, int]],
          macs_fn=None) -> rfgraph.Analysis:
    """Symbolic analysis vs torch at each size: shapes, params, MACs (FlopCounterMode unless
    ``macs_fn(sizes)`` is given), and evaluate() agreeing with the formulas."""
    torch.manual_seed(0)
    model.eval()
    a = rfgraph.analyze(model, spec)
    assert a.unknown_nodes == []
    assert a.total_params == sum(p.numel() for p in model.parameters())
    for at in sizes:
        x = torch.randn(*[at[s] if isinstance(s, str) else s for s in spec])
        macs, out = oracle_macs(model, x)
        if macs_fn is not None:
            macs = macs_fn(at)
        subs = {sympy.Symbol(k, integer=True, positive=True): v for k, v in at.items()}
        got = [None if s is None else tuple(int(sympy.sympify(d).xreplace(subs)) for d in s)
               for s in shapes_of(a.output.value)]
        assert got == shapes_of(out), at
        assert int(a.total_macs.xreplace(subs)) == macs, at
        e = a.evaluate(**at)
        assert e.unknown_nodes == []
        assert int(e.value_of(e.total_macs)) == macs, at
    return a


TOKENS = [{"T": 5}, {"T": 12}]


class Tok(nn.Module):
    """Token input (N, T, D) -> fn(self, x)."""

    def __init__(self, fn, **params: torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        source = inspect.getsource(fn)
        for name in ("q", "k"):  # only the projections fn uses: params are compared
            if f"s.{name}(" in source:
                setattr(self, name, nn.Linear(D, D))
        for name, value in params.items():
            setattr(self, name, nn.Parameter(value))

    def forward(self, x):
        return self.fn(self, x)


MATMULS = {
    "operator-matmul-qk-v": lambda s, x: F.softmax(s.q(x) @ s.k(x).transpose(-2, -1), dim=-1)
    @ x,
    "torch-matmul-bcast-param": lambda s, x: torch.matmul(x.unsqueeze(1), s.w4),
    "method-matmul": lambda s, x: s.q(x).matmul(s.k(x).transpose(1, 2)),
    "bmm": lambda s, x: torch.bmm(s.q(x), s.k(x).transpose(1, 2)),
    "method-bmm": lambda s, x: s.q(x).bmm(x.transpose(1, 2)),
    "baddbmm": lambda s, x: torch.baddbmm(s.b1, s.q(x), s.k(x).transpose(1, 2)),
    "method-baddbmm": lambda s, x: s.b1.baddbmm(x, s.k(x).transpose(1, 2)),
    "mm": lambda s, x: torch.mm(x[0], s.w),
    "method-mm": lambda s, x: x[1].mm(s.w),
    "addmm": lambda s, x: torch.addmm(s.bias, x[0], s.w),
    "method-addmm": lambda s, x: s.bias.addmm(x[1], s.w),
    "matmul-3d-2d": lambda s, x: x @ s.w,
    "matmul-2d-3d": lambda s, x: s.wt @ x.transpose(1, 2),
    "einsum-qk": lambda s, x: torch.einsum("bid,bjd->bij", s.q(x), s.k(x)),
    "einsum-implicit": lambda s, x: torch.einsum("bij,bjk", x, s.w.expand(2, D, 3)),
    "einsum-ellipsis": lambda s, x: torch.einsum("...id,de->...ie", x.unsqueeze(1), s.w),
    "einsum-list-spaces": lambda s, x: torch.einsum("b i d , b j d -> b i j", [x, s.k(x)]),
    "einsum-sum-one-side": lambda s, x: torch.einsum("bid,de->e", x, s.w),
    "einsum-heads": lambda s, x: torch.einsum(
        "bhid,bhjd->bhij", s.q(x).view(2, -1, 2, 4).transpose(1, 2),
        s.k(x).view(2, -1, 2, 4).transpose(1, 2)),
}
PARAMS = {"w4": torch.randn(1, 3, D, 5), "b1": torch.randn(1, 1), "w": torch.randn(D, 3),
          "bias": torch.randn(3), "wt": torch.randn(4, D)}


@pytest.mark.parametrize("name", sorted(MATMULS))
def test_matmul_family_shapes_params_macs(name):
    fn = MATMULS[name]
    source = inspect.getsource(fn)
    params = {k: v for k, v in PARAMS.items() if re.search(rf"\bs\.{k}\b", source)}
    check(Tok(fn, **params), (2, "T", D), TOKENS)


def test_matrix_vector_macs_are_counted():
    """FlopCounterMode counts 0 for aten.mv (torch folds a strided vector-matrix product into
    one too); rfgraph counts N·T·D for both."""
    for fn in (lambda s, x: x @ s.u, lambda s, x: s.u @ x.transpose(1, 2)):
        model = Tok(fn, u=torch.randn(D))
        check(model, (2, "T", D), TOKENS, macs_fn=lambda at: 2 * at["T"] * D)
        assert oracle_macs(model, torch.randn(2, 5, D))[0] == 0  # the blind spot we fill


def test_einsum_outer_product_counts_zero_like_mul():
    check(Tok(lambda s, x: torch.einsum("bi,bj->bij", x[:, 0], x[:, 1])), (2, "T", D), TOKENS)


def _call(target, *args, **kwargs) -> Call:
    return Call("n", None, "", target, args, kwargs)


def _info(*shape) -> TensorInfo:
    return TensorInfo(tuple(sympy.sympify(s) for s in shape), (None,) * len(shape), ())


def test_unsupported_einsum_variants_raise_unsupported():
    rule = lookup(torch.einsum)[0]
    with pytest.raises(Unsupported):
        rule(_call(torch.einsum, "ij,jk,kl->il", _info(2, 3), _info(3, 4), _info(4, 5)))
    with pytest.raises(Unsupported):
        rule(_call(torch.einsum, "i1,1k->ik", _info(2, 3), _info(3, 4)))
    with pytest.raises(Unsupported):
        rule(_call(torch.einsum, _info(2, 3), [0, 1], _info(3, 4), [1, 2]))


def test_symbolic_sizes_that_must_agree_become_conditions():
    rule = lookup(torch.matmul)[0]
    t, s = sympy.symbols("T S", integer=True, positive=True)
    res = rule(_call(torch.matmul, _info(2, t, 4), _info(4, s)))
    assert res.conditions == []
    res = rule(_call(torch.matmul, _info(2, 3, t), _info(s, 5)))
    assert res.conditions == [sympy.Eq(t, s)]
    assert tuple(res.value.shape) == (2, 3, 5)
    assert res.macs == 2 * 3 * t * 5
    with pytest.raises(rfgraph.errors.RuleError):
        rule(_call(torch.matmul, _info(2, 3, 4), _info(5, 6)))


# -- scaled dot-product attention ------------------------------------------------------------------
class SDPA(nn.Module):
    def __init__(self, heads: int = 2, kv_heads: int | None = None, mask: bool = False,
                 **kwargs) -> None:
        super().__init__()
        self.h, self.kvh = heads, kv_heads or heads
        self.q = nn.Linear(D, D)
        self.kv = nn.Linear(D, 2 * (D // heads) * self.kvh)
        self.mask = nn.Parameter(torch.randn(1, 1)) if mask else None
        self.kwargs = kwargs

    def forward(self, x):
        n, t, _ = x.shape
        q = self.q(x).view(n, t, self.h, -1).transpose(1, 2)
        k, v = self.kv(x).view(n, t, 2, self.kvh, -1).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, **self.kwargs)
        return y.transpose(1, 2).reshape(n, t, -1)


@pytest.mark.parametrize("kwargs", [{}, {"is_causal": True}, {"mask": True},
                                    {"heads": 4, "kv_heads": 2, "enable_gqa": True},
                                    {"scale": 0.5}], ids=str)
def test_scaled_dot_product_attention(kwargs):
    check(SDPA(**kwargs), (2, "T", D), TOKENS)


def test_sdpa_macs_formula_and_unequal_value_width():
    rule = lookup(F.scaled_dot_product_attention)[0]
    b, n, s = sympy.symbols("B L S", integer=True, positive=True)
    res = rule(_call(F.scaled_dot_product_attention, _info(b, 3, n, 5), _info(1, 3, s, 5),
                     _info(b, 3, s, 7)))
    assert tuple(res.value.shape) == (b, 3, n, 7)
    assert sympy.expand(res.macs - (b * 3 * n * s * 5 + b * 3 * n * s * 7)) == 0


# -- nn.MultiheadAttention -------------------------------------------------------------------------
class MHA(nn.Module):
    def __init__(self, cross: bool = False, need_weights: bool = True, average: bool = True,
                 **kwargs) -> None:
        super().__init__()
        self.cross, self.need, self.avg = cross, need_weights, average
        kd, vd = kwargs.get("kdim") or D, kwargs.get("vdim") or D
        if cross:
            self.to_k, self.to_v = nn.Linear(D, kd), nn.Linear(D, vd)
        self.mha = nn.MultiheadAttention(D, 2, **kwargs)

    def forward(self, x):
        if self.cross:  # keys/values: every second token
            kv = x[:, ::2] if self.mha.batch_first else x[::2]
            return self.mha(x, self.to_k(kv), self.to_v(kv), need_weights=self.need,
                            average_attn_weights=self.avg)
        return self.mha(x, x, x, need_weights=self.need, average_attn_weights=self.avg)


MHA_CASES = [
    {}, {"batch_first": True}, {"need_weights": False}, {"average": False, "batch_first": True},
    {"bias": False}, {"add_bias_kv": True}, {"add_zero_attn": True, "batch_first": True},
    {"cross": True}, {"cross": True, "kdim": 6, "vdim": 4, "batch_first": True},
    {"cross": True, "kdim": 6, "vdim": 5, "add_bias_kv": True, "add_zero_attn": True,
     "need_weights": False},
]


@pytest.mark.parametrize("kwargs", MHA_CASES, ids=str)
def test_multihead_attention(kwargs):
    first = kwargs.get("batch_first", False)
    spec = (2, "T", D) if first else ("T", 2, D)
    check(MHA(**kwargs), spec, TOKENS)


def test_multihead_attention_unbatched():
    check(MHA(), ("T", D), TOKENS)


# -- norms and unbind ------------------------------------------------------------------------------
class Norms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rms = nn.RMSNorm(D)
        self.rms_plain = nn.RMSNorm([D], elementwise_affine=False)
        self.w = nn.Parameter(torch.ones(D))

    def forward(self, x):
        x = self.rms_plain(self.rms(x))
        x = F.rms_norm(x, (D,), self.w)
        return F.layer_norm(x, (D,), self.w)


def test_rms_norm_and_functional_layer_norm():
    a = check(Norms(), (2, "T", D), TOKENS)
    by_name = {n.name: n for n in a.nodes}
    assert by_name["rms"].params == D and by_name["rms_plain"].params == 0
    assert by_name["rms_norm"].params == 0  # the weight is counted once, at its get_attr


def test_unbind_pieces():
    def fn(s, x):
        a, b = torch.unbind(x, 0)
        return a * 2, b.unbind(dim=-1)[3]

    check(Tok(fn), (2, "T", D), TOKENS)
    rule = lookup("unbind")[0]
    with pytest.raises(Unsupported):  # a symbolic number of pieces
        rule(_call("unbind", _info(2, sympy.Symbol("T"), D), 1))


# -- fields ----------------------------------------------------------------------------------------
class Seq(nn.Module):
    """(1, 4, L) -> conv k3 -> tokens (1, L-2, 4) along axis L -> op."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.conv = nn.Conv1d(4, 4, 3)
        if op == "param":
            self.w = nn.Parameter(torch.randn(4, 6))
        if op == "mha":
            self.mha = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        t = self.conv(x).transpose(1, 2)
        if self.op == "param":
            return t @ self.w
        if self.op == "gram":
            return t @ t.transpose(1, 2)
        if self.op == "sdpa":
            return F.scaled_dot_product_attention(t, t, t)
        return self.mha(t, t, t, need_weights=False)[0]


@pytest.mark.parametrize("op,global_", [("param", False), ("gram", True), ("sdpa", True),
                                        ("mha", True)])
def test_fields_local_rows_global_tokens(op, global_):
    a = check(Seq(op), (1, 4, "L"), [{"L": 9}, {"L": 16}])
    e = a.evaluate(L=9)
    (f,) = e.field_at(e.output)
    if global_:  # every output sees all 7 conv outputs: input rows 0..8
        assert (f.size, f.offset) == (9, 0)
        assert a.field(a.output)[0].is_global
    else:  # a row of t @ W is one token: the conv's 3-pixel window
        assert (f.size, f.jump, f.offset) == (3, 1, 0)


# -- a tiny ViT ------------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, dim: int, manual: bool) -> None:
        super().__init__()
        self.manual = manual
        self.n1, self.n2 = nn.LayerNorm(dim), nn.RMSNorm(dim)
        if manual:
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        else:
            self.attn = nn.MultiheadAttention(dim, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        h = self.n1(x)
        if self.manual:
            b, n, c = h.shape
            q, k, v = self.qkv(h).reshape(b, n, 3, 4, c // 4).permute(2, 0, 3, 1, 4).unbind(0)
            att = (q @ k.transpose(-2, -1) * (c // 4) ** -0.5).softmax(dim=-1)
            h = self.proj((att @ v).transpose(1, 2).reshape(b, n, c))
        else:
            h = self.attn(h, h, h, need_weights=False)[0]
        x = x + h
        return x + self.mlp(self.n2(x))


class TinyViT(nn.Module):
    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 16, 16)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 1, dim))  # per channel: no size pinned
        self.blocks = nn.Sequential(Block(dim, manual=False), Block(dim, manual=True))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        # the class token: a parameter plus the mean token (a parameter alone would make the
        # field unknown until glue.concatenate ignores constants, as _broadcast does)
        cls = self.cls.expand(x.shape[0], -1, -1) + x.mean(dim=1, keepdim=True)
        x = torch.cat([cls, x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def test_tiny_vit_macs_quadratic_in_tokens():
    a = check(TinyViT(), (1, 3, "H", "W"), [{"H": 64, "W": 64}, {"H": 97, "W": 97},
                                             {"H": 80, "W": 113}])
    h, w = sympy.symbols("H W", integer=True, positive=True)
    p, q, n = sympy.symbols("p q n", positive=True)
    macs = a.total_macs.xreplace({sympy.floor(h / 16): p, sympy.floor(w / 16): q})
    assert macs.free_symbols <= {p, q}
    in_n = sympy.expand(macs.subs(q, n / p))
    assert in_n.free_symbols == {n}
    assert sympy.degree(in_n, n) == 2
    e = a.evaluate(H=97, W=80)
    assert [f.size for f in e.field_at(e.output)] == [96, 80]  # rows 96.. never read
