"""``rfgraph solve``: size questions about a model (rfgraph.solve).

    rfgraph solve [SPEC] --input 1,3,H,W [--min] [--no-drop] [--output 7x7 [--node NAME]]
                  [--region NODE Y,X --at H=64,W=64] [--reach R [--at ...]] [--json]

Without a question flag it answers --min and --no-drop. Wired into rfgraph's CLI by
``add_parser(subparsers)`` and ``run(args)``; errors are RfgraphErrors (one line, exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from .errors import RfgraphError

if TYPE_CHECKING:
    from .solve import MinInput, NoDrop, Reach, Region, SizesForOutput

_DESCRIPTION = (
    "Answer size questions about a model: the smallest valid input per axis (--min), the input "
    "sizes that drop no pixel, as a congruence such as H = 8·t + 3 (--no-drop), the input sizes "
    "that give a wanted output size (--output 7x7 [--node NAME]), the input box one output "
    "element sees (--region NODE Y,X, needs --at), and the first node whose field reaches R "
    "pixels (--reach R; with --at also the nodes whose field covers the whole input). Without "
    "a question: --min and --no-drop. SPEC as for analyze. See docs/solve.md.")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The ``solve`` subcommand's parser (``subparsers``: rfgraph's subparsers object)."""
    from .cli import add_model_arguments

    sp = subparsers.add_parser("solve", help="size questions: smallest input, sizes that drop "
                                             "no pixel, output -> input, region, reach",
                               description=_DESCRIPTION)
    add_model_arguments(sp, "input shape, names are symbols (default 1,3,H,W)")
    sp.add_argument("--at", default=None, metavar="SIZES",
                    help="concrete sizes for --region and --reach, e.g. H=64,W=64")
    sp.add_argument("--min", action="store_true", help="the smallest valid input per axis")
    sp.add_argument("--no-drop", action="store_true",
                    help="the input sizes at which every strided window tiles its input")
    sp.add_argument("--count", type=int, default=6, metavar="N",
                    help="how many drop-no-pixel sizes to list (default 6)")
    sp.add_argument("--output", default=None, metavar="SIZES",
                    help="the input sizes giving this output size, e.g. 7x7")
    sp.add_argument("--node", default=None, metavar="NAME",
                    help="the node for --output (default: the last node keeping the spatial "
                         "axes, the model output for a dense-prediction net)")
    sp.add_argument("--region", nargs=2, default=None, metavar=("NODE", "POSITION"),
                    help="the input box output element POSITION (e.g. 3,4) of NODE sees")
    sp.add_argument("--reach", type=int, default=None, metavar="R",
                    help="the first node whose field reaches R pixels per axis")
    sp.add_argument("--json", action="store_true", help="print the answers as JSON")
    sp.add_argument("--train", action="store_true",
                    help="analyse the model in training mode (default: eval mode)")
    return sp  # rfgraph's CLI adds --traceback to every subcommand


def format_min_input(ans: MinInput) -> str:
    lines = ["smallest valid input (every node's output >= 1):"]
    for x in ans.axes:
        if x.value is None:
            lines.append(f"  {x.axis} = {x.fixed} (given)")
            continue
        why = (f": at {x.axis} = {x.value - 1} node '{x.limited_by}' would give "
               f"{x.limit_what} = 0" if x.limited_by else "")
        lines.append(f"  {x.axis} >= {x.value}{why}")
        for c in x.conditions:
            lines.append(f"    the model also needs {c}"
                         + (f": smallest {x.axis} = {x.with_conditions}"
                            if x.with_conditions is not None else ""))
    if ans.unchecked:
        lines.append(f"  not covered (no rule): {', '.join(ans.unchecked)}")
    return "\n".join(lines)

def format_no_drop(ans: NoDrop) -> str:
    lines = ["sizes that drop no pixel (every strided window tiles its padded input):"]
    for x in ans.axes:
        lines.append(f"  {x.congruence()}")
        if x.fixed is not None:
            continue
        if x.residues:
            lines.append(f"    first: {', '.join(map(str, x.first))}, ...")
        elif x.always_drops:
            lines.append(f"    {', '.join(x.always_drops)} drop pixels at every size")
        lines.append("    strided windows:" + ("" if x.windows else " none"))
        lines.extend(f"      {w}" for w in x.windows)
    if ans.unchecked:
        lines.append(f"  not covered (a floor that is not a conv/pooling window): "
                     f"{', '.join(ans.unchecked)}")
    if ans.mixed:
        lines.append(f"  not solved (input size mixes axes): {', '.join(ans.mixed)}")
    return "\n".join(lines)

