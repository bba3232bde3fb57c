"""examples/walkthroughs/: each script's ``main()`` numbers against independent oracles (torch's
output shapes, ``p.numel()``, ``FlopCounterMode``, ``saved_tensors_hooks``, the live tensors of
a real run, a real Adam step, closed forms), and each page's commands, run in order as a user
would type them, with the documented exit status and the output lines the page shows.

Page conventions (parsed here): commands are the ``$ `` lines of ``console`` blocks, the lines up
to the next command are its output (``...`` stands for omitted lines; a line ending in ``...`` is
a prefix of a real line), ``# exit status N`` documents a non-zero status. ``rfgraph`` runs
in-process (``rfgraph.cli.main``, as tests/test_cli.py does) except where the page shows a
``package.module`` spec failing outside the repository: that runs the real console script in a
clean environment. ``python`` and ``pdflatex`` lines run as subprocesses; ``cd path/to/rfgraph``
means the repository root, any other ``cd`` the page's scratch directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path

import pytest
import sympy
import torch
from oracles import flop_macs
from oracles import param_count as numel
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

from rfgraph.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
WALK = ROOT / "examples" / "walkthroughs"
PAGES = ("01_your_model_file", "02_formulas_for_a_paper", "03_will_it_fit")

pytestmark = pytest.mark.usefixtures("one_thread")


@cache
def script(name: str):
    spec = importlib.util.spec_from_file_location(f"walkthrough_{name}", WALK / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def w1(tmp_path_factory):
    return script("01_your_model_file").main(tmp_path_factory.mktemp("w1"))


@pytest.fixture(scope="module")
def w2(tmp_path_factory):
    return script("02_formulas_for_a_paper").main(tmp_path_factory.mktemp("w2"))


@pytest.fixture(scope="module")
def w3():
    return script("03_will_it_fit").main()


def memory_solve_present() -> bool:
    """``rfgraph solve --max-batch/--max-size`` exist (rfgraph.solve_memory and its flags)."""
    if importlib.util.find_spec("rfgraph.solve_memory") is None:
        return False
    import rfgraph.cli_solve

    return "--max-batch" in inspect.getsource(rfgraph.cli_solve)


# -- oracles -----------------------------------------------------------------------------------


def sym_value(formula: str, **sizes: int) -> int:
    """A formula string (rfgraph's text) evaluated by SymPy, not by rfgraph."""
    names = {k: sympy.Symbol(k) for k in sizes}  # N is a symbol here, not sympy.N
    expr = sympy.sympify(formula, locals=names).subs({names[k]: v for k, v in sizes.items()})
    assert expr.is_Integer, (formula, sizes, expr)
    return int(expr)


def conv_chain_field(modules: list[nn.Module]) -> tuple[int, int, int]:
    """Size, jump and offset of a chain of convs/pools (closed form: r += (k-1)·d·j,
    offset -= p·j, j *= s), from the modules' own attributes."""
    size, jump, offset = 1, 1, 0
    for m in modules:
        k, s, p, d = (getattr(m, a) for a in ("kernel_size", "stride", "padding", "dilation"))
        k, s, p, d = (x[0] if isinstance(x, tuple) else x for x in (k, s, p, d))
        size += (k - 1) * d * jump
        offset -= p * jump
        jump *= s
    return size, jump, offset


def saved_bytes(model: nn.Module, x: torch.Tensor, train: bool) -> int:
    """Bytes autograd saves for backward in one forward pass (each storage once, parameters and
    buffers excluded), seen by ``torch.autograd.graph.saved_tensors_hooks``."""
    model.train(train)
    consts = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in consts:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    model.eval()
    return sum(seen.values())


def tensors_in(value: object) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    fx.node.map_aggregate(value, lambda v: found.append(v) if isinstance(v, torch.Tensor)
                          else None)
    return found


def peak_bytes(model: nn.Module, x: torch.Tensor, train: bool) -> int:
    """The inference peak by running the fx graph with real tensors: a storage lives from the
    node that creates it to the last node that reads a value on it (views and in-place ops
    share their input's storage); the input counts, parameters and buffers do not."""
    model.train(train)
    gm = fx.symbolic_trace(model)
    nodes = list(gm.graph.nodes)
    consts = {t.untyped_storage().data_ptr() for t in [*gm.parameters(), *gm.buffers()]}
    interp = fx.Interpreter(gm)
    env: dict[fx.Node, object] = {}
    holds: dict[fx.Node, dict[int, int]] = {}
    with torch.no_grad():
        for n in nodes:
            if n.op == "placeholder":
                env[n] = x
            elif n.op != "output":
                args, kwargs = fx.node.map_arg((n.args, n.kwargs), lambda a: env[a])
                env[n] = getattr(interp, n.op)(n.target, args, kwargs)
            ts = tensors_in(env.get(n))
            holds[n] = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                        for t in ts if t.untyped_storage().data_ptr() not in consts}
    model.eval()
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    size: dict[int, int] = {}
    for i, n in enumerate(nodes):
        for sid, b in holds[n].items():
            first.setdefault(sid, i)
            size[sid] = b
            last[sid] = max(last.get(sid, i), i)
        for src in n.all_input_nodes:
            for sid in holds[src]:
                last[sid] = max(last[sid], i)
    return max(sum(b for sid, b in size.items() if first[sid] <= i <= last[sid])
               for i in range(len(nodes)))


