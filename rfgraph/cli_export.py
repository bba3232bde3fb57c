"""``rfgraph export``: the formulas as LaTeX, a Python module, Markdown, CSV, JSON or SymPy srepr.

    rfgraph export [SPEC] --input 1,3,H,W [--at H=224,W=224] --format latex|python|markdown|csv|
                   json|sympy [-o FILE] [--depth N] [--train]

Wired into ``rfgraph`` by cli.py (``add_parser(subparsers)``, ``run(args)``); see docs/export.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import RfgraphError

#: rfgraph.exporters.FORMATS, here so that the parser needs no SymPy (tests/test_startup.py
#: checks that the two are equal)
FORMATS = ("latex", "python", "markdown", "csv", "json", "sympy")

_SUFFIX = {".tex": "latex", ".py": "python", ".md": "markdown", ".csv": "csv", ".json": "json"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The ``export`` subcommand's parser (``subparsers``: rfgraph's subparsers object)."""
    from .cli import _TRAIN_HELP, add_model_arguments

    p = subparsers.add_parser(
        "export", help="export the formulas: LaTeX, Python, Markdown, CSV, JSON, SymPy",
        description="Export every node's formulas (output shape, receptive field, params, "
                    "MACs) and the totals. SPEC as for analyze. With --at, values are given "
                    "beside the formulas (never instead of them). See docs/export.md.")
    add_model_arguments(p, "input shape, names are symbols (default 1,3,H,W; for a .pt2 file "
                           "the stored input shape)")
    p.add_argument("--at", default=None, metavar="SIZES",
                   help="also give values at these sizes, e.g. H=224,W=224")
    p.add_argument("--format", "-f", default=None, choices=FORMATS,
                   help="output format (default: from the -o suffix .tex .py .md .csv .json, "
                        "else markdown)")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="write to FILE instead of standard output")
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="one row per module, N levels deep (as analyze --depth)")
    p.add_argument("--train", action="store_true", help=_TRAIN_HELP)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``rfgraph export``: 0 on success (user errors raise RfgraphError: exit 2)."""
    from .api import analyze
    from .cli import analyze_options, load_model
    from .exporters import export

    fmt = args.format
    if fmt is None:
        fmt = _SUFFIX.get(Path(args.output).suffix.lower(), "markdown") if args.output \
            else "markdown"
    if args.depth is not None and args.depth < 0:
        raise RfgraphError("--depth must be >= 0")
    model, shape, name = load_model(args)
    analysis = analyze(model, shape, at=args.at, name=name, **analyze_options(args))
    text = export(analysis, fmt, depth=args.depth)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise RfgraphError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"rfgraph: wrote {args.output} ({fmt})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
