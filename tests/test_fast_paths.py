"""The path after analyze: compiled evaluation (rfgraph/compiled.py) gives exactly what SymPy
substitution gives, and printing a symbolic analysis stays linear in depth (counted, not timed)."""

from __future__ import annotations

import itertools
from unittest import mock

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn

import rfgraph
import rfgraph.compiled as compiled
from examples.zoo import GRAPH_ZOO, ZOO, ZOO_INPUTS
from rfgraph.analysis import Analysis, FieldAt
from rfgraph.compiled import FormulaCache, compile_formulas
from rfgraph.symbolic import axis_symbol, format_expr, subs_int

H, W = axis_symbol("H"), axis_symbol("W")


def _subs(at: dict[str, int]) -> dict[sympy.Symbol, int]:
    return {axis_symbol(k): v for k, v in at.items()}


def _reference_field_at(a: Analysis, node) -> list[FieldAt] | None:
    """Analysis.field_at as it was before the fast paths: SymPy substitution everywhere."""
    fields = a.field(node)
    if fields is None or a.at is None:
        return None
    subs = _subs(a.at)
    t = node.tensor
    out = []
    for i, r in enumerate(fields):
        d = t.dim_of_axis(i)
        n = int(subs_int(t.shape[d], subs)) if d is not None else 1
        sizes = [subs_int(s, subs) for s in r.sizes_within(n)]
        jump, offset = subs_int(r.jump, subs), subs_int(r.offset, subs)
        if not (all(s.is_Integer for s in sizes) and offset.is_Integer and jump.is_Rational):
            return None
        out.append(FieldAt(max(int(s) for s in sizes), jump, int(offset),
                           min(int(s) for s in sizes)))
    return out


def _check_exact(a: Analysis, at: dict[str, int]) -> None:
    """Every value of every node of ``a.evaluate(**at)`` equals SymPy's substitution."""
    e = a.evaluate(**at)
    subs = _subs(at)
    for node in e._nodes:
        exprs = list(node.tensor.shape) if node.tensor is not None else []
        exprs += [node.macs] + [x for x, _ in node.min_sizes]
        for r in e.field(node) or ():
            exprs += [r.jump, r.offset]
        for x in exprs:
            want = subs_int(x, subs)
            got = e.value_of(x)
            assert got == want and type(got) is type(want), (node.name, x, at, got, want)
        assert e.field_at(node) == _reference_field_at(e, node), (node.name, at)
    ref = _slow_dict(e)
    assert e.to_dict() == ref


def _slow_dict(e: Analysis) -> dict:
    """to_dict with the compiled formulas switched off (SymPy substitution only)."""
    fresh = Analysis(e.model_name, e.input_shape, e._nodes, e.warnings, e.at, e.graph_module,
                     e.mode, e.params_unreached, e.rules)

    def slow(self, expr, at, subs):
        return subs_int(expr, subs)

    with mock.patch.object(FormulaCache, "value", slow):
        return fresh.to_dict()


SIZES_2D = [(1, 1), (7, 9), (31, 32), (32, 32), (33, 65), (97, 131), (224, 224), (225, 223),
            (320, 480), (513, 1000)]

MODELS = ["alexnet", "vgg16", "resnet50", "mobilenet_v2", "encoder_decoder", "small_conv3d"]


def _valid(a: Analysis, at: dict[str, int]) -> bool:
    try:
        a.evaluate(**at)
    except rfgraph.RfgraphError:
        return False
    return True


@pytest.mark.parametrize("name", MODELS)
def test_compiled_evaluation_equals_sympy_on_zoo(name):
    a = rfgraph.analyze(ZOO[name](), ZOO_INPUTS[name])
    names = a.symbols
    sizes = [dict(zip(names, s + (s[0] + 2,))) for s in SIZES_2D]
    checked = 0
    for at in sizes:
        if _valid(a, at):
            _check_exact(a, at)
            checked += 1
    assert checked >= 3
    # compiled once for the symbolic analysis' nodes, whatever the number of sizes
    assert a.formulas.batches <= 2


