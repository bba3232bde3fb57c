"""docs/json.md is the contract of ``Analysis.to_dict()`` (``--json``): its key tables are read
here and compared with what ``to_dict()`` emits.

The convention (stated in docs/json.md, "Reading the tables"): each table follows a line
``<!-- keys: SECTION -->`` (SECTION: top, totals, node, rf, rf_at); its first column is the key in
backticks, its third when the key is present: ``always``, or conditions among ``costs``,
``train``, ``at`` joined with ``+``, plus ``optional`` for keys that may be absent even then. Cost
keys (``costs``/``train``) are on every entry of ``nodes``, never on ``output``.

Every key emitted must be documented for that situation, and every documented key that is not
optional must be emitted, for a plain symbolic analysis, an evaluated one and analyses with
``costs=("memory",)`` and ``costs=("memory", "train")``, on the seed tour and on a model with
ops that have no rule (numeric nodes, unknown fields, cost notes)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import rfgraph
from rfgraph.models import DEFAULT_INPUT, DEFAULT_MODEL

DOC = Path(__file__).resolve().parent.parent / "docs" / "json.md"
SECTIONS = ("top", "totals", "node", "rf", "rf_at")
CONDITIONS = ("costs", "train", "at")

#: section -> key -> (conditions that must all hold, optional)
Schema = dict[str, dict[str, tuple[frozenset[str], bool]]]


def _cells(row: str) -> list[str]:
    """``| `a` | x \\| y | always | ... |`` -> the cells (``\\|`` is a pipe inside a cell)."""
    inner = row.strip()[1:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", inner)]


def parse_presence(text: str, where: str) -> tuple[frozenset[str], bool]:
    tokens = [t.strip() for t in re.split(r"[,+]", text) if t.strip()]
    bad = [t for t in tokens if t not in ("always", "optional", *CONDITIONS)]
    assert tokens and not bad, f"docs/json.md {where}: bad 'present' cell {text!r}"
    assert "always" not in tokens or tokens == ["always"], \
        f"docs/json.md {where}: 'always' cannot be combined ({text!r})"
    return frozenset(t for t in tokens if t in CONDITIONS), "optional" in tokens


def parse_schema(text: str) -> Schema:
    lines = text.splitlines()
    schema: Schema = {}
    for i, line in enumerate(lines):
        m = re.fullmatch(r"<!-- keys: (\w+) -->", line.strip())
        if m is None:
            continue
        section = m.group(1)
        assert section in SECTIONS and section not in schema, \
            f"docs/json.md line {i + 1}: unknown or repeated section {section!r}"
        header = _cells(lines[i + 1])
        assert header[:3] == ["key", "type", "present"], \
            f"docs/json.md line {i + 2}: the table must start with | key | type | present |"
        rows: dict[str, tuple[frozenset[str], bool]] = {}
        for j in range(i + 3, len(lines)):
            if not lines[j].startswith("|"):
                break
            cells = _cells(lines[j])
            key = re.fullmatch(r"`([^`]+)`", cells[0])
            assert key is not None, f"docs/json.md line {j + 1}: the key must be in backticks"
            assert key.group(1) not in rows, \
                f"docs/json.md line {j + 1}: {key.group(1)!r} is listed twice in {section}"
            rows[key.group(1)] = parse_presence(cells[2], f"line {j + 1}")
        assert rows, f"docs/json.md: the {section} table is empty"
        schema[section] = rows
    missing = [s for s in SECTIONS if s not in schema]
    assert not missing, f"docs/json.md: no key table for {missing}"
    return schema


def documented() -> Schema:
    return parse_schema(DOC.read_text())


def _expected(rows: dict[str, tuple[frozenset[str], bool]], flags: set[str],
              ) -> tuple[set[str], set[str]]:
    """(allowed keys, required keys) of one section when ``flags`` hold."""
    allowed = {k for k, (conds, _) in rows.items() if conds <= flags}
    required = {k for k in allowed if not rows[k][1]}
    return allowed, required


def problems(d: dict[str, Any], schema: Schema, flags: set[str]) -> list[str]:
    """What in ``d`` (a ``to_dict()``) disagrees with the documented keys under ``flags``."""
    out: list[str] = []

    def check(where: str, section: str, obj: dict[str, Any], fl: set[str]) -> None:
        allowed, required = _expected(schema[section], fl)
        out.extend(f"{where}: key {k!r} is emitted but not documented in docs/json.md "
                   f"({section} table, for {sorted(fl) or 'a plain analysis'})"
                   for k in sorted(set(obj) - allowed))
        out.extend(f"{where}: documented key {k!r} is missing ({section} table)"
                   for k in sorted(required - set(obj)))

    check("top level", "top", d, flags)
    check("totals", "totals", d["totals"], flags)
    entries = [(f"nodes[{n['name']}]", n, flags) for n in d["nodes"]]
    entries.append(("output", d["output"], flags - {"costs", "train"}))  # no cost keys there
    for where, node, fl in entries:
        check(where, "node", node, fl)
        if node.get("rf") is not None:
            check(f"{where}.rf", "rf", node["rf"], flags)
        if node.get("rf_at") is not None:
            check(f"{where}.rf_at", "rf_at", node["rf_at"], flags)
    return out


class NoRules(nn.Module):
    """Ops without a rule (FFT, sort): numeric nodes, unknown fields, cost notes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        z = torch.fft.rfft2(y).abs()
        w = torch.sort(y, dim=-1)[0]
        return self.conv2(y) + w, z


