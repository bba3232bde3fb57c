"""What the annotator knows about one tensor flowing through the graph."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy
from sympy import Expr, Min

from .field_merge import merge_rfs
from .receptive_field import AxisRF
from .symbolic import ceildiv, floordiv

#: names of the spatial axes in messages, per number of spatial dims
AXIS_LETTERS = {1: ("l",), 2: ("h", "w"), 3: ("d", "h", "w")}
MinSizes = list[tuple[Expr, str]]


@dataclass(frozen=True)
class Window:
    """A sliding window over the last ``nd`` dims of a tensor: conv, pooling, a pixel
    unshuffle, SAME-padded timm layers. Per axis: kernel k, stride s, padding left/right (an
    int or a size-dependent expression), dilation d (``k_eff = d(k-1)+1``), and for pooling
    ``ceil_mode``. ``rules.base.window`` builds one from torch-style arguments."""

    nd: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad_left: tuple[int | Expr, ...]
    pad_right: tuple[int | Expr, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool = False

    def k_eff(self, i: int) -> int:
        return self.dilation[i] * (self.kernel[i] - 1) + 1

    def out_size(self, n: Expr, i: int) -> Expr:
        """PyTorch's output size along axis ``i`` of size ``n`` (conv and pooling, ceil_mode
        included)."""
        k_eff, s = self.k_eff(i), self.stride[i]
        pl, pr = self.pad_left[i], self.pad_right[i]
        if not self.ceil_mode:
            return floordiv(n + pl + pr - k_eff + s, s)
        # ceil_mode (pooling, symmetric padding p): ceil((n + 2p - k_eff)/s) + 1, minus the last
        # window when it would start in the right padding: min(.., ceil((n + p)/s)).
        out = ceildiv(n + pl + pr - k_eff + s, s)
        if pl + s > k_eff:
            out = Min(out, ceildiv(n + pl, s))
        return out


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's symbolic shape and, per *input* spatial axis, its receptive field.

    ``axes[d]`` is the index of the input spatial axis that tensor dim ``d`` runs along, or None
    (batch, channels, features). An input axis with no tensor dim has been collapsed (global
    pooling, flatten): its field is then the union over all positions.
    ``rf[a]`` is the field along input axis ``a`` (None: unknown, e.g. after an unknown op).
    """

    shape: tuple[Expr, ...]
    axes: tuple[int | None, ...]
    rf: tuple[AxisRF | None, ...]
    const: bool = False  # a parameter or buffer: no field of its own, ignored by merges
    #: the torch dtype when it matters and is known (buffers, measured outputs), else None
    #: (float): only used to build stand-in tensors when an op must be measured
    dtype: object = None
    #: per channel (dim :attr:`channel_dim`), the fields per axis, when channels differ and
    #: the rules that made this tensor followed them (cat along channels, pixel unshuffle,
    #: channel shuffle, per-channel and grouped windows); ``rf`` is always their union
    channels: tuple[tuple[AxisRF | None, ...], ...] | None = None
    #: False when every channel has the same field (``rf``); True when they may differ
    #: (``channels`` says how, when known). A pixel shuffle turns channels into positions, so
    #: it must know. True by default: a rule that does not say is not trusted.
    varies: bool = True

    def __post_init__(self) -> None:
        if len(self.shape) != len(self.axes):
            raise ValueError("shape and axes differ in length")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim_of_axis(self, axis: int) -> int | None:
        for d, a in enumerate(self.axes):
            if a == axis:
                return d
        return None

    def numel(self) -> Expr:
        return sympy.Mul(*self.shape)

    def with_shape(self, shape, axes=None, rf=None, channels=None,
                   varies: bool | None = None) -> TensorInfo:
        """Another shape/field; ``varies`` is kept unless given (an op that mixes every
        channel makes them uniform: ``varies=False``), the per-channel fields only when
        given."""
        return TensorInfo(tuple(sympy.sympify(s) for s in shape),
                          self.axes if axes is None else tuple(axes),
                          self.rf if rf is None else tuple(rf), self.const, self.dtype,
                          None if channels is None else tuple(channels),
                          self.varies if varies is None else varies)

    # -- geometry: what a rule states about an op, the bookkeeping done here -----------------
    def windowed(self, w: Window, out_channels: Expr | int | None = None, groups: int = 1,
                 ) -> tuple[TensorInfo, MinSizes]:
        """This tensor through the sliding window ``w`` over its last ``w.nd`` dims: the new
        shape, every field through the window (per channel too, where the channels are
        followed), and the output sizes that must stay >= 1.

        ``out_channels`` None: a per-channel window (pooling); else a conv with ``groups``
        (output channel o reads the input channels of its group; all of them when
        ``groups == 1``), and the channel dim (the one before the window's) gets the count."""
        dims = list(range(self.ndim - w.nd, self.ndim))
        shape = list(self.shape)
        min_sizes: MinSizes = []
        letters = AXIS_LETTERS[w.nd]
        for i, d in enumerate(dims):
            out = w.out_size(self.shape[d], i)
            shape[d] = out
            min_sizes.append((out, f"output {letters[i]}"))
        cache: dict[tuple[int, ...], tuple] = {}

        def through(fields: tuple) -> tuple:
            key = tuple(id(f) for f in fields)
            if key not in cache:
                rf = list(fields)
                for i, d in enumerate(dims):
                    axis = self.axes[d]
                    if axis is not None and rf[axis] is not None:
                        rf[axis] = rf[axis].through_window(w.kernel[i], w.stride[i],
                                                           w.pad_left[i], w.dilation[i],
                                                           w.pad_right[i])
                cache[key] = tuple(rf)
            return cache[key]

        rf = through(self.rf)
        channels, varies = None, self.varies
        if out_channels is not None:
            shape[dims[0] - 1] = sympy.sympify(out_channels)
            if groups == 1:
                varies = False  # every output channel reads every input channel
            elif self.channels is not None and shape[dims[0] - 1].is_Integer:
                n_out, n_in = int(shape[dims[0] - 1]), len(self.channels)
                per_out, per_in = n_out // groups, n_in // groups
                by_group = []
                for g in range(groups):
                    members = self.channels[g * per_in:(g + 1) * per_in]
                    by_group.append(through(tuple(
                        merge_rfs([m[a] for m in members], [False] * len(members))
                        for a in range(len(self.rf)))))
                channels = [by_group[o // per_out] for o in range(n_out)]
        elif self.channels is not None:
            channels = [through(f) for f in self.channels]
        return self.with_shape(shape, rf=rf, channels=channels, varies=varies), min_sizes

    def resampled(self, dims: Sequence[int], sizes: Sequence[Expr | int],
                  field: Callable[[int, AxisRF], AxisRF | None]) -> TensorInfo:
        """This tensor with dim ``dims[i]`` resized to ``sizes[i]`` and, where that dim runs
        along an input axis with a known field, the field replaced by ``field(i, old)``
        (typically ``old.resampled(first, last, scale, period)``, ``old.collapsed(n)`` or
        ``old.through_transposed(...)``; None: unknown). Per-channel fields are dropped (the
        channels' ``varies`` flag is kept): a rule that follows channels says so itself."""
        shape, rf = list(self.shape), list(self.rf)
        for i, d in enumerate(dims):
            shape[d] = sizes[i]
            axis = self.axes[d]
            old = None if axis is None else rf[axis]
            if axis is not None and old is not None:
                rf[axis] = field(i, old)
        return self.with_shape(shape, rf=rf)

    def collapsed_rf(self, dims: Sequence[int]) -> list[AxisRF | None]:
        """The fields with every input axis that ``dims`` run along made global (the union
        over the dim's positions): a reduction, a linear layer over a spatial dim, a flatten
        that merges one."""
        rf = list(self.rf)
        for d in dims:
            axis = self.axes[d]
            old = None if axis is None else rf[axis]
            if axis is not None and old is not None:
                rf[axis] = old.collapsed(self.shape[d])
        return rf

    @property
    def channel_dim(self) -> int | None:
        """The channel dim: the one before the first spatial dim (None when there is none)."""
        first = next((d for d, a in enumerate(self.axes) if a is not None), None)
        if first is None or first == 0 or self.axes[first - 1] is not None:
            return None
        return first - 1

    def channel_fields(self, limit: int = 4096) -> list[tuple[AxisRF | None, ...]] | None:
        """The fields of each channel: known per channel, or all ``rf`` when the channels do
        not vary; None when they may vary unknown ways or the channel count is symbolic."""
        if self.channels is not None:
            return list(self.channels)
        d = self.channel_dim
        if self.varies or d is None or not self.shape[d].is_Integer or int(self.shape[d]) > limit:
            return None
        return [self.rf] * int(self.shape[d])
