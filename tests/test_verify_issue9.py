"""``rfgraph verify`` defects of issue 9, one reproduction each, with torch as the oracle.

1. IndexError in the node subset of big models (no size-dependent field; a ShuffleNetV2-like
   feature extractor at 97 x 131);
2. a field check skipped because the probe input did not fit the model, although a fitting size
   existed (PixelUnshuffle after an even kernel; PixelUnshuffle(7));
3. false mismatches: two back-to-back view/transpose/view shuffles taken for one; a 3-pixel
   probe strip that kills a branch live at the real size;
4. a float64 model fed float32;
5. a dilated ConvTranspose3d whose semantics reference took minutes: a time budget per node;
6. exit statuses 0 / 1 / 4 ("could not check"), skip reasons stated and documented.

The oracles are torch's own results: gradients of a positive-weight float64 copy of the model
(every dependence shows as a non-zero gradient), the real model's output shapes, FlopCounterMode,
F.channel_shuffle, F.conv_transpose3d, and whether torch accepts an input size at all.
"""

from __future__ import annotations

import copy
import time
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from rfgraph import semantics as ref
from rfgraph.cli import main
from rfgraph.verify import (
    SKIP_BY_DESIGN,
    SKIP_COULD_NOT_CHECK,
    SKIP_REASONS,
    CheckRow,
    VerifyReport,
    choose_sizes,
    verify,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py
DOCS = Path(__file__).resolve().parent.parent / "docs" / "verify.md"


@pytest.fixture(autouse=True)
def keep_global_rng():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


# -- torch oracles --------------------------------------------------------------------------------
def positive_copy(model: nn.Module) -> nn.Module:
    """A float64 copy with every parameter > 0: no cancellation, so every dependence of an
    output on an input pixel is a non-zero gradient."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.abs() + 0.1)
    return m


def torch_box(model: nn.Module, shape: tuple[int, ...], index: tuple, dim: int,
              ) -> tuple[int, int] | None:
    """Bounding box along input dim ``dim`` of the pixels output ``index`` depends on."""
    x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x)[index].sum(), x)
    hits = (grad != 0).movedim(dim, 0).reshape(shape[dim], -1).any(1).nonzero().flatten()
    return (int(hits[0]), int(hits[-1])) if hits.numel() else None


def rows_of(report: VerifyReport, node: str, check: str) -> list[CheckRow]:
    return [r for r in report.rows if r.node == node and r.check == check]


def write_model(tmp_path: Path, body: str) -> str:
    """A model file for the CLI: ``body`` defines build()."""
    path = tmp_path / "issue9_model.py"
    path.write_text("import torch\nfrom torch import nn\n\n" + body)
    return f"{path}:build"


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["verify", *argv, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


# -- 1. big models: no IndexError, no internal error ----------------------------------------------
def conv_pair() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 80, 3, padding=1), nn.Conv2d(80, 80, 3, padding=1)).eval()


def test_big_model_without_size_dependent_field(tmp_path, capsys):
    """58k MACs per pixel makes it "big" (representative subset), and it has no size-dependent
    field: the subset of an empty list raised IndexError (exit 3)."""
    a = rfgraph.analyze(conv_pair(), (1, 1, "H", "W"))
    report = verify(a, at=[{"H": 20, "W": 23}])
    assert report.status == "ok" and report.exit_status == 0, report.format()
    oracle = positive_copy(conv_pair())
    for node in ("_0", "_1"):
        for axis, dim in (("H", 2), ("W", 3)):
            (row,) = [r for r in rows_of(report, node, "rf") if r.what == axis]
            assert row.status == "pass"
            index = [0, slice(None), 10, 11]
            depth = oracle if node == "_1" else oracle[:1]
            lo, hi = torch_box(depth, (1, 1, 20, 23), tuple(index), dim)
            assert row.measured["size"] == hi - lo + 1 == row.expected["size"]
    spec = write_model(tmp_path, "def build():\n    return nn.Sequential(nn.Conv2d(1, 80, 3, "
                                 "padding=1), nn.Conv2d(80, 80, 3, padding=1))\n")
    code, out, err = cli(capsys, spec, "--input", "1,1,H,W", "--at", "H=20,W=23")
    assert code == 0, err
    assert "internal error" not in err and out.rstrip().endswith("result: OK")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, -1, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's unit: stride 2 = two branches (the input downsampled twice), stride 1 =
    chunk, one branch, cat; then the view/transpose/view channel shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if stride > 1 else half, half, 1, bias=False), nn.BatchNorm2d(half),
            nn.ReLU(), nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False),
            nn.BatchNorm2d(half), nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half),
            nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.branch2(b)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


def shufflenet_features() -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24),
                               nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 24
    for cout, repeats in ((48, 2), (96, 3), (192, 2)):
        layers.append(ShuffleUnit(cin, cout, 2))
        layers += [ShuffleUnit(cout, cout, 1) for _ in range(repeats - 1)]
        cin = cout
    return nn.Sequential(*layers).eval()


def test_shufflenet_features_at_97_by_131():
    model = shufflenet_features()
    a = rfgraph.analyze(model, (1, 3, "H", "W"))
    report = verify(a, at=[{"H": 97, "W": 131}])
    assert report.status == "ok", report.format()
    assert any(r.reason == "not-probed" for r in report.skipped)  # the big-model subset ran
    with torch.no_grad():
        real = model(torch.zeros(1, 3, 97, 131))
    (row,) = rows_of(report, "output", "shape")
    assert row.status == "pass" and tuple(row.measured) == tuple(real.shape)
    shuffles = [r for r in report.rows if r.what.startswith("view/transpose/view")]
    assert len(shuffles) == 7 and all(r.status == "pass" for r in shuffles)


# -- 2. a check that cannot run at one size tries sizes the model accepts ------------------------
@pytest.mark.parametrize(("model", "spec", "size"), [
    # H - 3 must be even: an odd input; the probe's even lengths and odd strips both failed
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 4), nn.PixelUnshuffle(2)), (1, 1, "H", "W"), 25),
    # multiples of 7: no probe length (8, 12, 16, 24, ... x 1.5) is one
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.PixelUnshuffle(7)),
     (1, 1, "H", "W"), 42),
])
def test_field_probe_moves_to_a_size_the_model_accepts(model, spec, size):
    torch.manual_seed(0)
    m = model().eval()
    with pytest.raises(RuntimeError):  # torch rejects the probe's old sizes ...
        m(torch.zeros(1, 1, size + 1, size + 1))
    m(torch.zeros(1, 1, size, size))  # ... and accepts this one
    a = rfgraph.analyze(m, spec)
    report = verify(a, at=[{"H": size, "W": size}], checks=["rf"])
    assert report.status == "ok", report.format()
    rows = rows_of(report, "_1", "rf")
    assert len(rows) == 2 and all(r.status == "pass" for r in rows)  # was: skipped, "OK"
    oracle = positive_copy(m)
    for row, dim in zip(sorted(rows, key=lambda r: r.what), (2, 3)):
        sizes = []
        for y in range(1, 4):  # every phase of the unshuffled grid
            index = [0, slice(None), 1, 1]
            index[dim] = y
            lo, hi = torch_box(oracle, (1, 1, size, size), tuple(index), dim)
            sizes.append(hi - lo + 1)
        assert row.measured["size"] == max(sizes) and row.measured["min_size"] == min(sizes)


def test_no_size_fits_is_could_not_check_not_ok(tmp_path, capsys):
    """The model accepts H = 4 only (a reshape), too short to place the conv's field away from
    both borders: the check cannot run at any size. Not a pass: exit status 4."""
    body = ("class Fixed(nn.Module):\n"
            "    def __init__(self):\n"
            "        super().__init__()\n"
            "        self.conv = nn.Conv2d(1, 2, 3)\n"
            "    def forward(self, x):\n"
            "        n, c, h, w = x.shape\n"
            "        return self.conv(x.reshape(n, c, 4, w))\n"
            "def build():\n"
            "    return Fixed()\n")
    spec = write_model(tmp_path, body)
    namespace: dict = {}
    exec(compile("import torch\nfrom torch import nn\n" + body, "fixed", "exec"), namespace)
    model = namespace["build"]().eval()
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 1, 5, 20))
    model(torch.zeros(1, 1, 4, 20))
    report = verify(rfgraph.analyze(model, (1, 1, "H", "W")), at=[{"H": 4, "W": 20}])
    assert report.status == "could not check" and report.exit_status == 4
    (row,) = report.could_not_check
    assert (row.node, row.check, row.what, row.reason) == ("conv", "rf", "H", "no-size")
    assert [r.status for r in rows_of(report, "conv", "rf") if r.what == "W"] == ["pass"]
    text = report.format()
    assert "not checked" in text and "result: COULD NOT CHECK" in text
    code, out, _ = cli(capsys, spec, "--input", "1,1,H,W", "--at", "H=4,W=20")
    assert code == 4 and "result: COULD NOT CHECK" in out


def test_sizes_found_when_axes_need_different_parities():
    """H must be odd and W even: no common step from 224 (or 97, or 1) fits both axes."""
    model = nn.Sequential(nn.ZeroPad2d((0, 0, 0, 1)), nn.PixelUnshuffle(2)).eval()
    a = rfgraph.analyze(model, (1, 1, "H", "W"))
    sizes = choose_sizes(a)
    assert len(sizes) == 3
    for s in sizes:
        model(torch.zeros(1, 1, s["H"], s["W"]))  # torch accepts each of them
    report = verify(a)
    assert report.status == "ok", report.format()


# -- 3. false mismatches --------------------------------------------------------------------------
class TwoShuffles(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        n, c, h, w = x.size()
        x = x.view(n, 4, c // 4, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


def test_back_to_back_shuffles_are_two_shuffles():
    model = TwoShuffles().eval()
    x = torch.randn(2, 3, 6, 5)
    with torch.no_grad():  # torch's own channel shuffles: 4 groups, then 2
        assert torch.equal(model(x), F.channel_shuffle(F.channel_shuffle(model.conv(x), 4), 2))
    report = verify(rfgraph.analyze(model, (1, 3, "H", "W")), at=[{"H": 16, "W": 12}])
    assert report.status == "ok", report.format()
    rows = [r for r in report.rows if r.what.startswith("view/transpose/view")]
    assert [(r.node, r.status) for r in rows] == [("view_1", "pass"), ("view_3", "pass")]
    assert "(4 groups)" in rows[0].what and "(2 groups)" in rows[1].what


class Branches(nn.Module):
    """Two branches of the same output size. Along W branch b's taps are pixels -1 and 3 (then
    +4 per element): on a 3-pixel strip along W it reads no input pixel at all, at the real
    width it reads pixels 3, 7, ... Along H its field is wider than branch a's."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, stride=4)
        self.b = nn.Conv2d(1, 2, (5, 2), stride=4, padding=1, dilation=(1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], 1)


