"""Errors rfgraph raises. Each message is one line that names the node and its module."""

from __future__ import annotations


class RfgraphError(ValueError):
    """Base class: a problem with the user's model or input, reported as one line."""


class InputTooSmall(RfgraphError):
    """An input size gives some layer an empty output."""


class TraceError(RfgraphError):
    """The model could not be traced into a graph."""


class SpecError(RfgraphError):
    """A model spec (``package.module:callable`` or ``file.py:callable``) could not be loaded."""


class RuleError(RfgraphError):
    """A rule could not handle the arguments of a node."""


class Unsupported(RuleError):
    """Raised by a rule for a variant of its op that it does not model (an einsum with three
    operands, say). The node is then handled like an op without a rule: reported, measured
    numerically at concrete sizes, never silently zero."""


class UnsafePickleError(RfgraphError):
    """A pickled model file was given without ``--trust-pickle``."""


class SizeOutOfRange(RfgraphError):
    """A size given with ``--at`` lies outside the range a ``.pt2`` program was exported for."""


class InternalError(RuntimeError):
    """A bug in rfgraph itself (e.g. a rule crashed on a node): not the user's fault, so not an
    :class:`RfgraphError`. The message names the node; the original exception is its
    ``__cause__``."""
