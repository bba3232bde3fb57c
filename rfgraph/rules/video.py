"""Video models and a few remaining ops: torchvision's 3-D Swin and MViT helpers, ``tensor_split``,
``repeat_interleave``, ``addcmul``/``addcdiv`` and the ``nn.RNN``/``nn.GRU`` modules.

torchvision marks its helpers with ``torch.fx.wrap``, so a trace keeps each call as one node; they
are registered by qualified name (``base.register_names``), torchvision stays optional.

MACs are what ``FlopCounterMode`` counts (FLOPs / 2) with the math attention kernel. It counts
nothing for ``nn.LSTM`` on the CPU (the fused kernel has no formula), so LSTM has no rule here: it
stays an op measured numerically, never silently zero in a formula.
"""

from __future__ import annotations

import sympy
import torch
from sympy import Expr, Integer
from torch import nn

from ..errors import RuleError
from ..receptive_field import merge_rfs
from ..symbolic import ceildiv, floordiv
from ..tensor import TensorInfo
from .base import Call, OpResult, Unsupported, prod, register, register_names
from .glue import _broadcast, _collapse_dims
from .shape import index_tensor, unsqueeze

_TV_SWIN3D = "torchvision.models.video.swin_transformer."
_TV_MVIT = "torchvision.models.video.mvit."


def _value(v: Expr) -> Expr | int:
    """A size handed on as a value: a Python int when it is a number, else the expression."""
    v = sympy.sympify(v)
    return int(v) if v.is_Integer else v


# -- torchvision 3-D Swin ------------------------------------------------------------------------
def _clamps(call: Call, size: Expr, window: int, shift: int) -> tuple[bool, list[Expr], str]:
    """Does torchvision's ``size <= window`` hold (the window then shrinks to the size and the
    shift drops to 0)? Returns (answer, conditions, note). Decided by SymPy when it can, at the
    evaluated sizes when there are some; otherwise the formulas take the large-input branch
    (window and shift kept) under the condition size > window (size >= window when the shift is
    0 already: then both branches agree at size == window)."""
    rel = sympy.Le(sympy.sympify(size), window)
    if rel in (sympy.true, sympy.false):
        return bool(rel), [], ""
    if call.at is not None:
        value = call.concrete(size)
        if value.is_Integer:
            return int(value) <= window, [], ""
    cond = sympy.Gt(size, window) if shift else sympy.Ge(size, window)
    if cond in (sympy.true, sympy.false):  # pragma: no cover - decided above
        return cond is sympy.false, [], ""
    note = (f"window {window} and shift {shift} kept for size {size} (formulas assume "
            f"{cond}; evaluating re-decides at the given sizes)")
    return False, [cond], note


@register_names(_TV_SWIN3D + "_get_window_and_shift_size", family="shape")
def tv_window_and_shift_size(call: Call) -> OpResult:
    """``_get_window_and_shift_size(shift_size, size_dhw, window_size)``: per axis, a window not
    smaller than the map shrinks to the map and its shift becomes 0. Values, not tensors."""
    shift = list(call.arg(0, "shift_size"))
    sizes = list(call.arg(1, "size_dhw"))
    window = list(call.arg(2, "window_size"))
    if len(shift) < 3 or len(sizes) < 3 or len(window) < 3:
        raise RuleError(f"{call.where()}: expected three sizes, windows and shifts")
    conditions: list[Expr] = []
    notes: list[str] = []
    needs_at = False
    for i in range(3):
        w, s = sympy.sympify(window[i]), sympy.sympify(shift[i])
        if not (w.is_Integer and s.is_Integer):
            raise Unsupported(f"{call.where()}: symbolic window {w} or shift {s}")
        clamp, conds, note = _clamps(call, sizes[i], int(w), int(s))
        if clamp:
            window[i], shift[i] = _value(sizes[i]), 0
        else:
            window[i], shift[i] = int(w), int(s)
        if conds:
            conditions += conds
            notes.append(note)
            needs_at = True
    return OpResult((window, shift), kind="shape", family="shape", notes=notes,
                    conditions=conditions, needs_at=needs_at)


@register_names(_TV_SWIN3D + "_compute_pad_size_3d", family="shape")
def tv_compute_pad_size_3d(call: Call) -> OpResult:
    """``(p - n % p) % p`` per axis: the padding up to a multiple of the patch (or window)."""
    sizes = call.arg(0, "size_dhw")
    patch = call.arg(1, "patch_size")
    out = []
    for n, p in zip(sizes, patch):
        n, p = sympy.sympify(n), sympy.sympify(p)
        out.append(_value(sympy.Mod(p - sympy.Mod(n, p), p)))
    return OpResult(tuple(out), kind="shape", family="shape")