def test_narrow_strip_does_not_kill_a_branch():
    model = Branches().eval()
    oracle = positive_copy(model)
    assert torch_box(oracle.b, (1, 1, 32, 3), (0, slice(None), 3, slice(None)), 2) is None
    report = verify(rfgraph.analyze(model, (1, 1, "H", "W")), at=[{"H": 64, "W": 64}])
    assert report.status == "ok", report.format()
    (row,) = [r for r in rows_of(report, "cat", "rf") if r.what == "H"]
    assert row.status == "pass"
    length = row.measured["input_length"]
    for y, box in row.measured["boxes"].items():  # both branches, as torch at the real width
        assert tuple(box) == torch_box(oracle, (1, 1, length, 64),
                                       (0, slice(None), y, slice(None)), 2)
    assert row.measured["size"] == 5


def test_narrow_strip_does_not_kill_a_branch_of_a_size_dependent_field():
    """The same branches pooled over H: a field that depends on H, probed at the real H with W
    on a strip; a 3-pixel strip loses branch b's last row."""
    model = nn.Sequential(Branches(), nn.AdaptiveAvgPool2d((1, None))).eval()
    report = verify(rfgraph.analyze(model, (1, 1, "H", "W")), at=[{"H": 64, "W": 64}],
                    checks=["rf"])
    assert report.status == "ok", report.format()
    (row,) = [r for r in rows_of(report, "_1", "rf") if r.what == "H"]
    assert row.status == "pass" and row.at == {"H": 64, "W": 64}
    want = torch_box(positive_copy(model), (1, 1, 64, 64), (0, slice(None), 0, slice(None)), 2)
    assert want == (0, 63) and tuple(row.measured[0]) == want


