"""The `rfgraph` command: output contracts and one-line errors (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from rfgraph.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_default_model_table(capsys):
    code, out, err = run(capsys, "analyze", "--at", "H=224,W=224")
    assert code == 0, err
    assert "seed_tour" in out and "ChannelShuffle" in out and "ConvTranspose2d" in out
    # total params of the seed tour = sum of numel (independent oracle)
    from rfgraph.models import seed_tour

    total = sum(p.numel() for p in seed_tour().parameters())
    assert f"params: {total:,}" in out


def test_json_matches_schema_and_oracles(capsys):
    code, out, err = run(capsys, "analyze", "--at", "H=97,W=131", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert set(d) >= {"model", "input", "at", "nodes", "output", "totals"}
    assert d["input"] == ["1", "3", "H", "W"] and d["at"] == {"H": 97, "W": 131}
    node_keys = {"name", "op", "target", "module", "inputs", "out_shape", "out_shape_at", "rf",
                 "rf_at", "params", "params_formula", "macs", "macs_at"}
    for node in d["nodes"]:
        assert node_keys <= set(node)
    from rfgraph.models import seed_tour

    model = seed_tour().eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 97, 131))
    assert d["output"]["out_shape_at"] == list(y.shape)
    assert d["totals"]["params"] == sum(p.numel() for p in model.parameters())
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 3, 97, 131))
    assert d["totals"]["macs_at"] == fc.get_total_flops() // 2


def test_symbolic_json_has_formulas(capsys):
    code, out, _ = run(capsys, "analyze", "--json")
    d = json.loads(out)
    assert d["at"] is None and d["totals"]["macs_at"] is None
    assert "H" in d["totals"]["macs"] and d["output"]["out_shape_at"] is None


def test_depth_groups_rows(capsys):
    code, out, _ = run(capsys, "analyze", "--depth", "1", "--at", "H=64,W=64")
    assert code == 0
    assert "module" in out.splitlines()[2] and "stem" in out


def test_file_spec(tmp_path, capsys):
    f = tmp_path / "net.py"
    f.write_text(textwrap.dedent("""
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            def forward(self, x):
                return self.conv(x)
    """))
    code, out, err = run(capsys, "analyze", f"{f}:Net", "--at", "H=9,W=9", "--json")
    assert code == 0, err
    d = json.loads(out)
    # out = floor((9 + 2 - 3)/2) + 1 = 5
    assert d["output"]["out_shape_at"] == [1, 8, 5, 5]
    assert d["totals"]["params"] == 3 * 8 * 9 + 8


def test_module_spec(capsys):
    code, out, err = run(capsys, "analyze", "examples.zoo:alexnet", "--at", "H=224,W=224")
    assert code == 0, err
    assert "61,100,840" in out


@pytest.mark.parametrize("argv, needle", [
    (["analyze", "no.such.module:f"], "cannot import"),
    (["analyze", "examples.zoo:nope"], "no attribute 'nope'"),
    (["analyze", "nofile.py:Net"], "no such file"),
    (["analyze", "--input", "1,3,H,"], "bad input shape"),
    (["analyze", "--input", "1,3,0,4"], "bad input shape"),
    (["analyze", "--at", "H=abc"], "bad size"),
    (["analyze", "--at", "Q=5,H=4,W=4"], "unknown size Q"),
    (["analyze", "--at", "H=1,W=224"], "it needs H >= "),
    (["analyze", "--at", "H=224"], "needs a value for W"),
])
def test_errors_are_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("rfgraph: error: "), err
    assert needle in err, err
    assert "Traceback" not in err


def test_pickle_refused_without_trust(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save(nn.Conv2d(3, 4, 3), path)
    code, _, err = run(capsys, "analyze", str(path))
    assert code == 2 and "refusing to unpickle" in err and "--trust-pickle" in err
    code, out, err = run(capsys, "analyze", str(path), "--trust-pickle", "--at", "H=8,W=8")
    assert code == 0, err
    # 8 - 3 + 1 = 6
    assert "1×4×6×6" in out


def test_state_dict_explained(tmp_path, capsys):
    path = tmp_path / "weights.pth"
    torch.save(nn.Conv2d(3, 4, 3).state_dict(), path)
    code, _, err = run(capsys, "analyze", str(path), "--trust-pickle")
    assert code == 2 and "state_dict" in err and "factory" in err


def test_untraceable_model_one_line(tmp_path, capsys):
    f = tmp_path / "bad.py"
    f.write_text(textwrap.dedent("""
        from torch import nn
        class Bad(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 3, 3)
            def forward(self, x):
                if x.sum() > 0:
                    return self.conv(x)
                return x
    """))
    code, _, err = run(capsys, "analyze", f"{f}:Bad")
    assert code == 2 and "could not trace Bad" in err and err.count("\n") == 1


def test_console_script_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "rfgraph.cli", "analyze", "--at", "H=32,W=32"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "output: 1×10" in proc.stdout


def _torch_smallest(model: nn.Module, w: int = 64) -> int:
    for h in range(1, 200):
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, h, w, device="meta"))
            return h
        except RuntimeError:
            continue
    raise AssertionError("no valid size")


@pytest.mark.parametrize("factory", ["alexnet", "vgg16"])
def test_too_small_names_layer_and_torch_smallest_size(capsys, factory):
    from examples import zoo

    model = getattr(zoo, factory)().to("meta")
    smallest = _torch_smallest(model)  # torch itself: AlexNet 63, VGG-16 32 (DESIGN.md)
    code, _, err = run(capsys, "analyze", f"examples.zoo:{factory}", "--at",
                       f"H={smallest - 1},W=64")
    assert code == 2 and "input too small: node '" in err
    assert f"it needs H >= {smallest}" in err, err
    code, _, err = run(capsys, "analyze", f"examples.zoo:{factory}", "--at", f"H={smallest},W=64")
    assert code == 0, err


@pytest.mark.parametrize("argv", [["analyze", "--depth", "x"], ["nonsense"],
                                  ["analyze", "--render", "out.xyz"]])
def test_usage_errors_are_one_line(argv):
    proc = subprocess.run([sys.executable, "-m", "rfgraph.cli", *argv], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("rfgraph: error: ")
    assert proc.stdout == ""
