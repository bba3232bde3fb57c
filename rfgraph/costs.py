"""Memory and training costs as formulas of the input sizes (``analyze(..., costs=...)``).

What is counted (docs/memory.md has the full model and a worked ResNet-50 example):

* per node, ``out_bytes``: the bytes of the *new storages* its outputs occupy. A view
  (reshape of a contiguous tensor, permute, slicing, ``detach``), an in-place op (``ReLU(inplace)``,
  ``x += y``) or an op that returns its input (dropout in eval) allocates nothing: 0;
* per node, ``saved_bytes`` (``train``): the storages autograd keeps for its backward, each
  counted once, parameters and buffers excluded (what ``saved_tensors_hooks`` sees);
* per node, ``grad_input_macs`` and ``grad_weight_macs`` (``train``): the multiply-accumulates of
  the backward, the way ``FlopCounterMode`` counts them (a conv or matmul costs its forward MACs
  once per operand that needs a gradient; the model input needs none);
* totals: parameter and buffer bytes, the inference peak along the graph order (a storage
  lives from the node that allocates it to the last node that reads it or a view of it; the
  input counts, parameters do not), the saved bytes (each storage once), forward + backward
  MACs and the optimizer's state.

The shapes come from the symbolic analysis. Which outputs allocate and which tensors autograd
saves come from running the graph on meta tensors (no memory, no arithmetic) at two sample
sizes; every formula is checked against the measured bytes at both, and a node whose bytes no
formula explains is said to be ``numeric`` (its cost is then known at those sizes only and the
totals say they are incomplete).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import sympy
import torch
from sympy import Expr, Integer
from torch import fx

from .cost_runs import CostRun as _CostRun
from .cost_runs import Walk as _Walk
from .cost_runs import storage_bytes as _nbytes
from .cost_runs import storage_id as _sid
from .cost_runs import walk as _walk
from .errors import RfgraphError
from .kinds import Kind
from .symbolic import axis_symbol, subs_int
from .tensor import TensorInfo
from .util import leaves, submodule

if TYPE_CHECKING:
    from .analysis import Analysis

__all__ = ["COSTS", "DTYPES", "OPTIMIZERS", "Costs", "NodeCost", "compute_costs",
           "parse_costs", "parse_bytes"]

#: what ``costs=`` may ask for besides params and MACs (always there)
COSTS = ("memory", "train")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}
#: extra copies of the trainable parameters an optimizer keeps (gradients come on top)
OPTIMIZERS = {"sgd": 0, "momentum": 1, "adam": 2}
#: sample sizes for the meta runs: a batch symbol N takes 2 and 3, every other symbol the
#: first two of these that the model accepts (odd, so no two dims coincide by accident)
_SAMPLE_N = (2, 3)
_SAMPLE_SIZES = (67, 97, 131, 227, 321, 513)


def parse_costs(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"memory,train"`` or ``("memory", "train")`` -> the normalised tuple; ``train``
    implies ``memory``."""
    if spec is None:
        return ()
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    bad = [s for s in items if s not in COSTS]
    if bad:
        raise RfgraphError(f"unknown cost {bad[0]!r}: use {', '.join(COSTS)} "
                           "(params and MACs are always computed)")
    if "train" in items and "memory" not in items:
        items.insert(0, "memory")
    return tuple(c for c in COSTS if c in items)


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """``"24GiB"`` -> 25769803776; ``"16GB"``, ``"512MiB"``, ``"1000000"`` (bytes)."""
    s = str(text).strip().lower().replace(" ", "")
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(num):]
    try:
        value = float(num)
    except ValueError:
        raise RfgraphError(f"bad memory size {text!r}: use e.g. 24GiB, 16GB or 512MiB") from None
    if unit not in _UNITS or value <= 0:
        raise RfgraphError(f"bad memory size {text!r}: use e.g. 24GiB, 16GB or 512MiB")
    return int(value * _UNITS[unit])


