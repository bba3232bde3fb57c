"""Hypothesis fuzz of ``rfgraph verify``: random one- and two-layer models over every covered
spatial layer, every dimensionality, groups, dilation, ceil_mode, output_padding, asymmetric
padding, padding modes, resizing; every check must pass (0 mismatches).

CI (the derandomized ``ci`` profile of tests/conftest.py) runs 1000 examples; ``make fuzz``
(``HYPOTHESIS_PROFILE=fuzz``) runs 4x the profile's ``max_examples`` (20000) with random seeds.
Each example analyses the model symbolically and verifies it at one valid size.

``KNOWN_BUGS`` below filters nothing: the bugs this fuzz found are fixed and have regression
tests in tests/test_verify.py.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from torch import nn

import rfgraph
from rfgraph.verify import verify

AXES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
_PROFILE_EXAMPLES = settings.default.max_examples  # ci: 60, fuzz: 5000 (tests/conftest.py)
#: CI: 1000 derandomized examples (~20 s); a longer profile (make fuzz): 4x its max_examples
N_EXAMPLES = 1000 if _PROFILE_EXAMPLES < 1000 else 4 * _PROFILE_EXAMPLES

KINDS = ["conv", "conv", "convt", "maxpool", "avgpool", "adaptive", "pad", "upsample",
         "shuffle", "pixel", "norm_act"]


def _per_axis(draw: Any, nd: int, values: st.SearchStrategy) -> tuple:
    return tuple(draw(values) for _ in range(nd))


def draw_layer(draw: Any, nd: int, cin: int, last: bool = False) -> tuple[nn.Module, int, str]:
    """One random layer taking ``cin`` channels: (module, out channels, description)."""
    kind = draw(st.sampled_from(KINDS + (["head"] if last else [])))
    if kind == "conv":
        groups = draw(st.sampled_from([g for g in (1, 2, 3, cin) if cin % g == 0]))
        cout = groups * draw(st.integers(1, 3))
        k = _per_axis(draw, nd, st.integers(1, 4))
        dilation = _per_axis(draw, nd, st.integers(1, 3))
        stride = _per_axis(draw, nd, st.integers(1, 3))
        padding: Any = _per_axis(draw, nd, st.integers(0, 3))
        form = draw(st.sampled_from(["tuple", "tuple", "same", "valid"]))
        if form == "same":
            padding, stride = "same", (1,) * nd  # 'same' pads asymmetrically for even k_eff
        elif form == "valid":
            padding = "valid"
        mode = draw(st.sampled_from(["zeros", "zeros", "zeros", "reflect", "replicate",
                                     "circular"]))
        m = getattr(nn, f"Conv{nd}d")(cin, cout, k, stride, padding, dilation, groups,
                                      bias=draw(st.booleans()), padding_mode=mode)
        return m, cout, f"Conv{nd}d({cin}, {cout}, k={k}, s={stride}, p={padding}, " \
                        f"d={dilation}, g={groups}, mode={mode})"
    if kind == "convt":
        groups = draw(st.sampled_from([g for g in (1, 2, cin) if cin % g == 0]))
        cout = groups * draw(st.integers(1, 3))
        k = _per_axis(draw, nd, st.integers(1, 4))
        stride = _per_axis(draw, nd, st.integers(1, 3))
        dilation = _per_axis(draw, nd, st.integers(1, 2))
        padding = tuple(draw(st.integers(0, d * (kk - 1))) for kk, d in zip(k, dilation))
        out_pad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        m = getattr(nn, f"ConvTranspose{nd}d")(cin, cout, k, stride, padding, out_pad, groups,
                                               draw(st.booleans()), dilation)
        return m, cout, f"ConvTranspose{nd}d({cin}, {cout}, k={k}, s={stride}, p={padding}, " \
                        f"op={out_pad}, d={dilation}, g={groups})"
    if kind == "maxpool":
        k = _per_axis(draw, nd, st.integers(1, 4))
        stride = None if draw(st.booleans()) else _per_axis(draw, nd, st.integers(1, 3))
        padding = tuple(draw(st.integers(0, kk // 2)) for kk in k)
        dilation = _per_axis(draw, nd, st.integers(1, 2))
        ceil = draw(st.booleans())
        m = getattr(nn, f"MaxPool{nd}d")(k, stride, padding, dilation,
                                         return_indices=False, ceil_mode=ceil)
        return m, cin, f"MaxPool{nd}d(k={k}, s={stride}, p={padding}, d={dilation}, ceil={ceil})"
    if kind == "avgpool":
        k = _per_axis(draw, nd, st.integers(1, 4))
        stride = None if draw(st.booleans()) else _per_axis(draw, nd, st.integers(1, 3))
        padding = tuple(draw(st.integers(0, kk // 2)) for kk in k)
        ceil, inc = draw(st.booleans()), draw(st.booleans())
        kw = {}
        if nd > 1:
            kw["divisor_override"] = draw(st.sampled_from([None, None, 2, 5]))
        m = getattr(nn, f"AvgPool{nd}d")(k, stride, padding, ceil, inc, **kw)
        return m, cin, f"AvgPool{nd}d(k={k}, s={stride}, p={padding}, ceil={ceil}, " \
                       f"include_pad={inc}, {kw})"
    if kind == "adaptive":
        outs = [draw(st.sampled_from([1, 2, 3, 5] + ([None] if nd > 1 else [])))
                for _ in range(nd)]
        if all(o is None for o in outs):
            outs[0] = 2
        cls = draw(st.sampled_from(["AdaptiveAvgPool", "AdaptiveMaxPool"]))
        return getattr(nn, f"{cls}{nd}d")(tuple(outs)), cin, f"{cls}{nd}d({tuple(outs)})"
    if kind == "pad":
        pads = tuple(draw(st.integers(0, 3)) for _ in range(2 * nd))  # asymmetric
        name = draw(st.sampled_from(["ZeroPad", "ConstantPad", "ReflectionPad",
                                     "ReplicationPad", "CircularPad"]))
        cls = getattr(nn, f"{name}{nd}d")
        m = cls(pads, 0.5) if name == "ConstantPad" else cls(pads)
        return m, cin, f"{name}{nd}d({pads})"
    if kind == "upsample":
        mode = draw(st.sampled_from(["nearest", "nearest-exact",
                                     {1: "linear", 2: "bilinear", 3: "trilinear"}[nd]]))
        scale = draw(st.sampled_from([2, 3, 1.5, 0.5]))
        align = draw(st.booleans()) if mode not in ("nearest", "nearest-exact") else None
        m = nn.Upsample(scale_factor=scale, mode=mode, align_corners=align)
        return m, cin, f"Upsample({scale}, {mode}, align_corners={align})"
    if kind == "shuffle":
        groups = draw(st.sampled_from([g for g in (1, 2, 3, 4) if cin % g == 0]))
        return nn.ChannelShuffle(groups), cin, f"ChannelShuffle({groups})"
    if kind == "pixel" and nd == 2:
        if cin % 4 == 0 and draw(st.booleans()):
            return nn.PixelShuffle(2), cin // 4, "PixelShuffle(2)"
        return nn.PixelUnshuffle(2), cin * 4, "PixelUnshuffle(2)"
    if kind == "head":  # global field: adaptive pool, flatten, linear (only as the last layer)
        o = draw(st.integers(1, 2))
        pool = getattr(nn, f"Adaptive{draw(st.sampled_from(['Avg', 'Max']))}Pool{nd}d")(o)
        m = nn.Sequential(pool, nn.Flatten(), nn.Linear(cin * o ** nd, 3), nn.Dropout(0.5))
        return m, 3, f"{type(pool).__name__}({o})+Flatten+Linear({cin * o ** nd}, 3)"
    norm = getattr(nn, f"BatchNorm{nd}d")(cin)
    act = draw(st.sampled_from([nn.ReLU(), nn.GELU(), nn.Sigmoid(), nn.Identity(),
                                nn.Softmax(dim=1), nn.Dropout(0.3)]))
    return nn.Sequential(norm, act), cin, f"BatchNorm{nd}d+{type(act).__name__}"


@st.composite
def configs(draw: Any) -> tuple[nn.Module, tuple, dict[str, int], list[str]]:
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    cin = draw(st.sampled_from([1, 2, 3, 4, 6]))
    layers, text, c = [], [], cin
    count = draw(st.integers(1, 2))
    with torch.random.fork_rng():  # building layers must not move the global RNG
        torch.manual_seed(0)
        for i in range(count):
            try:
                m, c, desc = draw_layer(draw, nd, c, last=i == count - 1)
            except (ValueError, RuntimeError, TypeError):  # torch rejects the configuration:
                assume(False)  # not a model (0 of ~1000 CI examples; bounded by the count below)
            layers.append(m)
            text.append(desc)
    model = nn.Sequential(*layers)
    limit = 6 if nd == 3 else 18 if nd == 2 else 40
    sizes = {a: draw(st.integers(1, limit)) for a in AXES[nd]}
    return model, (1, cin, *AXES[nd]), sizes, text


TRIAL_BUMPS = (0, 4, 8, 16)


def trials(sizes: dict[str, int]) -> list[dict[str, int]]:
    return [{k: v + bump for k, v in sizes.items()} for bump in TRIAL_BUMPS]


def run_config(model: nn.Module, spec: tuple, sizes: dict[str, int]) -> Any:
    """Analyse symbolically, move ``sizes`` up to the first size rfgraph accepts, verify."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            a = rfgraph.analyze(model.eval(), spec)
        except rfgraph.RfgraphError:  # e.g. a configuration rfgraph rejects with a message
            return None
    for trial in trials(sizes):
        try:
            a.evaluate(**trial)
        except rfgraph.RfgraphError:
            continue
        return verify(a, at=[trial])
    return None