def format_output(ans: SizesForOutput) -> str:
    want = "×".join(str(x.want) for x in ans.axes)
    lines = [f"input sizes giving {want} at node '{ans.node}':"]
    for x in ans.axes:
        lines.append(f"  {x.text()}    ({x.formula} = {x.want})")
    return "\n".join(lines)

def format_region(ans: Region) -> str:
    pos = ",".join(str(x.position) for x in ans.axes if x.position is not None)
    lines = [f"input region of node '{ans.node}' at output ({pos}), "
             f"input {'×'.join(str(x.image) for x in ans.axes)}:"]
    for x in ans.axes:
        c = x.centre
        centre = str(c.numerator) if c.denominator == 1 else f"{float(c):g}"
        clip = (f"{x.clipped[0]}..{x.clipped[1]}" if x.clipped else "empty (all padding)")
        bound = " (upper bound)" if x.upper else ""
        lines.append(f"  {x.axis}: {x.start}..{x.end} unclipped ({x.size} px){bound}, "
                     f"{clip} clipped, centre {centre}")
    return "\n".join(lines)

def format_reach(ans: Reach) -> str:
    lines = [f"first node whose field reaches {ans.want} px"
             + (f" at {', '.join(f'{k}={v}' for k, v in ans.at.items())}:" if ans.at
                else ":")]
    for axis, node in ans.first.items():
        lines.append(f"  {axis}: {node or 'none'}")
        for n, v in ans.conditional.get(axis, []):
            lines.append(f"     ({n} reaches it when {axis} >= {v})")
    if ans.at is not None:
        lines.append("fields covering the whole input (every output element sees every "
                     "pixel):")
        for axis, node in ans.covers.items():
            lines.append(f"  {axis}: from {node or 'no node'}")
        if ans.covers_all:
            lines.append(f"  all axes: from {ans.covers_all}")
            if ans.cannot_see_more:
                lines.append("  layers that cannot see more (their input already sees the "
                             f"whole input): {', '.join(ans.cannot_see_more)}")
    return "\n".join(lines)


def format_answer(ans: Any) -> str:
    """The text of one answer of rfgraph.solve."""
    from .solve import MinInput, NoDrop, Reach, Region, SizesForOutput

    if isinstance(ans, MinInput):
        return format_min_input(ans)
    if isinstance(ans, NoDrop):
        return format_no_drop(ans)
    if isinstance(ans, SizesForOutput):
        return format_output(ans)
    if isinstance(ans, Region):
        return format_region(ans)
    if isinstance(ans, Reach):
        return format_reach(ans)
    raise TypeError(f"not an answer of rfgraph.solve: {type(ans).__name__}")


def _position(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise RfgraphError(f"bad position {text!r} in --region: use e.g. 3,4") from None


def run(args: argparse.Namespace) -> int:
    """Answer the questions asked; 0 on success (a question without answer raises)."""
    from .api import analyze, parse_at
    from .cli import analyze_options, load_model
    from .solve import min_input, no_drop, parse_sizes, reach, region, sizes_for_output

    model, shape, name = load_model(args)
    at = parse_at(args.at)
    if args.count < 1:
        raise RfgraphError("--count must be >= 1")
    want = parse_sizes(args.output) if args.output is not None else None
    position = _position(args.region[1]) if args.region else None
    if args.node is not None and want is None:
        raise RfgraphError("--node goes with --output (the node whose size is wanted)")
    asked = args.min or args.no_drop or want is not None or args.region or \
        args.reach is not None
    a = analyze(model, shape, name=name, **analyze_options(args))
    evaluated = a.evaluate(**at) if at else None
    answers: dict[str, Any] = {}
    mins = None
    if args.min or not asked or args.no_drop or want is not None:
        mins = min_input(a)
    if args.min or not asked:
        answers["min_input"] = mins
    if args.no_drop or not asked:
        answers["no_drop"] = no_drop(a, count=args.count, mins=mins)
    if want is not None:
        answers["output"] = sizes_for_output(a, want, args.node, mins=mins)
    if args.region:
        if evaluated is None and a.symbols:
            raise RfgraphError("--region needs concrete sizes: give --at (e.g. --at "
                               f"{','.join(s + '=64' for s in a.symbols)})")
        answers["region"] = region(evaluated or a, args.region[0], position or [])
    if args.reach is not None:
        answers["reach"] = reach(evaluated or a, args.reach)
    if args.json:
        doc = {"model": name, "input": [str(d) for d in a.input_shape], "at": at}
        doc.update({k: v.to_dict() for k, v in answers.items()})
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print("\n".join(format_answer(value) for value in answers.values()))
    return 0
