"""Video models: torchvision's 3-D Swin and MViT helpers.

torchvision marks its helpers with ``torch.fx.wrap``, so a trace keeps each call as one node; they
are registered by qualified name (``base.register_names``), torchvision stays optional.

MACs are what ``FlopCounterMode`` counts (FLOPs / 2) with the math attention kernel. It counts
nothing for ``nn.LSTM`` on the CPU (the fused kernel has no formula), so LSTM has no rule here: it
stays an op measured numerically, never silently zero in a formula.
"""

from __future__ import annotations

import sympy
from sympy import Expr, Integer

from ..errors import RuleError, Unsupported
from ..field_merge import merge_rfs
from ..kinds import Family, Kind
from ..symbolic import ceildiv, floordiv
from ..tensor import TensorInfo
from .base import Call, OpResult, prod, register_names
from .merge import _broadcast
from .shape import unsqueeze

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


@register_names(_TV_SWIN3D + "_get_window_and_shift_size", family=Family.SHAPE)
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
    return OpResult((window, shift), kind=Kind.SHAPE, family=Family.SHAPE, notes=notes,
                    conditions=conditions, needs_at=needs_at)


@register_names(_TV_SWIN3D + "_compute_pad_size_3d", family=Family.SHAPE)
def tv_compute_pad_size_3d(call: Call) -> OpResult:
    """``(p - n % p) % p`` per axis: the padding up to a multiple of the patch (or window)."""
    sizes = call.arg(0, "size_dhw")
    patch = call.arg(1, "patch_size")
    out = []
    for n, p in zip(sizes, patch):
        n, p = sympy.sympify(n), sympy.sympify(p)
        out.append(_value(sympy.Mod(p - sympy.Mod(n, p), p)))
    return OpResult(tuple(out), kind=Kind.SHAPE, family=Family.SHAPE)


def _window_volume(call: Call, window) -> Expr:
    if len(window) < 3:
        raise RuleError(f"{call.where()}: expected a 3-D window, got {window!r}")
    return sympy.expand(prod(window[:3]))


@register_names(_TV_SWIN3D + "_get_relative_position_bias", family=Family.SHAPE)
def tv_relative_position_bias_3d(call: Call) -> OpResult:
    """``table[index[:N, :N].flatten()].view(N, N, -1).permute(2, 0, 1).unsqueeze(0)`` with N the
    window volume: a constant (1, heads, N, N)."""
    table = call.tensor(0, "relative_position_bias_table")
    index = call.tensor(1, "relative_position_index")
    n = _window_volume(call, call.arg(2, "window_size"))
    heads = table.shape[-1] if table.ndim == 2 else Integer(1)
    y = TensorInfo((Integer(1), heads, n, n), (None,) * 4, (None,) * len(table.rf),
                   table.const and index.const)
    return OpResult(y, kind=Kind.SHAPE, family=Family.SHAPE)


@register_names(_TV_SWIN3D + "_compute_attention_mask_3d", family=Family.SHAPE)
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
    return OpResult(y, kind=Kind.SHAPE, family=Family.SHAPE)


def _padded(call: Call, n: Expr, w: Expr) -> Expr:
    """n rounded up to a multiple of the window w (w a number, or the size itself)."""
    w = sympy.sympify(w)
    if w.is_Integer:
        return sympy.expand(ceildiv(n, int(w)) * int(w))
    if sympy.expand(w - n) == 0:
        return n
    raise Unsupported(f"{call.where()}: a symbolic window {w} that is not the map size {n}")


@register_names(_TV_SWIN3D + "shifted_window_attention_3d", family=Family.ATTENTION)
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
        field = rf[a] if a is not None else None
        if a is None or field is None:
            continue
        if not field.is_global:
            field = rf[a] = field.collapsed(x.shape[d])
        if sympy.expand(sympy.sympify(window[i]) - x.shape[d]) != 0:
            rf[a] = field.upper_bound(note)  # exact only when one window spans the axis
    y = TensorInfo(tuple(x.shape), x.axes, tuple(rf), x.const)
    return OpResult(y, macs=sympy.expand(macs), kind=Kind.LAYER, family=Family.ATTENTION,
                    notes=[note])


# -- torchvision MViT ----------------------------------------------------------------------------
@register_names(_TV_MVIT + "_unsqueeze", family=Family.SHAPE)
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
    return OpResult((x, call.tensor(0, "x").ndim), kind=Kind.SHAPE, family=Family.SHAPE)


@register_names(_TV_MVIT + "_squeeze", family=Family.SHAPE)
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
    return OpResult(x, kind=Kind.SHAPE, family=Family.SHAPE)


def _merged_fields(tensors: list[TensorInfo]) -> tuple:
    """Per input axis, the union of the fields of the (non-constant) tensors."""
    live = [t for t in tensors if not t.const] or tensors[:1]
    n_axes = max(len(t.rf) for t in tensors)
    return tuple(merge_rfs([t.rf[a] if a < len(t.rf) else None for t in live],
                           [t.dim_of_axis(a) is None for t in live],
                           [None if (k := t.dim_of_axis(a)) is None else t.shape[k]
                            for t in live])
                 for a in range(n_axes))


@register_names(_TV_MVIT + "_add_rel_pos", family=Family.ATTENTION)
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
    return OpResult(y, macs=macs, kind=Kind.MERGE, family=Family.ATTENTION, conditions=conditions,
                    notes=["relative position bias (decomposed over t, h, w) added to the "
                           "attention logits"])


@register_names(_TV_MVIT + "_add_shortcut", family=Family.MERGE)
def tv_mvit_add_shortcut(call: Call) -> OpResult:
    """``x += shortcut`` (all tokens, or all but the class token): x's shape, merged fields."""
    x, shortcut = call.tensor(0, "x"), call.tensor(1, "shortcut")
    _, conditions = _broadcast(call, [x, shortcut])
    y = x.with_shape(x.shape, rf=_merged_fields([x, shortcut]))
    return OpResult(y, kind=Kind.MERGE, family=Family.MERGE, conditions=conditions)
