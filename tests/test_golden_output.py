"""Golden text tables and JSON: what `rfgraph analyze` prints, byte for byte.

The files live in tests/golden/ (*.txt: the table, *.json: ``--json``). Regenerate them (after
reading the diff) with ``RFGRAPH_REGEN_GOLDEN=1 python -m pytest tests/test_golden_output.py``.

Byte equality alone would only pin whatever the code printed when the files were written, so the
second half of this module checks the golden content itself against oracles that do not go
through rfgraph: ``p.numel()``, torch's shapes (meta device, every fx node), torch's
FlopCounterMode and hand-computed receptive fields.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sympy
import torch
from oracles import to_meta, torch_macs, torch_node_shapes

import rfgraph
from examples.zoo import ZOO
from rfgraph.models import DEFAULT_INPUT, DEFAULT_MODEL
from rfgraph.report import format_table

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("RFGRAPH_REGEN_GOLDEN") == "1"


# -- the analyses, as the CLI makes them (same model name, same input) --------------------------

@pytest.fixture(scope="module")
def analyses():
    resnet = ZOO["resnet50"]()
    return {
        "seed_tour_symbolic": rfgraph.analyze(DEFAULT_MODEL(), DEFAULT_INPUT, name="seed_tour"),
        "seed_tour_224": rfgraph.analyze(DEFAULT_MODEL(), DEFAULT_INPUT, at="H=224,W=224",
                                         name="seed_tour"),
        "resnet50_symbolic": rfgraph.analyze(resnet, (1, 3, "H", "W"), name="resnet50"),
        "resnet50_224": rfgraph.analyze(resnet, (1, 3, "H", "W"), at="H=224,W=224",
                                        name="resnet50"),
        "seed_tour_costs_224": rfgraph.analyze(DEFAULT_MODEL(), DEFAULT_INPUT, at="H=224,W=224",
                                               name="seed_tour", costs=("memory", "train")),
    }


def table_text(a: rfgraph.Analysis) -> str:
    """What `rfgraph analyze` writes: ``print(format_table(a))``."""
    return format_table(a) + "\n"


def table_100(a: rfgraph.Analysis) -> str:
    """What `rfgraph analyze` writes on a 100-column terminal: formula cells cut to fit."""
    return format_table(a, width=100) + "\n"


def table_costs(a: rfgraph.Analysis) -> str:
    """`rfgraph analyze --costs memory,train`: the byte and backward columns and totals."""
    return format_table(a) + "\n"


def json_text(a: rfgraph.Analysis) -> str:
    """What `rfgraph analyze --json` writes: ``json.dump(..., indent=1)`` and a newline."""
    return json.dumps(a.to_dict(), indent=1) + "\n"


FILES = {  # golden file -> (analysis, serialiser)
    "seed_tour_symbolic.txt": ("seed_tour_symbolic", table_text),
    "seed_tour_symbolic.json": ("seed_tour_symbolic", json_text),
    "seed_tour_224.txt": ("seed_tour_224", table_text),
    "seed_tour_224.json": ("seed_tour_224", json_text),
    "resnet50_symbolic.txt": ("resnet50_symbolic", table_text),
    "resnet50_224.txt": ("resnet50_224", table_text),
    "resnet50_224.json": ("resnet50_224", json_text),
    "seed_tour_symbolic_100cols.txt": ("seed_tour_symbolic", table_100),
    "resnet50_symbolic_100cols.txt": ("resnet50_symbolic", table_100),
    "seed_tour_costs_224.txt": ("seed_tour_costs_224", table_costs),
}


def golden(name: str) -> str:
    path = GOLDEN / name
    assert path.exists(), f"missing {path}: run with RFGRAPH_REGEN_GOLDEN=1"
    return path.read_text(encoding="utf-8")


def assert_same(actual: str, name: str, what: str = "output") -> None:
    expected = golden(name)
    if actual == expected:
        return
    diff = list(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                     f"golden/{name}", what, lineterm="", n=1))
    shown = "\n".join(diff[:40]) + ("\n..." if len(diff) > 40 else "")
    pytest.fail(f"{what} differs from tests/golden/{name}; if the new output is right, "
                f"regenerate with RFGRAPH_REGEN_GOLDEN=1\n{shown}", pytrace=False)


# -- byte equality ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FILES))
def test_golden(name, analyses):
    case, serialise = FILES[name]
    text = serialise(analyses[case])
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        (GOLDEN / name).write_text(text, encoding="utf-8")
    assert_same(text, name, f"{serialise.__name__}({case})")


def test_str_is_the_table(analyses):
    a = analyses["seed_tour_224"]
    assert_same(str(a) + "\n", "seed_tour_224.txt", "str(analysis)")


@pytest.mark.parametrize("argv, name", [
    (["analyze", "--at", "H=224,W=224"], "seed_tour_224.txt"),
    (["analyze", "--at", "H=224,W=224", "--json"], "seed_tour_224.json"),
    (["analyze", "examples.zoo:resnet50", "--at", "H=224,W=224", "--json"], "resnet50_224.json"),
])
def test_cli_prints_golden(argv, name, capsys, monkeypatch):
    from rfgraph.cli import main

    monkeypatch.syspath_prepend(str(ROOT))
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert_same(captured.out, name, "rfgraph " + " ".join(argv))


def test_cli_subprocess_prints_golden():
    """`rfgraph analyze` in a fresh process with another hash seed: no set order, object
    address or import-order state may leak into the output."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    code = "import sys; from rfgraph.cli import main; sys.exit(main())"  # the console script
    proc = subprocess.run([sys.executable, "-c", code, "analyze"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert_same(proc.stdout, "seed_tour_symbolic.txt", "rfgraph analyze (subprocess)")


# -- the golden content against independent oracles ---------------------------------------------

def _resnet50_field() -> tuple[int, int]:
    """Size and jump of the field of ResNet-50's last 3x3 conv output, by the textbook
    recurrence r += (k-1)·j, j *= s over the longest path (7x7/2, 3x3/2 pool, then each
    bottleneck's 3x3, stride 2 in the first block of layers 2-4)."""
    r, j = 1, 1
    for k, s in [(7, 2), (3, 2)]:
        r, j = r + (k - 1) * j, j * s
    for stage, blocks in enumerate([3, 4, 6, 3]):
        for b in range(blocks):
            s = 2 if stage > 0 and b == 0 else 1
            r, j = r + 2 * j, j * s
    return r, j


def _totals_line(text: str, key: str) -> str:
    m = re.search(rf"^{key}: (.*)$", text, flags=re.M)
    assert m, f"no '{key}:' line in the table"
    return m.group(1)


@pytest.fixture(scope="module")
def resnet_model():
    return ZOO["resnet50"]()


@pytest.mark.parametrize("case", ["seed_tour", "resnet50"])
def test_golden_totals_match_torch(case, resnet_model):
    model = resnet_model if case == "resnet50" else DEFAULT_MODEL()
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    out_shape = list(to_meta(model)(torch.zeros(1, 3, 224, 224, device="meta")).shape)
    macs, _ = torch_macs(model, (1, 3, 224, 224))

    d = json.loads(golden(f"{case}_224.json"))
    assert d["totals"]["params"] == params and d["totals"]["params_unreached"] == {}
    assert d["totals"]["buffers"] == buffers
    assert d["totals"]["macs_at"] == macs and d["totals"]["complete"] is True
    assert d["output"]["out_shape_at"] == out_shape
    assert d["at"] == {"H": 224, "W": 224} and d["input"] == ["1", "3", "H", "W"]

    text = golden(f"{case}_224.txt")
    assert _totals_line(text, "params") == f"{params:,}   buffers: {buffers:,}"
    assert _totals_line(text, "output") == "×".join(map(str, out_shape))
    assert _totals_line(text, "MACs").split()[0] == f"{macs:,}"


@pytest.mark.parametrize("case", ["seed_tour", "resnet50"])
def test_golden_node_shapes_match_torch(case, resnet_model):
    """Every node's shape in the golden JSON equals the shape torch gives that fx node."""
    model = resnet_model if case == "resnet50" else DEFAULT_MODEL()
    gm = torch.fx.symbolic_trace(model)
    shapes = torch_node_shapes(gm, (1, 3, 224, 224))
    d = json.loads(golden(f"{case}_224.json"))
    nodes = {n["name"]: n for n in d["nodes"]}
    assert set(nodes) == set(shapes)
    assert {name: tuple(n["out_shape_at"]) for name, n in nodes.items()} == shapes


@pytest.mark.parametrize("case", ["seed_tour", "resnet50"])
def test_golden_formulas_match_torch_elsewhere(case, resnet_model):
    """The symbolic goldens' MAC formula, evaluated at a size no golden file was made at, equals
    torch's FLOP count; at 224 it equals the 224 golden."""
    model = resnet_model if case == "resnet50" else DEFAULT_MODEL()
    formula = sympy.sympify(_totals_line(golden(f"{case}_symbolic.txt"), "MACs"))
    H, W = sympy.symbols("H W")
    assert formula.free_symbols == {H, W}
    for h, w in [(97, 131), (64, 65)]:
        assert int(formula.subs({H: h, W: w})) == torch_macs(model, (1, 3, h, w))[0], (h, w)
    at_224 = json.loads(golden(f"{case}_224.json"))["totals"]["macs_at"]
    assert int(formula.subs({H: 224, W: 224})) == at_224


def test_seed_tour_symbolic_json_evaluates_to_224():
    """Each node's symbolic shape and field in seed_tour_symbolic.json, substituted at 224,
    gives the numbers of seed_tour_224.json."""
    sym = json.loads(golden("seed_tour_symbolic.json"))
    num = json.loads(golden("seed_tour_224.json"))
    assert sym["at"] is None and sym["totals"]["macs_at"] is None
    subs = {sympy.Symbol("H"): 224, sympy.Symbol("W"): 224}
    assert [n["name"] for n in sym["nodes"]] == [n["name"] for n in num["nodes"]]
    for s, n in zip(sym["nodes"] + [sym["output"]], num["nodes"] + [num["output"]]):
        assert [int(sympy.sympify(e).subs(subs)) for e in s["out_shape"]] == n["out_shape_at"]
        assert s["params"] == n["params"]
        assert int(sympy.sympify(s["macs"]).subs(subs)) == n["macs_at"], s["name"]


# Seed tour, longest path up to the cat: (node, kernel, stride, padding, dilation) per axis (H, W).
_SEED_CHAIN = [
    ("stem_0", (3, 3), (1, 1), (1, 1), 1),
    ("pool_ceil", (3, 3), (2, 2), (1, 1), 1),
    ("dilated", (3, 3), (1, 1), (3, 3), 3),
    ("pool_idx", (2, 2), (2, 2), (0, 0), 1),
    ("spatial_sep_0", (1, 3), (1, 1), (0, 1), 1),
    ("spatial_sep_1", (3, 1), (1, 1), (1, 0), 1),
    ("depthwise_sep_0", (3, 3), (1, 1), (1, 1), 1),
    ("depthwise_sep_1", (1, 1), (1, 1), (0, 0), 1),
    ("flattened_0", (1, 1), (1, 1), (0, 0), 1),
    ("flattened_1", (3, 1), (1, 1), (1, 0), 1),
    ("flattened_2", (1, 3), (1, 1), (0, 1), 1),
    ("grouped", (3, 3), (1, 1), (1, 1), 1),
    ("strided", (3, 3), (2, 2), (1, 1), 1),
]


def test_seed_tour_fields_closed_form():
    """Field size, jump and offset of the seed tour's layers, by the textbook recurrence
    (size += (k_eff-1)·jump, offset -= pad·jump, jump *= stride), against the golden JSON."""
    nodes = {n["name"]: n for n in json.loads(golden("seed_tour_224.json"))["nodes"]}
    size, jump, offset = [1, 1], [1, 1], [0, 0]
    for name, k, s, p, d in _SEED_CHAIN:
        for ax in range(2):
            offset[ax] -= p[ax] * jump[ax]
            size[ax] += (d * (k[ax] - 1)) * jump[ax]
            jump[ax] *= s[ax]
        rf = nodes[name]["rf_at"]
        assert (rf["size"], rf["jump"], rf["offset"]) == (
            size, [str(j) for j in jump], offset), name
    # the residual add and the cat take the larger of their branches: the chain's field
    assert nodes["add"]["rf_at"]["size"] == nodes["flattened_2"]["rf_at"]["size"]
    assert nodes["cat"]["rf_at"] == nodes["strided"]["rf_at"] == nodes["avgpool"]["rf_at"]
    # stride-2 transposed conv, kernel 4: each output reads ceil(4/2) = 2 inputs, jump halves
    up = nodes["up"]["rf_at"]
    assert up["size"] == [s + 8 for s in size] and up["jump"] == ["4", "4"]


def test_resnet50_fields_closed_form():
    r, j = _resnet50_field()
    assert (r, j) == (427, 32)
    nodes = {n["name"]: n for n in json.loads(golden("resnet50_224.json"))["nodes"]}
    assert nodes["conv1"]["rf_at"] == {"size": [7, 7], "jump": ["2", "2"], "offset": [-3, -3]}
    last = nodes["layer4_2_relu_2"]["rf_at"]  # symmetric 'same' padding: centred on pixel 0
    assert last == {"size": [r, r], "jump": [str(j)] * 2, "offset": [-(r // 2)] * 2}
    # global pooling: the hull of the 7x7 positions' fields
    assert nodes["fc"]["rf_at"]["size"] == [r + 6 * j] * 2
    assert nodes["fc"]["rf_at"]["offset"] == [-(r // 2)] * 2


def test_resnet50_node_params_match_modules(resnet_model):
    """Per-node parameters in the golden JSON equal the numel of that module's parameters."""
    nodes = json.loads(golden("resnet50_224.json"))["nodes"]
    modules = dict(resnet_model.named_modules())
    layers = [n for n in nodes if n["op"] == "call_module"]
    assert len(layers) > 150
    for n in layers:
        expected = sum(p.numel() for p in modules[n["module"]].parameters())
        assert n["params"] == expected, n["name"]
