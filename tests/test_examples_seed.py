"""examples/seed/: every script runs (in-process and as a subprocess), and the numbers its
``main()`` returns agree with independent oracles: torch's own output shapes, ``p.numel()``,
``FlopCounterMode`` (MACs = FLOPs // 2), gradients, and closed forms."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from functools import cache
from pathlib import Path

import pytest
import sympy
import torch
import torch.nn.functional as F
from oracles import flop_macs
from oracles import param_count as numel
from torch import nn

SEED = Path(__file__).resolve().parent.parent / "examples" / "seed"
SCRIPTS = {  # script -> text its stdout must contain when run as a subprocess
    "01_max_pooling": "torch output shape: (1, 64, 112, 112)",
    "02_average_pooling": "shape (1, 64, 112, 112)",
    "03_conv2d_single_multi_channel": "at 32×32: rfgraph 8,100  torch FlopCounterMode/2 8,100",
    "04_conv3d": "torch (1, 16, 8, 14, 14)",
    "05_transposed_conv": "ConvTranspose2d(x) == Cᵀ·x: True",
    "06_dilated_conv": "torch: torch.Size([1, 1, 26, 26])",
    "07_spatially_separable": "allclose: True",
    "08_depthwise_separable": "params: standard 576 (8·8·3·3), separable 136",
    "09_flattened_conv": "MACs M*N*(C + X + Y)",
    "10_grouped_conv": "groups=2: rfgraph params 307,456",
    "11_channel_shuffle": "-> [0, 2, 4, 6, 1, 3, 5, 7]",
    "12_receptive_field_stacking": "two 3×3: RF 5, params 4608",
}


@cache
def module(name: str):
    spec = importlib.util.spec_from_file_location(f"seed_example_{name}", SEED / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@cache
def result(name: str) -> dict:
    return module(name).main()




NAMES = {k: sympy.Symbol(k) for k in ("C", "X", "Y", "M", "N", "D", "H", "W")}  # not sympy.N


@cache
def parse(formula: str) -> sympy.Expr:
    return sympy.sympify(formula, locals=NAMES)


def value(formula: str, **sizes: int) -> int:
    """A formula string (rfgraph's text) evaluated by SymPy, not by rfgraph."""
    expr = parse(formula).subs({NAMES[k]: v for k, v in sizes.items()})
    assert expr.is_Integer, (formula, sizes, expr)
    return int(expr)


# -- the directory ---------------------------------------------------------------------------
def test_one_script_per_section_listed_in_readme():
    assert sorted(p.stem for p in SEED.glob("*.py")) == sorted(SCRIPTS)
    readme = (SEED / "README.md").read_text()
    for name in SCRIPTS:
        assert f"({name}.py)" in readme
        doc = module(name).__doc__
        assert doc.startswith("Seed §") and "Run: ``python examples/seed/" in doc


SUBPROCESS_TEST = "test_every_script_runs_as_a_subprocess_from_another_directory"


@pytest.fixture(scope="module", autouse=True)
def subprocess_runs(request, tmp_path_factory):
    """When the subprocess test is selected, start the 12 scripts in the background at the
    first test of this module (torch's import dominates them), so that they overlap the
    in-process tests; the subprocess test waits for them."""
    if not any(item.name == SUBPROCESS_TEST for item in request.session.items):
        yield None
        return
    cwd = tmp_path_factory.mktemp("elsewhere")  # not the repo root: runs from any cwd
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SEED / f"{name}.py")], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        yield {name: pool.submit(run, name) for name in SCRIPTS}


# -- §1 pooling --------------------------------------------------------------------------------
def _seed_tensor(dtype=torch.float32) -> torch.Tensor:
    torch.random.manual_seed(0)
    return torch.randint(0, 225, (1, 64, 224, 224), dtype=dtype)


