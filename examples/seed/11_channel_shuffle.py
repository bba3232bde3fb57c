"""Seed §2.8 (shuffled grouped convolution), reproduced with rfgraph.

A grouped conv keeps information inside its group; ShuffleNet interleaves the channels between
groups after it (a channel shuffle), so that the next grouped conv mixes them. A shuffle is a
permutation of the channels: it moves no pixel, so the receptive field does not change.

This script prints, next to what torch computes:

* the permutation ``nn.ChannelShuffle(4)`` applies to 8 channels, and that the
  ``view → transpose → view`` idiom gives the same output (torch);
* rfgraph's tables for a grouped conv (g = 4) followed by each form of the shuffle: the field
  after the shuffle is the conv's (3×3, jump 1, offset −1), the shuffle has 0 params and 0 MACs,
  and ``rfgraph.advise`` labels both as "shuffled grouped";
* a shuffle alone on the input: field 1×1.

Run: ``python examples/seed/11_channel_shuffle.py`` (from any directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rfgraph  # noqa: E402
from rfgraph.advise import variants  # noqa: E402

CHANNELS, GROUPS = 8, 4


class ShuffleModule(nn.Module):
    """Grouped conv, then ``nn.ChannelShuffle``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1, groups=GROUPS)
        self.shuffle = nn.ChannelShuffle(GROUPS)

    def forward(self, x):
        return self.shuffle(self.conv(x))


class ShuffleIdiom(nn.Module):
    """Grouped conv, then the view → transpose → view idiom (ShuffleNet's code)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1, groups=GROUPS)

    def forward(self, x):
        x = self.conv(x)
        n, c, h, w = x.shape
        x = x.view(n, GROUPS, c // GROUPS, h, w).transpose(1, 2).contiguous()
        return x.view(n, c, h, w)


def _field(a: rfgraph.Analysis, name: str) -> tuple[int, int, int]:
    f = a.field(a[name])[0]
    return int(f.size), int(f.jump), int(f.offset)


def main() -> dict:
    print(__doc__.split("\n\n")[0], "\n")
    labels = torch.arange(CHANNELS, dtype=torch.float32).view(1, CHANNELS, 1, 1)
    perm = [int(v) for v in nn.ChannelShuffle(GROUPS)(labels).flatten()]
    print(f"torch: ChannelShuffle({GROUPS}) on channels 0..{CHANNELS - 1} -> {perm}")

    torch.manual_seed(0)
    module, idiom = ShuffleModule(), ShuffleIdiom()
    idiom.load_state_dict(module.state_dict())
    x = torch.rand(1, CHANNELS, 10, 10)
    with torch.no_grad():
        same = torch.equal(module(x), idiom(x))
    print(f"torch: nn.ChannelShuffle == view→transpose→view: {same}\n")

    out = {"permutation": perm, "module_equals_idiom": same}
    for key, model in (("module", module), ("idiom", idiom)):
        a = rfgraph.analyze(model, (1, CHANNELS, "H", "W"))
        print(a, "\n")
        shuffle_nodes = [n for n in a.nodes if n.name not in ("x", "conv")
                         and n.tensor is not None]
        out[key] = {
            "conv_field": _field(a, "conv"),
            "output_field": _field(a, a.output.name),
            "shuffle_params": sum(n.params for n in shuffle_nodes),
            "shuffle_macs": sum(int(n.macs) for n in shuffle_nodes),
            "params": a.total_params,
            "shape": tuple(a.text(s) for s in a.output.tensor.shape),
            "variants": {n: v.label for n, v in variants(a).items()},
        }
        print(f"{key}: field after the conv {out[key]['conv_field']}, after the shuffle "
              f"{out[key]['output_field']} (size, jump, offset); shuffle params "
              f"{out[key]['shuffle_params']}, MACs {out[key]['shuffle_macs']}\n")

    alone = rfgraph.analyze(nn.ChannelShuffle(GROUPS), (1, CHANNELS, "H", "W"))
    out["alone_field"] = _field(alone, alone.output.name)
    print(f"ChannelShuffle alone: field {out['alone_field']} (size, jump, offset)")
    return out


if __name__ == "__main__":
    main()
