"""Small helpers shared across rfgraph: walkers over nested values, the first line of an
exception, dotted-attribute lookup, n-tuples and convolution padding.

The walkers descend into tuples (namedtuples included), lists, dicts (their values, in order)
and, unless told otherwise, into dataclass instances (HuggingFace-style ``ModelOutput``
outputs); :class:`rfgraph.tensor.TensorInfo`, a dataclass, is always a leaf. They are written
with ``isinstance`` rather than ``torch.utils._pytree``: pytree matches container types
exactly, so it treats ``torch.Size`` and other tuple subclasses as leaves (a shape read in
``forward`` would lose its ints), and it knows no dataclasses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

from .tensor import TensorInfo

__all__ = ["children", "conv_padding", "first_line", "first_of", "leaves", "lookup", "map_leaves",
           "ntuple", "resolve_attr"]

T = TypeVar("T")


# ------------------------------------------------------------------------------------------------
# Nested values
# ------------------------------------------------------------------------------------------------
def submodule(root: Any, target: str) -> Any:
    """``root.get_submodule(target)``, through the name -> module table that
    :func:`rfgraph.trace.trace` keeps in the graph modules it builds (``get_submodule`` walks
    the path each time; annotate, advise and the unreached-parameter count ask per node)."""
    meta = getattr(root, "meta", None)
    table = meta.get("rfgraph_modules") if isinstance(meta, dict) else None
    if table is not None:
        found = table.get(target)
        if found is not None:
            return found
    return root.get_submodule(target)


def _is_record(value: Any) -> bool:
    """A dataclass instance that holds values (not TensorInfo, which is a leaf)."""
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)
            and not isinstance(value, TensorInfo))


def children(value: Any, into_dataclasses: bool = True) -> tuple[Any, ...] | None:
    """The items of a container value, in order; None for a leaf."""
    if isinstance(value, TensorInfo):
        return None
    if isinstance(value, dict):
        return tuple(value.values())
    if isinstance(value, (tuple, list)):
        return tuple(value)
    if into_dataclasses and _is_record(value):
        return tuple(getattr(value, f.name) for f in dataclasses.fields(value))
    return None


def leaves(value: Any, into_dataclasses: bool = True) -> Iterator[Any]:
    """The leaves of a nested value, depth first, in order."""
    items = children(value, into_dataclasses)
    if items is None:
        yield value
        return
    for item in items:
        yield from leaves(item, into_dataclasses)


def first_of(value: Any, kind: type[T] | tuple[type, ...],
             into_dataclasses: bool = True) -> T | None:
    """The first leaf of type ``kind`` in a value that may nest tuples, lists, dicts and
    dataclasses (a node's output, a model's output): depth first, in order."""
    found = next((v for v in leaves(value, into_dataclasses) if isinstance(v, kind)), None)
    return cast("T | None", found)


def map_leaves(fn: Callable[[Any], Any], value: Any, into_dataclasses: bool = True) -> Any:
    """``value`` with every leaf replaced by ``fn(leaf)``; namedtuples, tuples and lists keep
    their type, dicts become plain dicts, dataclasses are copied with ``dataclasses.replace``
    (their ``init`` fields)."""
    if isinstance(value, TensorInfo):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[map_leaves(fn, v, into_dataclasses) for v in value])
    if isinstance(value, (tuple, list)):
        return type(value)(map_leaves(fn, v, into_dataclasses) for v in value)
    if isinstance(value, dict):
        return {k: map_leaves(fn, v, into_dataclasses) for k, v in value.items()}
    if into_dataclasses and _is_record(value):
        return dataclasses.replace(value, **{
            f.name: map_leaves(fn, getattr(value, f.name), into_dataclasses)
            for f in dataclasses.fields(value) if f.init})
    return fn(value)


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------
def first_line(exc: BaseException, limit: int | None = None) -> str:
    """``"TypeName: first line of the message"`` (cut to ``limit`` characters), or the type's
    name alone when the message is empty."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if limit is not None:
        line = line[:limit]
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def resolve_attr(root: object, target: str) -> Any:
    """The object at dotted path ``target`` under ``root`` (a get_attr node's target)."""
    obj: object = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def lookup(table: Mapping[Any, T], key: Any) -> T | None:
    """``table.get(key)`` that tolerates unhashable keys (an fx call target may be one)."""
    try:
        return table.get(key)
    except TypeError:
        return None


def ntuple(value: Any, n: int) -> tuple[Any, ...]:
    """A scalar repeated ``n`` times; a one-element sequence repeated ``n`` times; any other
    sequence as a tuple (not checked against ``n``)."""
    if isinstance(value, (tuple, list)):
        return tuple(value) * n if len(value) == 1 else tuple(value)
    return (value,) * n


def conv_padding(padding: str | int | Sequence[int], kernel: Sequence[int],
                 dilation: Sequence[int], nd: int,
                 ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A convolution's (left, right) padding per spatial axis: ``"valid"`` is none, ``"same"``
    splits ``dilation * (kernel - 1)`` with the extra pixel on the right, a number or a
    sequence pads both sides alike."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * nd, (0,) * nd
        if padding != "same":
            raise ValueError(f"unknown padding {padding!r}")
        total = [d * (k - 1) for k, d in zip(ntuple(kernel, nd), ntuple(dilation, nd))]
        return tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)
    p = ntuple(padding, nd)
    return p, p
