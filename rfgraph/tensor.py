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

    def with_shape(self, shape, axes=None, rf=None) -> TensorInfo:
        return TensorInfo(tuple(sympy.sympify(s) for s in shape),
                          self.axes if axes is None else tuple(axes),
                          self.rf if rf is None else tuple(rf), self.const, self.dtype)
