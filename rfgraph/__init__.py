"""rfgraph: what every node of a PyTorch model sees and what it costs, as exact formulas."""

from .analysis import Analysis
from .annotate import NodeInfo
from .api import analyze
from .errors import InputTooSmall, InternalError, RfgraphError
from .rules.base import register_rule

__all__ = ["Analysis", "InputTooSmall", "InternalError", "NodeInfo", "RfgraphError", "analyze",
           "register_rule"]
__version__ = "0.1.0"
