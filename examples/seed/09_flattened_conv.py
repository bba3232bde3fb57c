"""Seed §2.6 (flattened convolution), reproduced with rfgraph.

A standard filter of C channels × Y rows × X columns is split into three 1-D filters: a 1×1
across the channels (C weights), a vertical Y×1 and a horizontal 1×X. The seed's numbers, for an
M×N output: parameters X·Y·C → X + Y + C, computation M·N·C·X·Y → M·N·(C + X + Y).

This script prints:

* the seed's formulas from rfgraph's own symbolic cost function (``rfgraph.advise.costs``) with
  C, X, Y, M, N all symbols;
* for three concrete filters (C, Y, X), the layers built as real modules, analysed by
  ``rfgraph.analyze`` on ``(1, C, "M", "N")`` ('same' padding): params and the MACs formula in
  M, N equal the symbolic costs at those C, X, Y; torch's ``p.numel()`` agrees, and both
  keep the field Y×X (tests/test_examples_seed.py also counts torch's FLOPs).

Run: ``python examples/seed/09_flattened_conv.py`` (from any directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

import sympy
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402
from rfgraph.advise import FLATTENED, costs  # noqa: E402
from rfgraph.symbolic import axis_symbol, format_expr  # noqa: E402

C, X, Y, M, N = (axis_symbol(s) for s in "CXYMN")
FILTERS = ((16, 3, 3), (8, 5, 3), (3, 7, 1))  # (C, Y, X)
AT = (20, 13)  # (M, N): the output shape checked against torch


def standard(c: int, y: int, x: int) -> nn.Module:
    return nn.Conv2d(c, 1, (y, x), padding="same", bias=False)


def flattened(c: int, y: int, x: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c, 1, 1, bias=False),                            # across channels: C
        nn.Conv2d(1, 1, (y, 1), padding=(y // 2, 0), bias=False),  # vertical: Y
        nn.Conv2d(1, 1, (1, x), padding=(0, x // 2), bias=False),  # horizontal: X
    )


def torch_side(model: nn.Module, c: int) -> tuple[int, tuple[int, ...]]:
    """torch's parameter count and output shape at M×N = AT."""
    with torch.no_grad():
        y = model(torch.zeros(1, c, *AT))
    return sum(p.numel() for p in model.parameters()), tuple(y.shape)


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    # C input channels, one output filter, kernel (Y, X), input and output M×N ('same')
    p_std, m_std = costs("standard", C, 1, (Y, X), 1, (M, N), (M, N))
    p_flat, m_flat = costs(FLATTENED, C, 1, (Y, X), 1, (M, N), (M, N))
    symbolic = {"standard": (format_expr(p_std), format_expr(sympy.factor(m_std))),
                "flattened": (format_expr(p_flat), format_expr(sympy.factor(m_flat)))}
    print("rfgraph.advise.costs, all symbols:")
    for name, (p, m) in symbolic.items():
        print(f"  {name:9}  params {p:10} MACs {m}")
    print()

    checks = {}
    for c, y, x in FILTERS:
        values = {C: c, Y: y, X: x}
        row = {}
        for name, build, (p_sym, m_sym) in (("standard", standard, (p_std, m_std)),
                                            ("flattened", flattened, (p_flat, m_flat))):
            model = build(c, y, x)
            a = rfgraph.analyze(model, (1, c, "M", "N"))
            agree = (a.total_params == int(p_sym.subs(values))
                     and sympy.expand(a.total_macs - m_sym.subs(values)) == 0)
            numel, torch_shape = torch_side(model, c)
            at = a.evaluate(M=AT[0], N=AT[1])
            row[name] = {"params": a.total_params, "macs": a.text(a.total_macs),
                         "macs_at": at.total_macs_at, "torch_numel": numel,
                         "shape_at": tuple(at.int_of(d) for d in at.output.tensor.shape),
                         "torch_shape": torch_shape, "matches_costs": agree,
                         "rf": tuple(int(r.size) for r in a.field(a.output))}
        checks[(c, y, x)] = row
        s, f = row["standard"], row["flattened"]
        print(f"C={c:2} Y={y} X={x}: rfgraph params {s['params']:3} -> {f['params']:2}, "
              f"MACs {s['macs']:9} -> {f['macs']:8} (= costs: "
              f"{s['matches_costs'] and f['matches_costs']}); field {s['rf']} both: "
              f"{s['rf'] == f['rf']}")
        same_shape = s["shape_at"] == s["torch_shape"] == f["shape_at"] == f["torch_shape"]
        print(f"          torch numel {s['torch_numel']} -> {f['torch_numel']}; at M×N = "
              f"{AT[0]}×{AT[1]} MACs {s['macs_at']:,} -> {f['macs_at']:,}, output "
              f"{s['torch_shape']} both (torch = rfgraph: {same_shape})")
    return {"symbolic": symbolic, "filters": checks}


if __name__ == "__main__":
    main()
