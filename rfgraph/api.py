"""rfgraph.analyze: the one entry point of the Python API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sympy
import torch.fx as fx
from torch import nn

from .analysis import Analysis
from .annotate import annotate
from .errors import RfgraphError
from .symbolic import parse_dim
from .trace import trace


def parse_input(spec: str | Sequence[int | str]) -> tuple:
    """'1,3,H,W' or (1, 3, 'H', 'W') -> a tuple of SymPy dims."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    if not parts or any(str(p).strip() == "" for p in parts):
        raise RfgraphError(f"bad input shape {spec!r}: use e.g. 1,3,H,W")
    try:
        return tuple(parse_dim(p.strip() if isinstance(p, str) else p) for p in parts)
    except ValueError as exc:
        raise RfgraphError(f"bad input shape {spec!r}: {exc}") from None


def parse_at(spec: str | Mapping[str, int] | None) -> dict[str, int] | None:
    """'H=224,W=224' or a mapping -> {'H': 224, 'W': 224}."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return {str(k): v for k, v in spec.items()}
    out: dict[str, int] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip().isidentifier() or not value.strip().lstrip("-").isdigit():
            raise RfgraphError(f"bad size {part!r} in --at: use e.g. H=224,W=224")
        out[name.strip()] = int(value)
    return out


def analyze(model: nn.Module, input_shape: str | Sequence[int | str] = (1, 3, "H", "W"),
            at: str | Mapping[str, int] | None = None, name: str | None = None) -> Analysis:
    """Trace ``model`` and annotate every node with symbolic shapes, fields, params and MACs.

    ``input_shape``: e.g. ``(1, 3, "H", "W")``; names become positive integer symbols.
    ``at``: sizes to substitute (``{"H": 224, "W": 224}``); the result is then evaluated.
    """
    shape = parse_input(input_shape)
    gm = model if isinstance(model, fx.GraphModule) else trace(model)
    concrete = all(sympy.sympify(s).is_Integer for s in shape)
    infos, messages = annotate(gm, shape, {} if concrete else None)
    result = Analysis(name or type(model).__name__, shape, infos, messages, graph_module=gm)
    if at:
        return result.evaluate(**parse_at(at))
    if not result.symbols:
        result = Analysis(result.model_name, shape, infos, messages, {}, gm)
        result.check_sizes()
    return result