def _window_volume(call: Call, window) -> Expr:
    if len(window) < 3:
        raise RuleError(f"{call.where()}: expected a 3-D window, got {window!r}")
    return sympy.expand(prod(window[:3]))


@register_names(_TV_SWIN3D + "_get_relative_position_bias", family="shape")
def tv_relative_position_bias_3d(call: Call) -> OpResult:
    """``table[index[:N, :N].flatten()].view(N, N, -1).permute(2, 0, 1).unsqueeze(0)`` with N the
    window volume: a constant (1, heads, N, N)."""
    table = call.tensor(0, "relative_position_bias_table")
    index = call.tensor(1, "relative_position_index")
    n = _window_volume(call, call.arg(2, "window_size"))
    heads = table.shape[-1] if table.ndim == 2 else Integer(1)
    y = TensorInfo((Integer(1), heads, n, n), (None,) * 4, (None,) * len(table.rf),
                   table.const and index.const)
    return OpResult(y, kind="shape", family="shape")


@register_names(_TV_SWIN3D + "_compute_attention_mask_3d", family="shape")
def tv_attention_mask_3d(call: Call) -> OpResult:
    """The shifted-window mask: a constant (windows, N, N) built from sizes."""
    x = call.tensor(0, "x")
    size = [sympy.sympify(s) for s in call.arg(1, "size_dhw")]
    window = [sympy.sympify(w) for w in call.arg(2, "window_size")]
    count = sympy.Integer(1)
    for s, w in zip(size, window):
        count = count * (floordiv(s, int(w)) if w.is_Integer else sympy.floor(s / w))
    n = _window_volume(call, window)
    y = TensorInfo((sympy.expand(count), n, n), (None,) * 3, (None,) * len(x.rf), True)
    return OpResult(y, kind="shape", family="shape")


def _padded(call: Call, n: Expr, w: Expr) -> Expr:
    """n rounded up to a multiple of the window w (w a number, or the size itself)."""
    w = sympy.sympify(w)
    if w.is_Integer:
        return sympy.expand(ceildiv(n, int(w)) * int(w))
    if sympy.expand(w - n) == 0:
        return n
    raise Unsupported(f"{call.where()}: a symbolic window {w} that is not the map size {n}")


@register_names(_TV_SWIN3D + "shifted_window_attention_3d", family="attention")
def tv_window_attention_3d(call: Call) -> OpResult:
    """torchvision's ``shifted_window_attention_3d``: pad (B, T, H, W, C) to window multiples,
    roll, attend within windows (qkv linear, q·kᵀ, attn·v, proj), reverse, unpad. MACs as
    FlopCounterMode counts them: tokens·C·(3C) + 2·tokens·N·C + tokens·C·C on the padded volume
    (N the window volume); the scale, the bias, the mask and the softmax add none."""
    x = call.tensor(0, "input")
    qkv_w, proj_w = call.tensor(1, "qkv_weight"), call.tensor(2, "proj_weight")
    window = list(call.arg(4, "window_size"))
    if x.ndim != 5:
        raise RuleError(f"{call.where()}: expected a (B, T, H, W, C) input")
    b, c = x.shape[0], x.shape[-1]
    padded = [_padded(call, x.shape[1 + i], window[i]) for i in range(3)]
    tokens = sympy.expand(b * prod(padded))
    n = _window_volume(call, window)
    macs = tokens * c * qkv_w.shape[0] + 2 * tokens * n * c + tokens * c * proj_w.shape[0]
    note = ("window attention ({} windows on the map padded to {}): field taken as global "
            "(an upper bound: each token sees its window)").format(
        "×".join(str(w) for w in window[:3]), "×".join(str(p) for p in padded))
    rf = list(x.rf)
    for i in range(3):
        d = 1 + i
        a = x.axes[d]
        if a is None or rf[a] is None:
            continue
        if not rf[a].is_global:
            rf[a] = rf[a].collapsed(x.shape[d])
        if sympy.expand(sympy.sympify(window[i]) - x.shape[d]) != 0:
            rf[a] = rf[a].upper_bound(note)  # exact only when one window spans the axis
    y = TensorInfo(tuple(x.shape), x.axes, tuple(rf), x.const)
    return OpResult(y, macs=sympy.expand(macs), kind="layer", family="attention", notes=[note])