# -- 01: your own model file -------------------------------------------------------------------
def test_01_numbers_against_torch(w1):
    from rfgraph.loader import load_model

    model = load_model(w1["spec"]).eval()
    with torch.no_grad():
        assert w1["output_shape_224"] == tuple(model(torch.zeros(1, 3, 224, 224)).shape)
    assert w1["params"] == numel(model) == 20234
    assert w1["buffers"] == sum(b.numel() for b in model.buffers())
    macs = flop_macs(model, (1, 3, 224, 224))
    assert w1["macs_224"] == w1["json_macs_224"] == w1["trusted_macs_224"] == macs
    for h, w in ((224, 224), (97, 131), (3, 3)):
        assert sym_value(w1["macs_formula"], H=h, W=w) == flop_macs(model, (1, 3, h, w))
    # the field of the max pool: conv 3x3/2 p1, conv 3x3 p1, max pool 2 (closed form)
    chain = [model.stem[0], model.block[0], model.block[3]]
    assert w1["rf_block_3"] == (conv_chain_field(chain),) * 2 == (((9, 4, -3),) * 2)
    # after global pooling: every one of the 56 pooled positions, 4 apart
    assert w1["rf_pool_224"] == ((9 + 55 * 4, 224, -3),) * 2
    assert w1["verify_ok"] and w1["verify_exit_status"] == 0 and len(w1["verify_sizes"]) == 3


def test_01_errors_against_torch(w1):
    from rfgraph.loader import load_model

    model = load_model(w1["spec"]).eval()
    # H >= 3: torch runs at 3 and refuses at 2 (the max pool gets a 1-pixel map)
    assert w1["min_input"] == {"H": 3, "W": 3}
    with torch.no_grad():
        model(torch.zeros(1, 3, 3, 224))
        with pytest.raises(RuntimeError):
            model(torch.zeros(1, 3, 2, 224))
    assert "node 'block_3' (MaxPool2d" in w1["too_small"] and w1["too_small"].endswith(
        "it needs H >= 3")
    assert "refusing to unpickle" in w1["pickle_refused"]
    assert "--trust-pickle" in w1["pickle_refused"]
    assert "holds a state_dict" in w1["state_dict"]
    assert w1["unknown_warning"].startswith("rfgraph: no rule for Gate (node 'gate')")
    gated = load_model(f"{w1['dir'] / 'mynet.py'}:MyGatedNet").eval()
    assert not w1["gated_complete"] and w1["gated_measured"] == {"head": 640}
    assert w1["gated_macs_224"] == flop_macs(gated, (1, 3, 224, 224))


