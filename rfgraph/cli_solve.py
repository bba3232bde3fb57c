"""``rfgraph solve``: size questions about a model (rfgraph.solve).

    rfgraph solve [SPEC] --input 1,3,H,W [--min] [--no-drop] [--output 7x7 [--node NAME]]
                  [--region NODE Y,X --at H=64,W=64] [--reach R [--at ...]] [--json]
                  [--max-batch --at H=224,W=224 | --max-size [--batch 8]] --memory 24GiB
                  [--train [--optimizer adam]] [--dtype float16]

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
    from .solve_memory import MaxBatch, MaxSize

_DESCRIPTION = (
    "Answer size questions about a model: the smallest valid input per axis (--min), the input "
    "sizes that drop no pixel, as a congruence such as H = 8·t + 3 (--no-drop), the input sizes "
    "that give a wanted output size (--output 7x7 [--node NAME]), the input box one output "
    "element sees (--region NODE Y,X, needs --at), and the first node whose field reaches R "
    "pixels (--reach R; with --at also the nodes whose field covers the whole input), the "
    "largest batch (--max-batch, at --at sizes) or input size (--max-size, at --batch) whose "
    "memory fits a budget (--memory 24GiB; --train for training memory). Without a question: "
    "--min and --no-drop. SPEC as for analyze. See docs/solve.md.")


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
    sp.add_argument("--max-batch", action="store_true",
                    help="the largest batch N whose memory fits --memory (at the --at sizes)")
    sp.add_argument("--max-size", action="store_true",
                    help="the largest input size (every spatial symbol equal: H = W) whose "
                         "memory fits --memory (at --batch)")
    sp.add_argument("--memory", default=None, metavar="BYTES",
                    help="the memory budget for --max-batch/--max-size, e.g. 24GiB, 16GB, "
                         "512MiB")
    sp.add_argument("--batch", type=int, default=None, metavar="N",
                    help="the batch for --max-size (default: the input's, else 1)")
    sp.add_argument("--optimizer", default=None, choices=["sgd", "momentum", "adam"],
                    help="the optimizer whose state --train counts (default adam)")
    sp.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16", "float64"],
                    help="dtype of parameters and activations for the memory (default: the "
                         "model's)")
    sp.add_argument("--json", action="store_true", help="print the answers as JSON")
    sp.add_argument("--train", action="store_true",
                    help="analyse the model in training mode (default: eval mode); with "
                         "--max-batch/--max-size, count training memory (gradients, optimizer "
                         "state, saved activations)")
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
        clip = (f"{x.clipped[0]}..{x.clipped[1]} clipped" if x.clipped else
                "it reads no input pixel (a gap of a transposed conv)" if x.size == 0
                else "empty clipped (it lies wholly in the padding)")
        bound = " (upper bound)" if x.upper else ""
        lines.append(f"  {x.axis}: {x.start}..{x.end} unclipped ({x.size} px){bound}, "
                     f"{clip}, centre {centre}")
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


def _memory_parts(ans: MaxBatch | MaxSize) -> str:
    from .cost_report import format_bytes as fb

    p = ans.parts
    what = (f"params {fb(p['param_bytes'])}, buffers {fb(p['buffer_bytes'])}, "
            f"peak activations {fb(p['peak_bytes'])}")
    if ans.train:
        what += (f", saved for backward {fb(p['saved_bytes'])}, gradients + optimizer state "
                 f"{fb(p['optimizer_bytes'])}")
    return what


def _apart(*values: int | None) -> list[str]:
    """The byte counts in one binary unit, with as many decimals as it takes to tell different
    counts apart (a total just under the budget never prints as the budget)."""
    known = [v for v in values if v is not None]
    units = [("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)]
    name, unit = next(((n, u) for n, u in units if max(known, default=0) >= u), ("B", 1))
    if unit == 1:
        return [f"{v:,} B" if v is not None else "?" for v in values]
    for digits in range(1, 10):
        texts = {v: f"{v / unit:.{digits}f}".rstrip("0").rstrip(".") for v in known}
        if len(set(texts.values())) == len(texts):
            break
    return [f"{texts[v]} {name}" if v is not None else "?" for v in values]


def _counted(ans: MaxBatch | MaxSize) -> str:
    return (f"training, {ans.optimizer}, {ans.dtype}" if ans.train
            else f"inference, {ans.dtype}")


def _monotone(ans: MaxBatch | MaxSize, var: str) -> str:
    if ans.monotone == "proved":
        return f"  the total is non-decreasing in {var} (proved from the formulas)"
    if ans.monotone == "probes":
        return (f"  the total is not proved non-decreasing in {var}; its values at the "
                f"{ans.evaluations} points evaluated are in order")
    return f"  the total is not monotone in {var}"


def format_max_batch(ans: MaxBatch) -> str:
    dims = "x".join(str(ans.at.get(d, d)) for d in ans.input[2:])
    where = f" at {dims}" if dims else ""
    total, memory, nxt = _apart(ans.total, ans.memory, ans.next_total)
    lines = [f"max batch{where} ({_counted(ans)}): {ans.batch} (total {total} of {memory}; "
             f"with {ans.batch + 1}: {nxt})",
             f"  at {ans.symbol} = {ans.batch}: {_memory_parts(ans)}",
             _monotone(ans, ans.symbol)]
    lines.extend(f"  note: {n}" for n in ans.notes)
    return "\n".join(lines)


def format_max_size(ans: MaxSize) -> str:
    def dims(s: int | None) -> str:
        return "x".join(str(v) for v in ans.sizes.values()) if s == ans.size else \
            "x".join(str(s) if ax in ans.symbols else str(v) for ax, v in ans.sizes.items())

    given = "".join(f", {k}={v}" for k, v in ans.at.items())
    total, memory, nxt_total = _apart(ans.total, ans.memory, ans.next_total)
    nxt = (f"; with {dims(ans.next_size)}: {nxt_total}" if ans.next_size is not None
           else "; the model accepts no larger size")
    lines = [f"max size at batch {ans.batch}{given} ({_counted(ans)}): {dims(ans.size)} "
             f"(total {total} of {memory}{nxt})",
             f"  at {dims(ans.size)}: {_memory_parts(ans)}",
             f"  smallest size the model accepts: {ans.smallest}",
             _monotone(ans, " = ".join(ans.symbols))]
    lines.extend(f"  note: {n}" for n in ans.notes)
    return "\n".join(lines)


def format_answer(ans: Any) -> str:
    """The text of one answer of rfgraph.solve or rfgraph.solve_memory."""
    from .solve import MinInput, NoDrop, Reach, Region, SizesForOutput
    from .solve_memory import MaxBatch, MaxSize

    if isinstance(ans, MaxBatch):
        return format_max_batch(ans)
    if isinstance(ans, MaxSize):
        return format_max_size(ans)

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


def _memory_flags(args: argparse.Namespace) -> bool:
    """Whether a memory question is asked; one-line errors for flags without their question."""
    asked = args.max_batch or args.max_size
    if asked and args.memory is None:
        flag = "--max-batch" if args.max_batch else "--max-size"
        raise RfgraphError(f"{flag} needs --memory (the budget, e.g. --memory 24GiB)")
    if not asked:
        for flag, value in (("--memory", args.memory), ("--optimizer", args.optimizer),
                            ("--dtype", args.dtype)):
            if value is not None:
                raise RfgraphError(f"{flag} goes with --max-batch or --max-size")
    if args.batch is not None and not args.max_size:
        raise RfgraphError("--batch goes with --max-size (the batch the size is solved at)")
    if args.batch is not None and args.batch < 1:
        raise RfgraphError(f"--batch must be >= 1, not {args.batch}")
    if args.optimizer is not None and not args.train:
        raise RfgraphError("--optimizer is for training memory: add --train")
    return bool(asked)


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
    memory = _memory_flags(args)
    if args.count < 1:
        raise RfgraphError("--count must be >= 1")
    want = parse_sizes(args.output) if args.output is not None else None
    position = _position(args.region[1]) if args.region else None
    if args.node is not None and want is None:
        raise RfgraphError("--node goes with --output (the node whose size is wanted)")
    asked = args.min or args.no_drop or want is not None or args.region or \
        args.reach is not None
    answers: dict[str, Any] = {}
    if memory:
        from .costs import parse_bytes

        budget = parse_bytes(args.memory)  # a bad --memory fails before any analysis
        if not asked:
            _memory_answers(args, model, shape, name, at, budget, answers)
            return _print(args, name, answers, answers[next(iter(answers))].input, at)
    a = analyze(model, shape, name=name, **analyze_options(args))
    evaluated = a.evaluate(**at) if at else None
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
    if memory:
        _memory_answers(args, model, shape, name, at, budget, answers)
    return _print(args, name, answers, [str(d) for d in a.input_shape], at)


def _memory_answers(args: argparse.Namespace, model: Any, shape: Any, name: str | None,
                    at: dict[str, int] | None, budget: int, answers: dict[str, Any]) -> None:
    from .solve_memory import max_batch, max_size

    options = {"input_shape": shape, "train": args.train, "optimizer": args.optimizer,
               "dtype": args.dtype, "name": name}
    if args.max_batch:
        answers["max_batch"] = max_batch(model, budget, at, **options)
    if args.max_size:
        answers["max_size"] = max_size(model, budget, args.batch, at=at, **options)


def _print(args: argparse.Namespace, name: str | None, answers: dict[str, Any],
           shape: list[str], at: dict[str, int] | None) -> int:
    if args.json:
        doc = {"model": name, "input": shape, "at": at}
        doc.update({k: v.to_dict() for k, v in answers.items()})
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print("\n".join(format_answer(value) for value in answers.values()))
    return 0
