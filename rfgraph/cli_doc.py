"""The reference part of docs/cli.md, generated from rfgraph's argparse parser.

    python -m rfgraph.cli_doc            # rewrite the block between the markers in docs/cli.md
    python -m rfgraph.cli_doc --check    # exit 1 if docs/cli.md is stale (nothing written)

Everything between ``<!-- cli:begin -->`` and ``<!-- cli:end -->`` is generated: every
subcommand's usage, description and options (flags, metavar, default, choices, help), read from
the parser objects :func:`rfgraph.cli._build_parser` builds, so the reference cannot drift from
the command. The prose around the markers is hand-written and kept as it is. The text is built
here, not by argparse's help formatter, so it does not depend on the terminal width or on the
Python version. Building the parser imports neither torch nor SymPy, and neither does this
module (tests/test_cli_doc.py checks both).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

BEGIN = "<!-- cli:begin -->"
END = "<!-- cli:end -->"
#: docs/cli.md of a source checkout (the generator is a tool for the repository, not the wheel)
DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"

_WIDTH = 100
_INTRO = ("_Generated from the argparse parser by `python -m rfgraph.cli_doc` (`make docs`); "
          "do not edit by hand: change the parser and run it again. `python -m rfgraph.cli_doc "
          "--check` exits 1 if this block is stale (tests/test_cli_doc.py runs the same "
          "check)._")
#: help for arguments the parser gives none (argparse prints nothing for them either)
_FALLBACK_HELP = {"spec": "the model: package.module:callable, path/to/file.py:callable or a "
                          "model file (.pt2, or a pickle with --trust-pickle); default: the "
                          "built-in seed-tour model (see \"SPEC\" under \"Notes\")"}
_NO_ARGUMENT = (argparse._StoreConstAction, argparse._CountAction, argparse._HelpAction,
                argparse._VersionAction)  # _StoreTrue/_StoreFalse/_AppendConst derive from these


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser of the ``rfgraph`` command (no torch, no SymPy)."""
    from .cli import _build_parser

    return _build_parser()


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every subcommand, in the order they were added."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # an alias maps to the same parser
                    seen.add(id(sub))
                    out.append((name, helps.get(name, ""), sub))
    return out


def _cell(text: str) -> str:
    """``text`` for one cell of a Markdown table (one line, no bare ``|``)."""
    return " ".join(text.split()).replace("|", "\\|")


def _prose(text: str) -> str:
    """A description as a Markdown paragraph, wrapped at a fixed width."""
    return textwrap.fill(" ".join(text.split()), _WIDTH, break_long_words=False,
                         break_on_hyphens=False)


