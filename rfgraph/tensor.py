"""What the annotator knows about one tensor flowing through the graph."""

from __future__ import annotations

from dataclasses import dataclass

import sympy
from sympy import Expr

from .receptive_field import AxisRF


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
