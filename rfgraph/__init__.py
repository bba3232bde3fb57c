"""rfgraph: what every node of a PyTorch model sees and what it costs, as exact formulas."""

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
