"""The ``rfgraph`` command.

    rfgraph [--traceback] analyze [SPEC] --input 1,3,H,W [--at H=224,W=224] [--json] [--depth N]
                    [--render out.svg] [--show-offset] [--train]
    rfgraph erf [SPEC] --input 1,3,H,W --at H=128,W=128 [--node NAME] [-o erf.png] [--train]
    rfgraph verify [SPEC] --input 1,3,H,W [--at H=224,W=224 [--at H=97,W=131]] [--json]
                   [--checks shape,params,macs,rf,semantics,memory] [--no-progress]
                   [--node-budget S] [--costs memory,train [--dtype D] [--optimizer O]]

Every user error is one line on stderr and exit status 2; a bug in rfgraph is one line and exit
status 3. verify exits 1 on a mismatch and 4 when some check could not run (docs/verify.md).
Never a traceback, unless asked for with ``--traceback`` or ``RFGRAPH_TRACEBACK=1``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
import traceback
import warnings
from typing import Any, NoReturn, cast

from . import __version__
from .errors import InternalError, RfgraphError

# The parser is built without importing torch or SymPy (``rfgraph --help`` answers at once):
# every command imports what it needs when it runs (tests/test_startup.py checks it); verify's
# vocabulary comes from the torch-free rfgraph.verify_terms.
from .verify_terms import CHECKS as VERIFY_CHECKS  # torch-free: the help text needs them
from .verify_terms import NODE_BUDGET as VERIFY_NODE_BUDGET
from .verify_terms import SKIP_BY_DESIGN as VERIFY_SKIP_BY_DESIGN
from .verify_terms import SKIP_COULD_NOT_CHECK as VERIFY_SKIP_COULD_NOT_CHECK

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_REPORT = "please report this with the model; run with --traceback for details"


def one_line(text: str) -> str:
    """The first non-empty line of ``text``, without memory addresses (`` at 0x7f...``)."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return _ADDRESS.sub("", lines[0] if lines else "")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rfgraph: error: {message} (see `{self.prog} --help`)\n")


def add_model_arguments(parser: argparse.ArgumentParser, input_help: str) -> None:
    """SPEC, --input and --trust-pickle: how every subcommand names the model to load."""
    parser.add_argument("spec", nargs="?", default=None, metavar="SPEC",
                        help="the model: package.module:callable, path/to/file.py:callable, a "
                             "torch.export .pt2 file or a pickled .pt file (--trust-pickle); "
                             "default: the built-in seed-tour model")
    parser.add_argument("--input", default=None, metavar="SHAPE", help=input_help)
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow loading a pickled model file (runs code from the file)")


_TRACEBACK_HELP = ("on an error, print the full Python traceback instead of one line "
                   "(also: RFGRAPH_TRACEBACK=1)")
_TRAIN_HELP = ("analyse the model in training mode (default: eval mode, what inference runs; "
               "dropout and stochastic depth are identity)")


