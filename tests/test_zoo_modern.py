"""rfgraph on ``examples.zoo.MODERN_ZOO`` (ViT, Swin, ConvNeXt / EfficientNet with stochastic
depth, RegNet-Y, MobileNetV3, GoogLeNet with auxiliary heads), against independent oracles:
the eager model's output shape, ``sum(p.numel())`` and ``FlopCounterMode`` FLOPs / 2 with the
attention recipe of DESIGN.md (eval mode, grad enabled, ``sdpa_kernel(SDPBackend.MATH)``, so
that ``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` are counted)."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import sympy
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from examples.zoo import GRAPH_ZOO, MODERN_ZOO, MODERN_ZOO_INPUTS, MODERN_ZOO_SIZES, ZOO
from examples.zoo.efficientnet import SqueezeExcitation
from rfgraph.errors import RfgraphError

NAMES = list(MODERN_ZOO)
CASES = [pytest.param(name, hw, id=f"{name}-{hw[0]}x{hw[1]}")
         for name in NAMES for hw in MODERN_ZOO_SIZES[name]]
#: one small (odd) size per model for ``verify``, which runs every node with torch
VERIFY_SIZES = {name: (35, 41) for name in NAMES} | {
    "vit_fixed": (67, 67),  # its only valid size
    "swin_tiny_small": (53, 57),  # the attention masks are built for 52..67
}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def build(name: str, mode: str = "eval") -> nn.Module:
    """One instance per (model, mode), seeded."""
    return _build(name, mode)


@functools.cache
def _build(name: str, mode: str) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MODERN_ZOO[name]()
    return model.train(mode == "train")


def analysis(name: str, mode: str = "eval") -> rfgraph.Analysis:
    """Eval mode: rfgraph's default, no ``mode`` argument."""
    return _analysis(name, mode)


@functools.cache
def _analysis(name: str, mode: str) -> rfgraph.Analysis:
    if mode == "eval":
        return rfgraph.analyze(build(name), MODERN_ZOO_INPUTS[name])
    return rfgraph.analyze(build(name, mode), MODERN_ZOO_INPUTS[name], mode=mode)


def evaluated(name: str, hw: tuple[int, int], mode: str = "eval") -> rfgraph.Analysis:
    return _evaluated(name, tuple(hw), mode)


@functools.cache
def _evaluated(name: str, hw: tuple[int, int], mode: str) -> rfgraph.Analysis:
    return analysis(name, mode).evaluate(H=hw[0], W=hw[1])


def tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors(v)]
    return []


def oracle(name: str, hw: tuple[int, int], mode: str = "eval",
           ) -> tuple[list[tuple[int, ...]], int]:
    """(shapes of the output tensors, MACs = FLOPs / 2) of the eager model at ``hw``."""
    return _oracle(name, tuple(hw), mode)


@functools.cache
def _oracle(name: str, hw: tuple[int, int], mode: str) -> tuple[list[tuple[int, ...]], int]:
    model = build(name, mode)
    assert model.training == (mode == "train")
    with torch.random.fork_rng():
        torch.manual_seed(1)
        x = torch.randn(1, 3, *hw)
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH), \
                FlopCounterMode(display=False) as counter:
            out = model(x)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return [tuple(t.shape) for t in tensors(out)], flops // 2


def true_params(name: str) -> int:
    return sum(p.numel() for p in build(name).parameters())


def params_unreached(a: rfgraph.Analysis) -> int:
    """Parameters of modules the traced graph never calls (e.g. aux heads in eval mode), when
    the analysis reports them (``Analysis.params_unreached`` or the JSON totals)."""
    value = getattr(a, "params_unreached", None)
    if value is None:
        value = a.to_dict()["totals"].get("params_unreached", 0)
    if isinstance(value, dict):
        return sum(int(v) for v in value.values())
    return int(value or 0)


def shape_at(b: rfgraph.Analysis, info: Any) -> tuple[int | None, ...]:
    return tuple(b.int_of(s) for s in info.shape)


def test_tables():
    assert list(MODERN_ZOO) == list(MODERN_ZOO_INPUTS) == list(MODERN_ZOO_SIZES)
    assert not set(MODERN_ZOO) & (set(ZOO) | set(GRAPH_ZOO))
    for name, sizes in MODERN_ZOO_SIZES.items():
        assert MODERN_ZOO_INPUTS[name] == (1, 3, "H", "W")
        assert len(set(sizes)) == (1 if name == "vit_fixed" else 2), name
        assert any(h % 2 or w % 2 for h, w in sizes), name


@pytest.mark.parametrize(("name", "hw"), CASES)
def test_output_shape(name, hw):
    (shape, *_), _ = oracle(name, hw)
    assert shape == (1, 10)
    assert shape_at(evaluated(name, hw), evaluated(name, hw).output.tensor) == shape


