"""The rule registry: user rules (``register_rule``, ``unregister_rule``, ``scoped_rules``, the
``rules=`` argument of ``analyze``), the pooling dimension of subclasses, and coverage: every
torch op with a rule has an ATen twin or a declared reason, every family has a colour, and
docs/rules.md lists every registered op."""

from __future__ import annotations

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn

import rfgraph
from rfgraph import Family, Kind
from rfgraph.rules import aten, base, doc
from rfgraph.rules.base import OpResult, apply_window, window


def _shape_at(a: rfgraph.Analysis, **sizes: int) -> list[int]:
    b = a.evaluate(**sizes)
    return [b.int_of(s) for s in b.output.tensor.shape]


# -- the pooling dimension comes from the torch base class ----------------------------------------
class FancyPool(nn.MaxPool2d):
    """A user's subclass that adds nothing: nn.MaxPool2d's rule, 2-D."""


class Pool3d(nn.AvgPool1d):
    """Named like a 3-D pool, but a 1-D average pool."""


@pytest.mark.parametrize(("model", "spec", "sizes"), [
    (nn.Sequential(nn.Conv2d(3, 4, 3), FancyPool(3, 2, 1)), (1, 3, "H", "W"), {"H": 31, "W": 20}),
    (nn.Sequential(nn.Conv1d(3, 4, 3), Pool3d(3, 2, 1)), (1, 3, "L"), {"L": 29}),
    (nn.Sequential(FancyPool(2, ceil_mode=True)), (1, 2, "H", "W"), {"H": 9, "W": 7}),
])
def test_pool_dimension_from_the_base_class(model, spec, sizes):
    a = rfgraph.analyze(model.eval(), spec)
    pool = a.nodes[-1]
    assert pool.kind == Kind.LAYER and pool.family == Family.POOL, pool.notes
    x = torch.zeros(*[sizes.get(s, s) if isinstance(s, str) else s for s in spec])
    assert _shape_at(a, **sizes) == list(model(x).shape)


def test_pool_dimension_of_an_unrelated_class_is_an_error():
    from rfgraph.rules.pool import _pool_nd

    class NotAPool3d(nn.Module):
        pass

    with pytest.raises(rfgraph.RfgraphError, match="dimension"):
        _pool_nd(NotAPool3d())


