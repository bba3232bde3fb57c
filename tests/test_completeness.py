"""Issue 8: eval mode by default, totals that say when they are incomplete, formulas that never
hold a value measured at one size, parameters not reached by forward, structured outputs."""

from __future__ import annotations

import collections
import dataclasses
import warnings

import pytest
import sympy
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from rfgraph.symbolic import axis_symbol


class Opaque(nn.Module):
    """A module rfgraph has no rule for: y = x @ W over the channels (MACs C*C per pixel)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(c, c))

    def forward(self, x):
        return _opaque(x, self.w)  # fx.wrap: one call_function node without a rule


@torch.fx.wrap
def _opaque(x, w):
    return torch.tensordot(x, w, dims=([1], [0])).permute(0, 3, 1, 2)


class WithOpaque(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.mid = Opaque(8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(self.mid(self.conv(x)))


def _oracle(model: nn.Module, shape: tuple[int, ...]) -> int:
    with FlopCounterMode(display=False) as c, torch.no_grad():
        model.eval()(torch.zeros(shape))
    return c.get_total_flops() // 2


def _analyze(model, shape, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rfgraph.analyze(model, shape, **kw)


def test_incomplete_totals_are_said_and_formulas_hold_no_measured_value():
    model = WithOpaque()
    a = _analyze(model, (1, 3, "H", "W"))
    assert not a.complete
    assert {n.name for n in a.incomplete_nodes} == {"_opaque", "head"}
    H, W = axis_symbol("H"), axis_symbol("W")
    # the formula holds the rule-covered nodes only: conv (8*3*9 per output pixel) -- the head
    # sits behind the unknown node, so it is incomplete too; no constant term from any size
    conv_out = sympy.floor((H - 3) / 2) + 1, sympy.floor((W - 3) / 2) + 1
    want = 216 * conv_out[0] * conv_out[1]
    assert sympy.expand(a.total_macs - want).subs({H: 41, W: 37}) == 0
    for h, w in ((41, 37), (64, 64)):
        b = a.evaluate(H=h, W=w)
        # the formula is the same at every size: nothing measured at (h, w) is baked in
        assert sympy.expand(b.total_macs - a.total_macs) == 0
        truth = _oracle(model, (1, 3, h, w))
        assert b.total_macs_at == truth  # the evaluated total includes the measured nodes
        assert set(b.measured_macs) == {"_opaque", "head"}
        d = b.to_dict()["totals"]
        assert d["complete"] is False and "_opaque" in d["incomplete_nodes"]
        assert d["macs_at"] == truth and d["macs_measured"]["_opaque"] > 0
        text = str(b)
        assert "incomplete" in text and "measured at these sizes" in text
    # evaluated at the analysis time (--at): the same formula, not one with a constant in it
    c = _analyze(model, (1, 3, "H", "W"), at={"H": 64, "W": 64})
    assert sympy.expand(c.total_macs - a.total_macs) == 0


def test_complete_model_says_complete():
    a = _analyze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (1, 3, "H", "W"))
    assert a.complete and a.to_dict()["totals"]["complete"] is True
    assert "incomplete" not in str(a)


class AuxNet(nn.Module):
    Out = collections.namedtuple("Out", ["logits", "aux"])

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Dropout(0.5))
        self.aux = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        self.unused = nn.Linear(3, 3)
        self.fc = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.body(x)
        if self.training:
            return self.Out(self.fc(y), self.aux(y))
        return self.fc(y)


def test_eval_mode_by_default_train_on_request_flags_restored():
    model = AuxNet().train()
    total = sum(p.numel() for p in model.parameters())
    a = _analyze(model, (2, 3, "H", "W"))
    assert model.training and all(m.training for m in model.modules())  # restored
    assert a.mode == "eval" and a.complete
    # aux head (8*5 + 5 = 45) and the unused linear (3*3 + 3 = 12) are not reached in eval mode
    assert a.params_unreached == {"aux.2": 45, "unused": 12}
    assert a.total_params + a.total_params_unreached == total
    assert a.to_dict()["totals"]["params_unreached"] == {"aux.2": 45, "unused": 12}
    assert "params not reached by forward (eval mode): 57" in str(a)
    t = _analyze(model, (2, 3, "H", "W"), mode="train")
    assert t.mode == "train" and t.complete
    assert t.params_unreached == {"unused": 12}
    assert t.total_params + t.total_params_unreached == total
    out = t.evaluate(H=11, W=13).output.value
    assert isinstance(out, AuxNet.Out)
    assert [int(sympy.sympify(s).subs({axis_symbol("H"): 11, axis_symbol("W"): 13}))
            for s in out.logits.shape] == [2, 2, 9, 11]
    assert model.training
    model.eval()
    _analyze(model, (2, 3, "H", "W"), mode="train")
    assert not any(m.training for m in model.modules())  # eval flags restored too
    with pytest.raises(rfgraph.RfgraphError, match="mode"):
        rfgraph.analyze(model, (1, 3, "H", "W"), mode="inference")


@dataclasses.dataclass
class Pair:
    full: torch.Tensor
    pooled: torch.Tensor


class DataclassOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return Pair(y, y.mean((2, 3)))


def test_dataclass_output():
    a = _analyze(DataclassOut(), (1, 3, "H", "W"))
    out = a.output.value
    assert isinstance(out, Pair)
    got = DataclassOut()(torch.zeros(1, 3, 10, 12))
    H, W = axis_symbol("H"), axis_symbol("W")
    assert [int(sympy.sympify(s).subs({H: 10, W: 12})) for s in out.full.shape] == \
        list(got.full.shape)
    assert [int(s) for s in out.pooled.shape] == list(got.pooled.shape)


class DropPath(nn.Module):  # timm's convention: identity in eval mode
    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Asserting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = DropPath()

    def forward(self, x):
        n, c, h, w = x.shape
        torch._assert(h == 32, "height must be 32")
        torch._assert(w % 4 == 0, "width must be a multiple of 4")
        return x + self.drop(self.conv(x)).sum(1, keepdim=True)


def test_drop_path_transparent_and_asserts_become_conditions():
    for mode in ("eval", "train"):
        a = _analyze(Asserting(), (1, 3, "H", "W"), mode=mode)
        assert a.complete and not a.unknown_nodes, mode
        drop = next(n for n in a.nodes if n.module == "drop")
        assert drop.kind == "transparent"
        fields = a.field(a.output)
        assert [int(f.size) for f in fields] == [3, 3]  # DropPath changes no field
        b = a.evaluate(H=32, W=12)
        assert b.total_macs_at == _oracle(Asserting(), (1, 3, 32, 12))
        with pytest.raises(rfgraph.RfgraphError, match="H = 32"):
            a.evaluate(H=31, W=12)
        with pytest.raises(rfgraph.RfgraphError, match="sizes do not fit"):
            a.evaluate(H=32, W=13)


class OptionalArgs(nn.Module):
    """hiera/timm style: forward(x, mask=None, return_all=False)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x, mask=None, return_all=False):
        y = self.conv(x)
        if mask is not None:  # must not be traced as if a mask were given
            y = y * mask.view(1, 1, 7, 7)
        if return_all:
            return y, x
        return y


def test_optional_forward_arguments_take_their_defaults():
    a = _analyze(OptionalArgs(), (1, 3, "H", "W"))
    assert a.complete and not a.unknown_nodes
    out = OptionalArgs()(torch.zeros(1, 3, 12, 10))
    H, W = axis_symbol("H"), axis_symbol("W")
    assert [int(sympy.sympify(s).subs({H: 12, W: 10})) for s in a.output.tensor.shape] == \
        list(out.shape)
    assert a.evaluate(H=12, W=10).total_macs_at == _oracle(OptionalArgs(), (1, 3, 12, 10))