def torch_accepts(model: nn.Module, spec: tuple, trial: dict[str, int]) -> bool:
    """Does torch run ``model`` at these sizes to a non-empty output?"""
    shape = [trial[d] if isinstance(d, str) else d for d in spec]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.eval()(torch.zeros(shape)).numel() > 0
    except (RuntimeError, ValueError):
        return False


# -- rfgraph bugs this fuzz found: none open. A bug it finds gets a regression test in
# tests/test_verify.py and an entry here only while it is being fixed (an entry for a fixed bug
# is a test that cannot fail) --------------------------------------------------------------------
KNOWN_BUGS: dict[str, Any] = {}


def known_bug(model: nn.Module, row: Any) -> str | None:
    return next((name for name, match in KNOWN_BUGS.items() if match(model, row)), None)


#: At most this fraction of examples may be left unverified because rfgraph refuses the model or
#: every trial size (checked against torch below); about 6% in the CI profile (odd sizes before
#: PixelUnshuffle, inputs smaller than a kernel).
MAX_UNVERIFIED = 0.15


def test_verify_random_layers():
    counts = {"verified": 0, "refused": 0}

    @settings(max_examples=N_EXAMPLES, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(configs())
    def check(config):
        model, spec, sizes, text = config
        note(" -> ".join(text) + f" at {sizes}")
        with torch.random.fork_rng():
            report = run_config(model, spec, sizes)
        if report is None:
            # rfgraph refused the model or every trial size: torch must refuse them too
            accepted = [t for t in trials(sizes) if torch_accepts(model, spec, t)]
            assert not accepted, f"rfgraph refuses sizes torch accepts: {accepted}"
            counts["refused"] += 1
            return
        counts["verified"] += 1
        failures = [f"{r.node} {r.check} {r.what} at {r.at}: {r.detail}" for r in report.failures
                    if known_bug(model, r) is None]
        assert not failures, "\n".join(failures)

    check()
    total = counts["verified"] + counts["refused"]
    assert total >= N_EXAMPLES // 2, counts
    assert counts["refused"] <= MAX_UNVERIFIED * total, counts