# -- user rules ---------------------------------------------------------------------------------
class Blur(nn.Module):
    """A user's 2×2 stride-2 blur with a learnt gain (C parameters)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(c, 1, 1))

    def forward(self, x):
        return F.avg_pool2d(x, 2) * self.gain


def blur_rule(call: base.Call) -> OpResult:
    """The rule a user writes for Blur: the geometry in one line, the costs by hand."""
    x = call.tensor()
    y, min_sizes = apply_window(call, x, window(2, 2))
    macs = sympy.Mul(*y.shape)  # one multiply by the gain per output element
    c = call.module.gain.numel()
    return OpResult(y, params=c, params_formula=f"C = {c}", macs=macs, family=Family.POOL,
                    notes=["user rule"], min_sizes=min_sizes)


def _blur_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Blur(4), nn.Conv2d(4, 2, 1)).eval()


def _blur_node(a: rfgraph.Analysis):
    found = [n for n in a.nodes if "user rule" in n.notes]
    return found[0] if found else None


def _check_user_rule(a: rfgraph.Analysis) -> None:
    node = _blur_node(a)
    assert node is not None and node.family == Family.POOL and node.params == 4
    h, w = sympy.Symbol("H", positive=True, integer=True), sympy.Symbol("W", positive=True,
                                                                       integer=True)
    assert sympy.expand(node.macs - 4 * sympy.floor(h / 2) * sympy.floor(w / 2)) == 0
    model = _blur_net()
    for hw in ((9, 12), (16, 7)):
        assert _shape_at(a, H=hw[0], W=hw[1]) == list(model(torch.zeros(1, 3, *hw)).shape)
    b = a.evaluate(H=16, W=16)
    field = b.field(b[node.name])
    assert [f.size for f in field] == [4, 4] and [f.jump for f in field] == [2, 2]


def test_register_rule_gives_the_module_the_users_rule():
    rfgraph.register_rule(Blur, blur_rule, family=Family.POOL)
    try:
        assert base.lookup_module(Blur(1)) == (blur_rule, Family.POOL)
        assert Blur not in base.builtin_rules()
        _check_user_rule(rfgraph.analyze(_blur_net(), (1, 3, "H", "W")))
    finally:
        rfgraph.unregister_rule(Blur)
    assert base.lookup_module(Blur(1)) is None
    a = rfgraph.analyze(_blur_net(), (1, 3, "H", "W"))  # traced through: no user rule
    assert _blur_node(a) is None and a.complete


def test_registering_a_key_twice_is_an_error():
    rfgraph.register_rule(Blur, blur_rule)
    try:
        with pytest.raises(ValueError, match="already registered"):
            rfgraph.register_rule(Blur, blur_rule)
    finally:
        rfgraph.unregister_rule(Blur)
    with pytest.raises(ValueError, match="already registered"):
        rfgraph.register_rule(nn.Conv2d, blur_rule)  # a built-in op: one op, one rule
    with pytest.raises(KeyError):
        rfgraph.unregister_rule(Blur)
    with pytest.raises(ValueError, match="unknown family"):
        rfgraph.register_rule(Blur, blur_rule, family="blurs")
    assert base.lookup_module(Blur(1)) is None


def test_scoped_rules_do_not_leak():
    with rfgraph.scoped_rules({Blur: (blur_rule, "pool")}):
        _check_user_rule(rfgraph.analyze(_blur_net(), (1, 3, "H", "W")))
    assert base.lookup_module(Blur(1)) is None
    assert _blur_node(rfgraph.analyze(_blur_net(), (1, 3, "H", "W"))) is None


def test_a_scope_overrides_a_built_in_rule_inside_only():
    def relu_rule(call: base.Call) -> OpResult:
        return OpResult(call.tensor(), kind=Kind.TRANSPARENT, notes=["my relu"])

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    builtin = base.lookup_module(nn.ReLU())
    with rfgraph.scoped_rules({nn.ReLU: (relu_rule, Family.ACTIVATION)}):
        with rfgraph.scoped_rules({Blur: blur_rule}):  # nested: both apply
            assert base.lookup_module(Blur(1)) == (blur_rule, Family.OTHER)
            assert base.lookup_module(nn.ReLU()) == (relu_rule, Family.ACTIVATION)
        assert base.lookup_module(Blur(1)) is None
        node = rfgraph.analyze(model, (1, 3, "H", "W")).nodes[-1]
        assert node.notes == ["my relu"] and node.family == Family.ACTIVATION
    assert base.lookup_module(nn.ReLU()) == builtin
    assert rfgraph.analyze(model, (1, 3, "H", "W")).nodes[-1].notes == []


def test_the_rules_argument_of_analyze():
    a = rfgraph.analyze(_blur_net(), (1, 3, "H", "W"), rules={Blur: (blur_rule, Family.POOL)})
    _check_user_rule(a)
    assert base.lookup_module(Blur(1)) is None
    b = rfgraph.analyze(_blur_net(), (1, 3, "H", "W"), at="H=10,W=6", rules={Blur: blur_rule})
    node = _blur_node(b)
    assert node is not None and node.family == Family.POOL  # the rule's own family wins
    assert [b.int_of(s) for s in b.output.tensor.shape] == [1, 2, 5, 3]
    with pytest.raises(TypeError, match="not callable"):
        rfgraph.analyze(_blur_net(), (1, 3, "H", "W"), rules={Blur: "blur"})


def test_the_rules_argument_applies_again_when_evaluating():
    """A node that needs concrete sizes is annotated again by evaluate(): with the analysis'
    own extra rules, not as an op without a rule (measured numerically)."""
    def needs_sizes(call):
        result = blur_rule(call)
        result.needs_at = True
        return result

    a = rfgraph.analyze(_blur_net(), (1, 3, "H", "W"), rules={Blur: (needs_sizes, Family.POOL)})
    b = a.evaluate(H=10, W=6)
    node = _blur_node(b)
    assert node is not None and node.has_rule and not node.numeric_only and not node.unknown
    assert [b.int_of(s) for s in b.output.tensor.shape] == list(
        _blur_net()(torch.zeros(1, 3, 10, 6)).shape)
    assert base.lookup_module(Blur(1)) is None  # still not leaked


def test_scope_is_exception_safe():
    with pytest.raises(RuntimeError), rfgraph.scoped_rules({Blur: blur_rule}):
        raise RuntimeError("boom")
    assert base.lookup_module(Blur(1)) is None


# -- coverage -----------------------------------------------------------------------------------
def _is_torch_op(key) -> bool:
    """A torch function or module class (not a method name, an ATen op, or Python's operator)."""
    if isinstance(key, str) or type(key).__name__ == "OpOverload":
        return False
    if isinstance(key, type):
        return issubclass(key, nn.Module)
    return (getattr(key, "__module__", None) or "").startswith("torch")


def test_every_torch_op_has_an_aten_twin_or_a_declared_reason():
    """An op with an ATen twin shares its rule with an ATen op of rules/aten.py; an op in
    ``aten.EXPORTS_AS`` exports as an op with a twin; the rest are in ``aten.MODULE_ONLY`` with
    the reason. Checked at the rule level: a torch op whose rule an ATen twin shares (``F.gelu``
    with ``F.relu``'s) counts as covered."""
    reg = base.builtin_rules()  # (other tests' register_rule calls are not rfgraph's)
    twins = set(aten.TWINS.values())
    assert all(key in reg or key in base.registered_names() for key in twins)
    twin_rules = {reg[t][0] for t in twins if t in reg}

    def covered(key) -> bool:
        return key in twins or reg[key][0] in twin_rules

    missing = [base.target_name(k) for k in reg if _is_torch_op(k) and not covered(k)
               and k not in aten.EXPORTS_AS and k not in aten.MODULE_ONLY]
    assert not missing, f"torch ops without an ATen twin or a declared reason: {missing}"
    bad_export = [base.target_name(k) for k, v in aten.EXPORTS_AS.items()
                  if v not in reg or not covered(v)]
    assert not bad_export, f"EXPORTS_AS targets without a twin: {bad_export}"
    stale = [base.target_name(k) for k in (*aten.EXPORTS_AS, *aten.MODULE_ONLY)
             if k not in reg or (k in aten.MODULE_ONLY and covered(k))]
    assert not stale, f"declared but registered without rule or with a twin: {stale}"
    assert all(isinstance(r, str) and r for r in aten.MODULE_ONLY.values())


def _op_word(key: object) -> str:
    if type(key).__name__ == "OpOverload":
        return str(key).split(".")[1]  # aten.floor.default -> floor
    return base.target_name(key).split(".")[-1]


def test_every_non_linear_op_has_a_probe_stand_in_or_is_declared_safe():
    """The gradient probe (verify's field check) must see every element an op reads: an
    activation or norm whose derivative can vanish (ReLU, floor, clamp, detach, max pooling,
    amax) needs a linear stand-in in rfgraph/probe.py; the rest are declared in
    probe.GRADIENT_SAFE (derivative non-zero almost everywhere, or an integer result)."""
    from rfgraph import probe

    safe = {w.rstrip("_") for w in probe.GRADIENT_SAFE}
    missing = []
    for key, (_, family) in base.builtin_rules().items():
        word = _op_word(key)
        non_linear = family in (Family.ACTIVATION, Family.NORM) or word in probe.ARG_REDUCTIONS \
            or (family is Family.POOL and "max" in word.lower() and "unpool" not in word.lower())
        if non_linear and probe.standin_for(key) is None and word.rstrip("_") not in safe:
            missing.append(base.target_name(key))
    assert not missing, f"no probe stand-in and not declared gradient-safe: {sorted(missing)}"
    for word in probe.STEP_NAMES:  # a step function in the safe list would hide its fields
        assert word.rstrip("_") not in safe, word


def test_a_step_function_is_probed_through_its_stand_in():
    """floor() and sign() have a zero derivative: without a stand-in the probe saw no input
    pixel and skipped the check by design (result OK, nothing checked)."""
    class Steps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return torch.floor(y) + y.sign().detach() + torch.amax(y, dim=2, keepdim=True)

    report = rfgraph.analyze(Steps().eval(), (1, 1, "H", "W")).verify(at={"H": 12, "W": 12},
                                                                     checks=["rf"])
    rows = {(r.node, r.what): r for r in report.rows if r.check == "rf"}
    for node in ("floor", "sign", "detach", "amax"):
        for axis in ("H", "W"):
            assert rows[(node, axis)].status == "pass", (node, axis, rows[(node, axis)].detail)
    # the conv's 3x3 window: field 3 along W; amax over H reads every row of the conv's
    # output, 10 rows, so 10 + 3 - 1 = 12 input rows
    assert rows[("amax", "H")].measured == {0: (0, 11)}


def test_every_family_has_a_colour():
    from rfgraph.render import FAMILY_COLOURS

    assert [f.value for f in Family if f.value not in FAMILY_COLOURS] == []


def test_every_registered_family_and_kind_is_typed():
    for key, (_, family) in [*base.builtin_rules().items(), *base.registered_names().items()]:
        assert isinstance(family, Family), key
    assert isinstance(OpResult(None).kind, Kind) and isinstance(OpResult(None).family, Family)


def test_docs_list_every_registered_op():
    """docs/rules.md's index is generated from the registry: regenerate it with
    ``python -m rfgraph.rules.doc`` after adding a rule."""
    text = doc.DOC.read_text(encoding="utf-8")
    assert doc.render(text) == text, "docs/rules.md is stale: run python -m rfgraph.rules.doc"
    for key in base.builtin_rules():
        name = (str(key).removeprefix("aten.") if type(key).__name__ == "OpOverload"
                else doc.op_name(key))
        assert f"`{name}`" in text, name
    for name in base.registered_names():
        assert f"`{name}`" in text, name


def test_the_architecture_docs_example_rule_runs():
    """docs/architecture.md's "How to add an op" example, executed as written, against torch's
    output shape and the field of a k x k window with stride s (size k, jump s)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "architecture.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)

    class MyBlur(nn.Module):
        def __init__(self, k: int, s: int) -> None:
            super().__init__()
            self.k, self.s = k, s

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(x, self.k, self.s, self.k // 2)

    namespace = {"MyBlur": MyBlur}
    exec(compile(code, "docs/architecture.md", "exec"), namespace)
    try:
        model = nn.Sequential(MyBlur(5, 3)).eval()
        a = rfgraph.analyze(model, (1, 2, "H", "W"), at="H=17,W=11")
        assert _shape_at(a, H=17, W=11) == list(model(torch.zeros(1, 2, 17, 11)).shape)
        (f_h, f_w) = a.field_at(a.nodes[-1])
        assert (f_h.size, f_h.jump, f_w.size, f_w.jump) == (5, 3, 5, 3)
    finally:
        rfgraph.unregister_rule(MyBlur)
    assert base.lookup_module(MyBlur(3, 1)) is None


def test_every_window_like_module_has_a_semantics_reference_or_a_reason():
    """verify's layer semantics: every module class with a conv/pool/resize/shuffle/pad rule is
    checked against an independent reference (rfgraph/verify/layers.py REFERENCE_MODULES) or
    declared without one, with the reason (NO_REFERENCE)."""
    from rfgraph.verify.layers import NO_REFERENCE, REFERENCE_MODULES

    families = (Family.CONV, Family.POOL, Family.RESIZE, Family.SHUFFLE, Family.PAD)
    missing = [key.__name__ for key, (_, family) in base.builtin_rules().items()
               if isinstance(key, type) and issubclass(key, nn.Module) and family in families
               and not issubclass(key, (*REFERENCE_MODULES, *NO_REFERENCE))]
    assert not missing, f"no semantics reference and no declared reason: {sorted(missing)}"


@pytest.mark.parametrize("layer", [nn.PixelShuffle(2), nn.PixelUnshuffle(3)])
def test_pixel_shuffle_semantics_are_checked_and_a_wrong_one_fails(layer):
    import types

    from rfgraph.verify import verify

    n_in = 8 if isinstance(layer, nn.PixelShuffle) else 2
    model = nn.Sequential(nn.Conv2d(2, n_in, 1), layer).eval()
    a = rfgraph.analyze(model, (1, 2, "H", "W"))
    report = verify(a, at=[{"H": 6, "W": 6}], checks=["semantics"])
    (row,) = [r for r in report.rows if r.node == "_1"]
    assert row.status == "pass" and "index map" in row.what
    # a layer that permutes wrongly (columns mirrored) must fail
    original = type(layer).forward
    layer.forward = types.MethodType(lambda self, x: original(self, x).flip(-1), layer)
    report = verify(rfgraph.analyze(model, (1, 2, "H", "W")), at=[{"H": 6, "W": 6}],
                    checks=["semantics"])
    (row,) = [r for r in report.rows if r.node == "_1"]
    assert row.status == "fail"


def test_a_pool_subclass_is_checked_with_its_base_classes_dimension():
    from rfgraph.verify import verify

    a = rfgraph.analyze(nn.Sequential(FancyPool(3, 2, 1)).eval(), (1, 2, "H", "W"))
    report = verify(a, at=[{"H": 9, "W": 8}], checks=["semantics"])
    rows = [r for r in report.rows if r.node == "_0"]
    assert rows and all(r.status == "pass" for r in rows), [r.detail for r in rows]
    assert any("max pool == window reference" in r.what for r in rows)
