"""docs/cli.md's reference block is generated from the argparse parser (rfgraph.cli_doc): this
fails when a flag, default, choice or help text changed without ``python -m rfgraph.cli_doc``
being run, and checks that the generator needs neither torch nor SymPy."""

from __future__ import annotations

import json
import subprocess
import sys

from rfgraph import cli_doc

COMMANDS = ("analyze", "verify", "erf", "export", "solve", "advise")
HEAVY = ("torch", "sympy", "networkx", "graphviz", "matplotlib", "numpy")


def _block(text: str) -> str:
    return text[text.index(cli_doc.BEGIN):text.index(cli_doc.END)]


def test_docs_cli_md_is_up_to_date():
    text = cli_doc.DOC.read_text(encoding="utf-8")
    assert cli_doc.update(text, cli_doc.reference()) == text, (
        "docs/cli.md is stale: run `python -m rfgraph.cli_doc` (or `make docs`)")


def test_every_subcommand_and_option_is_documented():
    parser = cli_doc.build_parser()
    subs = {name: sub for name, _, sub in cli_doc.subcommands(parser)}
    assert set(COMMANDS) <= set(subs)
    block = _block(cli_doc.DOC.read_text(encoding="utf-8"))
    generated = cli_doc.reference(parser)
    for name, sub in subs.items():
        for text in (block, generated):
            assert f"### rfgraph {name}\n" in text
            assert f"[`{name}`](#rfgraph-{name})" in text  # the command summary
        section = generated.split(f"### rfgraph {name}\n", 1)[1].split("\n### ", 1)[0]
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help", "--traceback"):
                    assert f"`{flag}" in section or f", {flag}" in section, (name, flag)


def test_a_new_flag_makes_the_docs_stale():
    parser = cli_doc.build_parser()
    before = cli_doc.reference(parser)
    subs = {name: sub for name, _, sub in cli_doc.subcommands(parser)}
    subs["solve"].add_argument("--brand-new", type=int, default=3, metavar="K",
                               help="a flag nobody documented")
    after = cli_doc.reference(parser)
    assert after != before
    assert "| `--brand-new` | `K` | `3` |  | a flag nobody documented |" in after
    assert "[--brand-new K]" in after


def test_output_does_not_depend_on_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = cli_doc.reference()
    monkeypatch.setenv("COLUMNS", "250")
    assert cli_doc.reference() == narrow


_FRESH = """
import json, sys
from pathlib import Path
from rfgraph import cli_doc
path = Path(sys.argv[1])
path.write_text("# prose\\n\\n" + cli_doc.BEGIN + "\\nold\\n" + cli_doc.END + "\\n\\ntail\\n")
stale = cli_doc.main(["--check", "--path", str(path)])
unchanged = "old" in path.read_text()
wrote = cli_doc.main(["--path", str(path)])
fresh = cli_doc.main(["--check", "--path", str(path)])
text = path.read_text()
print(json.dumps({"stale": stale, "unchanged": unchanged, "wrote": wrote, "fresh": fresh,
                  "kept": text.startswith("# prose\\n") and text.endswith("\\ntail\\n"),
                  "has_block": "### rfgraph verify" in text,
                  "no_markers": cli_doc.main(["--check", "--path", sys.argv[0]]),
                  "loaded": sorted(m for m in %r if m in sys.modules)}))
"""


def test_generator_imports_no_torch_and_checks_and_writes(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_FRESH % (HEAVY,), encoding="utf-8")
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "cli.md")],
                         capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], f"rfgraph.cli_doc imported {result['loaded']}"
    assert result == {"stale": 1, "unchanged": True, "wrote": 0, "fresh": 0, "kept": True,
                      "has_block": True, "no_markers": 2, "loaded": []}
