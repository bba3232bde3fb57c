"""Attention and the products it is built of: matmul/bmm/mm (and their add- forms), einsum with
two operands, scaled dot-product attention, ``nn.MultiheadAttention``, and torchvision's
Swin window attention with its helpers (patch merging, relative-position bias).

All of them go through one labelled contraction (:func:`_contract`): every operand dim carries a
label; dims with the same label are one index (broadcast when size 1, a size condition when two
symbolic sizes must agree); labels missing from the output are summed over. Fields follow the
labels: an output dim keeps the input axis of the operand dims it comes from, a summed dim that
runs along an input axis makes that axis global (``AxisRF.collapsed``), and the fields of all
operands are merged per axis (constants and parameters take no part).

MACs are what ``FlopCounterMode`` counts (FLOPs / 2) with the math attention kernel, except that
it counts 0 for ``torch.matmul`` on a 1-D operand (``aten.mv``/``aten.dot`` have no formula):
rfgraph counts those products too.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Hashable, Sequence

import sympy
import torch
import torch.nn.functional as F
from sympy import Expr, Integer
from torch import nn

from ..errors import InternalError, RuleError, Unsupported
from ..field_merge import merge_rfs
from ..kinds import Family, Kind
from ..receptive_field import AxisRF
from ..tensor import TensorInfo
from .base import Call, OpResult, lookup, prod, register, register_names
from .pad import pad_core, padded_size
from .shape import index_tensor

Label = Hashable


# -- the labelled contraction ----------------------------------------------------------------------
def _unify(call: Call, sizes: list[Expr], what: str) -> tuple[Expr, list[Expr]]:
    """One size for an index from the sizes of every dim that carries it (1s broadcast)."""
    distinct = list(dict.fromkeys(sympy.expand(s) for s in sizes if s != 1))
    if not distinct:
        return Integer(1), []
    numeric = [s for s in distinct if s.is_Integer]
    if len(numeric) > 1:
        raise RuleError(f"{call.where()}: sizes of {what} do not match: "
                        + ", ".join(str(s) for s in distinct))
    first = numeric[0] if numeric else distinct[0]
    return first, [sympy.Eq(first, s) for s in distinct if s != first]


class _Collapser:
    """``AxisRF.collapsed`` with one object per (field, size): merges deduplicate by identity, so
    the same input seen through two operands stays one field (no Min/Max nest)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, Expr], AxisRF] = {}
        self._keep: list[AxisRF] = []

    def __call__(self, rf: AxisRF, n: Expr) -> AxisRF:
        key = (id(rf), sympy.expand(n))
        if key not in self._cache:
            self._keep.append(rf)
            self._cache[key] = rf.collapsed(n)
        return self._cache[key]