def _add_traceback_flag(parser: argparse.ArgumentParser) -> None:
    """``--traceback`` after a subcommand too; SUPPRESS keeps the top-level value otherwise."""
    try:
        parser.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                            help=_TRACEBACK_HELP)
    except argparse.ArgumentError:  # the subcommand defines it itself
        pass


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rfgraph",
        description="Exact symbolic output sizes, receptive fields, parameters and MACs for "
                    "every node of a PyTorch model.")
    parser.add_argument("--version", action="version", version=f"rfgraph {__version__}")
    parser.add_argument("--traceback", action="store_true", help=_TRACEBACK_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    an = sub.add_parser(
        "analyze", help="analyse a model: table (default) or JSON",
        description="Analyse a model. SPEC is package.module:callable or path/to/file.py:callable "
                    "(a class or factory called with no arguments); without SPEC the built-in "
                    "seed-tour model is analysed.")
    add_model_arguments(an, "input shape, names are symbols (default 1,3,H,W; for a .pt2 file "
                            "the stored input shape)")
    an.add_argument("--at", default=None, metavar="SIZES",
                    help="substitute sizes, e.g. H=224,W=224")
    an.add_argument("--json", action="store_true", help="print Analysis.to_dict() as JSON")
    an.add_argument("--depth", type=int, default=None, metavar="N",
                    help="group rows by module, N levels deep")
    an.add_argument("--render", default=None, metavar="PATH",
                    help="also draw the annotated graph with Graphviz: .svg, .png, .pdf or .dot "
                         "(with --depth N, modules N levels deep are one box each)")
    an.add_argument("--show-offset", action="store_true",
                    help="show the receptive-field offset on the drawing")
    an.add_argument("--train", action="store_true", help=_TRAIN_HELP)
    an.add_argument("--wide", action="store_true",
                    help="print formulas in full (by default, on a terminal, the widest "
                         "formula cells are cut to fit its width)")
    add_cost_arguments(an)
    _add_traceback_flag(an)
    er = sub.add_parser(
        "erf", help="effective receptive field of one node (gradient heat map)",
        description="Measure the effective receptive field (Luo et al., NeurIPS 2016) of the "
                    "centre element of one node: |d output / d input| with the model's own "
                    "weights (or summed over random initialisations), next to the theoretical "
                    "field rfgraph computes. Needs concrete sizes (--at).")
    add_model_arguments(er, "input shape, names are symbols (default 1,3,H,W)")
    er.add_argument("--at", default=None, metavar="SIZES", help="sizes, e.g. H=128,W=128")
    er.add_argument("--node", default=None, metavar="NAME",
                    help="node name (first column of the table; default: the last node that "
                         "keeps the spatial axes)")
    er.add_argument("-o", "--output", default=None, metavar="PATH",
                    help="draw the map (.png, .svg, .pdf; needs matplotlib) or save it (.pt)")
    er.add_argument("--inits", type=int, default=0, metavar="N",
                    help="sum over N random initialisations instead of the model's own weights")
    er.add_argument("--samples", type=int, default=1, metavar="N",
                    help="random inputs per set of weights (default 1)")
    er.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    er.add_argument("--mass", type=float, default=0.95,
                    help="report the centred box holding this share of the mass (default 0.95)")
    er.add_argument("--log", action="store_true",
                    help="draw with a logarithmic colour scale (shows the faint tail)")
    er.add_argument("--train", action="store_true", help=_TRAIN_HELP)
    _add_traceback_flag(er)
    _add_traceback_flag(add_verify_parser(sub))
    for module in _command_modules():
        _add_traceback_flag(module.add_parser(sub))
    return parser


def _check_sizes(model: Any, *at_specs: str | None) -> None:
    """Parse every ``--at`` and refuse sizes outside a ``.pt2`` program's exported range."""
    from .api import parse_at
    from .loader import check_size_ranges

    for spec in at_specs:
        if spec is not None:
            check_size_ranges(model, parse_at(spec))


def table_width(args: argparse.Namespace) -> int | None:
    """The width to fit the table in: the terminal's (``COLUMNS`` overrides) when stdout is
    one; None (full text) with --wide or when the output goes to a file or a pipe."""
    import shutil

    if getattr(args, "wide", False) or not sys.stdout.isatty():
        return None
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def add_cost_arguments(parser: argparse.ArgumentParser) -> None:
    """--costs, --dtype and --optimizer (analyze, verify's memory check; solve's memory
    questions)."""
    parser.add_argument("--costs", default=None, metavar="LIST",
                        help="also compute memory,train costs as formulas: activation bytes, "
                             "peak memory; with train, saved-for-backward bytes, backward MACs "
                             "and optimizer state (docs/memory.md)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16",
                                                          "float64"],
                        help="dtype of activations and parameters for --costs (default: the "
                             "model's)")
    parser.add_argument("--optimizer", default="adam", choices=["sgd", "momentum", "adam"],
                        help="optimizer whose state --costs train counts (default adam: two "
                             "copies of the trainable parameters, plus gradients)")


def analyze_options(args: argparse.Namespace) -> dict[str, Any]:
    """Extra keyword arguments for rfgraph.api.analyze: ``mode="train"`` with --train, and
    ``costs``/``dtype``/``optimizer`` with --costs."""
    out: dict[str, Any] = {"mode": "train"} if getattr(args, "train", False) else {}
    if getattr(args, "costs", None):
        out.update(costs=args.costs, dtype=args.dtype, optimizer=args.optimizer)
    return out


def load_model(args: argparse.Namespace) -> tuple[Any, Any, str | None]:
    """The model of SPEC, its input shape (``--input``, else the one a ``.pt2`` file stores,
    else 1,3,H,W) and its name; ``--at`` sizes outside a ``.pt2`` program's exported range are
    refused here, before any work. Every command that analyses a model starts with this."""
    from .api import parse_input
    from .loader import load_spec

    model, default_input, name = load_spec(args.spec, getattr(args, "trust_pickle", False))
    shape = parse_input(args.input) if args.input else (default_input or (1, 3, "H", "W"))
    at = getattr(args, "at", None)
    _check_sizes(model, *(at if isinstance(at, list) else [at]))
    return model, shape, name


