"""rfgraph: what every node of a PyTorch model sees and what it costs, as exact formulas.

The public names are loaded on first use (PEP 562 module ``__getattr__``): ``import rfgraph``
imports neither torch nor SymPy, so ``rfgraph --help`` answers at once; ``rfgraph.analyze``
(or ``from rfgraph import analyze``) imports what the analysis needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real objects, for type checkers and IDEs
    from .analysis import Analysis
    from .annotate import NodeInfo
    from .api import analyze
    from .errors import InputTooSmall, InternalError, RfgraphError
    from .kinds import Family, Kind
    from .rules.base import register_rule, unregister_rule
    from .rules.base import scope as scoped_rules

__all__ = ["Analysis", "Family", "InputTooSmall", "InternalError", "Kind", "NodeInfo",
           "RfgraphError", "analyze", "register_rule", "scoped_rules", "unregister_rule"]
__version__ = "0.1.0"

#: public name -> (submodule, attribute in it)
_LAZY: dict[str, tuple[str, str]] = {
    "Analysis": ("analysis", "Analysis"),
    "NodeInfo": ("annotate", "NodeInfo"),
    "analyze": ("api", "analyze"),
    "InputTooSmall": ("errors", "InputTooSmall"),
    "InternalError": ("errors", "InternalError"),
    "RfgraphError": ("errors", "RfgraphError"),
    "Family": ("kinds", "Family"),
    "Kind": ("kinds", "Kind"),
    "register_rule": ("rules.base", "register_rule"),
    "unregister_rule": ("rules.base", "unregister_rule"),
    "scoped_rules": ("rules.base", "scope"),
}


def __getattr__(name: str) -> Any:
    """Load a public name (or a submodule, ``rfgraph.report`` say) on first access."""
    target = _LAZY.get(name)
    if target is not None:
        value = getattr(importlib.import_module(f".{target[0]}", __name__), target[1])
        globals()[name] = value  # later lookups do not come back here
        return value
    if not name.startswith("__"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":  # the submodule exists but fails to import
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