def test_01_drawing_and_zoo(w1):
    if shutil.which("dot"):
        assert w1["drawing"] is not None and "<svg" in Path(w1["drawing"]).read_text()
    else:
        assert w1["drawing"] is None
    from examples.zoo import alexnet

    model = alexnet().eval()
    assert w1["zoo_params"] == numel(model)
    assert w1["zoo_macs_224"] == flop_macs(model, (1, 3, 224, 224))


# -- 02: formulas for a paper ------------------------------------------------------------------
def test_02_module_against_torch(w2):
    from examples.zoo import resnet50

    model = resnet50().eval()
    maps: list[tuple[int, ...]] = []
    model.layer4.register_forward_hook(lambda m, i, o: maps.append(tuple(o.shape)))
    assert w2["params"] == numel(model)
    for (h, w), got in w2["module_values"].items():
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            y = model(torch.zeros(1, 3, h, w))
        assert got["output_shape"] == tuple(y.shape) == (1, 1000)
        assert got["macs"] == counter.get_total_flops() // 2
        assert got["params"] == numel(model)
        assert got["last_map"] == maps[-1]
        assert sym_value(w2["macs_formula"], H=h, W=w) == got["macs"]
    # the field of the last feature map: the longest conv chain (stem, then every bottleneck's
    # conv1-conv2-conv3), closed form from the modules' attributes
    chain = [model.conv1, model.maxpool]
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            chain += [block.conv1, block.conv2, block.conv3]
    size, jump, offset = conv_chain_field(chain)
    assert w2["module_values"][(224, 224)]["rf_last_map"] == [(size, jump, offset, size)] * 2
    assert (size, jump, offset) == (427, 32, -213)
    # the smallest input: torch runs ResNet-50 on a 1x1 image
    assert w2["min_input"] == {"H": 1, "W": 1}
    with torch.no_grad():
        assert tuple(model(torch.zeros(1, 3, 1, 1)).shape) == (1, 1000)
    assert w2["check_error"] == "input too small: node 'conv1' would give output h = 0"


def test_02_files(w2):
    macs224 = w2["module_values"][(224, 224)]["macs"]
    # the module ran in a fresh interpreter without rfgraph, SymPy, torch or numpy
    assert w2["standalone"] == [f"(1, 1000) {macs224} {w2['params']}", "[]"]
    tex = Path(w2["tex"]).read_text()
    assert tex.startswith("\\documentclass") and tex.rstrip().endswith("\\end{document}")
    assert w2["macs_latex"] in tex and "\\left\\lceil \\frac{H}{32} \\right\\rceil" in tex
    if shutil.which("pdflatex"):
        assert Path(w2["pdf"]).read_bytes().startswith(b"%PDF")
    else:
        assert w2["pdf"] is None
    # the LaTeX row the page quotes is a row of the file
    page = (WALK / "02_formulas_for_a_paper.md").read_text()
    quoted = re.search(r"```latex\n(.*?)\n```", page, re.S).group(1)
    assert quoted in tex.splitlines()
    assert f"= {macs224:,}" in w2["markdown"]
    assert w2["sympy_same"]
    assert int(w2["sympy_macs"].subs({s: 224 for s in w2["sympy_macs"].free_symbols})) == \
        macs224