@pytest.mark.parametrize("name", NAMES)
def test_params(name):
    a = analysis(name)
    assert a.total_params + params_unreached(a) == true_params(name)


@pytest.mark.parametrize(("name", "hw"), CASES)
def test_macs_evaluated(name, hw):
    b = evaluated(name, hw)
    assert b.int_of(b.total_macs) == oracle(name, hw)[1]


@pytest.mark.parametrize(("name", "hw"), CASES)
def test_symbolic_no_unknowns_and_macs_formula(name, hw):
    a = analysis(name)
    assert [(n.name, n.target) for n in a.unknown_nodes] == []
    H, W = a.input_shape[2:]
    assert isinstance(H, sympy.Symbol) and isinstance(W, sympy.Symbol)
    value = sympy.sympify(a.total_macs).subs({H: hw[0], W: hw[1]})
    assert value.is_Integer, value
    assert int(value) == oracle(name, hw)[1]


#: verify's gradient probe of every node's field takes 5-17 s on these (2-core machine)
SLOW_VERIFY = {"swin_tiny_small", "convnext_sd_small", "googlenet_aux"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_VERIFY
                                  else n for n in NAMES])
def test_verify(name):
    h, w = VERIFY_SIZES[name]
    report = analysis(name).verify(at=[{"H": h, "W": w}])
    assert report.ok, report.format()


def test_vit_fixed_pins_the_size():
    """torchvision's ``torch._assert(h == self.image_size)``: torch refuses 64 x 64, so must
    rfgraph's evaluation (the condition H = 67, W = 67)."""
    with pytest.raises(AssertionError, match="Wrong image height"):
        build("vit_fixed")(torch.randn(1, 3, 64, 64))
    with pytest.raises(RfgraphError):
        analysis("vit_fixed").evaluate(H=64, W=64)
    with pytest.raises(RfgraphError):
        analysis("vit_fixed").evaluate(H=67, W=64)


def test_googlenet_eval_skips_aux_heads():
    a = analysis("googlenet_aux")
    modules = {n.module for n in a.nodes}
    assert not any(m.startswith(("aux1", "aux2")) for m in modules)
    aux = sum(p.numel() for m in (build("googlenet_aux").aux1, build("googlenet_aux").aux2)
              for p in m.parameters())
    assert a.total_params == true_params("googlenet_aux") - aux
    assert params_unreached(a) == aux


def test_googlenet_train_counts_aux_heads():
    """mode="train": the aux heads run, so they are in the graph and their parameters count."""
    a = analysis("googlenet_aux", "train")
    assert getattr(a, "mode", "train") == "train"
    modules = {n.module for n in a.nodes}
    assert any(m.startswith("aux1") for m in modules)
    assert any(m.startswith("aux2") for m in modules)
    assert a.total_params == true_params("googlenet_aux")
    assert params_unreached(a) == 0
    assert build("googlenet_aux", "train").training  # the user's flag is kept


def test_googlenet_train_no_unknown_nodes():
    """The namedtuple output (``GoogLeNetOutputs(x, aux2, aux1)``) included."""
    a = analysis("googlenet_aux", "train")
    assert [(n.name, n.target) for n in a.unknown_nodes] == []


@pytest.mark.parametrize("hw", MODERN_ZOO_SIZES["googlenet_aux"])
def test_googlenet_train_shapes_and_macs(hw):
    shapes, macs = oracle("googlenet_aux", hw, "train")
    assert shapes == [(1, 10)] * 3  # GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
    assert macs > oracle("googlenet_aux", hw)[1]
    b = evaluated("googlenet_aux", hw, "train")
    assert [shape_at(b, t) for t in _tensor_infos(b.output.value)] == shapes
    assert b.int_of(b.total_macs) == macs


def _tensor_infos(value: Any) -> list[Any]:
    if hasattr(value, "shape") and hasattr(value, "rf"):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensor_infos(v)]
    return []


def test_se_chain_field_is_compact():
    """20 conv + squeeze-and-excitation blocks: every output sees the whole (padded) input; the
    field is one compact closed form, not a nest of Max/Min growing with depth."""
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, stride=2, padding=1)]
    for _ in range(20):
        layers += [nn.Conv2d(8, 8, 3, padding=1), SqueezeExcitation(8, 2)]
    model = nn.Sequential(*layers).eval()
    a = rfgraph.analyze(model, (1, 3, "H", "W"))
    assert not a.unknown_nodes
    fields = a.field(a.output)
    assert fields is not None and len(fields) == 2
    for r in fields:
        assert len(str(r.size)) < 200, r.size
    b = a.evaluate(H=37, W=50)
    (fh, fw) = b.field_at(b.output)
    assert fh.size >= 37 and fw.size >= 50
