"""The index of every registered op in docs/rules.md, generated from the registry.

``python -m rfgraph.rules.doc`` rewrites the part of docs/rules.md between the two markers;
``python -m rfgraph.rules.doc --check`` exits 1 when it is stale (tests/test_registry.py runs the
same check, so a new rule without its line in the docs fails the tests).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..kinds import Family
from . import base

BEGIN = "<!-- BEGIN GENERATED: python -m rfgraph.rules.doc (do not edit by hand) -->"
END = "<!-- END GENERATED -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"

_PREFIXES = (("torch.nn.functional.", "F."), ("torch._C._nn.", "F."),
             ("torch._C._linalg.", "torch.linalg."), ("torch._C._VariableFunctions.", "torch."),
             ("torch.functional.", "torch."), ("torch.fx._symbolic_trace.", "torch.fx."))


def op_name(key: Any) -> str:
    """How the index names a key: ``nn.Conv2d``, ``F.conv2d``, ``Tensor.chunk``, ``aten.*``."""
    if isinstance(key, str):
        return f"Tensor.{key}"
    if isinstance(key, type):
        mod = key.__module__
        if mod.startswith("torch.nn"):
            return f"nn.{key.__name__}"
        return f"{mod}.{key.__qualname__}"
    name = base.target_name(key)
    for old, new in _PREFIXES:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def _is_aten(key: Any) -> bool:
    return type(key).__name__ == "OpOverload"


def index() -> str:
    """The generated markdown: per family, every key of the registry and every name-registered
    op (optional libraries), then the ATen ops of ``torch.export`` graphs."""
    by_family: dict[str, set[str]] = defaultdict(set)
    aten_ops: set[str] = set()
    for key, (_, family) in base.builtin_rules().items():
        if _is_aten(key):
            aten_ops.add(str(key).removeprefix("aten."))
        else:
            by_family[family.value].add(op_name(key))
    for name, (_, family) in base.registered_names().items():
        by_family[family.value].add(name)
    lines = [BEGIN, "", "## Index of registered ops", "",
             "Generated from the registry (`python -m rfgraph.rules.doc`); `Tensor.x` is the "
             "method form, a dotted name without `torch` an optional library's op matched by "
             "name.", ""]
    for family in Family:
        names = by_family.pop(family.value, set())
        if names:
            lines.append(f"- **{family.value}** ({len(names)}): "
                         + ", ".join(f"`{n}`" for n in sorted(names)))
    if aten_ops:
        lines.append(f"- **ATen** (`aten.*`, {len(aten_ops)}): "
                     + ", ".join(f"`{n}`" for n in sorted(aten_ops)))
    lines += ["", END]
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` (docs/rules.md) with the generated part replaced (appended when missing)."""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + index() + tail
    return text.rstrip("\n") + "\n\n" + index() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in args:
        if new != text:
            print(f"{DOC} is stale: run python -m rfgraph.rules.doc", file=sys.stderr)
            return 1
        return 0
    if new != text:
        DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
