"""``rfgraph advise [SPEC] --input ... [--at ...] [--json] [--table]``: the convolution variants
(seed §2.5-2.8) recognised in a model, and the alternatives of every standard conv.

Wired into ``rfgraph.cli`` with :func:`add_parser` and :func:`run` (errors are raised as
``RfgraphError`` and printed by the CLI's dispatcher as one line, exit status 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The ``advise`` subcommand's parser (``subparsers``: the CLI's subparsers object)."""
    from .cli import add_model_arguments

    p = subparsers.add_parser(
        "advise", help="recognise convolution variants and cost the alternatives of each conv",
        description="Recognise spatially separable, depthwise-separable, flattened and shuffled "
                    "grouped convolutions in a model (seed §2.5-2.8), and give, for every "
                    "standard convolution (groups=1, kernel > 1), the parameters and MACs of "
                    "its depthwise-separable, spatially separable, flattened and grouped "
                    "alternatives as formulas of the input size, their ratios to the original "
                    "and the change in receptive field. SPEC as for analyze. See "
                    "docs/advise.md.")
    add_model_arguments(p, "input shape, names are symbols (default 1,3,H,W)")
    p.add_argument("--at", default=None, metavar="SIZES",
                   help="substitute sizes, e.g. H=224,W=224 (numbers instead of formulas)")
    p.add_argument("--json", action="store_true", help="print the advice as JSON")
    p.add_argument("--table", action="store_true",
                   help="print the node table (with its variant column) first")
    p.add_argument("--train", action="store_true",
                   help="analyse the model in training mode (default: eval mode)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``rfgraph advise``; returns the exit status (0)."""
    from .advise import advise
    from .api import analyze
    from .cli import analyze_options, load_model
    from .report import format_table

    model, shape, name = load_model(args)
    analysis = analyze(model, shape, at=args.at, name=name, **analyze_options(args))
    result = advise(analysis)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if args.table:
        print(format_table(analysis))
        print()
    print(result.format())
    return 0
