"""Typed node state (issue 10): kinds and families are enums, "unknown" is stated by fields
(``has_rule``, ``unknown_reason``, ``unknown_root``, ``numeric_only``), never parsed back from
notes; the node graph is networkx, built lazily; ``import rfgraph`` and ``analyze`` import
neither networkx nor graphviz nor matplotlib."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import rfgraph
from rfgraph.kinds import Family, Kind


class Mystery(nn.Module):
    """An op rfgraph has no rule for (a module it cannot look into: kept as a leaf)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.erfcx(x)


def mystery_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Mystery(), nn.Conv2d(4, 2, 1))


def analyse(at: dict | None = None) -> rfgraph.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = rfgraph.analyze(mystery_model(), (1, 3, "H", "W"))
        return a.evaluate(**at) if at else a


def unknown_root_name(a: rfgraph.Analysis) -> str:
    (name,) = [n.name for n in a.nodes if not n.has_rule]
    return name


def test_kinds_and_families_are_enums_equal_to_their_strings():
    a = analyse()
    for n in a.nodes + [a.output]:
        assert isinstance(n.kind, Kind) and isinstance(n.family, Family), n.name
    first = a.nodes[0]
    assert first.kind is Kind.INPUT and first.kind == "input" and first.family == "input"
    conv = next(n for n in a.nodes if n.module_type == "Conv2d")
    assert conv.kind is Kind.LAYER and conv.family is Family.CONV
    d = a.to_dict()
    assert {n["kind"] for n in d["nodes"]} <= {k.value for k in Kind}
    assert json.loads(json.dumps(d))["nodes"][1]["family"] == "conv"


def test_unknown_is_stated_by_fields():
    a = analyse()
    root = unknown_root_name(a)
    node = a[root]
    assert node.unknown and node.unknown_op and not node.has_rule
    assert node.unknown_root == root and node.unknown_reason.startswith("no rule for ")
    down = a.nodes[-1]  # the conv after the unknown op: has a rule, depends on the unknown
    assert down.module_type == "Conv2d" and down.has_rule and down.unknown
    assert not down.unknown_op and down.unknown_root == root
    assert down.unknown_reason == f"depends on node '{root}', which has no rule"
    for n in a.nodes:  # everything before it is known
        if n.name == root:
            break
        assert n.unknown_reason is None and n.unknown_root is None and n.has_rule
    assert set(a.unknown_ops) == {node.module_type or node.target}
    d = {n["name"]: n for n in a.to_dict()["nodes"]}
    assert d[root]["has_rule"] is False and d[root]["unknown_root"] == root
    assert d[down.name]["unknown_reason"] == down.unknown_reason and "has_rule" not in d[down.name]


def test_numeric_only_at_concrete_sizes():
    """At concrete sizes the op without a rule is measured on meta tensors: numeric only, with
    torch's own output shape; ``numeric`` stays as an alias."""
    a = analyse({"H": 12, "W": 10})
    node = a[unknown_root_name(a)]
    assert node.numeric_only and node.numeric and not node.has_rule
    model = mystery_model()
    want = tuple(model[:3](torch.zeros(1, 3, 12, 10)).shape)  # (1, 4, 10, 8)
    assert tuple(int(a.value_of(s)) for s in node.tensor.shape) == want == (1, 4, 10, 8)


def test_the_drawing_names_the_root_without_reading_notes():
    from rfgraph.render import _unknown_why

    a = analyse()
    root = unknown_root_name(a)
    a[root].notes.clear()  # nothing is parsed back from the notes
    down = a.nodes[-1]
    down.notes.clear()
    assert _unknown_why(down) == f"unknown: depends on '{root}'"
    assert _unknown_why(a[root]).startswith("unknown: no rule for ")


def test_graph_is_networkx_and_cached():
    import networkx as nx

    a = analyse()
    g = a.graph
    assert isinstance(g, nx.DiGraph) and a.graph is g
    assert list(nx.topological_sort(g))[0] == a.nodes[0].name
    last = a.nodes[-1].name
    assert a.ancestors(last) == {n.name for n in a.nodes[:-1]}
    assert g.nodes[last]["info"] is a[last]


def test_import_and_analyze_do_not_import_graph_or_plot_libraries():
    code = ("import sys, torch, rfgraph\n"
            "a = rfgraph.analyze(torch.nn.Conv2d(3, 4, 3), (1, 3, 'H', 'W'))\n"
            "a.evaluate(H=9, W=9).to_dict(); str(a)\n"
            "print(sorted(m for m in ('networkx', 'graphviz', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("word", [*Kind, *Family], ids=lambda w: f"{type(w).__name__}.{w.name}")
def test_every_kind_and_family_is_documented_in_the_json_schema(word):
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "json.md").read_text()
    line = next(ln for ln in text.splitlines() if f'"{type(word).__name__.lower()}":' in ln)
    block = text[text.index(line):][:600]
    assert f" {word.value} " in " ".join(block.replace("|", " ").replace(":", " ").split()) + " "
