"""The ``rfgraph`` command.

    rfgraph analyze [SPEC] --input 1,3,H,W [--at H=224,W=224] [--json] [--depth N]
                    [--render out.svg] [--show-offset]
    rfgraph erf [SPEC] --input 1,3,H,W --at H=128,W=128 [--node NAME] [-o erf.png]
    rfgraph verify [SPEC] --input 1,3,H,W [--at H=224,W=224 [--at H=97,W=131]] [--json]
                   [--checks shape,params,macs,rf,semantics] [--no-progress]

Every user error is one line on stderr and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from . import __version__
from .errors import RfgraphError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"rfgraph: error: {message} (see `{self.prog} --help`)\n")


def add_model_arguments(parser: argparse.ArgumentParser, input_help: str) -> None:
    """SPEC, --input and --trust-pickle: how every subcommand names the model to load."""
    parser.add_argument("spec", nargs="?", default=None, metavar="SPEC")
    parser.add_argument("--input", default=None, metavar="SHAPE", help=input_help)
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow loading a pickled model file (runs code from the file)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rfgraph",
        description="Exact symbolic output sizes, receptive fields, parameters and MACs for "
                    "every node of a PyTorch model.")
    parser.add_argument("--version", action="version", version=f"rfgraph {__version__}")
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
    from .verify import add_verify_parser

    add_verify_parser(sub)  # rfgraph verify: its flags live in rfgraph/verify.py
    return parser


def _load(spec: str | None, trust_pickle: bool):
    if spec is None:
        from .models import DEFAULT_INPUT, DEFAULT_MODEL

        return DEFAULT_MODEL(), DEFAULT_INPUT, "seed_tour"
    from .loader import load_model

    model = load_model(spec, trust_pickle=trust_pickle)
    name = spec.rpartition(":")[2] if ":" in spec else spec.replace("\\", "/").rsplit("/", 1)[-1]
    meta = getattr(model, "meta", None)
    stored = meta.get("rfgraph_input_shape") if isinstance(meta, dict) else None
    return model, tuple(stored) if stored else None, name


def cmd_analyze(args: argparse.Namespace) -> int:
    from .api import analyze, parse_input
    from .report import format_table

    model, default_input, name = _load(args.spec, args.trust_pickle)
    shape = parse_input(args.input) if args.input else (default_input or (1, 3, "H", "W"))
    if args.depth is not None and args.depth < 0:
        raise RfgraphError("--depth must be >= 0")
    if args.render:
        from .render import check_format

        check_format(args.render)  # a bad extension fails before the analysis
    analysis = analyze(model, shape, at=args.at, name=name)
    if args.json:
        json.dump(analysis.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_table(analysis, depth=args.depth))
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
    from .api import analyze, parse_input
    from .erf import effective_receptive_field, plot_erf

    model, default_input, name = _load(args.spec, args.trust_pickle)
    shape = parse_input(args.input) if args.input else (default_input or (1, 3, "H", "W"))
    analysis = analyze(model, shape, at=args.at, name=name)
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


def cmd_verify(args: argparse.Namespace) -> int:
    """rfgraph verify: 0 when every check passes, 1 on any mismatch (user errors raise: 2)."""
    from .verify import cmd_verify as run_verify

    return run_verify(args)


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"rfgraph: warning: {str(message).removeprefix('rfgraph: ')}\n"


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    previous_format = warnings.formatwarning
    warnings.formatwarning = _warning_line
    try:
        return _dispatch(args)
    finally:
        warnings.formatwarning = previous_format


def _dispatch(args: argparse.Namespace) -> int:
    handlers = {"analyze": cmd_analyze, "erf": cmd_erf, "verify": cmd_verify}
    try:
        return handlers[args.command](args)
    except RfgraphError as exc:
        print(f"rfgraph: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rfgraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug in rfgraph: still one line, and say so
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"rfgraph: internal error: {type(exc).__name__}: {first} "
              "(please report this with the model)", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
