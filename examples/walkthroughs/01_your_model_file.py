"""Walk-through 1: analyse your own model file (01_your_model_file.md, step by step).

The page types ``rfgraph`` commands; this script does the same steps with the Python API:

1. writes ``mynet.py`` (the page's model file) into a directory and loads ``mynet.py:MyNet``
   the way the command line does (``rfgraph.loader.load_model``);
2. the symbolic table (``rfgraph analyze mynet.py:MyNet --input 1,3,H,W``), then the numbers at
   224×224 (``--at H=224,W=224``), the JSON (``--json``), the drawing (``--render mynet.svg``,
   skipped with a note when Graphviz ``dot`` is missing) and ``rfgraph verify``;
3. the one-line errors: an input too small, a pickle without ``--trust-pickle``, a file holding
   only a state_dict, and the warning for an op without a rule;
4. a ``package.module:callable`` spec (``examples.zoo:alexnet``), which needs the repository on
   ``sys.path`` (the command line: run from the repository root, or set PYTHONPATH).

Run: ``python examples/walkthroughs/01_your_model_file.py [DIR]`` from any directory (DIR: where
the files go; default a new temporary directory). ``main()`` returns the key numbers;
tests/test_walkthroughs.py checks them against torch.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402
from rfgraph.loader import load_model  # noqa: E402
from rfgraph.solve import min_input  # noqa: E402
from rfgraph.symbolic import format_expr  # noqa: E402

#: the model file of the page, byte for byte (tests/test_walkthroughs.py checks the page has it)
MYNET_SOURCE = '''\
import torch
from torch import nn


class MyNet(nn.Module):
    """A small classifier: a strided conv stem, a conv block with max pooling, a linear head."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32),
                                  nn.ReLU(inplace=True))
        self.block = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64),
                                   nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        x = self.block(self.stem(x))
        return self.head(torch.flatten(self.pool(x), 1))


class Gate(nn.Module):
    """Branches on the data: torch.fx cannot trace it, so rfgraph keeps it as one opaque node."""

    def forward(self, x):
        return x if x.mean() > 0 else -x


class MyGatedNet(MyNet):
    def __init__(self):
        super().__init__()
        self.gate = Gate()

    def forward(self, x):
        x = self.gate(self.block(self.stem(x)))
        return self.head(torch.flatten(self.pool(x), 1))
'''


def write_model_file(directory: str | Path) -> Path:
    """Write ``mynet.py`` into ``directory``; returns its path."""
    path = Path(directory) / "mynet.py"
    path.write_text(MYNET_SOURCE)
    return path


def write_pickles(directory: str | Path) -> tuple[Path, Path]:
    """``torch.save`` a whole MyNet (a pickle) and its state_dict (weights only) next to it, as
    the page does (``from mynet import MyNet``: the pickle names the class ``mynet.MyNet``)."""
    directory = Path(directory)
    sys.modules.pop("mynet", None)
    sys.path.insert(0, str(directory))
    try:
        model = importlib.import_module("mynet").MyNet()
    finally:
        sys.path.remove(str(directory))
    whole, weights = directory / "mynet.pt", directory / "mynet_weights.pt"
    torch.save(model, whole)
    torch.save(model.state_dict(), weights)
    return whole, weights


def _error(fn) -> str:
    """The one-line message of the RfgraphError ``fn()`` raises (what the CLI prints after
    ``rfgraph: error: ``)."""
    try:
        fn()
    except rfgraph.RfgraphError as exc:
        return str(exc)
    raise AssertionError("expected an RfgraphError")


def main(directory: str | Path | None = None) -> dict:
    work = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="rfgraph-"))
    work.mkdir(parents=True, exist_ok=True)
    path = write_model_file(work)
    spec = f"{path}:MyNet"
    print(f"wrote {path}\n")

    # -- step 1: rfgraph analyze mynet.py:MyNet --input 1,3,H,W ---------------------------------
    a = rfgraph.analyze(load_model(spec), "1,3,H,W")
    print(a, "\n")
    block3 = a["block_3"].tensor.rf

    # -- step 2: --at H=224,W=224 ------------------------------------------------------------------
    b = a.evaluate(H=224, W=224)
    print(b, "\n")
    pool_rf = b.field_at("pool")

    # -- step 3: --json ---------------------------------------------------------------------------
    d = b.to_dict()
    print("to_dict(): output", d["output"]["out_shape_at"], " totals params", d["totals"]["params"],
          " macs_at", d["totals"]["macs_at"], "\n")

    # -- step 4: --render mynet.svg ---------------------------------------------------------------
    drawing = None
    if shutil.which("dot"):
        drawing = b.render(work / "mynet.svg")
        print(f"wrote {drawing}\n")
    else:
        print("skipped the drawing: Graphviz 'dot' is not installed "
              "(rfgraph would write mynet.dot instead)\n")

    # -- step 5: rfgraph verify mynet.py:MyNet ---------------------------------------------------
    report = a.verify()
    print(report.format(), "\n")

    # -- step 6: the one-line errors --------------------------------------------------------------
    too_small = _error(lambda: a.evaluate(H=2, W=224))
    whole, weights = write_pickles(work)
    pickle_refused = _error(lambda: load_model(str(whole)))
    trusted = load_model(str(whole), trust_pickle=True)
    trusted_macs = rfgraph.analyze(trusted, "1,3,H,W", at="H=224,W=224").total_macs_at
    state_dict = _error(lambda: load_model(str(weights), trust_pickle=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gated = rfgraph.analyze(load_model(f"{path}:MyGatedNet"), "1,3,H,W")
    unknown_warning = next(str(w.message) for w in caught if "no rule" in str(w.message))
    gated_at = gated.evaluate(H=224, W=224)
    for label, text in (("input too small", too_small), ("pickle", pickle_refused),
                        ("state_dict", state_dict), ("warning", unknown_warning)):
        print(f"{label}: {text}")
    print(f"MyGatedNet: complete={gated.complete}, unknown ops {gated.unknown_ops}; at 224×224 "
          f"MACs {gated_at.total_macs_at:,} (measured {gated_at.measured_macs})\n")

    # -- step 7: a package.module:callable spec (the repository is on sys.path here) -------------
    zoo = rfgraph.analyze(load_model("examples.zoo:alexnet"), "1,3,H,W", at="H=224,W=224")
    print(f"examples.zoo:alexnet at 224×224: params {zoo.total_params:,}, "
          f"MACs {zoo.total_macs_at:,}")

    return {
        "dir": work,
        "spec": spec,
        "macs_formula": format_expr(a.total_macs),
        "params": a.total_params,
        "buffers": a.total_buffers,
        "output_shape_224": tuple(d["output"]["out_shape_at"]),
        "macs_224": b.total_macs_at,
        "json_macs_224": d["totals"]["macs_at"],
        "rf_block_3": tuple((r.size, r.jump, r.offset) for r in block3),
        "rf_pool_224": tuple((f.size, f.jump, f.offset) for f in pool_rf),
        "min_input": min_input(a).sizes(),
        "drawing": drawing,
        "verify_ok": report.ok,
        "verify_exit_status": report.exit_status,
        "verify_sizes": report.sizes,
        "too_small": too_small,
        "pickle_refused": pickle_refused,
        "trusted_macs_224": trusted_macs,
        "state_dict": state_dict,
        "unknown_warning": unknown_warning,
        "gated_complete": gated.complete,
        "gated_macs_224": gated_at.total_macs_at,
        "gated_measured": dict(gated_at.measured_macs),
        "zoo_params": zoo.total_params,
        "zoo_macs_224": zoo.total_macs_at,
    }


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