def test_01_max_pooling():
    r = result("01_max_pooling")
    x = _seed_tensor()
    values, indices = nn.MaxPool2d(2, 2, return_indices=True)(x)
    assert r["torch_shape"] == r["shape"] == tuple(values.shape) == (1, 64, 112, 112)
    # the indices are the argmax of each 2x2 window, as flat positions in the 224x224 plane
    win = x[0, 0].view(112, 2, 112, 2).permute(0, 2, 1, 3).reshape(112, 112, 4)
    arg = win.argmax(-1)
    rows = torch.arange(112)[:, None] * 2 + arg // 2
    cols = torch.arange(112)[None, :] * 2 + arg % 2
    maxima = win.max(-1).values
    assert torch.equal(x[0, 0].flatten()[indices[0, 0]], maxima)
    assert torch.equal(x[0, 0][rows, cols], maxima)
    assert r["indices_row0"] == indices[0, 0, 0, :5].tolist()
    # rfgraph's field: k = 2, s = 2 -> size 2, jump 2; every index inside it
    assert r["rf"] == (2, 2) and r["jump"] == (2, 2) and r["indices_in_field"]
    # output-size formulas against torch at every size
    assert r["formulas"]["k=2 s=2 (seed)"] == ("floor(H/2)", "ceiling(H/2)")
    mod = module("01_max_pooling")
    for label, kw in mod.CONFIGS:
        for ceil, formula in zip((False, True), r["formulas"][label]):
            pool = nn.MaxPool2d(**kw, ceil_mode=ceil)
            for h in range(5, 41):
                assert value(formula, H=h) == pool(torch.zeros(1, 1, h, h)).shape[2], \
                    (label, ceil, h)
    assert r["formulas_match_torch"]
    assert r["params"] == 0 and r["channels"] == 64 and r["channels_separate"]
    # §1.6: conv 64->64 3x3 pad 1 = 64*64*9 = 36864 MACs per position, a quarter after the pool
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    assert value(r["macs_no_pool"], H=21, W=21) == flop_macs(conv, (1, 64, 21, 21))
    assert value(r["macs_after_pool"], H=21, W=21) == flop_macs(
        nn.Sequential(nn.MaxPool2d(2, 2), conv), (1, 64, 21, 21)) == 36864 * 10 * 10
    assert r["macs_ratio_224"] == 4.0  # (224*224) / (112*112)


