"""rfgraph.symbolic against Python's own integer arithmetic (``//``), the canonical forms of
floors, and exact evaluation. Nothing here asserts timing."""

from __future__ import annotations

import itertools

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from sympy import Max, Min, ceiling, floor
from torch import nn

import rfgraph
from rfgraph.symbolic import (
    axis_symbol,
    ceildiv,
    floordiv,
    format_expr,
    normalize,
    subs_int,
    to_int,
)

H, W = axis_symbol("H"), axis_symbol("W")
VALUES = [*range(1, 38), 63, 64, 65, 97, 224, 225, 1001]
PAIRS = [(h, w) for h in (1, 2, 3, 5, 8, 13, 31, 32, 33) for w in (1, 4, 7, 16, 17)]


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def assert_matches(expr, fn, values=VALUES) -> None:
    """``expr`` evaluates, at every H in ``values``, to the exact SymPy Integer ``fn(H)``."""
    for h in values:
        got = subs_int(expr, {H: h})
        assert isinstance(got, sympy.Integer), (expr, h, got)
        assert int(got) == fn(h), (format_expr(expr), h, got, fn(h))


def assert_matches2(expr, fn) -> None:
    for h, w in PAIRS:
        got = subs_int(expr, {H: h, W: w})
        assert isinstance(got, sympy.Integer), (expr, h, w, got)
        assert int(got) == fn(h, w), (format_expr(expr), h, w, got, fn(h, w))


def floor_depth(expr) -> int:
    """How deeply floors/ceilings nest in ``expr`` (0: none)."""
    expr = sympy.sympify(expr)
    inner = max((floor_depth(a) for a in expr.args), default=0)
    return inner + 1 if isinstance(expr, (floor, ceiling)) else inner


