"""Start-up cost (issue 12): ``rfgraph --help`` and every ``rfgraph <cmd> --help`` answer without
importing torch or SymPy, ``import rfgraph`` imports neither, and every public name still loads
on first use. Asserted on ``sys.modules`` in a fresh interpreter, never on time (timings are in
docs/performance.md, "Start-up")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import rfgraph

COMMANDS = ("analyze", "erf", "verify", "export", "solve", "advise")
HEAVY = ("torch", "sympy", "networkx", "graphviz", "matplotlib", "numpy")


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON value on its last line."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


_HELP = """
import contextlib, io, json, sys
from rfgraph.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    try:
        status = main({argv!r})
    except SystemExit as exc:
        status = exc.code
print(json.dumps({{"status": status, "text": buf.getvalue(),
                  "loaded": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], []]
                         + [[cmd, "--help"] for cmd in COMMANDS], ids=" ".join)
def test_help_imports_neither_torch_nor_sympy(argv):
    result = _fresh(_HELP.format(argv=argv, heavy=HEAVY))
    assert result["loaded"] == [], f"rfgraph {' '.join(argv)} imported {result['loaded']}"
    assert result["status"] in (0, 2)  # 2: no command given, help printed
    if argv and argv[0] in COMMANDS:
        assert f"rfgraph {argv[0]}" in result["text"]


def test_import_rfgraph_is_light_and_names_resolve():
    code = f"""
import json, sys
import rfgraph
before = sorted(m for m in {HEAVY!r} if m in sys.modules)
version = rfgraph.__version__
after_version = sorted(m for m in {HEAVY!r} if m in sys.modules)
import rfgraph.errors, rfgraph.kinds
light = sorted(m for m in {HEAVY!r} if m in sys.modules)
names = {{n: type(getattr(rfgraph, n)).__name__ for n in rfgraph.__all__}}
print(json.dumps({{"before": before, "after_version": after_version, "light": light,
                  "version": version, "names": names, "dir": dir(rfgraph)}}))
"""
    result = _fresh(code)
    assert result["before"] == [] and result["after_version"] == []
    assert result["light"] == []  # errors and kinds need no torch
    assert result["version"] == rfgraph.__version__
    assert set(result["names"]) == set(rfgraph.__all__)
    assert set(rfgraph.__all__) <= set(result["dir"])


def test_public_names_are_the_real_objects():
    from rfgraph.analysis import Analysis
    from rfgraph.annotate import NodeInfo
    from rfgraph.api import analyze
    from rfgraph.errors import InputTooSmall, InternalError, RfgraphError
    from rfgraph.kinds import Family, Kind
    from rfgraph.rules.base import register_rule, scope, unregister_rule

    expected = {"Analysis": Analysis, "NodeInfo": NodeInfo, "analyze": analyze,
                "InputTooSmall": InputTooSmall, "InternalError": InternalError,
                "RfgraphError": RfgraphError, "Family": Family, "Kind": Kind,
                "register_rule": register_rule, "unregister_rule": unregister_rule,
                "scoped_rules": scope}
    assert set(expected) == set(rfgraph.__all__)
    for name, obj in expected.items():
        assert getattr(rfgraph, name) is obj
    from rfgraph import Analysis as A
    from rfgraph import scoped_rules as s
    assert A is Analysis and s is scope
    assert set(rfgraph.__all__) <= set(dir(rfgraph))


def test_submodules_and_unknown_names():
    import rfgraph.report

    assert rfgraph.report is sys.modules["rfgraph.report"]
    assert rfgraph.solve is sys.modules["rfgraph.solve"]  # loaded on attribute access
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        rfgraph.no_such_name  # noqa: B018
    assert not hasattr(rfgraph, "no_such_name")
    with pytest.raises(ImportError):
        from rfgraph import no_such_name  # noqa: F401


def test_cli_copies_of_constants_equal_the_originals():
    """The parser's copies (kept torch- and SymPy-free) of verify's and export's constants."""
    from rfgraph import cli, cli_export, exporters, verify

    assert cli.VERIFY_CHECKS == verify.CHECKS
    assert cli.VERIFY_NODE_BUDGET == verify.NODE_BUDGET
    assert cli.VERIFY_SKIP_BY_DESIGN == verify.SKIP_BY_DESIGN
    assert cli.VERIFY_SKIP_COULD_NOT_CHECK == verify.SKIP_COULD_NOT_CHECK
    assert cli_export.FORMATS == exporters.FORMATS


def test_only_the_program_freezes_the_import_objects():
    """``rfgraph`` itself (``main()`` reading sys.argv) moves the objects of its imports out of
    the garbage collector's reach (gc.freeze: the first full collection no longer scans them);
    ``main(argv)`` called from a caller's process leaves its collector alone."""
    code = """
import contextlib, gc, io, json, sys
from rfgraph.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main(["analyze", "--json"])
    called = gc.get_freeze_count()
    sys.argv = ["rfgraph", "analyze", "--json"]
    status = main()
print(json.dumps({"called": called, "program": gc.get_freeze_count(), "status": status}))
"""
    result = _fresh(code)
    assert result["status"] == 0
    assert result["called"] == 0
    assert result["program"] > 10_000
