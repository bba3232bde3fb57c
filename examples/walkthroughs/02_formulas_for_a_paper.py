"""Walk-through 2: export formulas for a paper (02_formulas_for_a_paper.md, step by step).

The page types ``rfgraph export`` commands; this script does the same with the Python API
(``Analysis.export(format, depth)``) on ResNet-50 (``examples.zoo:resnet50``, plain PyTorch):

1. LaTeX, one row per top-level module (``--depth 1``), written to ``resnet50.tex`` and compiled
   with ``pdflatex`` when it is installed (skipped with a note otherwise); one formula on its own
   with ``rfgraph.exporters.to_latex_expr``;
2. a standalone Python module (``resnet50_formulas.py``, standard library only), imported and
   called at 224×224 and 97×131, every value compared with rfgraph's own; then imported in a
   fresh interpreter to show that it loads neither rfgraph, SymPy nor torch;
3. Markdown with the values at 224×224 beside the formulas;
4. SymPy (``srepr`` in JSON), read back with ``rfgraph.exporters.load_sympy``.

Run: ``python examples/walkthroughs/02_formulas_for_a_paper.py [DIR]`` from any directory (DIR:
where the files go; default a new temporary directory). ``main()`` returns the key numbers;
tests/test_walkthroughs.py checks them against torch.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402
from rfgraph.exporters import load_sympy, to_latex_expr  # noqa: E402
from rfgraph.loader import load_model  # noqa: E402
from rfgraph.symbolic import format_expr  # noqa: E402

SIZES = ((224, 224), (97, 131))
#: the last node that keeps the spatial axes (ResNet-50's last feature map)
LAST_MAP = "layer4_2_relu_2"
#: a fresh interpreter imports the exported module and lists what else it loaded
_STANDALONE = (
    "import sys; import resnet50_formulas as f; "
    "print(f.output_shape(224, 224), f.macs(224, 224), f.params()); "
    "print(sorted(m for m in ('rfgraph', 'sympy', 'torch', 'numpy') if m in sys.modules))"
)


def import_file(path: Path, name: str):
    """Import a Python file as a module (here: the exported formulas)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_latex(tex: Path) -> Path | None:
    """``pdflatex`` the file in its directory; None (and a note) when pdflatex is missing."""
    if shutil.which("pdflatex") is None:
        print("skipped: pdflatex is not installed (the .tex is a standalone document: any "
              "LaTeX installation with amsmath, array, longtable and geometry compiles it)")
        return None
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name],
                          cwd=tex.parent, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"pdflatex failed:\n{proc.stdout[-2000:]}")
    pdf = tex.with_suffix(".pdf")
    print(f"pdflatex: wrote {pdf} ({pdf.stat().st_size:,} bytes)")
    return pdf


def main(directory: str | Path | None = None) -> dict:
    work = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="rfgraph-"))
    work.mkdir(parents=True, exist_ok=True)
    a = rfgraph.analyze(load_model("examples.zoo:resnet50"), "1,3,H,W", name="resnet50")
    print(f"ResNet-50: params {a.total_params:,}, MACs {format_expr(a.total_macs)}\n")

    # -- 1. LaTeX ----------------------------------------------------------------------------------
    tex = work / "resnet50.tex"
    tex.write_text(a.export("latex", depth=1))
    print(f"wrote {tex}")
    pdf = compile_latex(tex)
    macs_latex = to_latex_expr(a.total_macs)
    print(f"MACs in LaTeX: {macs_latex}\n")

    # -- 2. a standalone Python module -------------------------------------------------------------
    py = work / "resnet50_formulas.py"
    py.write_text(a.export("python"))
    f = import_file(py, "resnet50_formulas_walkthrough")
    module_values: dict[tuple[int, int], dict] = {}
    for h, w in SIZES:
        b = a.evaluate(H=h, W=w)
        got = {"output_shape": f.output_shape(h, w), "macs": f.macs(h, w), "params": f.params(),
               "last_map": f.node_shape(LAST_MAP, h, w),
               "rf_last_map": [tuple(x) for x in f.receptive_field(LAST_MAP, h, w)]}
        ref = {"output_shape": tuple(b.int_of(s) for s in b.output.tensor.shape),
               "macs": b.total_macs_at, "params": b.total_params,
               "last_map": tuple(b.int_of(s) for s in b[LAST_MAP].tensor.shape),
               "rf_last_map": [(x.size, x.jump, x.offset, x.min_size)
                               for x in b.field_at(LAST_MAP)]}
        same = got == ref
        print(f"{h}×{w}: module {got}\n         same as rfgraph: {same}")
        if not same:
            raise AssertionError(f"the exported module disagrees with rfgraph: {got} != {ref}")
        module_values[(h, w)] = got
    min_input = f.min_input()
    try:
        f.check(0, 224)
        check_error = ""
    except ValueError as exc:
        check_error = str(exc)
    print(f"min_input() {min_input}; check(0, 224): ValueError: {check_error}")
    fresh = subprocess.run([sys.executable, "-c", _STANDALONE], cwd=work, capture_output=True,
                           text=True, timeout=120, check=True).stdout.splitlines()
    print(f"in a fresh interpreter: {fresh[0]}; also imported: {fresh[1]}\n")

    # -- 3. Markdown, values beside the formulas ---------------------------------------------------
    markdown = a.evaluate(H=224, W=224).export("markdown", depth=1)
    print("\n".join(markdown.splitlines()[-3:]), "\n")

    # -- 4. SymPy ----------------------------------------------------------------------------------
    text = a.export("sympy")
    doc = load_sympy(text)
    macs_back = doc["totals"]["macs"]
    same_macs = bool(macs_back == a.total_macs)
    print(f"sympy export: format {json.loads(text)['format']!r}, MACs read back: {macs_back} "
          f"(equal to the analysis': {same_macs})")

    return {
        "dir": work,
        "params": a.total_params,
        "macs_formula": format_expr(a.total_macs),
        "macs_latex": macs_latex,
        "tex": tex,
        "pdf": pdf,
        "module": py,
        "module_values": module_values,
        "min_input": min_input,
        "check_error": check_error,
        "standalone": fresh,
        "markdown": markdown,
        "sympy_macs": macs_back,
        "sympy_same": same_macs,
    }


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
