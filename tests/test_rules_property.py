"""Hypothesis: random one- and two-layer stacks of every windowed layer rfgraph covers, in 1-D,
2-D and 3-D, checked against torch, sum(p.numel()), FlopCounterMode and the gradient probe (the
harness of tests/oracles.py). The ci profile (tests/conftest.py) is derandomized."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import Layer, PerAxis, check_model, stack

CIN = 4
KINDS = ["conv", "conv", "convt", "convt", "maxpool", "avgpool", "adaptive_avg", "adaptive_max",
         "shuffle"]


def per_axis(draw, nd: int, values: st.SearchStrategy, uniform_only: bool = False):
    """An int for every axis, or (half the time) a different value per axis."""
    if uniform_only or draw(st.booleans()):
        return draw(values)
    vals = [draw(values) for _ in range(nd)]
    return PerAxis(vals + [vals[-1]] * (3 - nd))


def _axes(v, nd: int) -> list:
    return list(v[:nd]) if isinstance(v, PerAxis) else [v] * nd


@st.composite
def layers(draw, nd: int, cin: int) -> Layer:
    kind = draw(st.sampled_from(KINDS))
    max_s = 3 if nd < 3 else 2
    if kind == "conv":
        k = per_axis(draw, nd, st.integers(1, 4))
        d = per_axis(draw, nd, st.integers(1, 2))
        kw = {"kernel_size": k, "dilation": d, "bias": draw(st.booleans())}
        groups = draw(st.sampled_from([1, 1, 2, "dw"]))
        kw["groups"] = groups
        cout = 2 * cin if groups == "dw" else draw(st.sampled_from([2, 4, 6]))
        padding = draw(st.sampled_from(["int", "int", "same", "valid"]))
        if padding == "same":
            kw["padding"] = "same"
        else:
            kw["stride"] = per_axis(draw, nd, st.integers(1, max_s))
            if padding == "valid":
                kw["padding"] = "valid"
            else:
                # p < k_eff: no output reads padding only (after a global pool the unclipped
                # field of such a position would be the whole image, by convention)
                keff = [di * (ki - 1) + 1 for ki, di in zip(_axes(k, nd), _axes(d, nd),
                                                            strict=True)]
                kw["padding"] = PerAxis([draw(st.integers(0, min(ke - 1, ke // 2 + 1)))
                                         for ke in keff] + [0] * (3 - nd))
        kw["padding_mode"] = draw(st.sampled_from(["zeros"] * 5 + ["reflect", "replicate",
                                                                   "circular"]))
        return Layer("conv", cout, **kw)
    if kind == "convt":
        k = per_axis(draw, nd, st.integers(1, 4))
        s = per_axis(draw, nd, st.integers(1, max_s))
        d = per_axis(draw, nd, st.sampled_from([1, 1, 2]))
        op_max = [max(si, di) - 1 for si, di in zip(_axes(s, nd), _axes(d, nd), strict=True)]
        op = PerAxis([draw(st.integers(0, m)) for m in op_max] + [0] * (3 - nd))
        p = per_axis(draw, nd, st.integers(0, 2))
        return Layer("convt", draw(st.sampled_from([2, 4, 6])), kernel_size=k, stride=s,
                     dilation=d, output_padding=op, padding=p,
                     groups=draw(st.sampled_from([1, 2])), bias=draw(st.booleans()))
    if kind in ("maxpool", "avgpool"):
        k = per_axis(draw, nd, st.integers(1, 4))
        kw = {"kernel_size": k, "ceil_mode": draw(st.booleans())}
        kw["padding"] = PerAxis([draw(st.integers(0, ki // 2)) for ki in _axes(k, nd)]
                                + [0] * (3 - nd))
        if draw(st.booleans()):
            kw["stride"] = per_axis(draw, nd, st.integers(1, max_s))
        if kind == "maxpool":
            kw["dilation"] = per_axis(draw, nd, st.integers(1, 2))
            kw["return_indices"] = draw(st.booleans())
        else:
            kw["count_include_pad"] = draw(st.booleans())
            kw["divisor_override"] = draw(st.sampled_from([None, None, 1, 3]))
        return Layer(kind, **kw)
    if kind in ("adaptive_avg", "adaptive_max"):
        sizes = st.sampled_from([1, 2, 3, None]) if nd > 1 else st.integers(1, 3)
        out = per_axis(draw, nd, sizes)
        if out is None:
            out = 2
        return Layer(kind, output_size=out)
    return Layer("shuffle", groups=2)


@st.composite
def models(draw):
    nd = draw(st.sampled_from([1, 2, 3]))
    n = draw(st.integers(1, 2))
    chosen, c = [], CIN
    for _ in range(n):
        layer = draw(layers(nd, c))
        chosen.append(layer)
        _, c = layer.build(nd, c)
    return nd, chosen


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(models())
def test_random_stacks(case):
    nd, chosen = case
    build, expect = stack(chosen, nd, CIN)
    check_model(build, nd, CIN, expect, n_sizes=2)