@dataclass
class NodeCost:
    """One node's memory and training costs (formulas of the input symbols).

    A formula is None when the node's bytes are not explained by its shapes (the node is then
    ``numeric``: see :attr:`measured`)."""

    out_bytes: Expr | None = Integer(0)
    #: the node's outputs share their inputs' storage (view, in-place op, identity)
    allocates: bool = False
    inplace: bool = False
    saved_bytes: Expr | None = Integer(0)
    grad_input_macs: Expr = Integer(0)
    grad_weight_macs: Expr = Integer(0)
    param_bytes: int = 0
    buffer_bytes: int = 0
    #: the output needs a gradient in training (it depends on a trainable parameter)
    requires_grad: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def backward_macs(self) -> Expr:
        return self.grad_input_macs + self.grad_weight_macs


@dataclass
class Costs:
    """The costs of one analysis: per node (:attr:`nodes`) and the totals' formulas."""

    kinds: tuple[str, ...]
    dtype: str
    optimizer: str
    nodes: dict[str, NodeCost]
    param_bytes: int
    buffer_bytes: int
    trainable_param_bytes: int
    #: distinct sums of live bytes over the graph order: the peak is their max
    peak_candidates: list[Expr]
    #: the candidate that dominates for large sizes (the peak formula shown); None (and no
    #: candidates) when some node's bytes are not a formula
    peak_formula: Expr | None
    saved_total: Expr | None
    #: notes about what is not exact (numeric nodes, unknown ops)
    notes: list[str] = field(default_factory=list)
    #: the sizes the meta runs used
    samples: list[dict[str, int]] = field(default_factory=list)

    @property
    def train(self) -> bool:
        return "train" in self.kinds

    @property
    def grad_bytes(self) -> int:
        return self.trainable_param_bytes

    @property
    def optimizer_bytes(self) -> int:
        """Gradients plus the optimizer's state: (1 + 0/1/2) x the trainable parameter bytes."""
        return (1 + OPTIMIZERS[self.optimizer]) * self.trainable_param_bytes

    @property
    def backward_macs(self) -> Expr:
        return sympy.Add(*(c.backward_macs for c in self.nodes.values()))

    @property
    def complete(self) -> bool:
        return all(c.out_bytes is not None and c.saved_bytes is not None
                   for c in self.nodes.values()) and self.saved_total is not None

    def peak_at(self, value_of: Any) -> int | None:
        """The exact inference peak at the sizes ``value_of`` substitutes (None when some
        node's bytes are not a formula: no peak is claimed then)."""
        if not self.peak_candidates:
            return None
        return max(int(value_of(c)) for c in self.peak_candidates)

    def inference_total(self, peak: Expr | int | None) -> Expr | None:
        if peak is None:
            return None
        return self.param_bytes + self.buffer_bytes + sympy.sympify(peak)

    def train_total(self, peak: Expr | int | None) -> Expr | None:
        """Parameters, buffers, gradients, optimizer state, saved activations and the inference
        peak (the working set of the forward and of the backward's gradients): an estimate
        from above of what training holds at once (docs/memory.md)."""
        if self.saved_total is None or peak is None:
            return None
        return (self.param_bytes + self.buffer_bytes + self.optimizer_bytes + self.saved_total
                + sympy.sympify(peak))


# -- formulas ------------------------------------------------------------------------------------
def _sizes_map(sizes: Mapping[str, int]) -> dict[sympy.Symbol, int]:
    return {axis_symbol(k): v for k, v in sizes.items()}


def _value(expr: Expr | int, subs: Mapping[sympy.Symbol, int]) -> int | None:
    v = subs_int(expr, subs)
    return int(v) if v.is_Integer else None


def _infos(value: Any) -> list[TensorInfo]:
    return [x for x in leaves(value) if isinstance(x, TensorInfo)]


def _numel(t: TensorInfo) -> Expr:
    return sympy.expand(sympy.Mul(*t.shape))