def cmd_analyze(args: argparse.Namespace) -> int:
    from .api import analyze
    from .report import format_table

    model, shape, name = load_model(args)
    if args.depth is not None and args.depth < 0:
        raise RfgraphError("--depth must be >= 0")
    options = analyze_options(args)
    if args.render:
        from .render import check_format

        check_format(args.render)  # a bad extension fails before the analysis
    analysis = analyze(model, shape, at=args.at, name=name, **options)
    if args.json:
        json.dump(analysis.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_table(analysis, depth=args.depth, width=table_width(args)))
    if args.render:
        from .render import GraphvizNotFound, render

        try:
            written = render(analysis, args.render, depth=args.depth,
                             show_offset=args.show_offset)
        except GraphvizNotFound as exc:  # the .dot source is written: a warning, not a failure
            print(f"rfgraph: warning: {exc}", file=sys.stderr)
        else:
            print(f"rfgraph: wrote {written}", file=sys.stderr)
    return 0


def cmd_erf(args: argparse.Namespace) -> int:
    from .api import analyze
    from .erf import effective_receptive_field, plot_erf

    model, shape, name = load_model(args)
    analysis = analyze(model, shape, at=args.at, name=name, **analyze_options(args))
    if not 0 < args.mass <= 1:
        raise RfgraphError("--mass must be in (0, 1]")
    result = effective_receptive_field(analysis, args.node, inits=args.inits,
                                       samples=args.samples, seed=args.seed)
    print(result.summary(args.mass))
    if args.output:
        if args.output.endswith(".pt"):
            import torch

            torch.save(result.map, args.output)
        else:
            plot_erf(result, args.output, mass=args.mass, log=args.log)
        print(f"rfgraph: wrote {args.output}", file=sys.stderr)
    return 0


def _verify_epilog() -> str:
    return ("""exit status:
  0  OK: every check passed or was skipped by design (a documented reason)
  1  MISMATCH: some check failed
  4  COULD NOT CHECK: no mismatch, but some check applies and did not run
  2  user error (bad SPEC, --at, --checks, a size the model rejects)
  3  internal error (a bug in rfgraph)

skipped by design (result can be OK):
""" + "\n".join(f"  {k:12} {v}" for k, v in VERIFY_SKIP_BY_DESIGN.items()) + """

could not check (exit 4 unless something failed):
""" + "\n".join(f"  {k:12} {v}" for k, v in VERIFY_SKIP_COULD_NOT_CHECK.items()) + """

See docs/verify.md.""")


