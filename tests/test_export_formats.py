"""rfgraph export: LaTeX, the generated Python module, Markdown, CSV, JSON, SymPy srepr, the
DataFrame, --depth and the CLI. Every exported number is compared with the Analysis (and shapes,
params and MACs at concrete sizes with torch: real outputs, p.numel(), FlopCounterMode)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import sympy
import torch
from oracles import torch_macs

import rfgraph
from examples.zoo import GRAPH_ZOO, ZOO
from rfgraph.errors import RfgraphError
from rfgraph.exporters import (
    export,
    load_sympy,
    records,
    rows,
    to_dataframe,
    to_latex_expr,
    to_python_expr,
)
from rfgraph.models import seed_tour
from rfgraph.symbolic import axis_symbol, ceildiv, floordiv

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
RUFF = Path(sys.executable).parent / "ruff"
H, W = axis_symbol("H"), axis_symbol("W")
NS = {"H": H, "W": W}

# seed tour (ceil_mode pooling, a transposed conv), resnet-ish, a transposed-conv
# encoder-decoder, a U-Net (periodic fields), an Inception (ceil_mode pooling)
MODELS = {
    "seed_tour": seed_tour,
    "resnet50": ZOO["resnet50"],
    "encoder_decoder": ZOO["encoder_decoder"],
    "unet_small": GRAPH_ZOO["unet_small"],
    "inception_small": GRAPH_ZOO["inception_small"],
}
_CACHE: dict[str, rfgraph.Analysis] = {}


def analysis(name: str) -> rfgraph.Analysis:
    if name not in _CACHE:
        _CACHE[name] = rfgraph.analyze(MODELS[name](), (1, 3, "H", "W"), name=name)
    return _CACHE[name]


def load_module(src: str, path: Path):
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def size_grid(mins: dict[str, int]) -> list[tuple[int, int]]:
    """20+ sizes: the smallest valid, just above it, odd, prime, even, non-square."""
    h0, w0 = mins["H"], mins["W"]
    sizes = [(h0, w0), (h0 + 1, w0), (h0, w0 + 1), (h0 + 2, w0 + 3)]
    for v in (31, 32, 33, 37, 41, 47, 53, 64, 65, 67, 96, 97, 101, 127, 128, 131):
        sizes.append((max(v, h0), max(v, w0)))
    sizes += [(max(61, h0), max(97, w0)), (max(224, h0), max(223, w0)), (113, 89)]
    return list(dict.fromkeys(sizes))


# -- the Python module --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_python_module_matches_analysis(name, tmp_path):
    a = analysis(name)
    src = export(a, "python")
    assert "import rfgraph" not in src and "sympy" not in src.split('"""', 2)[2]
    m = load_module(src, tmp_path / f"{name}_formulas.py")
    assert m.NODES == tuple(n.name for n in a.nodes)
    assert m.params() == a.total_params
    assert m.COMPLETE and "Not exported" not in src
    mins = m.min_input()
    grid = size_grid(mins)
    assert len(grid) >= 20
    for h, w in grid:
        b = a.evaluate(H=h, W=w)
        assert m.output_shape(h, w) == tuple(b.int_of(s) for s in b.output.tensor.shape)
        assert m.macs(h, w) == b.total_macs_at
        assert isinstance(m.macs(h, w), int)
        for n in b.nodes:
            assert m.node_params(n.name) == n.params
            assert m.node_macs(n.name, h, w) == b.int_of(n.macs), n.name
            if n.tensor is not None:
                assert m.node_shape(n.name, h, w) == tuple(b.int_of(s) for s in n.tensor.shape)
            fat = b.field_at(n)
            got = m.receptive_field(n.name, h, w)
            if fat is None:
                assert got is None, n.name
                continue
            assert got is not None, n.name
            assert [(f.size, Fraction(str(f.jump)), f.offset, f.min_size) for f in fat] == \
                [(g.size, g.jump, g.offset, g.min_size) for g in got], (n.name, h, w)
            assert all(type(g.size) is int and type(g.offset) is int for g in got)
    # the smallest valid input: valid, and one less on either axis is refused by both
    h0, w0 = mins["H"], mins["W"]
    assert m.valid(h0, w0)
    a.evaluate(H=h0, W=w0)
    for h, w in ((h0 - 1, w0), (h0, w0 - 1)):
        if min(h, w) >= 1:
            assert not m.valid(h, w)
            with pytest.raises(rfgraph.InputTooSmall):
                a.evaluate(H=h, W=w)
            with pytest.raises(ValueError, match="input too small"):
                m.output_shape(h, w)