# -- 4. the model's own dtype ---------------------------------------------------------------------
def test_float64_model_runs_in_float64():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(8, 4, 3), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3)).double().eval()
    report = verify(rfgraph.analyze(model, (1, 3, "H", "W")), at=[{"H": 16, "W": 12}])
    assert report.status == "ok", report.format()
    x = torch.zeros(1, 3, 16, 12, dtype=torch.float64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    (shape,) = rows_of(report, "output", "shape")
    assert tuple(shape.measured) == tuple(out.shape)
    (total,) = rows_of(report, "(total)", "macs")
    assert total.status == "pass" and total.measured == counter.get_total_flops() // 2


# -- 5. a time budget per node --------------------------------------------------------------------
def convt3d() -> nn.Module:
    return nn.Sequential(nn.ConvTranspose3d(3, 3, 5, stride=2, dilation=3)).eval()


def test_dilated_transposed_conv3d_is_checked_by_its_adjoint():
    """The reference took over 6 minutes as a dense matrix; it is now the adjoint of conv3d
    (seconds, measured in benchmarks, not asserted here). No budget: a loaded machine must not
    turn this into a skip."""
    a = rfgraph.analyze(convt3d(), (1, 3, 9, 6, 8))
    report = verify(a, node_budget=None)
    assert report.status == "ok", report.format()
    (row,) = rows_of(report, "_0", "semantics")
    assert row.status == "pass" and "adjoint" in row.what


def test_matrix_free_transposed_conv_reference():
    """The reference against torch's conv_transpose3d, and a wrong kernel is caught."""
    m = nn.ConvTranspose3d(3, 4, (3, 2, 2), stride=(2, 1, 3), padding=(1, 0, 1), groups=1,
                           dilation=(2, 3, 1), output_padding=(1, 0, 2)).double()
    x = torch.randn(2, 3, 4, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        want = m(x)
    weight, bias = m.weight.detach(), m.bias.detach()
    got = ref.conv_transpose_by_adjoint(x, weight, bias, m.stride, m.padding,
                                                   m.groups, m.dilation, want.shape[2:])
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    flipped = ref.conv_transpose_by_adjoint(x, weight.flip(2), bias, m.stride,
                                                       m.padding, m.groups, m.dilation,
                                                       want.shape[2:])
    assert not torch.allclose(flipped, want, atol=1e-3)
    g = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, dilation=2).double()
    x2 = torch.randn(1, 4, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        want2 = g(x2)
    got2 = ref.conv_transpose_by_adjoint(x2, g.weight.detach(), g.bias.detach(),
                                                    g.stride, g.padding, g.groups, g.dilation,
                                                    want2.shape[2:])
    assert torch.allclose(got2, want2, rtol=1e-12, atol=1e-12)


def test_a_wrong_transposed_conv3d_still_fails():
    model = convt3d()
    layer = model[0]
    layer.forward = types.MethodType(lambda self, x: nn.ConvTranspose3d.forward(self, x) * 1.001,
                                     layer)
    report = verify(rfgraph.analyze(model, (1, 3, 9, 6, 8)), checks=["semantics"])
    assert report.status == "mismatch" and report.exit_status == 1


def test_time_budget_reports_too_slow(tmp_path, capsys, monkeypatch):
    """The budget is enforced by an alarm, deterministically: the node's check is made to sleep
    for 30 s (time.sleep is interrupted by the alarm), so it is over any budget of 0.05 s however
    fast or loaded the machine is. (A real check, however slow, races the alarm on a fast
    machine: that made this test flaky in CI.)"""
    from rfgraph.verify.layers import _Semantics

    original = _Semantics._check_node

    def slow(self, node):
        time.sleep(30)
        return original(self, node)

    monkeypatch.setattr(_Semantics, "_check_node", slow)
    a = rfgraph.analyze(convt3d(), (1, 3, 9, 6, 8))
    started = time.perf_counter()
    report = verify(a, checks=["semantics"], node_budget=0.05)
    assert time.perf_counter() - started < 20  # interrupted, not slept through
    (row,) = rows_of(report, "_0", "semantics")
    assert row.status == "skip" and row.reason == "too-slow" and row.could_not_check
    assert report.status == "could not check" and report.exit_status == 4 and not report.ok
    text = report.format()
    assert "not checked" in text and "too slow" in text and "COULD NOT CHECK" in text
    spec = write_model(tmp_path, "def build():\n    return nn.Sequential(nn.ConvTranspose3d("
                                 "3, 3, 5, stride=2, dilation=3))\n")
    code, out, _ = cli(capsys, spec, "--input", "1,3,9,6,8", "--checks", "semantics",
                       "--node-budget", "0.05")
    assert code == 4 and "too slow" in out
    monkeypatch.setattr(_Semantics, "_check_node", original)
    code, out, _ = cli(capsys, spec, "--input", "1,3,9,6,8", "--checks", "semantics",
                       "--node-budget", "0")  # no limit
    assert code == 0 and out.rstrip().endswith("result: OK")


# -- 6. statuses and reasons ----------------------------------------------------------------------
def test_an_error_inside_a_check_is_could_not_check(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(rfgraph.verify.fields, "_grad_box", broken)
    a = rfgraph.analyze(nn.Sequential(nn.Conv2d(1, 2, 3)).eval(), (1, 1, "H", "W"))
    report = verify(a, at=[{"H": 12, "W": 12}], checks=["shape", "rf"])
    rf = rows_of(report, "_0", "rf")
    assert rf and all(r.reason == "error" and "probe exploded" in r.detail for r in rf)
    assert report.status == "could not check" and report.exit_status == 4


def test_skip_reasons_are_stated_and_documented(capsys):
    assert set(SKIP_REASONS) == set(SKIP_BY_DESIGN) | set(SKIP_COULD_NOT_CHECK)
    assert not set(SKIP_BY_DESIGN) & set(SKIP_COULD_NOT_CHECK)
    assert CheckRow("n", "rf", "skip").could_not_check  # a skip without a reason is not OK
    assert not CheckRow("n", "rf", "skip", reason="integer").could_not_check
    docs = DOCS.read_text()
    with pytest.raises(SystemExit) as info:
        main(["verify", "--help"])
    assert info.value.code == 0
    helptext = capsys.readouterr().out
    for text in (docs, helptext):
        for key in SKIP_REASONS:
            assert f"`{key}`" in text or f"  {key} " in text, key
    for code in ("0", "1", "2", "3", "4"):
        assert f"  {code}  " in helptext
    assert "| 4 |" in docs and "could not check" in docs


def test_by_design_skips_keep_ok_and_json_states_status():
    """An integer tensor (pooling indices) has no gradient: a skip by design, result OK."""

    class WithIndices(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.MaxPool2d(2, return_indices=True)

        def forward(self, x: torch.Tensor):
            out, idx = self.pool(x)
            return out, idx

    report = verify(rfgraph.analyze(WithIndices().eval(), (1, 2, "H", "W")),
                    at=[{"H": 8, "W": 10}])
    assert report.status == "ok" and report.skipped
    assert all(r.reason in SKIP_BY_DESIGN for r in report.skipped)
    d = report.to_dict()
    assert d["ok"] and d["status"] == "ok" and d["exit_status"] == 0
    assert d["could_not_check"] == 0
    assert all("reason" in r and "could_not_check" in r for r in d["rows"])