def _itemsize(t: torch.Tensor) -> int:
    return t.element_size()


def _candidate_sizes(a: Analysis, at: Mapping[str, int] | None,
                     found: Sequence[dict[str, int]]) -> Iterable[dict[str, int]]:
    """Sizes to run the meta passes at: sample sizes the formulas accept, then ``at`` (the
    sizes the user evaluates at: the fallback for a model that accepts one size only).
    ``found`` (the sizes that ran) picks the batch N of the next candidate."""
    if not a.symbols:
        yield {}
        return
    for size in _SAMPLE_SIZES:
        # each symbol its own value (H = 67, W = 131), so that no two dims coincide
        cand = {s: (_SAMPLE_N[min(len(found), 1)] if s == "N" else size + 64 * i)
                for i, s in enumerate(a.symbols)}
        try:
            a.evaluate(**cand)
        except RfgraphError:
            continue
        yield cand
    if at:
        yield dict(at)


def _input_shape(a: Analysis, sizes: Mapping[str, int]) -> list[int]:
    subs = _sizes_map(sizes)
    out = []
    for s in a.input_shape:
        v = _value(s, subs)
        if v is None:
            raise RfgraphError(f"memory costs: the input dim {s} has no value")
        out.append(v)
    return out


def compute_costs(a: Analysis, kinds: Sequence[str] = ("memory",), dtype: str | None = None,
                  optimizer: str = "adam", at: Mapping[str, int] | None = None) -> Costs:
    """The memory (and, with ``"train"`` in ``kinds``, training) costs of analysis ``a``."""
    from .modes import in_mode

    kinds = parse_costs(kinds)
    if optimizer not in OPTIMIZERS:
        raise RfgraphError(f"unknown optimizer {optimizer!r}: use {', '.join(OPTIMIZERS)}")
    gm = a.graph_module
    if gm is None:
        raise RfgraphError("memory costs need the analysed graph module")
    torch_dtype = _model_dtype(gm) if dtype is None else _dtype(dtype)
    dtype_name = next(k for k, v in DTYPES.items() if v == torch_dtype)
    fx_nodes = [n for n in gm.graph.nodes]
    samples: list[dict[str, int]] = []
    walks: list[_Walk] = []
    train_runs: list[_CostRun] = []
    failure: RfgraphError | None = None
    with in_mode(gm, a.mode):
        for cand in _candidate_sizes(a, at, samples):
            if cand in samples:
                continue
            try:  # the model may refuse a size the formulas accept (torch._assert on meta)
                run = _CostRun(gm, torch_dtype, grad=False)
                run.go(_input_shape(a, cand))
                walk = _walk(run, fx_nodes)
                trun = None
                if "train" in kinds:
                    trun = _CostRun(gm, torch_dtype, grad=True)
                    trun.go(_input_shape(a, cand))
                    trun.walk = _walk(trun, fx_nodes)  # type: ignore[attr-defined]
            except RfgraphError as exc:
                failure = exc  # the last: at the given sizes when there are some
                continue
            samples.append(cand)
            walks.append(walk)
            if trun is not None:
                train_runs.append(trun)
            if len(samples) == 2 or not a.symbols:
                break
    if not samples:
        raise RfgraphError("memory costs: the model runs at none of the sample sizes "
                           f"({', '.join(map(str, _SAMPLE_SIZES))}"
                           f"{' nor the given sizes' if at else ''}; give the sizes with --at)"
                           + (f": {failure}" if failure else ""))
    subs = [_sizes_map(s) for s in samples]
    info = {n.name: n for n in a._nodes}
    costs: dict[str, NodeCost] = {}
    notes: list[str] = []
    first = walks[0]
    storage_formula: dict[tuple[str, int], Expr | None] = {}
    for n in fx_nodes:
        ni = info.get(n.name)
        if ni is None or n.op == "output":
            continue
        c = NodeCost()
        costs[n.name] = c
        fresh = first.fresh.get(n.name, [])
        c.allocates = bool(fresh)
        c.inplace = not fresh and _is_inplace(n, gm)
        total: Expr | None = Integer(0)
        infos = _infos(ni.value)
        for k, sid in fresh:
            formula = _fresh_formula(infos, k, sid, first, walks, n.name, subs, fx_nodes)
            storage_formula[(n.name, k)] = formula
            total = None if formula is None or total is None else total + formula
        if total is None:
            c.notes.append("its output bytes are not a formula of its shapes (measured at the "
                           "sample sizes only)")
        c.out_bytes = None if total is None else sympy.expand(total)
    _params_and_grads(a, gm, costs, torch_dtype)
    param_bytes = sum(c.param_bytes for c in costs.values())
    buffer_bytes = sum(c.buffer_bytes for c in costs.values())
    trainable = _trainable_bytes(a, gm, torch_dtype)
    candidates = _peak_candidates(first, fx_nodes, storage_formula)
    if any(f is None for f in storage_formula.values()):
        candidates = []  # a storage known at the sample sizes only: no exact peak anywhere
    saved_total: Expr | None = Integer(0)
    if "train" in kinds:
        saved_total = _saved(a, costs, train_runs, storage_formula, walks, subs, fx_nodes)
    if any(c.out_bytes is None for c in costs.values()):
        notes.append("some nodes' bytes are known at the sample sizes only: the peak is not "
                     "a formula")
    unknown = [ni.name for ni in a.nodes if ni.unknown and not ni.has_rule]
    if unknown:
        notes.append(f"{len(unknown)} node(s) without a rule: their backward MACs are "
                     "estimated from their forward MACs")
    return Costs(kinds, dtype_name, optimizer, costs, param_bytes, buffer_bytes, trainable,
                 candidates, _dominant(candidates, a.symbols) if candidates else None,
                 saved_total, notes, samples)


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise RfgraphError(f"unknown dtype {name!r}: use {', '.join(DTYPES)}")
    return DTYPES[name]