def _argument(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    """What follows the flag: metavar(s), ``{choice,...}``, or nothing for a switch."""
    if isinstance(action, _NO_ARGUMENT) or action.nargs == 0:
        return ""
    default = action.dest.upper() if action.option_strings else action.dest
    text = formatter._format_args(action, default)
    if isinstance(action, argparse._AppendAction):
        text += " (repeatable)"
    return text


def _default(action: argparse.Action) -> str:
    value = action.default
    if value is None or value is argparse.SUPPRESS or isinstance(action, _NO_ARGUMENT):
        return ""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return f"`{value}`"


def _choices(action: argparse.Action) -> str:
    if action.choices is None or isinstance(action, argparse._SubParsersAction):
        return ""
    return ", ".join(f"`{c}`" for c in action.choices)


def _shown(action: argparse.Action, inherited: set[str]) -> bool:
    """Options listed in a subcommand's table: not --help, not the global ``--traceback``
    that every subcommand repeats (listed once under the global options)."""
    if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
        return False
    if action.help is argparse.SUPPRESS:
        return False
    return not (action.default is argparse.SUPPRESS
                and set(action.option_strings) <= inherited)


def _usage(prog: str, actions: list[argparse.Action],
           formatter: argparse.HelpFormatter) -> str:
    """A usage line built from the actions, wrapped at a fixed width (a ``text`` block)."""
    parts = []
    for action in actions:
        if isinstance(action, argparse._SubParsersAction):
            parts.append("COMMAND ...")
            continue
        arg = _argument(action, formatter).removesuffix(" (repeatable)")
        if not action.option_strings:
            parts.append(arg)
            continue
        part = f"{action.option_strings[0]} {arg}".strip()
        parts.append(part if action.required else f"[{part}]")
    lines, line = [], prog
    indent = " " * (len(prog) + 1)
    for part in parts:
        if len(line) + 1 + len(part) > _WIDTH and line.strip():
            lines.append(line)
            line = indent + part
        else:
            line += " " + part
    lines.append(line)
    return "\n".join(lines)


def _options_table(actions: list[argparse.Action], formatter: argparse.HelpFormatter) -> list[str]:
    rows = ["| option | argument | default | choices | description |",
            "|---|---|---|---|---|"]
    for action in actions:
        arg = _argument(action, formatter)
        repeat = arg.endswith(" (repeatable)")
        arg = arg.removesuffix(" (repeatable)")
        if action.option_strings:
            flags = ", ".join(action.option_strings)
        else:  # a positional: ``SPEC`` or ``[SPEC]`` (optional), no separate argument
            flags, arg = arg, ""
        if action.choices is not None and not isinstance(action.metavar, (str, tuple)):
            arg = ""  # the choices column lists them
        help_text = (formatter._expand_help(action) if action.help
                     else _FALLBACK_HELP.get(action.dest, ""))
        rows.append("| " + " | ".join([
            f"`{flags}`", (f"`{_cell(arg)}`" if arg else "") + (" (repeatable)" if repeat else ""),
            _default(action), _cell(_choices(action)), _cell(help_text)]) + " |")
    return rows


def _epilog(parser: argparse.ArgumentParser) -> list[str]:
    if not parser.epilog:
        return []
    formatter = parser.formatter_class(prog=parser.prog)
    if isinstance(formatter, argparse.RawDescriptionHelpFormatter):  # kept as written
        return ["", "```text", parser.epilog.strip("\n"), "```"]
    return ["", _prose(parser.epilog)]


def reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The generated block (without the markers) for ``parser``, by default rfgraph's own."""
    parser = parser or build_parser()
    formatter = argparse.HelpFormatter(parser.prog, width=_WIDTH)
    subs = subcommands(parser)
    top = [a for a in parser._actions if _shown(a, set())]
    inherited = {s for a in top for s in a.option_strings}
    out = [_prose(_INTRO), "", "### Synopsis", "", "```text"]
    top_usage = [a for a in top if a.option_strings]
    out.append(_usage(parser.prog, top_usage + [a for a in parser._actions
                                                if isinstance(a, argparse._SubParsersAction)],
                      formatter))
    for name, _help, sub in subs:
        shown = [a for a in sub._actions if _shown(a, inherited)]
        out.append(_usage(f"{parser.prog} {name}", shown, formatter))
    out += ["```", "", "| command | what it does |", "|---|---|"]
    out += [f"| [`{name}`](#rfgraph-{name}) | {_cell(text)} |" for name, text, _ in subs]
    everywhere = [a.option_strings[0] for a in top if a.option_strings and all(
        any(b.default is argparse.SUPPRESS and set(b.option_strings) == set(a.option_strings)
            for b in sub._actions) for _, _, sub in subs)]
    out += ["", "### Global options", ""]
    if parser.description:
        out += [_prose(parser.description), ""]
    out += _options_table(top, formatter)
    if everywhere:
        out += ["", "Also accepted after any subcommand: "
                + ", ".join(f"`{flag}`" for flag in everywhere) + "."]
    for name, _help, sub in subs:
        shown = [a for a in sub._actions if _shown(a, inherited)]
        out += ["", f"### rfgraph {name}", "", "```text",
                _usage(f"{parser.prog} {name}", shown, formatter), "```"]
        if sub.description:
            out += ["", _prose(sub.description)]
        out += [""] + _options_table(shown, formatter)
        out += _epilog(sub)
    return "\n".join(out) + "\n"


def update(text: str, block: str) -> str:
    """``text`` with everything between the markers replaced by ``block``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start or text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"expected one {BEGIN} followed by one {END}")
    return text[:start + len(BEGIN)] + "\n" + block + text[end:]


def main(argv: list[str] | None = None) -> int:
    """Regenerate the block in docs/cli.md (or ``--path``); with ``--check`` write nothing and
    return 1 if it is stale. 2 when the file or its markers are missing."""
    ap = argparse.ArgumentParser(prog="python -m rfgraph.cli_doc",
                                 description="Regenerate the CLI reference in docs/cli.md from "
                                             "rfgraph's argparse parser.")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the file is stale instead of rewriting it")
    ap.add_argument("--path", type=Path, default=DOC, help=f"the file (default {DOC})")
    args = ap.parse_args(argv)
    try:
        text = args.path.read_text(encoding="utf-8")
        new = update(text, reference())
    except (OSError, ValueError) as exc:
        print(f"rfgraph.cli_doc: error: {args.path}: {exc}", file=sys.stderr)
        return 2
    if new == text:
        return 0
    if args.check:
        print(f"rfgraph.cli_doc: {args.path} is stale: run `python -m rfgraph.cli_doc`",
              file=sys.stderr)
        return 1
    args.path.write_text(new, encoding="utf-8")
    print(f"rfgraph.cli_doc: wrote {args.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