# -- torchvision MViT ----------------------------------------------------------------------------
@register_names(_TV_MVIT + "_unsqueeze", family="shape")
def tv_mvit_unsqueeze(call: Call) -> OpResult:
    """``_unsqueeze(x, target_dim, expand_dim)`` -> (x with a dim inserted when it has one dim
    too few, its original rank)."""
    x = call.tensor(0, "x")
    target, expand = int(call.arg(1, "target_dim")), int(call.arg(2, "expand_dim"))
    if x.ndim == target - 1:
        inner = Call(call.node, None, call.module_name, "unsqueeze", (x, expand), {}, call.at)
        x = unsqueeze(inner).value
    elif x.ndim != target:
        raise RuleError(f"{call.where()}: unsupported input dimension {tuple(x.shape)}")
    return OpResult((x, call.tensor(0, "x").ndim), kind="shape", family="shape")


@register_names(_TV_MVIT + "_squeeze", family="shape")
def tv_mvit_squeeze(call: Call) -> OpResult:
    """``_squeeze(x, target_dim, expand_dim, tensor_dim)``: undo ``_unsqueeze``."""
    x = call.tensor(0, "x")
    target, expand = int(call.arg(1, "target_dim")), int(call.arg(2, "expand_dim"))
    if int(call.arg(3, "tensor_dim")) == target - 1:
        d = expand % x.ndim
        if x.shape[d] == 1:  # torch's squeeze leaves a dim of another size alone
            keep = [k for k in range(x.ndim) if k != d]
            x = TensorInfo(tuple(x.shape[k] for k in keep), tuple(x.axes[k] for k in keep),
                           x.rf, x.const, x.dtype)
        elif not x.shape[d].is_Integer:
            raise Unsupported(f"{call.where()}: squeeze of a symbolic dim {x.shape[d]}")
    return OpResult(x, kind="shape", family="shape")


def _merged_fields(tensors: list[TensorInfo]) -> tuple:
    """Per input axis, the union of the fields of the (non-constant) tensors."""
    live = [t for t in tensors if not t.const] or tensors[:1]
    n_axes = max(len(t.rf) for t in tensors)
    return tuple(merge_rfs([t.rf[a] if a < len(t.rf) else None for t in live],
                           [t.dim_of_axis(a) is None for t in live],
                           [None if t.dim_of_axis(a) is None else t.shape[t.dim_of_axis(a)]
                            for t in live])
                 for a in range(n_axes))


@register_names(_TV_MVIT + "_add_rel_pos", family="attention")
def tv_mvit_add_rel_pos(call: Call) -> OpResult:
    """MViTv2's decomposed relative position bias added to ``attn`` (B, heads, 1+Nq, 1+Nk).
    MACs: the two einsums over h and w and the matmul over t, B·heads·Nq·dim·(k_h + k_w + k_t)
    (Nq = q_t·q_h·q_w); the interpolation of the tables and the adds count none."""
    attn, q = call.tensor(0, "attn"), call.tensor(1, "q")
    q_thw = [sympy.sympify(v) for v in call.arg(2, "q_thw")]
    k_thw = [sympy.sympify(v) for v in call.arg(3, "k_thw")]
    if attn.ndim != 4 or q.ndim != 4 or len(q_thw) != 3 or len(k_thw) != 3:
        raise RuleError(f"{call.where()}: expected 4-D attn and q and (t, h, w) sizes")
    b, heads, _, dim = q.shape
    nq = prod(q_thw)
    macs = sympy.expand(b * heads * nq * dim * (k_thw[1] + k_thw[2] + k_thw[0]))
    conditions = []
    for have, want, what in ((q.shape[2], nq + 1, "query tokens"),
                             (attn.shape[3], prod(k_thw) + 1, "key tokens")):
        diff = sympy.expand(have - want)
        if diff != 0:
            if diff.is_Integer:
                raise RuleError(f"{call.where()}: {what} {have} do not match {want}")
            conditions.append(sympy.Eq(sympy.expand(have), sympy.expand(want)))
    y = attn.with_shape(attn.shape, rf=_merged_fields([attn, q]))
    return OpResult(y, macs=macs, kind="merge", family="attention", conditions=conditions,
                    notes=["relative position bias (decomposed over t, h, w) added to the "
                           "attention logits"])