def test_02_runs_as_a_script_from_another_directory(tmp_path):
    proc = subprocess.run([sys.executable, str(WALK / "02_formulas_for_a_paper.py"),
                           str(tmp_path / "out")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "same as rfgraph: True" in proc.stdout
    assert (tmp_path / "out" / "resnet50_formulas.py").is_file()


# -- 03: will it fit ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def r50():
    from examples.zoo import resnet50

    return resnet50().eval()


@pytest.fixture(scope="module")
def measured(r50):
    """Saved and peak bytes of ResNet-50 measured with torch, eval and train mode, at N = 1 on
    224x224 and at N = 1, 2 on 64x64 (the batch dependence)."""
    torch.manual_seed(0)
    out = {}
    for train in (False, True):
        for n, s in ((1, 224), (1, 64), (2, 64)):
            x = torch.randn(n, 3, s, s)
            out[train, n, s] = (saved_bytes(r50, x, train), peak_bytes(r50, x, train))
    return out


def test_03_bytes_against_torch(w3, r50, measured):
    v, f = w3["values"], w3["formulas"]
    params = sum(p.numel() * p.element_size() for p in r50.parameters())
    buffers = sum(b.numel() * b.element_size() for b in r50.buffers())
    assert v["param_bytes"] == v["grad_bytes"] == params == 4 * numel(r50)
    assert v["buffer_bytes"] == buffers
    # Adam's state: a real step, exp_avg and exp_avg_sq per parameter (the per-parameter step
    # counters, one scalar each, are not counted), plus the gradients
    from examples.zoo import resnet50

    model = resnet50()
    opt = torch.optim.Adam(model.parameters())
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    state = sum(t.numel() * t.element_size() for st in opt.state.values()
                for k, t in st.items() if k != "step")
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    assert v["optimizer_bytes"] == state + grads == 3 * params
    # eval mode (analyze --costs without --train): linear in N, exact at every measured size
    s224, p224 = measured[False, 1, 224]
    assert measured[False, 2, 64] == tuple(2 * b for b in measured[False, 1, 64])
    for (train, n, s), (saved, peak) in measured.items():
        if not train:
            assert sym_value(f["saved_bytes"], N=n, H=s, W=s) == saved
            assert sym_value(f["peak_bytes"], N=n, H=s, W=s) == peak
    assert v["saved_bytes"] == 8 * s224 and v["peak_bytes"] == 8 * p224
    assert v["inference_bytes"] == params + buffers + 8 * p224
    assert v["train_bytes"] == params + buffers + 3 * params + 8 * (s224 + p224)


def test_03_solve_against_torch(w3, r50, measured):
    if not memory_solve_present():
        assert w3["solve"] is None
        pytest.skip("rfgraph solve --max-batch/--max-size are not there yet")
    s = w3["solve"]
    budget = s["budget"]
    assert budget == 24 * 2**30
    params = 4 * numel(r50)
    buffers = sum(b.numel() * b.element_size() for b in r50.buffers())
    # inference: params + buffers + N * (the peak of one image)
    _, p1 = measured[False, 1, 224]
    assert s["max_batch_inference"] == (budget - params - buffers) // p1 == 2664
    assert s["inference_total"] == params + buffers + 2664 * p1 <= budget
    assert s["inference_next_total"] > budget
    # training, in training mode: BatchNorm also saves per-channel statistics, the same bytes
    # at every batch: saved(N) = a*N + b
    (s1, q1), (s2, q2) = measured[True, 1, 64], measured[True, 2, 64]
    b = 2 * s1 - s2
    assert b > 0 and q2 == 2 * q1
    a = measured[True, 1, 224][0] - b
    peak = measured[True, 1, 224][1]
    fixed = params + buffers + 3 * params + b
    assert s["max_batch_train"] == (budget - fixed) // (a + peak) == 265
    assert s["train_total"] == fixed + 265 * (a + peak) <= budget < s["train_next_total"]
    # the largest square image at batch 8: the train-mode formulas (checked against torch at
    # the measured sizes) at S and S + 1
    f = s["train_mode_formulas"]
    for (train, n, sz), (saved, _) in measured.items():
        if train:
            assert sym_value(f["saved_bytes"], N=n, H=sz, W=sz) == saved
    size = s["max_size_train"]
    assert s["size_next"] == size + 1
    for side, total in ((size, s["size_total"]), (size + 1, s["size_next_total"])):
        want = (params + buffers + 3 * params + sym_value(f["saved_bytes"], N=8, H=side, W=side)
                + sym_value(f["peak_bytes"], N=8, H=side, W=side))
        assert total == want
    assert s["size_total"] <= budget < s["size_next_total"]


# -- the pages' commands -----------------------------------------------------------------------
def parse_commands(page: str) -> list[tuple[str, list[str]]]:
    """(command line, output lines shown) for every ``$ `` line of the page's console blocks."""
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", page, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif out:
                out[-1][1].append(line.rstrip())
    return out


def run_in_process(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``rfgraph ARGV`` in this process (stdout, stderr and warnings as the program prints them)."""
    out, err = io.StringIO(), io.StringIO()

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = show
            try:
                code = cli_main(argv)
            except SystemExit as exc:  # argparse
                code = int(exc.code or 0)
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def console_script() -> str | None:
    """The installed ``rfgraph`` program next to this interpreter (None: not installed)."""
    found = Path(sys.executable).parent / "rfgraph"
    return str(found) if found.exists() else None


def check_output(command: str, shown: list[str], out: str, err: str) -> None:
    real = {line.rstrip() for line in (out + err).splitlines()}
    for line in shown:
        if not line.strip() or line.strip() == "...":
            continue
        if line.endswith("..."):
            prefix = line[:-3]
            assert any(r.startswith(prefix) for r in real), (command, line, out + err)
        else:
            assert line in real, (command, line, (out + err)[-3000:])


@pytest.mark.parametrize("page", PAGES)
def test_page_commands(page, tmp_path):
    """Every command of the page, in order: exit status 0 or the documented one, and every
    output line the page shows is a real output line."""
    text = (WALK / f"{page}.md").read_text()
    sys.modules.pop("mynet", None)  # the pickle's class must come from this page's mynet.py
    if page == "01_your_model_file":
        source = script(page).MYNET_SOURCE
        assert f"```python\n{source}```" in text  # the page's model file is the script's
        (tmp_path / "mynet.py").write_text(source)
    memory = memory_solve_present()
    exported = at_root = False
    ran = 0
    steps = [(part, shown if k == len(parts) - 1 else [])
             for command, shown in parse_commands(text)
             for parts in [command.split(" && ")] for k, part in enumerate(parts)]
    for command, shown in steps:
        words = shlex.split(command, comments=True)
        status = re.search(r"# exit status (\d+)", command)
        want = int(status.group(1)) if status else 0
        env_root = words[0] == "PYTHONPATH=path/to/rfgraph"
        if env_root:
            words = words[1:]
        program, argv = words[0], words[1:]
        if program == "cd":  # every command runs in tmp_path; at the root specs import
            at_root = argv == ["path/to/rfgraph"]
            continue
        if program == "mkdir":
            continue
        if program == "export":
            exported = exported or argv == ["PYTHONPATH=path/to/rfgraph"]
            continue
        if program == "pdflatex":
            if shutil.which("pdflatex") is None:
                continue
            proc = subprocess.run(words, cwd=tmp_path, capture_output=True, text=True,
                                  timeout=120)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        elif program == "python":
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            if exported:
                env["PYTHONPATH"] = str(ROOT)
            proc = subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True,
                                  text=True, timeout=300, env=env)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        elif program == "rfgraph":
            if not memory and ("--max-batch" in argv or "--max-size" in argv):
                print(f"skipped (no memory questions in this rfgraph yet): {command}")
                continue
            spec = next((a for a in argv[1:2] if ":" in a and ".py" not in a), None)
            outside = spec is not None and not (exported or env_root or at_root)
            if outside:  # a module spec outside the repository: the real program, clean env
                exe = console_script()
                if exe is None:
                    continue
                env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
                proc = subprocess.run([exe, *argv], cwd=tmp_path, capture_output=True,
                                      text=True, timeout=300, env=env)
                code, out, err = proc.returncode, proc.stdout, proc.stderr
            else:
                code, out, err = run_in_process(argv, tmp_path)
            if "--render" in argv and shutil.which("dot") is None:
                shown = []  # without Graphviz: a warning and the .dot file instead
        else:
            raise AssertionError(f"{page}: a command this test does not know: {command}")
        ran += 1
        assert code == want, (page, command, code, out[-2000:], err[-2000:])
        check_output(command, shown, out, err)
    assert ran >= 4