def _model_dtype(gm: fx.GraphModule) -> torch.dtype:
    for p in gm.parameters():
        if p.is_floating_point() and p.dtype in DTYPES.values():
            return p.dtype
    return torch.float32


def _is_inplace(n: fx.Node, gm: fx.GraphModule) -> bool:
    if n.op == "call_module":
        return bool(getattr(submodule(gm, str(n.target)), "inplace", False))
    if n.op == "call_method":
        return str(n.target).endswith("_") and not str(n.target).endswith("__")
    if n.op == "call_function":
        name = getattr(n.target, "__name__", "")
        return bool(n.kwargs.get("inplace")) or name.startswith("i") and name in (
            "iadd", "isub", "imul", "itruediv") or (name.endswith("_") and not
                                                    name.endswith("__"))
    return False


def _fresh_formula(infos: list[TensorInfo], k: int, sid: int, first: _Walk,
                   walks: list[_Walk], name: str, subs: list[dict[sympy.Symbol, int]],
                   fx_nodes: Sequence[fx.Node]) -> Expr | None:
    """The bytes of the storage node ``name`` allocates at its leaf ``k``, as a formula of its
    output shapes, checked against the measured bytes at every sample size."""
    if k >= len(infos):
        return None
    sharing = [j for j, s in first.fresh.get(name, []) if s == sid]
    item = first.item[sid]
    candidates = [_numel(infos[k])]
    candidates.append(sympy.expand(sympy.Add(*(_numel(infos[j]) for j in sharing
                                               if j < len(infos)))))
    for numel in candidates:
        for w, s in zip(walks, subs):
            got = _storage_bytes(w, name, k)
            v = _value(numel, s)
            if got is None or v is None:
                break
            if v == 0 or got % v != 0 or got // v != item:
                break
        else:
            return sympy.expand(numel * item)
    return None


def _storage_bytes(w: _Walk, name: str, k: int) -> int | None:
    for j, sid in w.fresh.get(name, []):
        if j == k:
            return w.nbytes[sid]
    return None


