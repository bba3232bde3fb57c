"""Seed §2.3 (transposed convolution, "deconvolution"), reproduced with rfgraph.

The seed: a convolution shrinks its input; a transposed convolution goes the other way (it
restores the size, not the values) and is used to up-sample. Mathematically it is the
convolution written as a sparse matrix, transposed. The seed's example: a 2×2 input, a 3×3
kernel, stride 1 and "full" zero padding give a 4×4 output.

This script prints, next to what torch computes:

* rfgraph's table for ``ConvTranspose2d(1, 1, 3)`` on 1×1×2×2: 4×4, field 3×3, jump 1,
  offset −2, and the size formula (H − 1)·s + k in general;
* the 4×16 matrix C of ``Conv2d(1, 1, 3)`` on a 4×4 image, built with torch one basis image at
  a time: ``ConvTranspose2d(x)`` equals ``Cᵀ · x`` (and the full-padding view: conv of the
  input padded by k − 1 = 2 with the flipped kernel);
* that row y of Cᵀ reads exactly the input pixels of rfgraph's field of output y;
* the same with stride 2: output 2H + 1, a fractional jump 1/2, fields of 2 or 1 pixels
  alternately (period 2), against the matrix of the stride-2 conv.

Run: ``python examples/seed/05_transposed_conv.py`` (from any directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402


def conv_matrix(weight: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """The matrix C (out pixels × in pixels) of ``F.conv2d(·, weight, stride=stride)`` on a
    size×size image, one column per basis image (float64)."""
    cols = []
    for i in range(size * size):
        e = torch.zeros(size * size, dtype=torch.float64)
        e[i] = 1
        cols.append(F.conv2d(e.view(1, 1, size, size), weight, stride=stride).flatten())
    return torch.stack(cols, dim=1)


def fields_match_matrix(a: rfgraph.Analysis, ct: torch.Tensor, n_in: int, n_out: int) -> bool:
    """Row (r, c) of Cᵀ is nonzero exactly at the input pixels of rfgraph's field of output
    (r, c), clipped to the n_in×n_in input (the weights are nonzero)."""
    fh, fw = a.field(a.output)
    for r in range(n_out):
        rows = {i for i in range(int(fh.start_at(r)), int(fh.end_at(r)) + 1) if 0 <= i < n_in}
        for c in range(n_out):
            cols = {j for j in range(int(fw.start_at(c)), int(fw.end_at(c)) + 1)
                    if 0 <= j < n_in}
            read = {(int(k) // n_in, int(k) % n_in)
                    for k in torch.nonzero(ct[r * n_out + c]).flatten()}
            if read != {(i, j) for i in rows for j in cols}:
                return False
    return True


def case(stride: int, n_in: int) -> dict:
    torch.manual_seed(0)
    up = nn.ConvTranspose2d(1, 1, 3, stride=stride, bias=False).double()
    with torch.no_grad():  # nonzero taps, so the matrix's sparsity is the geometry
        up.weight.copy_(torch.rand(1, 1, 3, 3, dtype=torch.float64) + 0.5)
    x = torch.rand(1, 1, n_in, n_in, dtype=torch.float64)
    y = up(x)
    n_out = y.shape[-1]

    c = conv_matrix(up.weight, n_out, stride)       # the conv n_out×n_out → n_in×n_in
    by_matrix = (c.T @ x.flatten()).view(1, 1, n_out, n_out)
    same = torch.allclose(y, by_matrix, atol=1e-12)
    nonzero = int(torch.count_nonzero(c))

    a = rfgraph.analyze(up, (1, 1, n_in, n_in))
    sym = rfgraph.analyze(up, (1, 1, "H", "W"))
    f = a.field(a.output)[0]
    return {
        "torch_shape": tuple(y.shape),
        "shape": tuple(a.int_of(s) for s in a.output.tensor.shape),
        "size_formula": sym.text(sym.output.tensor.shape[2]),
        "matrix_shape": tuple(c.shape),
        "matrix_nonzero": nonzero,
        "equals_transpose": same,
        "fields_match_matrix": fields_match_matrix(a, c.T, n_in, n_out),
        "rf": int(f.size), "min_rf": int(f.min_size), "jump": str(f.jump),
        "offset": int(f.offset), "period": f.period,
        "params": a.total_params, "macs": a.int_of(a.total_macs),
        "analysis": a, "x": x, "y": y, "up": up,
    }


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    seed = case(stride=1, n_in=2)
    print(seed["analysis"], "\n")
    print(f"torch ConvTranspose2d(1, 1, 3) on 2×2 -> {seed['torch_shape']}; "
          f"rfgraph H_out = {seed['size_formula']} -> 4")
    rows, cols = seed["matrix_shape"]
    print(f"Conv2d(1, 1, 3) on 4×4 as a matrix C: {rows}×{cols}, "
          f"{seed['matrix_nonzero']} of {rows * cols} entries nonzero (sparse)")
    print(f"ConvTranspose2d(x) == Cᵀ·x: {seed['equals_transpose']}")
    up, x = seed["up"], seed["x"]
    full = F.conv2d(F.pad(x, (2, 2, 2, 2)), up.weight.flip(-1, -2))
    seed["equals_full_padding"] = torch.allclose(seed["y"], full, atol=1e-12)
    print(f"== conv of the input zero-padded by 2 with the flipped kernel: "
          f"{seed['equals_full_padding']}")
    print(f"rfgraph field: size {seed['rf']}, jump {seed['jump']}, offset {seed['offset']}: "
          f"output y reads inputs y-2..y; rows of Cᵀ read exactly these pixels: "
          f"{seed['fields_match_matrix']}\n")

    s2 = case(stride=2, n_in=3)
    print(f"stride 2 on 3×3: torch {s2['torch_shape']}; rfgraph H_out = {s2['size_formula']}, "
          f"field {s2['min_rf']}..{s2['rf']} (period {s2['period']}), jump {s2['jump']}, "
          f"offset {s2['offset']}")
    print(f"  ConvTranspose2d(x) == Cᵀ·x: {s2['equals_transpose']}; rows of Cᵀ read exactly "
          f"rfgraph's fields: {s2['fields_match_matrix']}")
    drop = ("analysis", "x", "y", "up")
    return {"stride1": {k: v for k, v in seed.items() if k not in drop},
            "stride2": {k: v for k, v in s2.items() if k not in drop}}


if __name__ == "__main__":
    main()
