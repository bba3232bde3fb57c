"""The registry of per-op rules. Importing this package registers every built-in rule."""

# registration side effects:
from . import aten, attention, conv, glue, resize, shape, tensors, timm, video  # noqa: F401
from .base import Call, OpResult, lookup, lookup_module, register, register_rule

__all__ = ["Call", "OpResult", "lookup", "lookup_module", "register", "register_rule"]