def _contract(call: Call, operands: Sequence[TensorInfo], labels: Sequence[Sequence[Label]],
              out: Sequence[Label], extra_sizes: dict[Label, Expr] | None = None,
              also_collapse: Sequence[Sequence[int]] | None = None,
              ) -> tuple[TensorInfo, dict[Label, Expr], list[Expr]]:
    """The output of a product over labelled operands: (tensor, size per label, conditions).

    ``extra_sizes``: output labels no operand carries (a projection's width); ``also_collapse``:
    operand dims that every output element reads in full although their label is kept (the
    query tokens of attention).
    """
    for t, ls in zip(operands, labels):
        if len(ls) != t.ndim:
            raise RuleError(f"{call.where()}: {len(ls)} subscripts for a {t.ndim}-d operand")
    occurrences: dict[Label, list[tuple[int, int]]] = {}
    for i, ls in enumerate(labels):
        for d, lab in enumerate(ls):
            occurrences.setdefault(lab, []).append((i, d))
    sizes: dict[Label, Expr] = {}
    conditions: list[Expr] = []
    for lab, occ in occurrences.items():
        sizes[lab], conds = _unify(call, [operands[i].shape[d] for i, d in occ], f"index {lab}")
        conditions.extend(conds)
    for lab, size in (extra_sizes or {}).items():
        sizes[lab] = sympy.sympify(size)
    missing = [lab for lab in out if lab not in sizes]
    if missing:
        raise RuleError(f"{call.where()}: output index {missing[0]} is on no operand")

    # which operand dims each output dim comes from (size-1 dims are broadcast: none)
    sources = [[(i, d) for i, d in occurrences.get(lab, ())
                if operands[i].shape[d] != 1] for lab in out]
    axes: list[int | None] = []
    for srcs in sources:
        found = [operands[i].axes[d] for i, d in srcs if operands[i].axes[d] is not None]
        axes.append(found[0] if found else None)
    for ax in {a for a in axes if a is not None}:  # one axis on two output dims: not modelled
        if axes.count(ax) > 1:
            axes = [None if b == ax else b for b in axes]
    carried = {(i, d): axes[k] for k, srcs in enumerate(sources) for i, d in srcs}

    collapse = _Collapser()
    forced = [set(c) for c in also_collapse] if also_collapse else [set() for _ in operands]
    fields: list[list[AxisRF | None]] = []
    for i, t in enumerate(operands):
        rf = list(t.rf)
        for d in range(t.ndim):
            a = t.axes[d]
            if a is None or (field := rf[a]) is None or t.shape[d] == 1:
                continue
            if carried.get((i, d)) != a or d in forced[i]:  # summed, or not kept as this axis
                rf[a] = collapse(field, t.shape[d])
        fields.append(rf)

    n_axes = len(operands[0].rf)
    live = [i for i, t in enumerate(operands) if not t.const]
    rf_out: list[AxisRF | None] = []
    if not live:
        rf_out = list(operands[0].rf)
    else:
        for a in range(n_axes):
            present = [fields[i][a] for i in live]
            dims = [next((d for d in range(operands[i].ndim) if carried.get((i, d)) == a), None)
                    for i in live]
            rf_out.append(merge_rfs(present, [d is None for d in dims],
                                    [None if d is None else operands[i].shape[d]
                                     for i, d in zip(live, dims)]))
    shape = tuple(sizes[lab] for lab in out)
    y = TensorInfo(shape, tuple(axes), tuple(rf_out), const=not live)
    return y, sizes, conditions


# -- matmul and friends ----------------------------------------------------------------------------
def _matmul_labels(a: TensorInfo, b: TensorInfo,
                   ) -> tuple[list[Label], list[Label], list[Label]]:
    if a.ndim == 0 or b.ndim == 0:
        raise RuleError("matmul of a 0-d tensor")
    la: list[Label] = ["k"] if a.ndim == 1 else [("b", a.ndim - 2 - t) for t in range(a.ndim - 2)
                                                 ] + ["n", "k"]
    lb: list[Label] = ["k"] if b.ndim == 1 else [("b", b.ndim - 2 - t) for t in range(b.ndim - 2)
                                                 ] + ["k", "m"]
    nb = max(a.ndim, b.ndim) - 2
    out: list[Label] = [("b", nb - t) for t in range(nb)]
    if a.ndim > 1:
        out.append("n")
    if b.ndim > 1:
        out.append("m")
    return la, lb, out


def matmul_core(call: Call, a: TensorInfo, b: TensorInfo,
                addend: TensorInfo | None = None) -> OpResult:
    """``a @ b`` (``torch.matmul`` semantics) plus an optional broadcast ``addend``."""
    la, lb, out = _matmul_labels(a, b)
    operands, labels = [a, b], [la, lb]
    if addend is not None:
        if addend.ndim > len(out):
            raise RuleError(f"{call.where()}: the added tensor has more dims than the product")
        operands.append(addend)
        labels.append(out[len(out) - addend.ndim:])
    y, sizes, conditions = _contract(call, operands, labels, out)
    macs = prod([sizes[lab] for lab in dict.fromkeys([*la, *lb])])
    notes = ["matrix-vector product: MACs counted (FlopCounterMode counts 0 for "
             "aten.mv/aten.dot)"] if b.ndim == 1 else []
    return OpResult(y, macs=sympy.expand(macs), family=Family.LINEAR, conditions=conditions,
                    notes=notes)