@pytest.mark.parametrize("name", ["unet_small", "deeplab_small", "se_resnet_small",
                                  "densenet_small"])
def test_compiled_evaluation_equals_sympy_on_graph_zoo(name):
    # unet_small and deeplab_small have nodes that need concrete sizes (re-annotated)
    a = rfgraph.analyze(GRAPH_ZOO[name]())
    for h, w in [(64, 64), (97, 131), (128, 160), (255, 257)]:
        if _valid(a, {"H": h, "W": w}):
            _check_exact(a, {"H": h, "W": w})


class _Mixed(nn.Module):
    """Fields with Min/Max (adaptive bins), position-dependent fields (transposed conv, nearest
    up-sampling) and Mod in the shapes (pad to a multiple)."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.t = nn.ConvTranspose2d(3, 4, 3, stride=2)
        self.c = nn.Conv2d(4, 4, 3, dilation=2, padding=2)
        self.a = nn.AdaptiveAvgPool2d((5, 3))

    def forward(self, x):
        y = self.c(self.t(self.p(x)))
        h, w = y.shape[-2:]
        padded = F.pad(y, (0, (7 - w % 7) % 7, 0, (7 - h % 7) % 7))
        z = F.interpolate(y, scale_factor=1.5, mode="nearest")
        return self.a(z) + 1, padded


def test_compiled_evaluation_min_max_mod_and_positions():
    a = rfgraph.analyze(_Mixed())
    kinds = set()
    for n in a._nodes:
        exprs = list(n.tensor.shape) if n.tensor is not None else []
        for r in a.field(n) or ():
            exprs += [r.size, r.min_size]
        for x in exprs:
            kinds |= {c for c in (sympy.Min, sympy.Max, sympy.Mod) if sympy.sympify(x).has(c)}
    assert {sympy.Min, sympy.Max} <= kinds
    for h, w in [(13, 21), (29, 5)]:
        if _valid(a, {"H": h, "W": w}):
            _check_exact(a, {"H": h, "W": w})


def test_compile_formulas_exact_on_piecewise_min_max_mod_ceiling():
    exprs = [
        sympy.floor((H + 6) / 8) * sympy.ceiling(W / 3),
        sympy.Piecewise((H - 3, H > 7), (H, True)) + sympy.Mod(W, 5),
        sympy.Mod(7 - sympy.Mod(H, 7), 7) + W,
        sympy.Max(2 * sympy.floor(H / 3) + 1, W - 4) - sympy.Min(H, 2 * W),
        sympy.Rational(3, 2) * sympy.floor(H / 2) + sympy.Rational(1, 4),
        sympy.floor(sympy.Rational(5, 7) * sympy.floor(H / 32) + sympy.Rational(6, 7)),
        H ** 2 * W - 3 * H,
        sympy.ceiling(sympy.floor((H - 1) / 2) / 5) - sympy.floor(-W / 3),
        sympy.Piecewise((H, H < W), (W, True)),
        H / W,
    ]
    funcs = compile_formulas(exprs, ["H", "W"])
    assert all(funcs[x] is not None for x in exprs)
    cache = FormulaCache(["H", "W"])
    for h, w in itertools.product(range(1, 40), [1, 2, 3, 7, 8, 64, 99]):
        subs = {H: h, W: w}
        for x in exprs:
            want = subs_int(x, subs)
            got = cache.value(x, {"H": h, "W": w}, subs)
            assert got == want and type(got) is type(want), (x, h, w)


def test_value_falls_back_to_sympy():
    y = sympy.Symbol("y", integer=True)
    cache = FormulaCache(["H"])
    subs = {H: 5}
    # a symbol that is not an input size; a formula without Python form; division by zero
    for x in [H + y, sympy.sqrt(H) * 2, 1 / (H - 5), sympy.Piecewise((H, H > 9))]:
        assert cache.value(x, {"H": 5}, subs) == subs_int(x, subs)


def test_formulas_compile_once_and_sympy_not_substituted():
    a = rfgraph.analyze(ZOO["resnet50"]())
    with mock.patch.object(compiled, "subs_int", side_effect=subs_int) as spy:
        for s in (224, 97, 131, 320):
            e = a.evaluate(H=s, W=s + 1)
            e.to_dict()
            assert e.total_macs_at == subs_int(a.total_macs, {H: s, W: s + 1})
    assert spy.call_count == 0  # every formula of ResNet-50 compiles
    assert a.formulas.batches == 1


# -- linear in depth: counted ------------------------------------------------------------------
def _chain(depth: int, transposed: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ConvTranspose2d(3, 8, 2, stride=2) if transposed
                               else nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()]
    for i in range(1, depth):
        layers += [nn.Conv2d(8, 8, 3, stride=2 if i <= 3 else 1, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def _count_printing(a: Analysis, what) -> tuple[int, int]:
    """(format_expr calls, SymPy printer calls) made by ``what(a)``."""
    with mock.patch.object(compiled, "format_expr", side_effect=format_expr) as fmt, \
            mock.patch.object(sympy.printing.str.StrPrinter, "doprint", autospec=True,
                              side_effect=sympy.printing.str.StrPrinter.doprint) as printer:
        what(a)
    return fmt.call_count, printer.call_count


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("what", [Analysis.to_dict, str])
def test_printing_per_node_bounded(transposed, what):
    counts = {}
    for depth in (20, 80):
        a = rfgraph.analyze(_chain(depth, transposed))
        counts[depth] = (len(a._nodes), *_count_printing(a, what))
    (n_small, fmt_small, pr_small), (n_big, fmt_big, pr_big) = counts[20], counts[80]
    assert n_big > 3 * n_small
    # each distinct formula is printed once: deep chains add no printing per node beyond a
    # constant (positions of a transposed conv's field: a few more formulas per layer)
    per_node = 6 if transposed else 1
    assert fmt_big - fmt_small <= per_node * (n_big - n_small)
    assert pr_big - pr_small <= per_node * (n_big - n_small)
    if not transposed:  # plain stacks: field sizes are numbers, shapes repeat
        assert fmt_big - fmt_small <= 10


def test_affine_field_with_size_dependent_offset_evaluates():
    """timm's Conv2dSame pads like TensorFlow's "SAME": (k - s) or (k - s + 1) pixels depending on
    the size's parity, so its field is affine with an offset that is a formula of H
    (``-ceiling(-H/2) - ceiling(H/2)``). ``field_at`` took the affine fast path and called
    int() on that formula (MaxViT in training mode). Oracle: the gradient of one output element
    with respect to the input, in torch."""

    class Conv2dSame(nn.Conv2d):  # the class rfgraph knows by its qualified name
        def forward(self, x):
            ih, iw = x.shape[-2:]
            pads = [max((-(n // -2) - 1) * 2 + 3 - n, 0) for n in (ih, iw)]
            x = F.pad(x, [pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2,
                          pads[0] - pads[0] // 2])
            return super().forward(x)

    Conv2dSame.__module__ = "timm.layers.conv2d_same"
    Conv2dSame.__qualname__ = "Conv2dSame"
    model = nn.Sequential(Conv2dSame(1, 1, 3, stride=2))
    a = rfgraph.analyze(model, (1, 1, "H", "W"))
    field = a.field(a.nodes[-1])[0]
    assert field.affine is not None and not isinstance(field.affine[2], int)
    for h in (10, 11):
        rf = a.evaluate(H=h, W=h).to_dict()["nodes"][-1]["rf_at"]
        x = torch.randn(1, 1, h, h, requires_grad=True)
        model(x)[0, 0, 2, 2].backward()
        rows = x.grad[0, 0].abs().sum(1).nonzero().flatten().tolist()
        # total padding at 10: (5 - 1)*2 + 3 - 10 = 1, all on the right: offset 0; at 11:
        # (6 - 1)*2 + 3 - 11 = 2, one on each side: offset -1; element 2 reads offset + 4 ..
        assert rf["offset"][0] == {10: 0, 11: -1}[h] and rf["size"][0] == 3
        assert rows == [rf["offset"][0] + 4 + t for t in range(3)]
