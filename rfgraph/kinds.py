"""The closed vocabularies of a node: its kind (what it does to the data) and its family (what
kind of op it is, for colours, grouping and the docs).

Both are string enums: a member *is* its string (``Family.CONV == "conv"``), so the
JSON, the table and user code that compare with plain strings keep working, while a typo in
rfgraph's own code is an ``AttributeError`` instead of a silent new category.
"""

from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """``enum.StrEnum`` of Python 3.11, for 3.10 too: ``str(member)`` and f-strings give the
    value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Kind(StrEnum):
    """What a node does to the data."""

    LAYER = "layer"              # computes (conv, pool, linear, norm...)
    TRANSPARENT = "transparent"  # passes shape and field through (activation, dropout in eval)
    SHAPE = "shape"              # moves elements without computing (view, permute, slice...)
    MERGE = "merge"              # combines tensors (add, cat, mul...)
    UNKNOWN = "unknown"          # no rule, or depends on a node without one
    INPUT = "input"              # a placeholder
    OUTPUT = "output"            # the graph's output
    CONSTANT = "constant"        # a get_attr (parameter, buffer, constant)
    GUARD = "guard"              # torch.export's input guards: no data


class Family(StrEnum):
    """What kind of op a node is: header colour in the drawing, grouping in docs/rules.md."""

    INPUT = "input"
    OUTPUT = "output"
    CONV = "conv"
    LINEAR = "linear"
    ATTENTION = "attention"
    RECURRENT = "recurrent"
    POOL = "pool"
    RESIZE = "resize"
    PAD = "pad"
    SHUFFLE = "shuffle"
    NORM = "norm"
    ACTIVATION = "activation"
    MERGE = "merge"
    SHAPE = "shape"
    OTHER = "other"
    UNKNOWN = "unknown"