def _need_ndim(call: Call, tensors: Sequence[TensorInfo], ndim: int, what: str) -> None:
    for t in tensors:
        if t.ndim != ndim:
            raise RuleError(f"{call.where()}: {what} expects {ndim}-d tensors, got {t.ndim}-d")


def _same_batch(call: Call, a: TensorInfo, b: TensorInfo) -> list[Expr]:
    """bmm does not broadcast: the batch sizes must be equal (a condition when symbolic)."""
    x, y = sympy.expand(a.shape[0]), sympy.expand(b.shape[0])
    if x == y:
        return []
    if x.is_Integer and y.is_Integer:
        raise RuleError(f"{call.where()}: batch sizes differ: {x} vs {y}")
    return [sympy.Eq(x, y)]


@register(torch.matmul, operator.matmul, "matmul", family=Family.LINEAR)
def matmul(call: Call) -> OpResult:
    return matmul_core(call, call.tensor(0, "input"), call.tensor(1, "other"))


@register(torch.mm, "mm", family=Family.LINEAR)
def mm(call: Call) -> OpResult:
    a, b = call.tensor(0, "input"), call.tensor(1, "mat2")
    _need_ndim(call, (a, b), 2, "mm")
    return matmul_core(call, a, b)


@register(torch.bmm, "bmm", family=Family.LINEAR)
def bmm(call: Call) -> OpResult:
    a, b = call.tensor(0, "input"), call.tensor(1, "mat2")
    _need_ndim(call, (a, b), 3, "bmm")
    res = matmul_core(call, a, b)
    res.conditions = list(dict.fromkeys(_same_batch(call, a, b) + res.conditions))
    return res


@register(torch.addmm, "addmm", family=Family.LINEAR)
def addmm(call: Call) -> OpResult:
    c, a, b = call.tensor(0, "input"), call.tensor(1, "mat1"), call.tensor(2, "mat2")
    _need_ndim(call, (a, b), 2, "addmm")
    return matmul_core(call, a, b, addend=c)


@register(torch.baddbmm, "baddbmm", family=Family.LINEAR)
def baddbmm(call: Call) -> OpResult:
    c, a, b = call.tensor(0, "input"), call.tensor(1, "batch1"), call.tensor(2, "batch2")
    _need_ndim(call, (a, b), 3, "baddbmm")
    res = matmul_core(call, a, b, addend=c)
    res.conditions = list(dict.fromkeys(_same_batch(call, a, b) + res.conditions))
    return res


# -- einsum ----------------------------------------------------------------------------------------
_SUBSCRIPT = re.compile(r"^(?:[a-zA-Z]|\.\.\.)*$")


def _parse_einsum(call: Call, equation: str, operands: Sequence[TensorInfo],
                  ) -> tuple[list[list[Label]], list[Label]]:
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise RuleError(f"{call.where()}: equation {equation!r} names {len(terms)} operands, "
                        f"got {len(operands)}")
    for term in [*terms, rhs]:
        if not _SUBSCRIPT.match(term) or term.count("...") > 1:
            raise Unsupported(f"{call.where()}: einsum subscripts {term!r} are not supported")
    labels: list[list[Label]] = []
    n_ell = 0
    for term, t in zip(terms, operands):
        letters = term.replace("...", "")
        if "..." in term:
            k = t.ndim - len(letters)
            if k < 0:
                raise RuleError(f"{call.where()}: {term!r} has more subscripts than dims")
            n_ell = max(n_ell, k)
            head, _, tail = term.partition("...")
            labels.append([*head, *[("...", k - j) for j in range(k)], *tail])
        else:
            if len(letters) != t.ndim:
                raise RuleError(f"{call.where()}: {term!r} does not match a {t.ndim}-d operand")
            labels.append(list(term))
    ellipsis = [("...", n_ell - j) for j in range(n_ell)]
    if arrow:
        head, has_ell, tail = rhs.partition("...")
        out: list[Label] = [*head, *(ellipsis if has_ell else []), *tail]
        out_letters = [lab for lab in out if isinstance(lab, str)]
        if len(set(out_letters)) != len(out_letters):
            raise RuleError(f"{call.where()}: output subscript repeated in {equation!r}")
    else:
        counts: dict[str, int] = {}
        for ls in labels:
            for lab in ls:
                if isinstance(lab, str):
                    counts[lab] = counts.get(lab, 0) + 1
        out = [*ellipsis, *sorted(lab for lab, c in counts.items() if c == 1)]
    return labels, out