def _params_and_grads(a: Analysis, gm: fx.GraphModule, costs: dict[str, NodeCost],
                      dtype: torch.dtype) -> None:
    """Parameter/buffer bytes per node (each tensor counted at its first user), which outputs
    need a gradient, and the backward MACs per node."""
    seen: set[int] = set()
    rg: dict[str, bool] = {}
    info = {n.name: n for n in a._nodes}
    for n in gm.graph.nodes:
        c = costs.get(n.name)
        ni = info.get(n.name)
        if c is None or ni is None:
            continue
        own: list[torch.Tensor] = []
        weights_rg = False
        if n.op == "call_module":
            mod = submodule(gm, str(n.target))
            own = [*mod.parameters(), *mod.buffers()]
            weights_rg = any(p.requires_grad for p in mod.parameters())
        elif n.op == "get_attr":
            obj: Any = None
            for getter in (gm.get_parameter, gm.get_buffer):
                try:
                    obj = getter(str(n.target))
                    break
                except AttributeError:
                    continue
            own = [obj] if isinstance(obj, torch.Tensor) else []
        for t in own:
            if id(t) in seen:
                continue
            seen.add(id(t))
            size = t.numel() * (_elem(dtype) if t.is_floating_point() else t.element_size())
            if isinstance(t, torch.nn.Parameter):
                c.param_bytes += size
            else:
                c.buffer_bytes += size
        if n.op == "get_attr":
            rg[n.name] = bool(own) and isinstance(own[0], torch.nn.Parameter) and \
                own[0].requires_grad
            c.requires_grad = rg[n.name]
            continue
        if n.op == "placeholder":
            rg[n.name] = False
            continue
        operands = [x.name for x in n.all_input_nodes]
        acts = [x for x in operands if info.get(x) is not None
                and info[x].kind is not Kind.CONSTANT]
        consts = [x for x in operands if x not in acts]
        act_rg = [x for x in acts if rg.get(x, False)]
        const_rg = [x for x in consts if rg.get(x, False)]
        c.requires_grad = bool(act_rg) or weights_rg or bool(const_rg)
        rg[n.name] = c.requires_grad
        macs = ni.macs
        if sympy.sympify(macs) == 0:
            continue
        sdpa = _sdpa_backward(n, ni, info, rg)
        if sdpa is not None:  # per gradient that is needed, the matmul that makes it
            c.grad_input_macs = sdpa
        elif n.op != "call_module" and not consts and len(acts) >= 2:
            # a product of two activations (q @ k^T): one gradient per operand that needs one
            c.grad_input_macs = macs * len(set(act_rg))
        else:
            c.grad_input_macs = macs if act_rg else Integer(0)
            c.grad_weight_macs = macs if (weights_rg or const_rg) else Integer(0)


def _sdpa_backward(n: fx.Node, ni: Any, info: Mapping[str, Any],
                   rg: Mapping[str, bool]) -> Expr | None:
    """Backward MACs of ``F.scaled_dot_product_attention`` (None for any other node). With
    S = Q·Kᵀ (L·S·E MACs per batch) and O = P·V (L·S·Ev): dV = Pᵀ·dO and dP = dO·Vᵀ cost
    L·S·Ev each, dQ = dS·K and dK = dSᵀ·Q cost L·S·E each; dP is needed when Q or K is."""
    if n.op != "call_function" or getattr(n.target, "__name__", "") != \
            "scaled_dot_product_attention":
        return None
    args = list(n.args[:3]) + [n.kwargs.get(k) for k in ("query", "key", "value")
                               if k in n.kwargs]
    nodes = [a for a in args if isinstance(a, fx.Node)]
    out = ni.tensor
    if len(nodes) != 3 or out is None:
        return None
    q, k, v = (info[x.name].tensor if x.name in info else None for x in nodes)
    if q is None or k is None:
        return None
    rows = sympy.Mul(*out.shape[:-1])  # batch dims x L
    s_len, e, ev = k.shape[-2], q.shape[-1], out.shape[-1]
    qk, pv = rows * s_len * e, rows * s_len * ev
    q_rg, k_rg, v_rg = (rg.get(x.name, False) for x in nodes)
    return sympy.expand(pv * (int(v_rg) + int(q_rg or k_rg)) + qk * (int(q_rg) + int(k_rg)))