@register_names(_TV_MVIT + "_add_shortcut", family="merge")
def tv_mvit_add_shortcut(call: Call) -> OpResult:
    """``x += shortcut`` (all tokens, or all but the class token): x's shape, merged fields."""
    x, shortcut = call.tensor(0, "x"), call.tensor(1, "shortcut")
    _, conditions = _broadcast(call, [x, shortcut])
    y = x.with_shape(x.shape, rf=_merged_fields([x, shortcut]))
    return OpResult(y, kind="merge", family="merge", conditions=conditions)


# -- tensor_split, repeat_interleave -------------------------------------------------------------
@register(torch.tensor_split, "tensor_split", family="shape")
def tensor_split(call: Call) -> OpResult:
    """``tensor_split(x, sections or indices, dim)``: slices of ``dim``; n sections of a size s
    are ceil((s - k)/n) long (k = 0..n-1), as torch splits them."""
    x = call.tensor(0, "input")
    spec = call.arg(1, "indices_or_sections")
    for name in ("indices", "sections", "tensor_indices_or_sections"):
        if spec is None and name in call.kwargs:
            spec = call.kwargs[name]
    d = int(call.arg(2, "dim", 0)) % x.ndim
    if spec is None or isinstance(spec, TensorInfo):
        raise Unsupported(f"{call.where()}: split points given as a tensor")
    size = x.shape[d]
    if isinstance(spec, (tuple, list)):
        points = [sympy.sympify(p) for p in spec]
        if any(not p.is_Integer or int(p) < 0 for p in points):
            raise Unsupported(f"{call.where()}: split points {spec!r}")
        bounds = [None, *(int(p) for p in points), None]
    else:
        n = int(spec)
        if n < 1:
            raise RuleError(f"{call.where()}: sections must be positive")
        bounds = [None]
        start: Expr = Integer(0)
        for k in range(n - 1):
            start = sympy.expand(start + ceildiv(size - k, n))
            bounds.append(start)
        bounds.append(None)
    if size.is_Integer:  # clip the bounds as Python slicing does
        bounds = [b if b is None else min(int(b), int(size)) for b in bounds]
    pieces = []
    notes: list[str] = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if lo is not None and hi is not None and sympy.sympify(hi).is_Integer and \
                sympy.sympify(lo).is_Integer and int(hi) < int(lo):
            hi = lo  # an empty piece
        index = (*[slice(None)] * d, slice(lo, hi))
        res = index_tensor(call, x, index)
        pieces.append(res.value)
        notes += res.notes
    return OpResult(tuple(pieces), kind="shape", family="shape",
                    notes=list(dict.fromkeys(notes)))


@register(torch.repeat_interleave, "repeat_interleave", family="shape")
def repeat_interleave(call: Call) -> OpResult:
    """Each element repeated r times along ``dim`` (the flattened tensor when dim is None):
    output element y of that dim is input element floor(y/r). No MACs."""
    x = call.tensor(0, "input")
    repeats = call.arg(1, "repeats")
    if repeats is None or isinstance(repeats, TensorInfo):
        raise Unsupported(f"{call.where()}: repeats given as a tensor")
    r = sympy.sympify(repeats)
    dim = call.arg(2, "dim")
    if dim is None:
        if x.ndim == 1:
            return OpResult(_repeat_dim(call, x, 0, r), kind="shape", family="shape")
        rf = _collapse_dims(x, list(range(x.ndim)))
        y = TensorInfo((sympy.expand(x.numel() * r),), (None,), tuple(rf), x.const, x.dtype)
        return OpResult(y, kind="shape", family="shape",
                        notes=["repeat_interleave of the flattened tensor"])
    return OpResult(_repeat_dim(call, x, int(dim) % x.ndim, r), kind="shape", family="shape")


def _repeat_dim(call: Call, x: TensorInfo, d: int, r: Expr) -> TensorInfo:
    shape = list(x.shape)
    shape[d] = sympy.expand(shape[d] * r)
    rf = list(x.rf)
    a = x.axes[d]
    if a is not None and rf[a] is not None and not rf[a].is_global and r != 1:
        if not r.is_Integer:
            raise Unsupported(f"{call.where()}: repeating a spatial dim {r} times")
        old, k = rf[a], int(r)
        rf[a] = old.compose(lambda y, k=k: floordiv(y, k), lambda y, k=k: floordiv(y, k),
                            old.jump / k, old.period * k)
    return x.with_shape(shape, rf=rf)


