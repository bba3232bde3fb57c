"""Walk-through 3: will it fit? Memory and training cost (03_will_it_fit.md, step by step).

The page types ``rfgraph analyze ... --costs memory,train`` and ``rfgraph solve ... --max-batch /
--max-size --memory 24GiB``; this script does the same with the Python API on ResNet-50
(``examples.zoo:resnet50``, float32):

1. ``rfgraph.analyze(model, "N,3,H,W", costs="memory,train", optimizer="adam")``: the memory
   formulas, then their values at N=8, 224×224 (``peak_bytes``, ``saved_bytes``,
   ``train_bytes`` in ``to_dict()["totals"]``), the same analysis ``rfgraph analyze --costs``
   prints;
2. ``rfgraph.solve_memory.max_batch`` / ``max_size``: the largest batch at 224×224 for
   inference and for training (Adam) in 24 GiB, and the largest square image at batch 8 for
   training. ``--train`` on the command line also analyses the model in training mode
   (BatchNorm keeps its batch statistics for backward), so the training questions use an
   analysis with ``mode="train"``. Where rfgraph.solve_memory is missing (an older rfgraph),
   this step is skipped with a note.

Run: ``python examples/walkthroughs/03_will_it_fit.py`` from any directory. ``main()`` returns
the key numbers; tests/test_walkthroughs.py checks them against torch (``saved_tensors_hooks``,
the live tensors of a real run, ``p.numel()``, a real Adam step).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402
from rfgraph.cost_report import format_bytes  # noqa: E402
from rfgraph.loader import load_model  # noqa: E402

SPEC = "examples.zoo:resnet50"
AT = {"N": 8, "H": 224, "W": 224}
BUDGET = "24GiB"
#: the totals of to_dict() this page reads (formulas without --at, values with)
KEYS = ("param_bytes", "buffer_bytes", "peak_bytes", "inference_bytes", "grad_bytes",
        "optimizer_bytes", "saved_bytes", "train_bytes")


def has_memory_solve() -> bool:
    """Whether this rfgraph answers memory questions (rfgraph.solve_memory, ``rfgraph solve
    --max-batch/--max-size``)."""
    return importlib.util.find_spec("rfgraph.solve_memory") is not None


def main() -> dict:
    model = load_model(SPEC)

    # -- 1. rfgraph analyze examples.zoo:resnet50 --input N,3,H,W --costs memory,train ------------
    a = rfgraph.analyze(model, "N,3,H,W", costs="memory,train", optimizer="adam", name="resnet50")
    formulas = {k: a.to_dict()["totals"][k] for k in KEYS}
    b = a.evaluate(**AT)
    totals = b.to_dict()["totals"]
    values = {k: totals.get(f"{k}_at", totals[k]) for k in KEYS}
    print("ResNet-50, float32, Adam; formulas of N, H, W (peak: the term that dominates for "
          "large sizes):")
    for k in ("peak_bytes", "saved_bytes", "train_bytes"):
        print(f"  {k} = {formulas[k]}")
    print(f"at N={AT['N']}, {AT['H']}×{AT['W']}:")
    for k in KEYS:
        print(f"  {k:16} {values[k]:>15,} B  ({format_bytes(int(values[k]))})")
    print()

    out: dict = {"formulas": formulas, "values": values,
                 "macs_at": totals["macs_at"], "backward_macs_at": totals["backward_macs_at"],
                 "params": b.total_params}

    # -- 2. rfgraph solve ... --max-batch / --max-size --memory 24GiB [--train] -------------------
    if not has_memory_solve():
        print("skipped: this rfgraph has no memory questions yet (rfgraph.solve_memory, "
              "`rfgraph solve --max-batch/--max-size`)")
        out["solve"] = None
        return out
    from rfgraph.cli_solve import format_answer
    from rfgraph.solve_memory import max_batch, max_size

    infer = max_batch(a, BUDGET, {"H": 224, "W": 224})
    a_train = rfgraph.analyze(model, "N,3,H,W", mode="train", costs="memory,train",
                              optimizer="adam", name="resnet50")
    train = max_batch(a_train, BUDGET, {"H": 224, "W": 224}, train=True)
    size = max_size(a_train, BUDGET, 8, train=True)
    for ans in (infer, train, size):
        print(format_answer(ans))
    out["solve"] = {
        "max_batch_inference": infer.batch, "inference_total": infer.total,
        "inference_next_total": infer.next_total,
        "max_batch_train": train.batch, "train_total": train.total,
        "train_next_total": train.next_total, "train_parts": dict(train.parts),
        "max_size_train": size.size, "size_total": size.total,
        "size_next": size.next_size, "size_next_total": size.next_total,
        "size_parts": dict(size.parts),
        "train_mode_formulas": {k: a_train.to_dict()["totals"][k] for k in KEYS},
        "budget": infer.memory,
    }
    return out


if __name__ == "__main__":
    main()