def _elem(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _trainable_bytes(a: Analysis, gm: fx.GraphModule, dtype: torch.dtype) -> int:
    """Bytes of the trainable parameters the graph reaches (each once)."""
    seen: set[int] = set()
    total = 0
    for n in gm.graph.nodes:
        ps: list[torch.Tensor] = []
        if n.op == "call_module":
            ps = list(submodule(gm, str(n.target)).parameters())
        elif n.op == "get_attr":
            try:
                ps = [gm.get_parameter(str(n.target))]
            except AttributeError:
                ps = []
        for p in ps:
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            total += p.numel() * (_elem(dtype) if p.is_floating_point() else p.element_size())
    return total


def _peak_candidates(w: _Walk, fx_nodes: Sequence[fx.Node],
                     formula: Mapping[tuple[str, int], Expr | None]) -> list[Expr]:
    """The live bytes at each step of the graph order (distinct sums; the peak is their max).

    A storage is live from the node that allocates it to the last node that reads a value on
    it (the output node keeps what the model returns)."""
    order = {n.name: i for i, n in enumerate(fx_nodes)}
    last: dict[int, int] = {}
    for n in fx_nodes:
        for sid in w.holds.get(n.name, ()):
            last[sid] = max(last.get(sid, -1), order[n.name])
        for src in n.all_input_nodes:
            for sid in w.holds.get(src.name, ()):
                last[sid] = max(last.get(sid, -1), order[n.name])
    adds: dict[int, list[int]] = {}
    drops: dict[int, list[int]] = {}
    for sid, (name, _) in w.owner.items():
        b = order[name]
        adds.setdefault(b, []).append(sid)
        drops.setdefault(max(b, last.get(sid, b)), []).append(sid)
    live: dict[int, Expr] = {}
    out: dict[Expr, None] = {}
    for i in range(len(fx_nodes)):
        for sid in adds.get(i, ()):
            f = formula.get(w.owner[sid])
            live[sid] = Integer(w.nbytes[sid]) if f is None else f
        out[sympy.expand(sympy.Add(*live.values()))] = None
        for sid in drops.get(i, ()):
            live.pop(sid, None)
    return list(out) or [Integer(0)]


def _dominant(candidates: list[Expr], symbols: Sequence[str]) -> Expr:
    """The candidate that is largest when every size is large (2**12)."""
    if len(candidates) == 1:
        return candidates[0]
    subs = {axis_symbol(s): 4096 for s in symbols}
    return max(candidates, key=lambda e: (int(subs_int(e, subs)), sympy.default_sort_key(e)))


def _saved(a: Analysis, costs: dict[str, NodeCost], runs: list[_CostRun],
           storage_formula: Mapping[tuple[str, int], Expr | None], walks: list[_Walk],
           subs: list[dict[sympy.Symbol, int]], fx_nodes: Sequence[fx.Node]) -> Expr | None:
    """Saved-for-backward bytes per node and in total (each storage once)."""
    info = {n.name: n for n in a._nodes}
    total: Expr | None = Integer(0)
    counted: set[Any] = set()
    first = runs[0]
    fw: _Walk = first.walk  # type: ignore[attr-defined]
    for n in fx_nodes:
        c = costs.get(n.name)
        if c is None:
            continue
        per_run = [_distinct_saved(r, n.name) for r in runs]
        node_total: Expr | None = Integer(0)
        if len({len(p) for p in per_run}) > 1:
            node_total = None
        else:
            for j, (sid, _t) in enumerate(per_run[0]):
                if sid in fw.owner:  # an activation: the formula of the node that made it
                    key: Any = fw.owner[sid]
                    f = storage_formula.get(key)
                    if f is None and key not in storage_formula:
                        f = _internal_formula([p[j][1] for p in per_run], info.get(n.name),
                                              n, info, subs)
                else:  # a tensor made inside the node (indices, masks, statistics)
                    key = (n.name, "saved", j)
                    f = _internal_formula([p[j][1] for p in per_run], info.get(n.name), n,
                                          info, subs)
                if f is None:
                    node_total = None
                    total = None
                    break
                node_total = None if node_total is None else node_total + f
                if key not in counted:
                    counted.add(key)
                    total = None if total is None else total + f
        c.saved_bytes = None if node_total is None else sympy.expand(node_total)
        if c.saved_bytes is None:
            c.notes.append("what it saves for backward is not a formula of its shapes")
    return None if total is None else sympy.expand(total)


def _distinct_saved(run: _CostRun, name: str) -> list[tuple[int, torch.Tensor]]:
    fw: _Walk = run.walk  # type: ignore[attr-defined]
    out: dict[int, torch.Tensor] = {}
    for t in run.saved.get(name, []):
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            continue
        sid = _sid(t)
        if sid in fw.const or sid in run.const_storages:
            continue
        out.setdefault(sid, t)
    return list(out.items())


def _internal_formula(tensors: list[torch.Tensor], ni: Any, n: fx.Node,
                      info: Mapping[str, Any], subs: list[dict[sympy.Symbol, int]],
                      ) -> Expr | None:
    """The bytes of a saved tensor's storage as a formula: each dim matched to a dim of the
    node's input or output shapes that has the same value at every sample size (a dim that
    matches none is a constant when it is the same at every size, or when the model ran at one
    size only), times the whole number of such views the storage holds."""
    if ni is None:
        return None
    shapes: list[tuple[Expr, ...]] = [t.shape for t in _infos(ni.value)]
    for src in n.all_input_nodes:
        si = info.get(src.name)
        if si is not None:
            shapes += [t.shape for t in _infos(si.value)]
    t0 = tensors[0]
    # dims at the same position of a shape of the same rank first (indices, masks), then any
    same_rank = [s for s in shapes if len(s) == t0.dim()]
    by_pos = [list(dict.fromkeys(sympy.expand(s[k]) for s in same_rank))
              for k in range(t0.dim())]
    anywhere = list(dict.fromkeys(sympy.expand(d) for s in shapes for d in s))
    # then products of consecutive dims (a linear layer flattens N x L tokens into one dim)
    anywhere += [p for p in dict.fromkeys(sympy.expand(sympy.Mul(*s[i:j])) for s in shapes
                                          for i in range(len(s)) for j in range(i + 2, len(s) + 1))
                 if p not in anywhere]
    # a view into a larger storage (q, k and v as chunks of one projection): the storage is a
    # whole multiple of the view, the same multiple at every sample size
    # and an expanded view (stride 0: a norm broadcast over a dim) reads one element along it
    dims = [k for k in range(t0.dim()) if any(t.stride(k) != 0 for t in tensors)]
    ratios = {Fraction(_nbytes(t), max(1, math.prod(int(t.shape[k]) for k in dims)
                                        * t.element_size())) for t in tensors}
    if len(ratios) != 1 or next(iter(ratios)).denominator != 1:
        return None
    out: Expr = Integer(t0.element_size()) * int(next(iter(ratios)))
    for k in dims:
        vals = [int(t.shape[k]) for t in tensors]
        match = None
        for d in by_pos[k] + anywhere:
            if all(_value(d, s) == v for s, v in zip(subs, vals)):
                match = d
                break
        if match is None:
            if len(set(vals)) == 1 and (len(tensors) > 1 or len(subs) == 1):
                match = Integer(vals[0])
            else:
                return None
        out = out * match
    return sympy.expand(out)
