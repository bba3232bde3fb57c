"""The registry of per-op rules, one module per family. Importing this package registers every
built-in rule.

- ``base``: the registry (:func:`register`, :func:`register_rule`, :func:`scope`), ``Call``,
  ``OpResult`` and the window helpers
- families: ``conv``, ``transposed``, ``pool``, ``pad``, ``resize``, ``shuffle``, ``linear``,
  ``attention``, ``norm`` (also activations, dropout, casts, pointwise maths), ``merge`` (also
  splits, comparisons, asserts), ``shape``, ``tensors`` (tensors built from sizes, repeats)
- model libraries: ``timm``, ``video`` (torchvision's video models); ``aten``: the ATen twins
  of the rules above, for graphs stored by ``torch.export``
"""

# registration side effects:
from . import (  # noqa: F401
    aten,
    attention,
    conv,
    linear,
    merge,
    norm,
    pad,
    pool,
    resize,
    shape,
    shuffle,
    tensors,
    timm,
    transposed,
    video,
)
from .base import (
    Call,
    OpResult,
    lookup,
    lookup_module,
    register,
    register_rule,
    scope,
    unregister_rule,
)

__all__ = ["Call", "OpResult", "lookup", "lookup_module", "register", "register_rule", "scope",
           "unregister_rule"]