def test_02_average_pooling():
    r = result("02_average_pooling")
    x = _seed_tensor(dtype=torch.int64)
    out = nn.AvgPool2d(2, 2, ceil_mode=False)(x)
    assert r["torch_shape"] == r["shape"] == tuple(out.shape) == (1, 64, 112, 112)
    assert r["dtype"] == str(out.dtype) == "torch.int64"
    # the int64 mean truncates: window sum // 4 (the values are non-negative)
    sums = x[0, 0, :10, :10].view(5, 2, 5, 2).sum((1, 3))
    assert r["output_00"] == (sums // 4).tolist() == out[0, 0, :5, :5].tolist()
    assert r["params"] == 0 and r["macs"] == 0 == flop_macs(nn.AvgPool2d(2, 2), (1, 1, 8, 8))
    assert r["rf"] == (2, 2)
    for ceil, formula in r["ceil_formulas"].items():
        for h in range(2, 41):
            assert value(formula, H=h) == nn.AvgPool2d(2, 2, ceil_mode=ceil)(
                torch.zeros(1, 1, h, 2)).shape[2]
    assert r["at_225"] == {False: 112, True: 113}  # floor(225/2), ceil(225/2)
    # corner of a 3x3 window at padding 1: 4 real ones of 9 cells, or of 4 counted cells
    assert r["count_include_pad_corner"][True] == pytest.approx(4 / 9)
    assert r["count_include_pad_corner"][False] == pytest.approx(1.0)
    rows = r["count_include_pad_rows"]
    assert rows[True] == rows[False] and rows[True][1:] == ("3×3", "1×1", "-1×-1")


# -- §2.1 - 2.4 ---------------------------------------------------------------------------------
def test_03_conv2d_macs_against_flop_counter():
    r = result("03_conv2d_single_multi_channel")
    convs = {"single": nn.Conv2d(1, 1, 3), "multi": nn.Conv2d(3, 16, 3, padding=1),
             "strided": nn.Conv2d(4, 8, (3, 5), stride=2, padding=1, groups=2)}
    for key, conv in convs.items():
        got = r[key]
        assert got["params"] == numel(conv)
        assert got["closed_form"]
        for (h, w), (ours, theirs) in got["at"].items():
            want = flop_macs(conv, (1, conv.in_channels, h, w))
            assert ours == theirs == want == value(got["formula"], H=h, W=w)
    # C_out*H_out*W_out*(C_in/g)*k_h*k_w
    assert r["single"]["at"][(32, 32)][0] == 1 * 30 * 30 * 1 * 3 * 3 == 8100
    assert r["multi"]["formula"] == "432*H*W"  # 16*H*W*3*3*3
    assert r["strided"]["at"][(17, 23)][0] == 8 * 9 * 11 * 2 * 3 * 5  # H_out 9, W_out 11
    assert r["single"]["rf"] == (3, 3) and r["strided"]["rf"] == (3, 5)
    assert r["rgb_sum_of_channels"]


def test_04_conv3d_with_depth_symbol():
    r = result("04_conv3d")
    net = module("04_conv3d").model()
    for d, h, w in ((16, 56, 56), (7, 13, 10), (4, 9, 6)):
        with torch.no_grad():
            y = net(torch.zeros(1, 3, d, h, w))
        sizes = {"D": d, "H": h, "W": w}
        assert tuple(value(f, **sizes) for f in r["out_dims"]) == tuple(y.shape[2:])
        assert value(r["macs"], **sizes) == flop_macs(net, (1, 3, d, h, w))
        if (d, h, w) in r["at"]:
            got = r["at"][(d, h, w)]
            assert got["shape"] == got["torch_shape"] == tuple(y.shape)
            assert got["macs"] == flop_macs(net, (1, 3, d, h, w))
    assert r["params"] == numel(net)
    # D: conv3 (3), pool 1 (3), conv3 (3 + 2 = 5), pool 2 (5 + 1 = 6, jump 2)
    # H: conv3 (3), pool 2 (4, jump 2), conv3 (4 + 2*2 = 8), pool 2 (8 + 2 = 10, jump 4)
    assert r["rf"] == (6, 10, 10) and r["jump"] == (2, 4, 4)
    assert r["offset"] == (-2, -3, -3)  # D: -1 - 1*1; H: -1 - 1*2


def test_05_transposed_conv_is_the_transposed_matrix():
    r = result("05_transposed_conv")
    s1, s2 = r["stride1"], r["stride2"]
    assert s1["torch_shape"] == s1["shape"] == tuple(
        nn.ConvTranspose2d(1, 1, 3)(torch.zeros(1, 1, 2, 2)).shape) == (1, 1, 4, 4)
    assert s1["size_formula"] == "H + 2"  # (H - 1)*1 + 3
    assert s1["matrix_shape"] == (4, 16) and s1["matrix_nonzero"] == 4 * 9  # 2x2 outputs, 9 taps
    assert s1["equals_transpose"] and s1["equals_full_padding"] and s1["fields_match_matrix"]
    assert (s1["rf"], s1["jump"], s1["offset"]) == (3, "1", -2)  # size k, offset -(k - 1)
    assert s1["macs"] == flop_macs(nn.ConvTranspose2d(1, 1, 3, bias=False), (1, 1, 2, 2)) == 36
    assert s1["params"] == 9
    # independent of the script: conv_transpose2d is the adjoint (vjp) of conv2d
    torch.manual_seed(1)
    w = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    for stride, n_in in ((1, 2), (2, 3)):
        v = torch.rand(1, 1, n_in, n_in, dtype=torch.float64)
        n_out = (n_in - 1) * stride + 3
        x = torch.rand(1, 1, n_out, n_out, dtype=torch.float64, requires_grad=True)
        (vjp,) = torch.autograd.grad(F.conv2d(x, w, stride=stride), x, v)
        assert torch.allclose(F.conv_transpose2d(v, w, stride=stride), vjp)
    assert s2["torch_shape"] == (1, 1, 7, 7)  # (3 - 1)*2 + 3
    for h in range(1, 12):
        assert value(s2["size_formula"], H=h) == nn.ConvTranspose2d(1, 1, 3, stride=2)(
            torch.zeros(1, 1, h, 1)).shape[2]
    assert s2["equals_transpose"] and s2["fields_match_matrix"]
    assert (s2["jump"], s2["rf"], s2["min_rf"], s2["period"]) == ("1/2", 2, 1, 2)


def test_06_dilated_conv():
    r = result("06_dilated_conv")
    y = nn.Conv2d(1, 1, 3, dilation=3)(torch.zeros(1, 1, 32, 32))
    assert r["torch_shape"] == r["shape"] == tuple(y.shape) == (1, 1, 26, 26)  # 32 - 3*(3-1)
    for h in range(7, 40):
        assert value(r["formula"], H=h) == nn.Conv2d(1, 1, 3, dilation=3)(
            torch.zeros(1, 1, h, 7)).shape[2]
    assert r["rf"] == (7, 7)  # 3*(3-1) + 1
    # the field per rate, from torch's gradient: output (0, 0) reads rows 0 .. d*(k-1)
    for d, rf in r["rf_by_rate"].items():
        conv = nn.Conv2d(1, 1, 3, dilation=d)
        x = torch.zeros(1, 1, 12, 12, requires_grad=True)
        conv(x)[0, 0, 0, 0].backward()
        rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
        assert rf == int(rows.max() - rows.min()) + 1 == d * 2 + 1
    conv = nn.Conv2d(1, 1, 3, dilation=3)
    assert r["params"] == numel(conv) == 10
    assert r["macs"] == flop_macs(conv, (1, 1, 32, 32)) == 26 * 26 * 9
    assert r["equals_spread_kernel"]


# -- §2.5 - 2.8 ---------------------------------------------------------------------------------
def test_07_spatially_separable():
    r = result("07_spatially_separable")
    # the seed's 3x3 weights are the outer product of its two 1-D kernels
    full = torch.tensor([[0.15, 0.20, 0.25], [0.21, 0.28, 0.35], [0.24, 0.32, 0.40]])
    assert torch.allclose(torch.outer(torch.tensor([0.5, 0.7, 0.8]),
                                      torch.tensor([0.3, 0.4, 0.5])), full)
    torch.random.manual_seed(0)
    x = torch.randint(0, 255, (1, 1, 32, 32), dtype=torch.float32)
    pair = F.conv2d(F.conv2d(x, torch.tensor([[[[0.3, 0.4, 0.5]]]])),
                    torch.tensor([[[[0.5], [0.7], [0.8]]]]))
    assert torch.allclose(F.conv2d(x, full.view(1, 1, 3, 3)), pair) and r["allclose"]
    assert r["torch_shapes"] == (tuple(pair.shape),) * 2 == ((1, 1, 30, 30),) * 2
    assert r["params"] == (3 * 3, 1 * 3 + 3 * 1)
    mod = module("07_spatially_separable")
    for (h, w) in ((32, 32), (17, 23)):
        for formula, model in zip(r["macs"], (mod.Network(), mod.Network2())):
            assert value(formula, H=h, W=w) == flop_macs(model, (1, 1, h, w))
    assert r["macs_32"] == (9 * 30 * 30, 3 * 32 * 30 + 3 * 30 * 30)  # 1x3 on all 32 rows
    assert r["macs_ratio_limit"] == "2/3"  # (3 + 3) / 9
    assert r["rf"] == ((3, 3), (3, 3))
    assert sorted(r["variants"].values()) == ["spatially separable (1×3)",
                                              "spatially separable (3×1)"]


def test_08_depthwise_separable_576_vs_136():
    r = result("08_depthwise_separable")
    mod = module("08_depthwise_separable")
    model1, model2 = mod.Network(), mod.Network2()
    assert r["params"] == r["torch_numel"] == (numel(model1), numel(model2))
    assert r["params"] == (8 * 8 * 3 * 3, 8 * 1 * 3 * 3 + 8 * 8) == (576, 136)
    assert r["macs_32"] == (flop_macs(model1, (1, 8, 32, 32)),
                            flop_macs(model2, (1, 8, 32, 32))) == (576 * 900, 136 * 900)
    for formula, model in zip(r["macs"], (model1, model2)):
        assert value(formula, H=19, W=25) == flop_macs(model, (1, 8, 19, 25))
    assert Fraction(r["macs_ratio"]) == Fraction(136, 576) == Fraction(17, 72)
    ratio = sympy.sympify(r["macs_ratio_formula"]).subs(
        {sympy.Symbol("C_out"): 8, sympy.Symbol("k_h"): 3, sympy.Symbol("k_w"): 3})
    assert ratio == sympy.Rational(17, 72)  # 1/8 + 1/9
    assert r["rf"] == ((3, 3), (3, 3))
    assert sorted(r["variants"].values()) == ["depthwise-separable (depthwise)",
                                              "depthwise-separable (pointwise)"]


def test_09_flattened_costs():
    r = result("09_flattened_conv")
    c, x, y, m, n = (NAMES[k] for k in "CXYMN")
    sym = {k: tuple(parse(s) for s in v) for k, v in r["symbolic"].items()}
    assert sympy.expand(sym["standard"][0] - x * y * c) == 0
    assert sympy.expand(sym["standard"][1] - m * n * c * x * y) == 0
    assert sympy.expand(sym["flattened"][0] - (x + y + c)) == 0
    assert sympy.expand(sym["flattened"][1] - m * n * (c + x + y)) == 0
    mod = module("09_flattened_conv")
    assert set(r["filters"]) == set(mod.FILTERS)
    for (cc, yy, xx), row in r["filters"].items():
        s, f = row["standard"], row["flattened"]
        std, flat = mod.standard(cc, yy, xx), mod.flattened(cc, yy, xx)
        assert s["params"] == s["torch_numel"] == numel(std) == cc * yy * xx
        assert f["params"] == f["torch_numel"] == numel(flat) == cc + yy + xx
        for mm, nn_ in ((20, 13), (9, 16)):
            assert value(s["macs"], M=mm, N=nn_) == flop_macs(std, (1, cc, mm, nn_)) \
                == mm * nn_ * cc * xx * yy
            assert value(f["macs"], M=mm, N=nn_) == flop_macs(flat, (1, cc, mm, nn_)) \
                == mm * nn_ * (cc + xx + yy)
        assert s["shape_at"] == s["torch_shape"] == f["shape_at"] == f["torch_shape"]
        assert s["matches_costs"] and f["matches_costs"]
        assert s["rf"] == f["rf"] == (yy, xx)


def test_10_grouped_divides_by_g():
    r = result("10_grouped_conv")
    for g, got in r["alexnet"].items():
        conv = nn.Conv2d(96, 256, 5, padding=2, groups=g)
        assert got["params"] == got["torch_numel"] == numel(conv) == 256 * (96 // g) * 25 + 256
        assert value(got["macs"], H=13, W=13) == flop_macs(conv, (1, 96, 13, 13))
        assert got["macs_27"] == 256 * 27 * 27 * (96 // g) * 25
    assert r["split_equals_grouped"]
    assert sorted(r["groups"]) == [1, 2, 4, 8, 16, 64]
    for g, got in r["groups"].items():
        conv = nn.Conv2d(64, 64, 3, padding=1, groups=g, bias=False)
        assert got["params"] == numel(conv) == 64 * 64 * 9 // g
        assert value(got["macs"], H=8, W=6) == flop_macs(conv, (1, 64, 8, 6)) \
            == 64 * 64 * 9 * 8 * 6 // g
        assert Fraction(got["ratio"]) == Fraction(1, g)
        assert got["rf"] == (3, 3)


def test_11_channel_shuffle_is_a_permutation():
    r = result("11_channel_shuffle")
    c, g = 8, 4
    # view(g, c/g) -> transpose -> flatten: output a*g + b takes input b*(c/g) + a
    assert r["permutation"] == [b * (c // g) + a for a in range(c // g) for b in range(g)]
    assert r["module_equals_idiom"]
    mod = module("11_channel_shuffle")
    for key, model in (("module", mod.ShuffleModule()), ("idiom", mod.ShuffleIdiom())):
        got = r[key]
        # the gradient of one output element reaches a 3x3 patch of the input: same as the conv
        x = torch.rand(1, c, 12, 12, requires_grad=True)
        model(x)[0, 3, 5, 5].backward()
        rows = torch.nonzero(x.grad[0].abs().sum((0, 2))).flatten().tolist()
        assert rows == [4, 5, 6]
        assert got["conv_field"] == got["output_field"] == (3, 1, -1)
        assert got["shuffle_params"] == 0 and got["shuffle_macs"] == 0
        assert got["params"] == numel(model) == 8 * (8 // 4) * 9 + 8
        assert got["shape"] == ("1", "8", "H", "W")
        assert set(got["variants"].values()) >= {"shuffled grouped (g=4)",
                                                 "shuffled grouped (shuffle, g=4)"}
    assert r["alone_field"] == (1, 1, 0)


# -- §3 -------------------------------------------------------------------------------------------
def test_12_stacked_small_kernels():
    r = result("12_receptive_field_stacking")
    c = 16
    assert r["two_3x3"]["rf"] == r["one_5x5"]["rf"] == 5  # 1 + 2 + 2
    assert r["two_3x3"]["params"] == r["torch_numel"]["two_3x3"] == 2 * 9 * c * c == 4608
    assert r["one_5x5"]["params"] == r["torch_numel"]["one_5x5"] == 25 * c * c == 6400
    assert r["three_3x3"]["rf"] == r["one_7x7"]["rf"] == 7
    assert (r["three_3x3"]["params"], r["one_7x7"]["params"]) == (27 * c * c, 49 * c * c)
    mod = module("12_receptive_field_stacking")
    assert value(r["two_3x3"]["macs"], H=12, W=10) == flop_macs(mod.stack(2), (1, c, 12, 10))
    assert value(r["one_5x5"]["macs"], H=12, W=10) == flop_macs(
        nn.Conv2d(c, c, 5, bias=False), (1, c, 12, 10))
    # 3x3 s2 p1 then 3x3 p1: r = 3 + (3-1)*2 = 7, j = 2, o = -1 - 1*2 = -3
    assert (r["strided"]["rf"], r["strided"]["jump"], r["strided"]["offset"]) == (7, 2, -3)
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(1, 1, 3, padding=1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand_like(p) + 0.1)  # positive: every tap counts, ReLU passes
    for y, got in r["strided_probe"].items():
        x = torch.rand(1, 1, 16, 16, requires_grad=True)
        model(x)[0, 0, y, y].backward()
        rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
        assert got["field"] == (-3 + 2 * y, 3 + 2 * y)
        assert got["clipped"] == got["torch"] == (int(rows.min()), int(rows.max()))


# -- last: by now the background runs are done or nearly ------------------------------------
def test_every_script_runs_as_a_subprocess_from_another_directory(subprocess_runs):
    assert subprocess_runs is not None
    for name, future in subprocess_runs.items():
        proc = future.result()
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        assert SCRIPTS[name] in proc.stdout, (name, proc.stdout[-2000:])
