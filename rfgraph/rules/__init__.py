"""The registry of per-op rules. Importing this package registers every built-in rule."""

from . import aten, attention, conv, glue, resize, shape  # noqa: F401  (registration side effects)
from .base import Call, OpResult, lookup, lookup_module, register, register_rule

__all__ = ["Call", "OpResult", "lookup", "lookup_module", "register", "register_rule"]
