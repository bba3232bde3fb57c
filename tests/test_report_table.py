"""The printed table (issue 14): composite formulas in parentheses, a clean header, cells cut
to the terminal width (``--wide``: full), a .pt2 table without its weight inputs."""

from __future__ import annotations

import torch
from torch import nn

import rfgraph
from rfgraph.models import DEFAULT_INPUT, DEFAULT_MODEL
from rfgraph.report import MIN_CELL, fit, format_table, grouped


def test_grouped_parenthesises_top_level_sums_only():
    assert grouped("floor(H/2) + 1") == "(floor(H/2) + 1)"
    assert grouped("H - 2") == "(H - 2)"
    assert grouped("floor((H + 6)/8)") == "floor((H + 6)/8)"  # the sum is inside the call
    assert grouped("-36") == "-36"  # a negative number is not a difference
    assert grouped("16") == "16"
    assert grouped("8*floor((H + 6)/8) + 67") == "(8*floor((H + 6)/8) + 67)"


def test_symbolic_cells_are_unambiguous():
    a = rfgraph.analyze(DEFAULT_MODEL(), DEFAULT_INPUT, name="seed_tour")
    text = format_table(a)
    assert text.splitlines()[0] == "seed_tour  input 1×3×H×W"
    # MaxPool2d(2, ceil_mode=True) on H: ceil((H - 2)/2) + 1 = floor(H/2) + 1 rows
    assert "1×16×(floor(H/2) + 1)×(floor(W/2) + 1)" in text
    assert "1×16×floor(H/2) + 1×" not in text


def test_fit_cuts_formula_cells_to_the_width():
    a = rfgraph.analyze(DEFAULT_MODEL(), DEFAULT_INPUT, name="seed_tour")
    full = format_table(a)
    assert max(len(line) for line in full.splitlines()[:60]) > 200  # wide without a limit
    for width in (180, 220):  # (the non-formula columns and 16-character cells need 173)
        text = format_table(a, width=width)
        table = text.split("\n\n")[1].splitlines()
        assert "…" in text and f"cut to fit {width} columns" in text
        assert max(len(line) for line in table[:-1]) <= width
    # nothing to cut: unchanged
    rows = [["a", "1×3×H×W"]]
    assert fit(rows, ["node", "out shape"], 100) == (rows, False)
    # never below MIN_CELL characters
    long = [["n", "x" * 80]]
    cut, was_cut = fit(long, ["node", "out shape"], 10)
    assert was_cut and len(cut[0][1]) == MIN_CELL and cut[0][1].endswith("…")


def test_cli_wide_and_pipes_print_full_text(capsys):
    from rfgraph.cli import main

    assert main(["analyze", "--wide"]) == 0
    wide = capsys.readouterr().out
    assert main(["analyze"]) == 0  # stdout is not a terminal here: full text too
    assert capsys.readouterr().out == wide
    assert "…" not in wide


def test_cli_cuts_on_a_terminal(capsys, monkeypatch):
    from rfgraph import cli

    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    args = cli._build_parser().parse_args(["analyze"])
    assert cli.table_width(args) == 120
    args = cli._build_parser().parse_args(["analyze", "--wide"])
    assert cli.table_width(args) is None


def test_exported_program_folds_its_weight_inputs(tmp_path):
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Conv2d(8, 8, 3)).eval()
    h, w = torch.export.Dim("H", min=16, max=512), torch.export.Dim("W", min=16, max=512)
    program = torch.export.export(m, (torch.zeros(1, 3, 64, 64),),
                                  dynamic_shapes=({2: h, 3: w},))
    path = tmp_path / "small.pt2"
    torch.export.save(program, path)
    from rfgraph.loader import load_spec

    model, shape, name = load_spec(str(path), False)
    text = format_table(rfgraph.analyze(model, shape, name=name))
    assert "0.weight" not in text and "running_mean" not in text
    # 8·3·3·3 + 8 + 8 + 8 + 8·8·3·3 + 8 = 216 + 8 + 16 + 576 + 8 = 824 params;
    # running mean 8 + running var 8 + num_batches_tracked 1 = 17 buffer elements
    assert sum(p.numel() for p in m.parameters()) == 824
    assert "9 weight and buffer inputs of the exported program, 824 params and 17 buffer" in text
    assert "conv2d_1" in text