def add_verify_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``verify`` subcommand's parser (``sub`` is the subparsers object of rfgraph's CLI)."""
    vp = sub.add_parser(
        "verify", help="run the layers with torch and check every formula",
        description="Check rfgraph's shapes, parameters, MACs, receptive fields and layer "
                    "semantics against torch, node by node. SPEC as for analyze.",
        epilog=_verify_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(vp, "input shape, names are symbols (default 1,3,H,W)")
    vp.add_argument("--at", action="append", default=None, metavar="SIZES",
                    help="a size to check, e.g. H=224,W=224 (repeatable; default: a typical, "
                         "an odd/prime and the smallest valid size)")
    vp.add_argument("--json", action="store_true", help="print the report as JSON")
    vp.add_argument("--checks", default=None, metavar="LIST",
                    help=f"comma-separated subset of {','.join(VERIFY_CHECKS)} (memory runs "
                         "with --costs)")
    vp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    vp.add_argument("--all-nodes", action="store_true",
                    help="probe the receptive field of every node (default: a representative "
                         "subset on big graphs)")
    vp.add_argument("--train", action="store_true",
                    help="analyse and run the model in training mode (default: eval mode)")
    vp.add_argument("--node-budget", type=float, default=VERIFY_NODE_BUDGET, metavar="SECONDS",
                    help="time one node's semantics check may take (default "
                         f"{VERIFY_NODE_BUDGET:g}; "
                         "0: no limit); a slower check is reported as 'not checked: too slow'")
    add_cost_arguments(vp)
    return vp


def cmd_verify(args: argparse.Namespace) -> int:
    """rfgraph verify: 0 OK, 1 a mismatch, 4 could not check (user errors raise: 2)."""
    from .api import analyze, parse_at, parse_input
    from .loader import load_spec
    from .verify import CHECKS, NODE_BUDGET, verify

    loaded = None
    if args.at:  # out-of-range sizes of a .pt2 fail before any work
        loaded = load_spec(args.spec, getattr(args, "trust_pickle", False))
        _check_sizes(loaded[0], *args.at)
    checks = None
    if args.checks is not None:
        checks = [c.strip() for c in args.checks.split(",") if c.strip()]
        bad = [c for c in checks if c not in CHECKS]
        if bad or not checks:
            raise RfgraphError(f"unknown check(s) {', '.join(bad) or '(none)'} in --checks: "
                               f"choose from {','.join(CHECKS)}")
    budget = getattr(args, "node_budget", NODE_BUDGET)
    if budget is not None and not budget >= 0:
        raise RfgraphError(f"--node-budget must be a number of seconds >= 0, not {budget:g}")
    if loaded is None:
        loaded = load_spec(args.spec, getattr(args, "trust_pickle", False))
    model, default_input, name = loaded
    shape = parse_input(args.input) if args.input else (default_input or (1, 3, "H", "W"))
    options = analyze_options(args)
    at = [cast(dict[str, int], parse_at(s)) for s in args.at] if args.at else None  # str: not None
    cost_options = {k: options.pop(k) for k in ("costs", "dtype", "optimizer") if k in options}
    analysis = analyze(model, shape, name=name, **options)
    if cost_options.get("costs"):  # the first --at is where a one-size model's costs are measured
        from .costs import compute_costs, parse_costs

        analysis.costs = compute_costs(analysis, parse_costs(cost_options["costs"]),
                                       cost_options.get("dtype"),
                                       cost_options.get("optimizer", "adam"),
                                       at[0] if at else None)
    report = verify(analysis, at=at, checks=checks, progress=not args.no_progress,
                    rf_nodes="all" if getattr(args, "all_nodes", False) else "auto",
                    node_budget=budget)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(report.format())
    return report.exit_status


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"rfgraph: warning: {one_line(str(message).removeprefix('rfgraph: '))}\n"


def _want_traceback(args: argparse.Namespace) -> bool:
    env = os.environ.get("RFGRAPH_TRACEBACK", "").strip().lower()
    return bool(getattr(args, "traceback", False)) or env not in ("", "0", "false", "no")


def main(argv: list[str] | None = None) -> int:
    """Run the ``rfgraph`` command; returns the exit status: 0 ok, 1 a verify mismatch, 2 a user
    error, 3 an internal error (a bug in rfgraph), 4 verify could not run some check."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    previous_format = warnings.formatwarning
    warnings.formatwarning = _warning_line
    try:
        return _dispatch(args, _want_traceback(args), settle=argv is None)
    finally:
        warnings.formatwarning = previous_format


def _internal_line(exc: BaseException) -> str:
    if isinstance(exc, InternalError):  # "node 'x' [Op] (...): internal error: TypeError: ..."
        text = one_line(str(exc)).replace(": internal error: ", ": ", 1)
    else:
        detail = one_line(str(exc))
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return f"rfgraph: internal error: {text} ({_REPORT})"


#: commands that live in their own module (``add_parser(sub)``, ``run(args)``)
_COMMAND_MODULES = ("export", "solve", "advise")


def _command_modules() -> list[Any]:
    import importlib

    return [importlib.import_module(f".cli_{name}", __package__) for name in _COMMAND_MODULES]


def _settle_imports() -> None:
    """Import torch, SymPy and rfgraph's rules, then move every object they created to the
    permanent generation of the garbage collector (``gc.freeze``). Without it the first full
    collection, triggered by the first analysis, scans the ~200,000 objects of the imports: 70-170
    ms, more than a warm analysis of ResNet-50 (docs/performance.md, "Start-up"). Only for the
    ``rfgraph`` program itself (``main()`` without argv), never in a caller's process."""
    from . import api  # noqa: F401  (torch, SymPy, the rules)

    gc.freeze()


def _dispatch(args: argparse.Namespace, show_traceback: bool = False,
              settle: bool = False) -> int:
    handlers: dict[str, Any] = {"analyze": cmd_analyze, "erf": cmd_erf, "verify": cmd_verify}
    handlers.update({name: module.run
                     for name, module in zip(_COMMAND_MODULES, _command_modules())})
    try:
        if settle:
            _settle_imports()
        return handlers[args.command](args)
    except RfgraphError as exc:
        if show_traceback:
            traceback.print_exc(file=sys.stderr)
        print(f"rfgraph: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rfgraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug in rfgraph (InternalError or any other): one line, exit 3
        if show_traceback:
            traceback.print_exc(file=sys.stderr)
        else:
            print(_internal_line(exc), file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
