"""Bad input never gives a traceback or a wrong answer: unbatched inputs to window ops, malformed
--input, corrupt .pt2 files, .pt2 size ranges, pickles of classes next to the user, rfgraph's own
bugs (exit 3, --traceback), --train."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfgraph
from rfgraph.api import parse_at, parse_input
from rfgraph.cli import main, one_line
from rfgraph.errors import InternalError, RfgraphError, SizeOutOfRange
from rfgraph.loader import check_size_ranges, load_model

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, prefix: str = "rfgraph: error: ") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), err
    assert "Traceback" not in err and "IndexError" not in err, err
    return lines[0]


# -- 1. the input's rank against the first window layer -------------------------------------------
class One(nn.Module):
    """One layer called ``conv1`` (node 'conv1', module 'conv1')."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.conv1 = layer

    def forward(self, x):
        return self.conv1(x)


class FunctionalPool(nn.Module):
    def forward(self, x):
        return F.max_pool2d(x, 2)


# in_channels = 1 so that the channel check (x.shape[-nd-1] == 1) passes and the rank decides
RANK_CASES = [
    (nn.Conv2d(1, 4, 3), "1,1,H", "Conv2d needs a 4-D input (N, C, H, W); the input has 3 dims "
                                  "(1×1×H)"),
    (nn.Conv1d(1, 4, 3), "1,L", "Conv1d needs a 3-D input (N, C, L); the input has 2 dims (1×L)"),
    (nn.Conv3d(1, 4, 3), "1,1,H,W", "Conv3d needs a 5-D input (N, C, D, H, W); the input has 4 "
                                    "dims (1×1×H×W)"),
    (nn.ConvTranspose2d(1, 4, 3), "1,1,H",
     "ConvTranspose2d needs a 4-D input (N, C, H, W); the input has 3 dims (1×1×H)"),
    (nn.MaxPool2d(2), "3,H,W", "MaxPool2d needs a 4-D input (N, C, H, W); the input has 3 dims "
                               "(3×H×W)"),
    (nn.AvgPool2d(2), "3,H,W", "AvgPool2d needs a 4-D input (N, C, H, W); the input has 3 dims "
                               "(3×H×W)"),
    (nn.AvgPool3d(2), "1,3,H,W", "AvgPool3d needs a 5-D input (N, C, D, H, W); the input has 4 "
                                 "dims (1×3×H×W)"),
    (nn.AdaptiveAvgPool2d(4), "3,H,W",
     "AdaptiveAvgPool2d needs a 4-D input (N, C, H, W); the input has 3 dims (3×H×W)"),
    (nn.AdaptiveMaxPool1d(4), "3,L",
     "AdaptiveMaxPool1d needs a 3-D input (N, C, L); the input has 2 dims (3×L)"),
    (nn.MaxPool2d(2), "1,3,4,H,W",
     "MaxPool2d needs a 4-D input (N, C, H, W); the input has 5 dims (1×3×4×H×W)"),
]


@pytest.mark.parametrize("layer, shape, message", RANK_CASES,
                         ids=[f"{type(c[0]).__name__}-{c[1]}" for c in RANK_CASES])
def test_window_layer_refuses_wrong_rank(layer, shape, message):
    with pytest.raises(RfgraphError) as info:
        rfgraph.analyze(One(layer), shape)
    name = type(layer).__name__
    assert str(info.value) == f"node 'conv1' [{name}] (module 'conv1'): {message}"


def test_functional_pool_refuses_unbatched_input():
    with pytest.raises(RfgraphError, match=r"max_pool2d needs a 4-D input \(N, C, H, W\); the "
                                           r"input has 3 dims \(3×H×W\)"):
        rfgraph.analyze(FunctionalPool(), "3,H,W")


def test_batched_input_still_analysed():
    a = rfgraph.analyze(One(nn.Conv2d(1, 4, 3)), "1,1,H,W").evaluate(H=10, W=12)
    assert a.to_dict()["output"]["out_shape_at"] == [1, 4, 8, 10]


