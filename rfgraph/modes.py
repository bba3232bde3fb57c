"""The mode a model is analysed in: eval (the default: what inference runs) or train."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from .errors import RfgraphError

MODES = ("eval", "train")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise RfgraphError(f"unknown mode {mode!r}: use 'eval' or 'train'")
    return mode


@contextmanager
def in_mode(model: nn.Module | None, mode: str) -> Iterator[None]:
    """Set every submodule's ``training`` flag for ``mode``; restore the user's flags after.

    The flags are set directly (not through ``.train()``): exported programs refuse ``.eval()``
    and a user's ``train()`` override must not run."""
    check_mode(mode)
    if model is None:
        yield
        return
    saved = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in saved:
            m.training = mode == "train"
        yield
    finally:
        for m, flag in saved:
            m.training = flag
