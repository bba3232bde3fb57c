"""rfgraph.solve_memory and ``rfgraph solve --max-batch / --max-size --memory``.

Oracles, none of which runs the solver's search: closed forms written out by hand for one
Conv2d; for other models the total computed directly (parameter and buffer bytes from
``p.numel() * p.element_size()``, the peak and saved bytes by evaluating a separately built
analysis at the answer) and brute force over every smaller batch or size.
"""

from __future__ import annotations

import json
import sys

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn

import rfgraph
from rfgraph import cli
from rfgraph.cli_solve import format_answer
from rfgraph.costs import OPTIMIZERS
from rfgraph.solve_memory import MaxBatch, MaxSize, max_batch, max_size, nondecreasing


def conv() -> nn.Module:
    return nn.Conv2d(3, 8, 3)


# One Conv2d 3->8, k3, no padding, float32, on N,3,H,W:
#   params  = (8*3*3*3 + 8) * 4 B = 224 * 4 = 896 B
#   input   = N*3*H*W * 4 B = 12*N*H*W B; output = N*8*(H-2)*(W-2) * 4 B = 32*N*(H-2)*(W-2) B
#   peak    = input + output (both live at the conv)
#   at H = W = 32, per sample: 12*32*32 = 12288 B input, 32*30*30 = 28800 B output: 41088 B
#   training: the conv saves its input (12288 B per sample; the weight is a parameter);
#   gradients = 896 B, optimizer state = 0 (sgd), 896 (momentum), 1792 (adam)
CONV_PARAMS = 896
CONV_PER_SAMPLE = 12288 + 28800
CONV_SAVED = 12288


def conv_total(n: int, s: int = 32, train: str | None = None) -> int:
    peak = n * (12 * s * s + 32 * (s - 2) ** 2)
    if train is None:
        return CONV_PARAMS + peak
    return CONV_PARAMS * (2 + OPTIMIZERS[train]) + n * 12 * s * s + peak


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