# -- addcmul / addcdiv ---------------------------------------------------------------------------
@register(torch.addcmul, torch.addcdiv, "addcmul", "addcmul_", "addcdiv", "addcdiv_",
          family="merge")
def addcmul(call: Call) -> OpResult:
    """input + value·t1·t2 (or t1/t2): a broadcast merge of the three; no MACs (FlopCounterMode
    counts none). The in-place forms keep the input's shape."""
    tensors = [call.arg(0, "input"), call.arg(1, "tensor1"), call.arg(2, "tensor2")]
    tensors = [t for t in tensors if isinstance(t, TensorInfo)]
    if not tensors:
        raise RuleError(f"{call.where()}: no tensor operand")
    y, conditions = _broadcast(call, tensors)
    if isinstance(call.target, str) and call.target.endswith("_"):
        x = tensors[0]
        for a, b in zip(reversed(x.shape), reversed(y.shape)):
            if a != b and a.is_Integer and b.is_Integer:
                raise RuleError(f"{call.where()}: the in-place result {tuple(y.shape)} does "
                                f"not fit {tuple(x.shape)}")
        y = x.with_shape(x.shape, rf=y.rf)
    return OpResult(y, kind="merge", family="merge", conditions=conditions)


# -- recurrent layers ----------------------------------------------------------------------------
_GATES = {nn.GRU: 3, nn.RNN: 1}


@register(nn.RNN, nn.GRU, family="recurrent")
def recurrent(call: Call) -> OpResult:
    """``nn.RNN`` / ``nn.GRU`` on a (T, B, in) input ((B, T, in) with batch_first, (T, in)
    unbatched): output (T, B, D·H) and h_n (D·layers, B, H). MACs per layer and direction:
    T·B·(in_l + H)·G·H (G = 3 gates for GRU, 1 for RNN), as FlopCounterMode counts them. The
    field along the sequence is taken as global (exact for h_n and bidirectional outputs; an
    upper bound for a one-way output, whose step t reads steps 0..t)."""
    m = call.module
    gates = _GATES.get(type(m))
    if gates is None:
        raise Unsupported(f"{call.where()}: {type(m).__name__} is not modelled")
    x = call.arg(0, "input")
    if not isinstance(x, TensorInfo):
        raise Unsupported(f"{call.where()}: input is not a tensor (a packed sequence?)")
    if getattr(m, "proj_size", 0):
        raise Unsupported(f"{call.where()}: proj_size")
    if x.ndim not in (2, 3):
        raise RuleError(f"{call.where()}: expected a 2-D or 3-D input")
    batched = x.ndim == 3
    t_dim = 1 if batched and m.batch_first else 0
    seq = x.shape[t_dim]
    batch = x.shape[1 - t_dim] if batched else Integer(1)
    in_f, hidden, layers = m.input_size, m.hidden_size, m.num_layers
    dirs = 2 if m.bidirectional else 1
    conditions = []
    last = sympy.expand(x.shape[-1])
    if last.is_Integer and int(last) != in_f:
        raise RuleError(f"{call.where()}: expects {in_f} input features, the input has {last}")
    if not last.is_Integer:
        conditions.append(sympy.Eq(last, in_f))
    macs = Integer(0)
    for layer in range(layers):
        width = in_f if layer == 0 else dirs * hidden
        macs += dirs * seq * batch * (width + hidden) * gates * hidden
    rf = _collapse_dims(x, [t_dim, x.ndim - 1])
    note = ("recurrence over the sequence: field taken as global"
            + ("" if dirs == 2 else " (an upper bound for the output: step t reads steps 0..t)"))
    out_rf = rf if dirs == 2 else [r.upper_bound(note) if r is not None else None for r in rf]
    out_shape = list(x.shape)
    out_shape[-1] = Integer(dirs * hidden)
    out_axes = list(x.axes)
    out_axes[-1] = None
    out = TensorInfo(tuple(out_shape), tuple(out_axes), tuple(out_rf))
    h_shape = (Integer(dirs * layers), batch, Integer(hidden)) if batched else (
        Integer(dirs * layers), Integer(hidden))
    h_n = TensorInfo(h_shape, (None,) * len(h_shape), tuple(rf))
    params = sum(p.numel() for p in m.parameters())
    return OpResult((out, h_n), params=params,
                    params_formula=f"numel of the weights and biases = {params}",
                    macs=sympy.expand(macs), family="recurrent", conditions=conditions,
                    notes=[note])