@register(torch.einsum, family=Family.LINEAR)
def einsum(call: Call) -> OpResult:
    equation = call.arg(0, "equation")
    if not isinstance(equation, str):
        raise Unsupported(f"{call.where()}: einsum in sublist format is not supported")
    rest = list(call.args[1:])
    if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        rest = list(rest[0])
    if not all(isinstance(t, TensorInfo) for t in rest):
        raise RuleError(f"{call.where()}: einsum operands must be tensors")
    if len(rest) != 2:
        raise Unsupported(f"{call.where()}: einsum with {len(rest)} operands is not supported "
                          "(two only)")
    labels, out = _parse_einsum(call, equation, rest)
    y, sizes, conditions = _contract(call, rest, labels, out)
    # torch sums an index found on one operand only first (no MACs); the product is a bmm
    # over the rest when some index is summed over both operands, else an elementwise mul
    both = (set(labels[0]) & set(labels[1])) - set(out)
    macs = prod([sizes[lab] for lab in dict.fromkeys([*out, *both])]) if both else Integer(0)
    notes = [] if both else ["no index summed over both operands: an elementwise product "
                             "(0 MACs, like mul)"]
    return OpResult(y, macs=sympy.expand(macs), family=Family.LINEAR, conditions=conditions,
                    notes=notes)


# -- scaled dot-product attention ------------------------------------------------------------------
@register(F.scaled_dot_product_attention, family=Family.ATTENTION)
def scaled_dot_product_attention(call: Call) -> OpResult:
    q, k, v = call.tensor(0, "query"), call.tensor(1, "key"), call.tensor(2, "value")
    mask = call.arg(3, "attn_mask")
    gqa = bool(call.kwargs.get("enable_gqa", False))
    if min(q.ndim, k.ndim, v.ndim) < 2:
        raise RuleError(f"{call.where()}: query, key and value need at least 2 dims")
    nb = max(q.ndim, k.ndim, v.ndim) - 2

    def batch(t: TensorInfo, kv: bool) -> list[Label]:
        labs: list[Label] = [("b", t.ndim - 2 - i) for i in range(t.ndim - 2)]
        if kv and gqa and t.ndim >= 3:
            labs[-1] = "kv_heads"  # heads repeated to the query's: a label of its own
        return labs

    conditions: list[Expr] = []
    if gqa and q.ndim >= 3 and k.ndim >= 3:
        hq, hk = sympy.expand(q.shape[-3]), sympy.expand(k.shape[-3])
        if hq.is_Integer and hk.is_Integer:
            if int(hq) % int(hk):
                raise RuleError(f"{call.where()}: {hq} query heads do not group into {hk}")
        elif hq != hk:
            conditions.append(sympy.Eq(sympy.Mod(hq, hk), 0))
    operands = [q, k, v]
    labels = [batch(q, False) + ["L", "E"], batch(k, True) + ["S", "E"],
              batch(v, True) + ["S", "Ev"]]
    out: list[Label] = [("b", nb - i) for i in range(nb)] + ["L", "Ev"]
    if isinstance(mask, TensorInfo):
        operands.append(mask)
        full = out[:-1] + ["S"]
        if mask.ndim > len(full):
            raise RuleError(f"{call.where()}: attn_mask has more dims than the scores")
        labels.append(full[len(full) - mask.ndim:])
    also = [[q.ndim - 2], [], []] + ([[]] if len(operands) == 4 else [])
    y, sizes, conds = _contract(call, operands, labels, out, also_collapse=also)
    conditions.extend(conds)
    b = prod([sizes[lab] for lab in out[:-2]])
    n, s = sizes["L"], sizes["S"]
    macs = b * n * s * sizes["E"] + b * n * s * sizes["Ev"]
    return OpResult(y, macs=sympy.expand(macs), family=Family.ATTENTION, conditions=conditions,
                    notes=["attention: every output token sees every key/value token"])