class OddOnly(nn.Module):
    """x + crop(upsample(stride-2 conv(x))): the sizes agree only for odd H and W."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 3, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.interpolate(self.down(x), scale_factor=2.0)[:, :, :-1, :-1]


# -- the independent oracle ------------------------------------------------------------------

class Oracle:
    """The total at concrete sizes, computed directly: parameters and buffers from torch, the
    peak (and the saved bytes) by evaluating an analysis built here."""

    def __init__(self, model: nn.Module, shape, train: str | None = None) -> None:
        self.train = train
        mode = "train" if train else "eval"
        self.a = rfgraph.analyze(model, shape, mode=mode,
                                 costs=("memory", "train") if train else ("memory",),
                                 optimizer=train or "adam")
        self.params = sum(p.numel() * p.element_size() for p in model.parameters())
        self.buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        self.trainable = sum(p.numel() * p.element_size() for p in model.parameters()
                             if p.requires_grad)

    def total(self, **sizes: int) -> int | None:
        try:
            e = self.a.evaluate(**sizes)
        except rfgraph.RfgraphError:
            return None  # the model rejects these sizes
        costs = self.a.costs
        out = self.params + self.buffers + costs.peak_at(e.value_of)
        if self.train:
            out += (1 + OPTIMIZERS[self.train]) * self.trainable + e.int_of(costs.saved_total)
        return out


# -- closed forms --------------------------------------------------------------------------------

def test_max_batch_conv_closed_form():
    budget = CONV_PARAMS + 37 * CONV_PER_SAMPLE + 100
    ans = max_batch(conv(), budget, {"H": 32, "W": 32})
    assert isinstance(ans, MaxBatch)
    assert ans.batch == 37 and ans.symbol == "N" and ans.replaced_batch is None
    assert ans.total == conv_total(37) == CONV_PARAMS + 37 * CONV_PER_SAMPLE
    assert ans.next_total == conv_total(38) > budget
    assert ans.parts["param_bytes"] == CONV_PARAMS and ans.parts["peak_bytes"] == 37 * 41088
    assert ans.monotone == "proved" and ans.dtype == "float32" and not ans.train
    # the budget is inclusive: exactly the total at 37 fits, one byte less does not
    assert max_batch(conv(), conv_total(37), "H=32,W=32").batch == 37
    assert max_batch(conv(), conv_total(37) - 1, "H=32,W=32").batch == 36


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_max_batch_conv_training_closed_form(optimizer):
    # sgd: 896 params + 896 gradients; adam: + 1792 state; per sample 12288 saved + 41088 peak
    fixed = {"sgd": 1792, "adam": 3584}[optimizer]
    assert conv_total(0, train=optimizer) == fixed
    budget = fixed + 10 * (12288 + 41088) + 53375
    ans = max_batch(conv(), budget, {"H": 32, "W": 32}, train=True, optimizer=optimizer)
    assert ans.batch == 10 and ans.train and ans.optimizer == optimizer
    assert ans.total == conv_total(10, train=optimizer) and ans.parts["saved_bytes"] == 122880
    assert ans.parts["optimizer_bytes"] == fixed - CONV_PARAMS
    assert ans.next_total == conv_total(11, train=optimizer) > budget


@pytest.mark.parametrize("batch", [None, 4])
def test_max_size_conv_closed_form(batch):
    budget = 10 ** 6
    n = batch or 1
    ans = max_size(conv(), budget, batch)
    # brute force over the closed form: the smallest valid size is 3 (k = 3, no padding)
    best = max(s for s in range(3, 1000)
               if all(conv_total(n, t) <= budget for t in range(3, s + 1)))
    assert isinstance(ans, MaxSize)
    assert ans.size == best and ans.sizes == {"H": best, "W": best} and ans.batch == n
    assert ans.total == conv_total(n, best) and ans.next_total == conv_total(n, best + 1)
    assert ans.smallest == 3 and ans.next_size == best + 1 and ans.monotone == "proved"
    assert ans.symbols == ["H", "W"] and ans.skipped == 0


# -- the oracle on other models ------------------------------------------------------------------

@pytest.mark.parametrize("train", [None, "momentum"])
def test_max_batch_against_direct_totals(train):
    model = small_cnn()
    oracle = Oracle(model, ("N", 3, "H", "W"), train)
    budget = 48 * 2 ** 20
    ans = max_batch(model, budget, {"H": 40, "W": 40}, train=bool(train), optimizer=train)
    assert ans.total == oracle.total(N=ans.batch, H=40, W=40) <= budget
    assert ans.next_total == oracle.total(N=ans.batch + 1, H=40, W=40) > budget
    assert all(oracle.total(N=n, H=40, W=40) <= budget for n in range(1, ans.batch))
    assert 4 < ans.batch < 2000 and ans.monotone == "proved"


@pytest.mark.parametrize("train", [None, "adam"])
def test_max_size_against_direct_totals(train):
    model = small_cnn()
    oracle = Oracle(model, ("N", 3, "H", "W"), train)
    budget = 3 * 2 ** 20
    ans = max_size(model, budget, 2, train=bool(train))
    totals = {s: oracle.total(N=2, H=s, W=s) for s in range(1, ans.size + 2)}
    valid = [s for s, t in totals.items() if t is not None]
    assert ans.smallest == min(valid)
    # every valid size up to the answer fits, the next one does not
    assert all(totals[s] <= budget for s in valid if s <= ans.size)
    assert ans.total == totals[ans.size] and ans.next_total == totals[ans.size + 1] > budget
    assert 20 < ans.size < 1000 and ans.monotone == "proved"


def test_max_size_skips_sizes_the_model_rejects():
    model = OddOnly()
    oracle = Oracle(model, ("N", 3, "H", "W"))
    budget = 10 ** 6
    ans = max_size(model, budget)
    assert ans.size % 2 == 1 and ans.next_size == ans.size + 2 and ans.skipped > 0
    assert oracle.total(N=1, H=ans.size + 1, W=ans.size + 1) is None  # rejected
    assert all(oracle.total(N=1, H=s, W=s) <= budget for s in range(1, ans.size + 1, 2))
    assert ans.total == oracle.total(N=1, H=ans.size, W=ans.size)
    assert ans.next_total == oracle.total(N=1, H=ans.size + 2, W=ans.size + 2) > budget
    assert any("rejects" in n for n in ans.notes)


def test_literal_batch_and_given_analysis():
    # a literal batch is replaced by N; literal spatial sizes need no --at
    ans = max_batch(conv(), conv_total(5), input_shape=(1, 3, 32, 32))
    assert ans.batch == 5 and ans.replaced_batch == 1 and ans.input == ["N", "3", "32", "32"]
    assert any("replaced" in n for n in ans.notes)
    # max_size keeps a literal batch unless another one is asked for
    assert max_size(conv(), 10 ** 6, input_shape=(4, 3, "H", "W")).batch == 4
    other = max_size(conv(), 10 ** 6, 2, input_shape=(4, 3, "H", "W"))
    assert other.batch == 2 and other.input[0] == "N"
    assert other.size == max_size(conv(), 10 ** 6, 2).size
    # an analysis: its costs are used, or computed again for training
    a = rfgraph.analyze(conv(), ("N", 3, "H", "W"), costs="memory")
    assert max_batch(a, conv_total(7), {"H": 32, "W": 32}).batch == 7
    train = max_batch(a, conv_total(7, train="sgd"), {"H": 32, "W": 32}, train=True,
                      optimizer="sgd")
    assert train.batch == 7 and a.costs is not None and not a.costs.train  # a is unchanged
    # a literal-batch analysis is analysed again with N
    lit = rfgraph.analyze(conv(), (2, 3, "H", "W"), costs="memory")
    assert max_batch(lit, conv_total(9), {"H": 32, "W": 32}).batch == 9
    # a 1-D input: the length alone
    one_d = max_size(nn.Conv1d(2, 4, 5), 10 ** 5, input_shape=("N", 2, "L"))
    # 4 B * (2*L + 4*(L - 4)) + params (4*2*5 + 4) * 4 = 176 B
    assert one_d.size == max(s for s in range(5, 10 ** 4) if 176 + 8 * s + 16 * (s - 4) <= 10 ** 5)


# -- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, text", [
    (lambda: max_batch(conv(), "1GiB", input_shape="1,3,N,N"), "cannot make the batch a symbol"),
    (lambda: max_batch(conv(), "1GiB", input_shape="N,3,N,N"), "also sizes another input dim"),
    (lambda: max_batch(conv(), "24 lots", {"H": 32, "W": 32}), "bad memory size"),
    (lambda: max_batch(conv(), 0, {"H": 32, "W": 32}), "bad memory size"),
    (lambda: max_batch(conv(), True, {"H": 32, "W": 32}), "bad memory size"),
    (lambda: max_batch(conv(), "1KiB", {"H": 32, "W": 32}), "even N=1 does not fit"),
    (lambda: max_batch(conv(), "1GiB"), "give H, W"),
    (lambda: max_batch(conv(), "1GiB", {"N": 2, "H": 32, "W": 32}), "batch being solved"),
    (lambda: max_batch(conv(), "1GiB", {"H": 2, "W": 32}), "input too small"),
    (lambda: max_size(conv(), "1KiB"), "even the smallest valid size H=W=3 does not fit"),
    (lambda: max_size(conv(), "1GiB", 0), "positive integer"),
    (lambda: max_size(conv(), "1GiB", at={"H": 32, "W": 32}), "no spatial size to solve"),
    (lambda: max_size(nn.Linear(16, 4), "1GiB", input_shape="N,16"), "no spatial dims"),
])
def test_errors_are_one_line(call, text):
    with pytest.raises(rfgraph.RfgraphError) as exc:
        call()
    assert text in str(exc.value) and "\n" not in str(exc.value)


def test_nondecreasing_proof():
    s = sympy.Symbol("S", integer=True, positive=True)
    # a ResNet stem: ceiling(S/4)^2 grows; (S - 2)^2 grows from S = 2 on
    assert nondecreasing([64 * sympy.ceiling(s / 4) ** 2 + 12 * s ** 2, (s - 2) ** 2], s, 2)
    assert not nondecreasing([(s - 2) ** 2], s, 1)  # 1 at S = 1, 0 at S = 2
    assert not nondecreasing([2 * sympy.floor(s / 2) - s + 10], s, 1)  # 9, 10, 9, 10, ...
    assert not nondecreasing([sympy.Min(s, 5)], s, 1)  # not proved (a Min), not disproved
    assert nondecreasing([sympy.Integer(7)], s, 1)
    # nested floors (the period doubles until they vanish) and moduli
    assert nondecreasing([sympy.floor(sympy.floor(s / 2) / 2) * s], s, 1)
    assert nondecreasing([s - sympy.Mod(s, 3)], s, 1)  # 3*floor(S/3)
    assert not nondecreasing([sympy.Mod(s, 3)], s, 1)
    assert not nondecreasing([1 / sympy.floor(s / 2)], s, 2)  # not a polynomial in the atoms
    # against brute force from S = 4 on (f(S) = -2 at S = 4..6 for the third)
    for e, monotone in ((sympy.ceiling(s / 4) ** 2 + s, True),
                        (3 * sympy.floor((s + 1) / 2) - s, False),  # 2, 4, 3, 5, 4, ...
                        (sympy.floor(s ** 2 / 8) - s, True),
                        (sympy.floor(s ** 2 / 8) - 2 * s, False),
                        ((s - 3) * sympy.floor((s - 1) / 2), True)):
        brute = all(e.subs(s, v + 1) >= e.subs(s, v) for v in range(4, 300))
        assert brute == monotone and nondecreasing([e], s, 4) == monotone, e


# -- the command ---------------------------------------------------------------------------------

@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "one_conv.py"
    path.write_text("from torch import nn\n\n\ndef make():\n    return nn.Conv2d(3, 8, 3)\n")
    return f"{path}:make"


def _main(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_max_batch_json_round_trip(capsys, spec):
    budget = CONV_PARAMS + 37 * CONV_PER_SAMPLE + 100
    code, out, err = _main(capsys, "solve", spec, "--input", "N,3,H,W", "--max-batch",
                           "--memory", str(budget), "--at", "H=32,W=32", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["max_batch"] == max_batch(conv(), budget, {"H": 32, "W": 32}).to_dict()
    assert doc["max_batch"]["batch"] == 37 and doc["input"] == ["N", "3", "H", "W"]
    assert doc["max_batch"]["total_bytes"] == conv_total(37)
    code, out, err = _main(capsys, "solve", spec, "--input", "N,3,H,W", "--max-batch",
                           "--memory", str(budget), "--at", "H=32,W=32")
    # as many decimals as it takes to tell the total from the budget (1521152 < 1521252 B)
    assert out.splitlines()[0] == (
        "max batch at 32x32 (inference, float32): 37 (total 1.4507 MiB of 1.4508 MiB; "
        "with 38: 1.4899 MiB)")


def test_cli_max_size_json_and_text(capsys, spec):
    code, out, err = _main(capsys, "solve", spec, "--max-size", "--memory", "1MB",
                           "--batch", "2", "--train", "--optimizer", "sgd", "--json")
    assert code == 0, err
    doc = json.loads(out)["max_size"]
    best = max(s for s in range(3, 1000) if conv_total(2, s, "sgd") <= 10 ** 6)
    assert doc["size"] == best and doc["sizes"] == {"H": best, "W": best}
    assert doc["batch"] == 2 and doc["train"] and doc["optimizer"] == "sgd"
    assert doc["total_bytes"] == conv_total(2, best, "sgd") and doc["memory_bytes"] == 10 ** 6
    assert doc["next_total_bytes"] == conv_total(2, best + 1, "sgd")
    code, out, err = _main(capsys, "solve", spec, "--max-size", "--memory", "1MB")
    first = out.splitlines()[0]
    assert first.startswith("max size at batch 1 (inference, float32): 152x152 (total ")
    assert "with 153x153:" in first and "note: the input's batch 1 was replaced" not in out
    assert format_answer(max_size(conv(), 10 ** 6)).splitlines()[0] == first


def test_cli_errors_are_one_line(capsys, spec):
    for argv, text in [(("--max-batch", "--at", "H=32,W=32"), "--max-batch needs --memory"),
                       (("--memory", "1GiB"), "--memory goes with --max-batch"),
                       (("--max-batch", "--memory", "1GiB", "--batch", "2", "--at", "H=3,W=3"),
                        "--batch goes with --max-size"),
                       (("--max-size", "--memory", "1GiB", "--optimizer", "sgd"),
                        "--optimizer is for training memory"),
                       (("--max-batch", "--memory", "lots", "--at", "H=32,W=32"),
                        "bad memory size"),
                       (("--max-batch", "--memory", "1KiB", "--at", "H=32,W=32"),
                        "even N=1 does not fit"),
                       (("--max-batch", "--memory", "1GiB"), "give H, W")]:
        code, out, err = _main(capsys, "solve", spec, *argv)
        assert code == 2 and err.count("\n") == 1 and text in err, (argv, err)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