@pytest.mark.parametrize("name", ["seed_tour", "resnet50", "encoder_decoder"])
def test_python_module_against_torch(name, tmp_path):
    a = analysis(name)
    m = load_module(export(a, "python"), tmp_path / f"{name}_t.py")
    model = MODELS[name]().eval()
    assert m.params() == sum(p.numel() for p in model.parameters())
    mins = m.min_input()
    for h, w in ((max(mins["H"], 61), max(mins["W"], 97)), (mins["H"], mins["W"])):
        with torch.no_grad():
            out = model(torch.zeros(1, 3, h, w))
        out = out[0] if isinstance(out, (tuple, list)) else out
        assert m.output_shape(h, w) == tuple(out.shape)
        assert m.macs(h, w) == torch_macs(model, (1, 3, h, w))[0]


def test_python_module_is_formatted_and_standalone(tmp_path):
    path = tmp_path / "seed_formulas.py"
    path.write_text(export(analysis("seed_tour"), "python"))
    if RUFF.exists():
        for cmd in (["format", "--isolated", "--check"], ["check", "--isolated"]):
            r = subprocess.run([str(RUFF), *cmd, str(path)], capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr
    code = ("import sys, importlib.util as u; s = u.spec_from_file_location('m', sys.argv[1]); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); "
            "assert 'sympy' not in sys.modules and 'rfgraph' not in sys.modules and "
            "'torch' not in sys.modules; print(m.output_shape(224, 224), m.macs(224, 224))")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    b = analysis("seed_tour").evaluate(H=224, W=224)
    assert r.stdout.split() == ["(1,", "10)", str(b.total_macs_at)]


def test_python_fields_depend_on_position(tmp_path):
    """A transposed conv whose kernel is not a multiple of its stride: the field size depends on
    the output position; size/min_size are field_at's largest/smallest."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ConvTranspose2d(2, 2, 3, 2))
    a = rfgraph.analyze(model, (1, 1, "H", "W"))
    m = load_module(export(a, "python"), tmp_path / "tconv.py")
    name = a.nodes[-1].name
    assert a.field(name)[0].period == 2
    for h in range(3, 15):
        fat = a.evaluate(H=h, W=h + 2).field_at(name)
        got = m.receptive_field(name, h, h + 2)
        assert [(f.size, f.min_size, f.offset) for f in fat] == \
            [(g.size, g.min_size, g.offset) for g in got]
        assert got[0].size > got[0].min_size


@pytest.mark.parametrize("expr", [
    floordiv(H + 6, 8), ceildiv(H, 32), 3 * ceildiv(H, 32) - floordiv(W, 2) + 1,
    -floordiv(H, 3), sympy.Rational(1, 2) * H * W, sympy.Rational(3, 4), H ** 2 - 2 * H,
    sympy.Min(H, floordiv(W, 2)), sympy.Max(H - 3, 2), sympy.Mod(H, 3),
    sympy.Piecewise((H, H > W), (W, True)), sympy.floor((H * W) / 7),
    ceildiv(-H + 2 * W, 5), H / W, sympy.ceiling(sympy.Rational(5, 3) * H),
])
def test_python_expressions_exact(expr):
    code = to_python_expr(expr)
    assert "floor" not in code and "ceil" not in code and "math" not in code
    fn = eval(f"lambda H, W: {code}", {"Fraction": Fraction})
    for h in range(1, 30):
        for w in (1, 2, 5, 17, 64):
            want = sympy.sympify(expr).subs({H: h, W: w})
            got = fn(h, w)
            assert Fraction(got) == Fraction(int(want.p), int(want.q)), (code, h, w)
            assert not isinstance(got, float)


# -- LaTeX --------------------------------------------------------------------------------------
def _balanced(tex: str) -> bool:
    depth = 0
    for i, ch in enumerate(tex):
        if ch in "{}" and i and tex[i - 1] == "\\":
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


@pytest.mark.parametrize("at", [None, {"H": 224, "W": 224}])
def test_latex_document(at, tmp_path):
    a = analysis("resnet50")
    a = a.evaluate(**at) if at else a
    tex = export(a, "latex")
    assert r"\left\lceil \frac{H}{32} \right\rceil" in tex
    assert "ceiling" not in tex and "floor(" not in tex
    assert _balanced(tex)
    assert tex.count(r"\begin{longtable}") == tex.count(r"\end{longtable}") == 1
    assert re.findall(r"\\begin\{(\w+)\}", tex) == re.findall(r"\\end\{(\w+)\}", tex)[::-1] or \
        sorted(re.findall(r"\\begin\{(\w+)\}", tex)) == sorted(re.findall(r"\\end\{(\w+)\}", tex))
    body = tex.split(r"\endfoot", 1)[1].split(r"\end{longtable}")[0]
    assert body.count(r"\\") == len(a.nodes)  # one row per node
    assert "layer1_0_conv1" not in tex and r"layer1\_" in tex  # underscores escaped
    if at:
        assert f"{a.total_macs_at:,}".replace(",", "{,}") in tex
    if shutil.which("pdflatex"):
        (tmp_path / "t.tex").write_text(tex)
        r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:]


def test_latex_escapes_and_brackets():
    assert to_latex_expr(floordiv(H + 6, 8)) == r"\left\lfloor \frac{H + 6}{8} \right\rfloor"
    assert to_latex_expr(ceildiv(W, 2)) == r"\left\lceil \frac{W}{2} \right\rceil"
    assert to_latex_expr(1234567) == "1{,}234{,}567"
    from rfgraph.exporters import tex_escape

    assert tex_escape("a_b%c&d#e$f") == r"a\_b\%c\&d\#e\$f"


# -- Markdown, CSV, DataFrame -------------------------------------------------------------------
def test_markdown_table():
    b = analysis("seed_tour").evaluate(H=97, W=131)
    md = export(b, "markdown")
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(table) == 2 + len(b.nodes)
    assert len({len(re.split(r"(?<!\\)\|", ln)) for ln in table}) == 1  # same cell count
    assert "`(1, 16, floor(H/2) + 1, floor(W/2) + 1)` | (1, 16, 49, 66)" in md
    assert f"{b.total_macs_at:,}" in md


@pytest.mark.parametrize("name", ["seed_tour", "encoder_decoder"])
def test_csv_values_match_analysis(name):
    b = analysis(name).evaluate(H=61, W=97)
    AT = {H: 61, W: 97}
    table = list(csv.DictReader(io.StringIO(export(b, "csv"))))
    assert [r["name"] for r in table] == [n.name for n in b.nodes]
    for r, n in zip(table, b.nodes):
        assert int(r["params"]) == n.params
        assert int(r["macs_at"]) == b.int_of(n.macs)
        assert sympy.sympify(r["macs"], locals=NS).subs(AT) == b.int_of(n.macs)
        fat = b.field_at(n)
        for i, ax in enumerate(("H", "W")):
            if fat is None:
                assert r[f"rf_size_{ax}_at"] == ""
                continue
            assert int(r[f"rf_size_{ax}_at"]) == fat[i].size
            assert int(r[f"rf_min_size_{ax}_at"]) == fat[i].min_size
            assert int(r[f"rf_offset_{ax}_at"]) == fat[i].offset
            assert sympy.Rational(r[f"rf_jump_{ax}_at"]) == fat[i].jump
            assert sympy.sympify(r[f"rf_offset_{ax}"], locals=NS).subs(AT) == fat[i].offset


def test_dataframe():
    pd = pytest.importorskip("pandas")
    b = analysis("seed_tour").evaluate(H=64, W=64)
    df = b_df = to_dataframe(b)
    assert isinstance(df, pd.DataFrame) and len(b_df) == len(b.nodes)
    assert df["params"].sum() == b.total_params
    assert df["macs_at"].sum() == b.total_macs_at
    assert list(df.columns) == list(records(b)[0])


def test_dataframe_without_pandas(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *args):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(RfgraphError, match="pip install pandas") as info:
        to_dataframe(analysis("seed_tour"))
    assert "\n" not in str(info.value)


# -- JSON and SymPy -----------------------------------------------------------------------------
def test_json_formulas_and_values_side_by_side():
    a = analysis("seed_tour")
    b = a.evaluate(H=97, W=131)
    data = json.loads(export(b, "json"))
    want = json.loads(json.dumps(b.to_dict()))
    symbolic = a.to_dict()
    for got, val, sym in zip(data["nodes"], want["nodes"], symbolic["nodes"]):
        for key in ("out_shape", "rf", "macs"):
            assert got[key] == sym[key]  # the formula, never the value
        for key in ("out_shape_at", "rf_at", "macs_at", "params", "name"):
            assert got[key] == val[key]
    assert data["totals"] == want["totals"] and data["at"] == {"H": 97, "W": 131}
    node = next(n for n in data["nodes"] if n["name"] == "pool_ceil")
    assert node["out_shape"][2] == "floor(H/2) + 1" and node["out_shape_at"][2] == 49
    assert json.loads(export(a, "json")) == json.loads(json.dumps(symbolic))


@pytest.mark.parametrize("name", ["seed_tour", "resnet50", "unet_small"])
def test_sympy_round_trip(name):
    a = analysis(name)
    text = export(a, "sympy")
    back = load_sympy(text)
    assert back["totals"]["macs"] == a.total_macs
    assert sympy.sympify(json.loads(text)["totals"]["macs"]) == a.total_macs
    for d, n in zip(back["nodes"], a.nodes):
        if n.tensor is not None:
            assert tuple(d["out_shape"]) == tuple(n.tensor.shape)
        assert d["macs"] == n.macs and d["params"] == n.params
        fields = a.field(n)
        if fields is None:
            assert d["rf"] is None
        else:
            assert d["rf"]["size"] == [r.size for r in fields]
            assert d["rf"]["offset"] == [r.offset for r in fields]
            assert d["rf"]["jump"] == [r.jump for r in fields]
    # symbols keep their assumptions (positive integers)
    sym = back["input"][2]
    assert sym == H and sym.is_positive and sym.is_integer


def test_sympy_values_beside_formulas():
    b = analysis("seed_tour").evaluate(H=64, W=65)
    data = json.loads(export(b, "sympy"))
    d = next(x for x in data["nodes"] if x["name"] == "up")
    assert "Symbol('H'" in d["out_shape"][2] and d["out_shape_at"][2:] == [16, 16]


# -- depth ----------------------------------------------------------------------------------------
def test_depth_groups_as_analyze(tmp_path):
    b = analysis("resnet50").evaluate(H=97, W=131)
    groups = b.by_module(1)
    rs = rows(b, 1)
    assert [r.name for r in rs] == [g["module"] for g in groups]
    table = list(csv.DictReader(io.StringIO(export(b, "csv", depth=1))))
    assert [int(r["macs_at"]) for r in table] == [b.int_of(g["macs"]) for g in groups]
    assert sum(int(r["params"]) for r in table) == b.total_params
    m = load_module(export(analysis("resnet50"), "python", depth=1), tmp_path / "r50d1.py")
    assert m.NODES == tuple(g["module"] for g in groups)
    assert sum(m.node_macs(n, 97, 131) for n in m.NODES) == b.total_macs_at
    data = json.loads(export(b, "json", depth=2))
    assert [r["name"] for r in data["by_module"]] == [g["module"] for g in b.by_module(2)]
    assert export(b, "markdown", depth=0).count("\n| (top) |") == 1


# -- errors and the CLI ---------------------------------------------------------------------------
def test_bad_format_and_depth():
    with pytest.raises(RfgraphError, match="unknown export format"):
        export(analysis("seed_tour"), "docx")
    with pytest.raises(RfgraphError, match="depth"):
        export(analysis("seed_tour"), "csv", depth=-1)


def _cli(argv):
    from rfgraph import cli, cli_export

    parser = cli._Parser(prog="rfgraph")
    sub = parser.add_subparsers(dest="command", parser_class=cli._Parser)
    cli_export.add_parser(sub)
    return cli_export.run(parser.parse_args(["export", *argv]))


def test_cli_export(tmp_path, capsys):
    assert _cli(["--at", "H=64,W=64", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("name,op,module,out_shape,out_shape_at")
    target = tmp_path / "seed.py"
    assert _cli(["-o", str(target)]) == 0  # format from the suffix
    assert "wrote" in capsys.readouterr().err
    m = load_module(target.read_text(), target)
    assert m.output_shape(64, 64) == (1, 10)
    assert _cli(["examples.zoo:resnet50", "--depth", "1", "-f", "latex"]) == 0
    assert r"\begin{longtable}" in capsys.readouterr().out
    with pytest.raises(RfgraphError, match="depth"):
        _cli(["--depth", "-2"])