# -- nn.MultiheadAttention -------------------------------------------------------------------------
def _check_width(call: Call, size: Expr, want: int, what: str) -> list[Expr]:
    size = sympy.expand(size)
    if size.is_Integer:
        if int(size) != want:
            raise RuleError(f"{call.where()}: {what} has {size} features, expected {want}")
        return []
    return [sympy.Eq(size, want)]


@register(nn.MultiheadAttention, family=Family.ATTENTION)
def multihead_attention(call: Call) -> OpResult:
    m = call.mod(nn.MultiheadAttention)
    q, k, v = call.tensor(0, "query"), call.tensor(1, "key"), call.tensor(2, "value")
    need_weights = bool(call.arg(4, "need_weights", True))
    average = bool(call.arg(6, "average_attn_weights", True))
    e, heads = int(m.embed_dim), int(m.num_heads)
    if q.ndim not in (2, 3) or k.ndim != q.ndim or v.ndim != q.ndim:
        raise RuleError(f"{call.where()}: query, key and value must all be 2-d or 3-d")
    conditions = (_check_width(call, q.shape[-1], e, "the query")
                  + _check_width(call, k.shape[-1], int(m.kdim), "the key")
                  + _check_width(call, v.shape[-1], int(m.vdim), "the value"))
    batched = q.ndim == 3
    first = m.batch_first and batched

    def labs(tokens: str, width: str) -> list[Label]:
        if not batched:
            return [tokens, width]
        return ["N", tokens, width] if first else [tokens, "N", width]

    extra = int(m.bias_k is not None) + int(m.add_zero_attn)
    operands = [q, k, v]
    labels = [labs("L", "Eq"), labs("S", "Ek"), labs("S", "Ev")]
    t_q = 1 if first else 0
    also = [[t_q], [], []]
    out = labs("L", "Eo")
    y, sizes, conds = _contract(call, operands, labels, out, extra_sizes={"Eo": Integer(e)},
                                also_collapse=also)
    conditions.extend(conds)
    n = sizes.get("N", Integer(1))
    n_q, n_kv = sizes["L"], sizes["S"]
    s_att = n_kv + extra
    macs = n * (n_q * e * e + n_kv * int(m.kdim) * e + n_kv * int(m.vdim) * e
                + 2 * n_q * s_att * e + n_q * e * e)
    weights = None
    if need_weights:
        w_labels: list[Label] = [*(["N"] if batched else []), *([] if average else ["heads"]),
                                 "L", "S_att"]
        weights, _, _ = _contract(call, operands, labels, w_labels,
                                  extra_sizes={"heads": Integer(heads), "S_att": s_att},
                                  also_collapse=also)
    params = sum(p.numel() for p in m.parameters())
    notes = ["attention: every output token sees every key/value token"]
    return OpResult((y, weights), params, f"numel of the module's parameters = {params}",
                    sympy.expand(macs), family=Family.ATTENTION, conditions=conditions, notes=notes)


# -- torchvision's fx-wrapped Swin helpers -------------------------------------------------------
# torchvision marks these with torch.fx.wrap, so a trace keeps each call as one node. They are
# registered by qualified name (torchvision stays an optional dependency); the registry finds
# them through the function's qualified name (base.register_names).
_TV_SWIN = "torchvision.models.swin_transformer."