def test_unbatched_input_to_conv_with_three_channels(capsys, tmp_path):
    """The brief's example: `--input 1,3,H` on a 2-D net names the rank, not the channels."""
    path = tmp_path / "three.py"
    path.write_text("from torch import nn\n\nclass Net(nn.Module):\n"
                    "    def __init__(self):\n        super().__init__()\n"
                    "        self.conv1 = nn.Conv2d(3, 8, 7)\n\n"
                    "    def forward(self, x):\n        return self.conv1(x)\n")
    code, out, err = run(capsys, "analyze", f"{path}:Net", "--input", "1,3,H")
    assert code == 2
    assert assert_one_error_line(err) == (
        "rfgraph: error: node 'conv1' [Conv2d] (module 'conv1'): Conv2d needs a 4-D input "
        "(N, C, H, W); the input has 3 dims (1×3×H)")


# -- 2. malformed --input ------------------------------------------------------------------------
@pytest.mark.parametrize("shape, fragment", [
    ("abc", "an input needs at least 2 dims (N, C, ...)"),
    ("H", "an input needs at least 2 dims (N, C, ...)"),
    ("1,3,H,W,", "an empty dimension"),
    (",1,3,H,W", "an empty dimension"),
    ("1,0,H,W", "dimension must be positive, got 0"),
    ("1,-2,H,W", "dimension must be positive, got -2"),
    ("1.5,3,H,W", "bad dimension '1.5'"),
    ("1,3,H+1,W", "bad dimension 'H+1'"),
])
def test_bad_input_shape_is_one_line(capsys, shape, fragment):
    code, out, err = run(capsys, "analyze", f"--input={shape}")
    assert code == 2 and out == ""
    line = assert_one_error_line(err)
    assert line.startswith(f"rfgraph: error: bad input shape {shape!r}: ")
    assert fragment in line


def test_two_dim_input_to_a_conv_net_names_the_rank(capsys):
    code, out, err = run(capsys, "analyze", "--input", "1,3")
    assert code == 2
    line = assert_one_error_line(err)
    assert line.endswith("Conv2d needs a 4-D input (N, C, H, W); the input has 2 dims (1×3)")
    assert line.startswith("rfgraph: error: node '")


def test_parse_input_api():
    assert parse_input("1, 3, H, W") == parse_input((1, 3, "H", "W"))
    assert len(parse_input("1,784")) == 2  # flat features: (N, F)
    for bad in ("abc", (1,), (), "1,,3", 5, (1, 0), (1, 2.5), (1, True)):
        with pytest.raises(RfgraphError, match="^bad input shape"):
            parse_input(bad)


def test_parse_at_api():
    assert parse_at(" H = 224 , W=7") == {"H": 224, "W": 7}
    assert parse_at({"H": torch.tensor(3).item()}) == {"H": 3}
    for bad in ("H=224,H=225", "H=", "=3", "H=2.5", "H=224,", {"H": 2.5}, {"H": True}):
        with pytest.raises(RfgraphError, match="^bad size"):
            parse_at(bad)


# -- 3./5. .pt2 files: corrupt, truncated, exported for a size range ------------------------------
class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))


@pytest.fixture(scope="module")
def ranged_pt2(tmp_path_factory) -> Path:
    """A .pt2 exported for 64 <= H <= 2048 and 64 <= W (unbounded)."""
    h = torch.export.Dim("H", min=64, max=2048)
    w = torch.export.Dim("W", min=64)
    program = torch.export.export(Small().eval(), (torch.zeros(1, 3, 96, 80),),
                                  dynamic_shapes=({2: h, 3: w},))
    path = tmp_path_factory.mktemp("pt2") / "small.pt2"
    torch.export.save(program, path)
    return path


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def torch_log():
    """Every record torch's export logger emits (its own handler writes to the stderr of the
    process, which pytest's capture cannot always see)."""
    logger = logging.getLogger("torch.export")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)
    assert logger.level == level  # rfgraph restores the levels it raised


def test_garbage_pt2_is_one_line_and_silent(tmp_path, capfd, torch_log):
    path = tmp_path / "garbage.pt2"
    path.write_bytes(bytes(range(256)) * 7)
    code = main(["analyze", str(path)])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    line = assert_one_error_line(err)
    assert "cannot load" in line and "garbage.pt2" in line
    assert torch_log == []