# -- floordiv / ceildiv against // -----------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("a", [-3, -1, 1, 2, 4, 6])
def test_floordiv_linear(a, d):
    for c in range(-9, 10):
        assert_matches(floordiv(a * H + c, d), lambda h, c=c: (a * h + c) // d)
        assert_matches(ceildiv(a * H + c, d), lambda h, c=c: cdiv(a * h + c, d))


@pytest.mark.parametrize("num", [-17, -8, -7, -1, 0, 1, 6, 7, 8, 31, 32, 33])
@pytest.mark.parametrize("d", [1, 2, 3, 7, 8, 32])
def test_floordiv_constants(num, d):
    assert floordiv(num, d) == sympy.Integer(num // d)
    assert ceildiv(num, d) == sympy.Integer(cdiv(num, d))
    assert isinstance(floordiv(sympy.Integer(num), d), sympy.Integer)


def test_floordiv_rejects_non_positive_divisor():
    for d in (0, -2):
        with pytest.raises(ValueError):
            floordiv(H, d)


NESTED = list(itertools.product([-3, 0, 2], [2, 3], [1, 2, 3, 4], [-4, -1, 0, 5], [2, 3, 4]))


@pytest.mark.parametrize(("c1", "d1", "m", "c2", "d2"), NESTED)
def test_floordiv_nested(c1, d1, m, c2, d2):
    inner_f, inner_c = floordiv(H + c1, d1), ceildiv(H + c1, d1)
    values = VALUES[::3]
    assert_matches(floordiv(m * inner_f + c2, d2),
                   lambda h: (m * ((h + c1) // d1) + c2) // d2, values)
    assert_matches(ceildiv(m * inner_f + c2, d2),
                   lambda h: cdiv(m * ((h + c1) // d1) + c2, d2), values)
    assert_matches(floordiv(m * inner_c + c2, d2),
                   lambda h: (m * cdiv(h + c1, d1) + c2) // d2, values)
    assert_matches(ceildiv(m * inner_c + c2, d2),
                   lambda h: cdiv(m * cdiv(h + c1, d1) + c2, d2), values)
    assert_matches(floordiv(-m * inner_f + c2, d2),
                   lambda h: (-m * ((h + c1) // d1) + c2) // d2, values)
    if m % d2 == 0 or d2 % m == 0:  # the identity applies: one floor, no nesting
        for e in (floordiv(m * inner_f + c2, d2), ceildiv(m * inner_c + c2, d2)):
            assert floor_depth(e) <= 1, format_expr(e)


def test_deep_nesting_collapses():
    """Ten stacked conv/pool size formulas stay one floor deep and exact."""
    layers = [(3, 2, 1), (2, 2, 0), (3, 1, 1), (5, 2, 2), (3, 2, 0), (7, 3, 3), (1, 1, 0),
              (2, 2, 1), (4, 4, 0), (3, 2, 1)]

    def ref(h: int) -> int:
        for k, s, p in layers:
            h = (h + 2 * p - k + s) // s
        return h

    x = H
    for k, s, p in layers:
        x = floordiv(x + 2 * p - k + s, s)
        assert floor_depth(x) <= 1, format_expr(x)
    assert_matches(x, ref, range(1, 3000, 37))


@pytest.mark.parametrize(("c1", "d1", "c2", "d2"), [(0, 2, 1, 3), (-1, 3, 4, 2), (2, 4, -3, 5)])
@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize(("c", "d"), [(0, 2), (-3, 3), (5, 4)])
def test_floordiv_min_max(c1, d1, c2, d2, m, c, d):
    a, b = floordiv(H + c1, d1), ceildiv(H + c2, d2)
    pa, pb = (lambda h: (h + c1) // d1), (lambda h: cdiv(h + c2, d2))
    assert_matches(floordiv(m * Min(a, b) + c, d), lambda h: (m * min(pa(h), pb(h)) + c) // d)
    assert_matches(ceildiv(m * Max(a, b) + c, d), lambda h: cdiv(m * max(pa(h), pb(h)) + c, d))
    assert_matches(floordiv(-m * Min(a, b) + c, d),
                   lambda h: (-m * min(pa(h), pb(h)) + c) // d)


def test_two_symbols():
    cases = [
        (floordiv(H + 2 * W - 3, 4), lambda h, w: (h + 2 * w - 3) // 4),
        (ceildiv(3 * H - W, 2), lambda h, w: cdiv(3 * h - w, 2)),
        (floordiv(floordiv(H, 2) + floordiv(W + 1, 3), 2),
         lambda h, w: (h // 2 + (w + 1) // 3) // 2),
        (floordiv(floordiv(H * W + 1, 2) + 3, 5), lambda h, w: ((h * w + 1) // 2 + 3) // 5),
        (ceildiv(Min(H, W) + 1, 3), lambda h, w: cdiv(min(h, w) + 1, 3)),
    ]
    for expr, fn in cases:
        assert_matches2(expr, fn)


def test_negative_constants_stay_exact():
    """Sizes below zero (a layer's output would be empty) evaluate exactly too."""
    assert_matches(floordiv(H - 40, 7), lambda h: (h - 40) // 7)
    assert_matches(ceildiv(-H - 5, 3), lambda h: cdiv(-h - 5, 3))
    assert_matches(floordiv(floordiv(H - 9, 2) - 11, 3), lambda h: ((h - 9) // 2 - 11) // 3)


# -- normalize -------------------------------------------------------------------------------------
def test_normalize_after_substitution():
    """A substitution re-creates nested floors; normalize collapses them again, keeping values."""
    e = floordiv(H + 3, 4)  # ceiling(H/4)
    sub = e.xreplace({H: ceildiv(H, 2)})
    assert floor_depth(sub) == 2
    n = normalize(sub)
    assert format_expr(n) == "ceiling(H/8)"
    assert_matches(n, lambda h: cdiv(cdiv(h, 2), 4))

    e = floordiv(3 * H - 1, 5)
    sub = e.xreplace({H: floordiv(H + 1, 2)})
    n = normalize(sub)
    assert_matches(sub, lambda h: (3 * ((h + 1) // 2) - 1) // 5)
    assert_matches(n, lambda h: (3 * ((h + 1) // 2) - 1) // 5)


def test_normalize_raw_sympy_floors():
    """Floors built by SymPy directly (not through floordiv) normalise to the same values."""
    raw = [
        (floor((floor((H + 1) / 2) + 3) / 4), lambda h: ((h + 1) // 2 + 3) // 4),
        (ceiling((ceiling(H / 2) - 1) / 3), lambda h: cdiv(cdiv(h, 2) - 1, 3)),
        (floor((2 * floor(H / 3) + 1) / 4) + ceiling(H / 5),
         lambda h: (2 * (h // 3) + 1) // 4 + cdiv(h, 5)),
        (floor(H / 2) * ceiling(H / 3), lambda h: (h // 2) * cdiv(h, 3)),
        (Min(floor(H / 2), 7) + 1, lambda h: min(h // 2, 7) + 1),
    ]
    for expr, fn in raw:
        n = normalize(expr)
        assert_matches(n, fn)
        assert floor_depth(n) <= max(1, floor_depth(expr))
    assert floor_depth(normalize(raw[0][0])) == 1
    assert normalize(H + 2) == H + 2


def test_normalize_is_idempotent_on_values():
    for c1, d1, c2, d2 in itertools.product([-2, 1], [2, 3], [0, 3], [2, 5]):
        e = floordiv(ceildiv(H + c1, d1) + c2, d2)
        n = normalize(normalize(e))
        assert_matches(n, lambda h, c1=c1, d1=d1, c2=c2, d2=d2: (cdiv(h + c1, d1) + c2) // d2,
                       VALUES[::4])


# -- canonical forms -------------------------------------------------------------------------------
@pytest.mark.parametrize(("expr", "text"), [
    (floordiv(H, 32), "floor(H/32)"),
    (floordiv(H + 31, 32), "ceiling(H/32)"),
    (ceildiv(H, 32), "ceiling(H/32)"),
    (floordiv(H + 32, 32), "floor(H/32) + 1"),
    (floordiv(H + 6, 8), "floor((H + 6)/8)"),
    (floordiv(2 * H + 2, 4), "ceiling(H/2)"),
    (floordiv(H - 1, 2), "ceiling(H/2) - 1"),
    (floordiv(4 * H + 6, 2), "2*H + 3"),
    (floordiv(floordiv(H, 2), 16), "floor(H/32)"),
    (ceildiv(ceildiv(H, 4), 8), "ceiling(H/32)"),
])
def test_canonical_text(expr, text):
    assert format_expr(expr) == text


def test_format_expr_is_deterministic():
    e = floordiv(H + 2 * W + 5, 7) + ceildiv(W, 3)
    assert format_expr(e) == format_expr(sympy.sympify(str(e), locals={"H": H, "W": W}))
    assert format_expr(sympy.Rational(3, 4)) == "3/4"
    assert format_expr(5) == "5"


def _stack(layers):
    return nn.Sequential(*layers)


@pytest.mark.parametrize(("name", "model", "text", "ref"), [
    ("5x conv k3 s2 p1", _stack([nn.Conv2d(3 if i == 0 else 4, 4, 3, 2, 1) for i in range(5)]),
     "ceiling({}/32)", lambda n: cdiv(n, 32)),
    ("VGG 5x maxpool 2", _stack([nn.MaxPool2d(2) for _ in range(5)]),
     "floor({}/32)", lambda n: n // 32),
    ("5x maxpool k3 s2 p1", _stack([nn.MaxPool2d(3, 2, 1) for _ in range(5)]),
     "ceiling({}/32)", lambda n: cdiv(n, 32)),
    ("resnet stem + 3 stages", _stack([nn.Conv2d(3, 4, 7, 2, 3), nn.MaxPool2d(3, 2, 1),
                                       *[nn.Conv2d(4, 4, 3, 2, 1) for _ in range(3)]]),
     "ceiling({}/32)", lambda n: cdiv(n, 32)),
])
def test_analyze_canonical_output_shape(name, model, text, ref):
    a = rfgraph.analyze(model, (1, 3, "H", "W"))
    out = a.output.tensor.shape
    assert format_expr(out[2]) == text.format("H")
    assert format_expr(out[3]) == text.format("W")
    for h, w in [(32, 32), (33, 63), (224, 225), (97, 1000)]:
        ev = a.evaluate(H=h, W=w)
        vals = [ev.value_of(s) for s in ev.output.tensor.shape]
        assert all(isinstance(v, sympy.Integer) for v in vals)
        assert [int(v) for v in vals[2:]] == [ref(h), ref(w)]


def test_evaluation_is_exact_at_huge_sizes():
    """No floats anywhere: a size beyond 2**53 keeps every digit (shapes and MACs)."""
    model = _stack([nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, 2, 1), nn.MaxPool2d(3, 2, 1)])
    a = rfgraph.analyze(model, (1, 3, "H", "W"))
    h, w = 10**17 + 7, 2**60 + 1
    ev = a.evaluate(H=h, W=w)
    oh, ow = (ev.value_of(s) for s in ev.output.tensor.shape[2:])
    assert isinstance(oh, sympy.Integer) and isinstance(ow, sympy.Integer)
    assert (int(oh), int(ow)) == (cdiv(h, 8), cdiv(w, 8))
    macs = ev.value_of(ev.total_macs)
    assert isinstance(macs, sympy.Integer)
    ref = 3 * 4 * 9 * cdiv(h, 2) * cdiv(w, 2) + 4 * 4 * 9 * cdiv(h, 4) * cdiv(w, 4)
    assert int(macs) == ref
    assert ev.int_of(ev.total_macs) == ref and isinstance(ev.int_of(ev.total_macs), int)


def test_fields_evaluate_to_exact_rationals():
    """After a transposed conv the jump is a SymPy Rational, never a float."""
    model = _stack([nn.Conv2d(3, 4, 3, 2, 1), nn.ConvTranspose2d(4, 4, 3, 3), nn.MaxPool2d(2)])
    a = rfgraph.analyze(model, (1, 3, "H", "W"))
    ev = a.evaluate(H=40, W=41)
    for r, fa in zip(ev.field(ev.output), ev.field_at(ev.output), strict=True):
        assert isinstance(fa.jump, sympy.Rational) and not isinstance(fa.jump, sympy.Float)
        assert fa.jump == sympy.Rational(4, 3)  # 2 / 3 * 2
        assert isinstance(fa.size, int) and isinstance(fa.offset, int)
        for y in range(6):
            assert isinstance(ev.value_of(r.start_at(y)), sympy.Integer)


def test_subs_int_and_to_int():
    e = floordiv(H + 5, 3) * ceildiv(W, 2)
    v = subs_int(e, {H: 10, W: 7})
    assert isinstance(v, sympy.Integer) and to_int(v) == (15 // 3) * 4
    with pytest.raises(ValueError):
        to_int(sympy.Rational(1, 2))


# -- random expression trees -----------------------------------------------------------------------
def _trees():
    leaves = st.sampled_from([(H, lambda h, w: h), (W, lambda h, w: w),
                              (sympy.Integer(3), lambda h, w: 3)])

    def extend(children):
        div = st.tuples(st.sampled_from(["floor", "ceil"]), children, st.integers(-3, 4),
                        st.integers(-6, 6), st.integers(1, 6))
        pair = st.tuples(st.sampled_from(["add", "min", "max"]), children, children)

        def build_div(t):
            kind, (e, f), m, c, d = t
            if kind == "floor":
                return floordiv(m * e + c, d), lambda h, w: (m * f(h, w) + c) // d
            return ceildiv(m * e + c, d), lambda h, w: cdiv(m * f(h, w) + c, d)

        def build_pair(t):
            kind, (a, fa), (b, fb) = t
            if kind == "add":
                return a - 2 * b, lambda h, w: fa(h, w) - 2 * fb(h, w)
            op, py = (Min, min) if kind == "min" else (Max, max)
            return op(a, b), lambda h, w: py(fa(h, w), fb(h, w))

        return div.map(build_div) | pair.map(build_pair)

    return st.recursive(leaves, extend, max_leaves=6)


@settings(max_examples=60)
@given(_trees())
def test_random_trees_match_python(tree):
    expr, fn = tree
    assert_matches2(expr, fn)
    assert_matches2(normalize(expr), fn)