@register_names(_TV_SWIN + "_patch_merging_pad", family=Family.SHAPE)
def tv_patch_merging_pad(call: Call) -> OpResult:
    """pad H, W (dims -3, -2) to even sizes, then cat the four 2×2 phases on the last dim."""

    x = call.tensor(0, "x")
    h, w = x.shape[-3], x.shape[-2]
    padded = pad_core(call, x, [0, 0, 0, sympy.Mod(w, 2), 0, sympy.Mod(h, 2)], "constant")
    parts = [index_tensor(call, padded.value, (Ellipsis, slice(a, None, 2), slice(b, None, 2),
                                               slice(None))).value
             for a, b in ((0, 0), (1, 0), (0, 1), (1, 1))]
    found = lookup(torch.cat)
    if found is None:  # (rfgraph has a rule for torch.cat)
        raise InternalError(f"{call.where()}: no rule for torch.cat")
    cat = found[0]
    merged = cat(Call(call.node, None, call.module_name, torch.cat, (parts, -1), {}, call.at))
    merged.notes = padded.notes + merged.notes
    merged.kind, merged.family = Kind.LAYER, Family.SHAPE
    merged.min_sizes = padded.min_sizes
    return merged


@register_names(_TV_SWIN + "_get_relative_position_bias", family=Family.SHAPE)
def tv_relative_position_bias(call: Call) -> OpResult:
    """table[index].view(N, N, -1).permute(2, 0, 1).unsqueeze(0): a constant (1, heads, N, N)."""
    table, index = call.tensor(0, "relative_position_bias_table"), call.tensor(
        1, "relative_position_index")
    ws = call.arg(2, "window_size")
    n = int(ws[0]) * int(ws[1])
    gathered = index_tensor(call, table, index).value
    heads = sympy.cancel(gathered.numel() / (n * n))
    y = TensorInfo((Integer(1), heads, Integer(n), Integer(n)), (None,) * 4,
                   (None,) * len(table.rf), table.const and index.const)
    return OpResult(y, kind=Kind.SHAPE, family=Family.SHAPE)


def _tv_window_attention(call: Call) -> OpResult:
    """torchvision's shifted_window_attention(_v2): pad (B, H, W, C) to window multiples, roll,
    attend within windows (qkv linear, q·kᵀ, attn·v, proj), reverse, unpad. MACs as
    FlopCounterMode counts them (mm, bmm); the mask and the bias add nothing."""

    x = call.tensor(0, "input")
    qkv_w, proj_w = call.tensor(1, "qkv_weight"), call.tensor(2, "proj_weight")
    ws = [int(v) for v in call.arg(4, "window_size")]
    b, h, w, c = x.shape
    ph = padded_size(h, 0, sympy.Mod(ws[0] - sympy.Mod(h, ws[0]), ws[0]))
    pw = padded_size(w, 0, sympy.Mod(ws[1] - sympy.Mod(w, ws[1]), ws[1]))
    tokens = sympy.expand(b * ph * pw)
    n = ws[0] * ws[1]
    qkv_out, proj_out = qkv_w.shape[0], proj_w.shape[0]
    macs = tokens * c * qkv_out + 2 * tokens * n * c + tokens * c * proj_out
    rf = list(x.rf)
    for d in (1, 2):
        a = x.axes[d]
        if a is not None and (field := rf[a]) is not None and not field.is_global:
            rf[a] = field.collapsed(x.shape[d])
    note = (f"window attention ({ws[0]}×{ws[1]} windows on the map padded to "
            f"{ph}×{pw}): field taken as global (an upper bound: each token sees its window)")
    rf = [r.upper_bound(note) if r is not None else None for r in rf]
    y = TensorInfo(tuple(x.shape), x.axes, tuple(rf), x.const)
    return OpResult(y, macs=sympy.expand(macs), kind=Kind.LAYER, family=Family.ATTENTION,
                    notes=[note])


register_names(_TV_SWIN + "shifted_window_attention", _TV_SWIN + "shifted_window_attention_v2",
               family=Family.ATTENTION)(_tv_window_attention)