def test_garbage_pt2_stderr_of_the_command(tmp_path):
    """The real command: torch's log handler would write its traceback to this stderr."""
    path = tmp_path / "garbage.pt2"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 3)
    proc = subprocess.run([sys.executable, "-m", "rfgraph.cli", "analyze", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_error_line(proc.stderr)


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_pt2_is_one_line_and_silent(ranged_pt2, tmp_path, capfd, torch_log, keep):
    data = ranged_pt2.read_bytes()
    path = tmp_path / "truncated.pt2"
    path.write_bytes(data[: int(len(data) * keep)])
    code = main(["analyze", str(path), "--at", "H=64,W=64"])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    line = assert_one_error_line(err)
    assert "cannot load" in line and "truncated.pt2" in line
    assert "warnings above" not in line  # torch points at log lines rfgraph silenced
    assert torch_log == []


def test_corrupt_pt2_inside_the_zip(ranged_pt2, tmp_path, capfd, torch_log):
    """A valid zip whose stored graph (models/*.json) is garbage."""
    path = tmp_path / "corrupt.pt2"
    with zipfile.ZipFile(ranged_pt2) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("models/model.json"):
                data = data[: len(data) // 2] + b"\x00garbage"
            dst.writestr(item, data)
    code = main(["analyze", str(path)])
    out, err = capfd.readouterr()
    assert code == 2
    line = assert_one_error_line(err)
    assert "corrupt.pt2" in line and "(corrupt or truncated file?)" in line
    assert "warnings above" not in line
    assert torch_log == []


def test_pt2_size_ranges_are_stored(ranged_pt2):
    gm = load_model(str(ranged_pt2))
    assert gm.meta["rfgraph_input_shape"] == [1, 3, "H", "W"]
    assert gm.meta["rfgraph_size_ranges"] == {"H": (64, 2048), "W": (64, None)}
    check_size_ranges(gm, {"H": 64, "W": 10_000})
    with pytest.raises(SizeOutOfRange, match=r"^W=63 is outside the range the \.pt2 was "
                                             r"exported for \(W >= 64\)$"):
        check_size_ranges(gm, {"H": 64, "W": 63})
    check_size_ranges(nn.Conv2d(3, 3, 3), {"H": 1})  # no stored ranges: nothing to check


@pytest.mark.parametrize("command", ["analyze", "verify", "erf"])
@pytest.mark.parametrize("h", [40, 4096])
def test_pt2_size_outside_exported_range(ranged_pt2, capsys, command, h):
    code, out, err = run(capsys, command, str(ranged_pt2), "--at", f"H={h},W=64")
    assert code == 2 and out == ""
    assert assert_one_error_line(err) == (
        f"rfgraph: error: H={h} is outside the range the .pt2 was exported for "
        "(64 <= H <= 2048)")


def test_pt2_size_inside_exported_range(ranged_pt2, capsys):
    code, out, err = run(capsys, "analyze", str(ranged_pt2), "--at", "H=2048,W=64", "--json")
    assert code == 0, err
    assert json.loads(out)["output"]["out_shape_at"] == [1, 4, 1023, 31]


# -- 4. --trust-pickle finds classes in the current directory --------------------------------------
def test_trust_pickle_imports_from_cwd(tmp_path, monkeypatch, capsys):
    module = f"mynet_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        from torch import nn

        class MyNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 5, 3)

            def forward(self, x):
                return self.conv(x)
        """))
    subprocess.run([sys.executable, "-c",
                    f"import torch, {module}; torch.save({module}.MyNet(), 'm.pt')"],
                   cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        code, out, err = run(capsys, "analyze", "m.pt", "--trust-pickle", "--at", "H=10,W=9")
        assert code == 0, err
        assert "1×5×8×7" in out and "params: 140" in out  # 5*3*9 + 5
        assert str(tmp_path) not in sys.path  # added during the load only
    finally:
        sys.modules.pop(module, None)


# -- 6. rfgraph's own bugs: InternalError, exit 3, --traceback -------------------------------------
BROKEN = '''
import rfgraph
from torch import nn


class Wobble(nn.Module):
    def forward(self, x):
        return x


def _broken_rule(call):
    raise TypeError(f"cannot handle {_broken_rule!r}")  # a bug, with a memory address


rfgraph.register_rule(Wobble, _broken_rule)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.wobble = Wobble()

    def forward(self, x):
        return self.wobble(self.conv(x))
'''


@pytest.fixture
def broken_spec(tmp_path) -> str:
    path = tmp_path / "broken.py"
    path.write_text(BROKEN)
    return f"{path}:Net"


def test_rule_bug_is_internal_error_naming_the_node(tmp_path):
    path = tmp_path / "broken_api.py"
    path.write_text(BROKEN)
    model = load_model(f"{path}:Net")
    with pytest.raises(InternalError) as info:
        rfgraph.analyze(model, (1, 3, "H", "W"))
    exc = info.value
    assert not isinstance(exc, (RfgraphError, ValueError))
    assert str(exc).startswith("node 'wobble' [Wobble] (module 'wobble'): internal error: "
                               "TypeError: cannot handle <function _broken_rule at 0x")
    assert isinstance(exc.__cause__, TypeError)  # chained: the rule's own traceback is kept


def test_cli_internal_error_is_one_line_exit_3(broken_spec, capsys, monkeypatch):
    monkeypatch.delenv("RFGRAPH_TRACEBACK", raising=False)
    code, out, err = run(capsys, "analyze", broken_spec)
    assert code == 3
    line = assert_one_error_line(err, "rfgraph: internal error: ")
    assert line == ("rfgraph: internal error: node 'wobble' [Wobble] (module 'wobble'): "
                    "TypeError: cannot handle <function _broken_rule> (please report this with "
                    "the model; run with --traceback for details)")
    assert not re.search(r"0x[0-9a-f]", err)


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_traceback_flag_prints_the_traceback(broken_spec, capsys, monkeypatch, where):
    monkeypatch.delenv("RFGRAPH_TRACEBACK", raising=False)
    argv = ["analyze", broken_spec]
    if where == "before":
        argv.insert(0, "--traceback")
    elif where == "after":
        argv.append("--traceback")
    else:
        monkeypatch.setenv("RFGRAPH_TRACEBACK", "1")
    code, out, err = run(capsys, *argv)
    assert code == 3
    assert err.count("Traceback (most recent call last)") == 2  # the rule's and rfgraph's
    assert "in _broken_rule" in err and "InternalError: node 'wobble'" in err
    assert "direct cause" in err


def test_other_internal_errors_exit_3(capsys, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyError("<object object at 0xdeadbeef> went missing\nsecond line")

    monkeypatch.setattr("rfgraph.api.analyze", crash)
    code, out, err = run(capsys, "analyze")
    assert code == 3
    assert assert_one_error_line(err, "rfgraph: internal error: ") == (
        "rfgraph: internal error: KeyError: '<object object> went missing\\nsecond line' "
        "(please report this with the model; run with --traceback for details)")


def test_user_errors_strip_addresses(capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise RfgraphError("cannot use <function f at 0x7f3a2b1c> here")

    monkeypatch.setattr("rfgraph.api.analyze", refuse)
    code, out, err = run(capsys, "analyze")
    assert code == 2
    assert assert_one_error_line(err) == "rfgraph: error: cannot use <function f> here"


def test_one_line_helper():
    assert one_line("\n  first <x at 0xABCDEF12>\nsecond") == "first <x>"
    assert one_line("") == ""


def test_traceback_flag_on_every_subcommand():
    from rfgraph.cli import _build_parser

    parser = _build_parser()
    for command in ("analyze", "erf", "verify"):
        assert parser.parse_args([command, "--traceback"]).traceback is True
        assert parser.parse_args(["--traceback", command]).traceback is True
        assert parser.parse_args([command]).traceback is False


# -- 7. --train -----------------------------------------------------------------------------------
MODE_NET = '''
from torch import nn


class Net(nn.Module):
    """Pools only in training mode: the traced graph, and so the output, shows the mode."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = self.conv(x)
        return self.pool(x) if self.training else x
'''


@pytest.mark.parametrize("train", [False, True])
def test_train_flag_analyses_in_training_mode(tmp_path, capsys, train):
    path = tmp_path / "modenet.py"
    path.write_text(MODE_NET)
    argv = ["analyze", f"{path}:Net", "--at", "H=12,W=10", "--json"] + (["--train"] * train)
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    expected = [1, 4, 5, 4] if train else [1, 4, 10, 8]
    assert json.loads(out)["output"]["out_shape_at"] == expected


def test_train_flag_on_erf(tmp_path, capsys):
    path = tmp_path / "modenet_erf.py"
    path.write_text(MODE_NET)
    code, out, err = run(capsys, "erf", f"{path}:Net", "--at", "H=12,W=12", "--train")
    assert code == 0, err
    assert out.strip()