MODELS = {"seed_tour": (DEFAULT_MODEL, DEFAULT_INPUT, "H=64,W=64"),
          "no_rules": (NoRules, (1, 3, "H", "W"), "H=33,W=35")}
CASES = {  # name -> (analyze keywords, flags the documented conditions see)
    "symbolic": ({}, set()),
    "evaluated": ({"at": True}, {"at"}),
    "memory": ({"costs": ("memory",)}, {"costs"}),
    "memory_evaluated": ({"costs": ("memory",), "at": True}, {"costs", "at"}),
    "train": ({"costs": ("memory", "train")}, {"costs", "train"}),
    "train_evaluated": ({"costs": ("memory", "train"), "at": True}, {"costs", "train", "at"}),
}


def to_dict(model_name: str, case: str) -> dict[str, Any]:
    make, shape, at = MODELS[model_name]
    kw, _ = CASES[case]
    kw = {**kw, "at": at} if kw.get("at") else kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no rule for ..." of NoRules
        return rfgraph.analyze(make(), shape, **kw).to_dict()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_to_dict_keys_are_the_documented_ones(model_name, case):
    assert problems(to_dict(model_name, case), documented(), CASES[case][1]) == []


def test_the_cases_reach_the_optional_keys():
    """The models above emit the optional keys that matter most (so that an undocumented key
    there would be seen), and the cost keys appear exactly with costs."""
    d = to_dict("no_rules", "train_evaluated")
    node_keys = set().union(*(set(n) for n in d["nodes"]))
    assert {"numeric", "unknown_reason", "unknown_root", "has_rule", "cost_notes",
            "out_bytes_at", "grad_weight_macs_at"} <= node_keys
    assert "cost_notes" in d["totals"] and d["totals"]["costs_complete"] is False
    assert "variant" in set().union(*(set(n) for n in to_dict("seed_tour", "symbolic")["nodes"]))


def test_an_undocumented_key_fails():
    """Removing one documented key (a per-node cost key, a totals key) makes the check fail,
    as adding a key to to_dict() without documenting it would."""
    d = to_dict("seed_tour", "train_evaluated")
    flags = CASES["train_evaluated"][1]
    for section, key in (("node", "out_bytes"), ("totals", "peak_bytes_at"), ("top", "schema"),
                         ("rf", "aligned")):
        schema = documented()
        del schema[section][key]
        assert any(repr(key) in p and "not documented" in p for p in problems(d, schema, flags))
    # a key emitted where the docs say it is absent: a costs key on a plain analysis
    plain = to_dict("seed_tour", "symbolic")
    plain["totals"]["peak_bytes"] = "0"
    assert problems(plain, documented(), set()) != []


def test_a_documented_key_that_is_never_emitted_fails():
    d = to_dict("seed_tour", "evaluated")
    schema = documented()
    schema["totals"]["made_up"] = (frozenset({"at"}), False)
    assert any("'made_up' is missing" in p for p in problems(d, schema, {"at"}))


def test_the_overview_block_names_documented_keys_only():
    """The "At a glance" sketch at the top of docs/json.md quotes keys: each is in a table."""
    text = DOC.read_text()
    sketch = text[text.index("```text"):]
    sketch = sketch[:sketch.index("```", 3)]
    quoted = set(re.findall(r'"(\w+)":', sketch))
    every = set().union(*(set(rows) for rows in documented().values()))
    assert quoted and quoted <= every, sorted(quoted - every)
