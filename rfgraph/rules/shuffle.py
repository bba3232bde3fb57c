"""Shuffles: channel shuffle (a permutation of channels, followed per channel) and
pixel (un)shuffle, which turns channels into positions and back.
"""

from __future__ import annotations

from math import gcd

import sympy
import torch.nn.functional as F
from sympy import Expr, Integer
from torch import nn

from ..errors import RuleError, Unsupported
from ..field_merge import join_reasons, merge_rfs
from ..kinds import Family, Kind
from ..receptive_field import AxisRF
from ..symbolic import floordiv
from ..tensor import TensorInfo, Window
from .base import Call, OpResult, apply_window, known, register


# -- channel shuffle -------------------------------------------------------------------------------
@register(nn.ChannelShuffle, F.channel_shuffle, family=Family.SHUFFLE)
def channel_shuffle(call: Call) -> OpResult:
    x = call.tensor(0, "input")
    groups = (call.mod(nn.ChannelShuffle).groups if call.module is not None
              else call.arg(1, "groups"))
    c = x.shape[1]
    if c.is_Integer and int(c) % int(groups):
        raise RuleError(f"{call.where()}: {c} channels do not split into {groups} groups")
    y = x
    if x.channels is not None:  # output channel k is input channel (k mod g)·(C/g) + k div g
        g, n = int(groups), len(x.channels)
        y = x.with_shape(x.shape, channels=[x.channels[(k % g) * (n // g) + k // g]
                                            for k in range(n)])
    return OpResult(y, kind=Kind.LAYER, family=Family.SHUFFLE,
                    notes=[f"channel permutation ({groups} groups); field unchanged"])


# -- pixel shuffle ---------------------------------------------------------------------------------
def pixel_shuffle_core(call: Call, x: TensorInfo, r: int, inverse: bool) -> OpResult:
    if x.ndim < 3:
        raise RuleError(f"{call.where()}: needs a (N, C, H, W) input")
    c_dim = x.ndim - 3
    shape, rf = list(x.shape), list(x.rf)
    c = shape[c_dim]
    conditions = []
    if not inverse:
        if c.is_Integer and int(c) % (r * r):
            raise RuleError(f"{call.where()}: {c} channels are not divisible by {r}²")
        shape[c_dim] = sympy.expand(c / (r * r)) if c.is_Integer else floordiv(c, r * r)
    else:
        shape[c_dim] = sympy.expand(c * r * r)
    for d in (x.ndim - 2, x.ndim - 1):
        n = shape[d]
        if inverse:
            shape[d] = floordiv(n, r)
            cond = sympy.Eq(sympy.Mod(n, r), 0)
            if cond is sympy.false:
                raise RuleError(f"{call.where()}: needs sizes divisible by {r}, but the size "
                                f"here is {n} for every input")
            if cond is not sympy.true:
                conditions.append(cond)
        else:
            shape[d] = sympy.expand(n * r)
        axis = x.axes[d]
        if axis is None or rf[axis] is None:
            continue
        old = known(rf[axis])
        if inverse:
            rf[axis] = old.through_window(r, r, 0)
        else:
            rf[axis] = old.resampled(lambda y: floordiv(y, r), lambda y: floordiv(y, r),
                                     sympy.Rational(1, r), r)
    notes: list[str] = []
    if inverse:
        channels, varies = _unshuffle_channels(x, r)
        y = x.with_shape(shape, rf=rf, channels=channels, varies=varies)
    else:
        y = _shuffle_channels(x, r, shape, rf, notes)
    if inverse:
        y2, min_sizes = apply_window(call, x, Window(2, (r, r), (r, r), (0, 0), (0, 0), (1, 1)),
                                     None)
    else:
        min_sizes = []
    return OpResult(y, family=Family.SHUFFLE, conditions=conditions, min_sizes=min_sizes,
                    notes=notes)


def _unshuffle_channels(x: TensorInfo, r: int) -> tuple[list | None, bool]:
    """Pixel unshuffle: output channel c·r² + i·r + j at (h, w) is input channel c at
    (h·r + i, w·r + j), so the channels of one input channel differ by their phase (i, j)."""
    chans = x.channel_fields()
    ah, aw = x.axes[x.ndim - 2], x.axes[x.ndim - 1]
    if chans is None or ah is None or aw is None:
        return None, True
    cache: dict[tuple[int, int], AxisRF | None] = {}

    def phase(f: AxisRF | None, i: int) -> AxisRF | None:
        if f is None:
            return None
        if (id(f), i) not in cache:
            cache[(id(f), i)] = f.through_window(1, r, -i)  # element y reads y·r + i
        return cache[(id(f), i)]

    out = []
    for fields in chans:
        for i in range(r):
            for j in range(r):
                new = list(fields)
                new[ah], new[aw] = phase(fields[ah], i), phase(fields[aw], j)
                out.append(tuple(new))
    return out, True


def _phased(parts: list[AxisRF], r: int) -> AxisRF:
    """Element y reads element y div r of field ``parts[y mod r]`` (one output channel of a
    pixel shuffle along one axis)."""
    if len({id(p) for p in parts}) == 1:
        p = parts[0]
        return p.resampled(lambda y: floordiv(y, r), lambda y: floordiv(y, r),
                           sympy.Rational(1, r), r)

    def at(which: int, y: Expr) -> Expr:
        y = sympy.sympify(y)
        if not y.is_Integer:
            raise Unsupported("a pixel shuffle of channels with different fields: the field "
                              "is known at positions, not as a formula of the position")
        return parts[int(y) % r]._eval(which, Integer(int(y) // r))

    period = r
    for p in parts:
        period = period * p.period // gcd(period, p.period)
    period = r * period
    jumps = {p.jump for p in parts}
    aligned = all(p.aligned for p in parts) and len(jumps) == 1
    out = AxisRF(lambda y: at(0, y), lambda y: at(1, y), parts[0].jump / r, period, aligned,
                 join_reasons([p.reason for p in parts]
                              + ([] if len(jumps) == 1 else ["channels' jumps differ"])),
                 tuple(dict.fromkeys(n for p in parts for n in p.notes)),
                 live=((lambda y: parts[y % r].is_live(y // r))
                       if any(p.gappy for p in parts) else None),
                 monotone=False, periodic=all(p.periodic for p in parts))
    return out._upper_if(any(p.upper for p in parts))


def _shuffle_channels(x: TensorInfo, r: int, shape: list, rf: list,
                      notes: list[str]) -> TensorInfo:
    """Pixel shuffle: output channel c at (h, w) is input channel c·r² + (h mod r)·r + (w mod
    r) at (h div r, w div r). Exact per axis when each channel's field along one axis does not
    depend on the phase along the other; otherwise the union over that phase, marked as an
    upper bound."""
    ah, aw = x.axes[x.ndim - 2], x.axes[x.ndim - 1]
    if not x.varies or ah is None or aw is None:
        return x.with_shape(shape, rf=rf)
    chans = x.channel_fields()
    if chans is None or any(f is None for fields in chans for f in (fields[ah], fields[aw])):
        note = ("pixel shuffle of channels whose fields may differ (not followed through "
                "every op before it): per-axis union, an upper bound")
        notes.append(note)
        for a in (ah, aw):
            if rf[a] is not None:
                rf[a] = rf[a].upper_bound(note)
        return x.with_shape(shape, rf=rf)
    n_out = len(chans) // (r * r)
    out_channels: list[list] = [list(chans[c * r * r]) for c in range(n_out)]
    for a, along_h in ((ah, True), (aw, False)):
        upper = False
        made: dict[tuple[int, ...], AxisRF] = {}
        for c in range(n_out):
            parts = []
            for p in range(r):
                ids = [c * r * r + (p * r + q if along_h else q * r + p) for q in range(r)]
                group = list({id(chans[k][a]): chans[k][a] for k in ids}.values())
                if len(group) > 1:  # this axis's field depends on the other axis's phase
                    upper = True
                    group = [merge_rfs(group, [False] * len(group))]
                parts.append(known(group[0]))  # (no field of chans is None here)
            key = tuple(id(p) for p in parts)
            if key not in made:
                made[key] = _phased(parts, r)
            out_channels[c][a] = made[key]
        fields = list(made.values())
        merged = fields[0] if len(fields) == 1 else merge_rfs(fields, [False] * len(fields))
        if upper:
            note = ("pixel shuffle: the field along one axis depends on the position along "
                    "the other (channels with different fields): per-axis union, an upper "
                    "bound")
            notes.append(note)
            merged = merged.upper_bound(note)
        rf[a] = merged
    channels = [tuple(f) for f in out_channels]
    varies = len({tuple(id(f) for f in fs) for fs in channels}) > 1
    return x.with_shape(shape, rf=rf, channels=channels if varies else None, varies=varies)


@register(nn.PixelShuffle, F.pixel_shuffle, family=Family.SHUFFLE)
def pixel_shuffle(call: Call) -> OpResult:
    r = (call.mod(nn.PixelShuffle).upscale_factor if call.module is not None
         else call.arg(1, "upscale_factor"))
    return pixel_shuffle_core(call, call.tensor(0, "input"), int(r), False)


@register(nn.PixelUnshuffle, F.pixel_unshuffle, family=Family.SHUFFLE)
def pixel_unshuffle(call: Call) -> OpResult:
    r = (call.mod(nn.PixelUnshuffle).downscale_factor if call.module is not None
         else call.arg(1, "downscale_factor"))
    return pixel_shuffle_core(call, call.tensor(0, "input"), int(r), True)
