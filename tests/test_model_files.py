"""Existing model files: torch.export .pt2 round trip, meta-device models, refusing pickles."""

from __future__ import annotations

import json

import pytest
import torch
from oracles import ExportNet
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import rfgraph
from rfgraph.cli import main
from rfgraph.errors import SpecError
from rfgraph.loader import load_model


def _torch_facts(model: nn.Module, shape):
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = model(torch.zeros(shape))
    return out, fc.get_total_flops() // 2


@pytest.mark.parametrize("dynamic", [False, True])
def test_pt2_round_trip(tmp_path, capsys, dynamic):
    model = ExportNet().eval()
    example = (torch.zeros(1, 3, 38, 50),)
    shapes = None
    if dynamic:
        auto = torch.export.Dim.AUTO  # export derives the constraints (ceil_mode pooling adds some)
        shapes = {"x": {2: auto, 3: auto}}
    program = torch.export.export(model, example, dynamic_shapes=shapes)
    path = tmp_path / "net.pt2"
    torch.export.save(program, path)
    code = main(["analyze", str(path), "--json"] + (["--at", "H=38,W=50"] if dynamic else []))
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)
    if dynamic:
        assert d["input"] == ["1", "3", "H", "W"]
    else:
        assert d["input"] == ["1", "3", "38", "50"]
    (logits, z), macs = _torch_facts(model, (1, 3, 38, 50))
    assert d["totals"]["params"] == sum(p.numel() for p in model.parameters())
    if dynamic:
        assert d["totals"]["macs_at"] == macs
        out_shape = d["output"]["out_shape_at"]
    else:
        assert int(d["totals"]["macs"]) == macs
        out_shape = [int(s) for s in d["output"]["out_shape"]]
    assert out_shape == list(logits.shape)
    cat = [n for n in d["nodes"] if n["target"] == "aten.cat.default"][0]
    got = cat["out_shape_at"] if dynamic else [int(s) for s in cat["out_shape"]]
    assert got == list(z.shape)
    assert d["totals"]["unknown_nodes"] == []


def test_pt2_bad_file(tmp_path):
    path = tmp_path / "broken.pt2"
    path.write_bytes(b"not a zip")
    with pytest.raises(SpecError, match="cannot load"):
        load_model(str(path))


def test_meta_model_allocates_nothing():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4096, 3), nn.ReLU(), nn.Conv2d(4096, 4096, 3),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4096, 10))
    assert all(p.is_meta for p in model.parameters())
    a = rfgraph.analyze(model, (1, 3, "H", "W")).evaluate(H=64, W=64)
    # (3*4096*9 + 4096) + (4096*4096*9 + 4096) + (4096*10 + 10)
    #   = 114,688 + 150,999,040 + 40,970 = 151,154,698
    assert a.total_params == sum(p.numel() for p in model.parameters()) == 151_154_698
    with FlopCounterMode(display=False) as fc:
        model(torch.empty(1, 3, 64, 64, device="meta"))
    assert a.int_of(a.total_macs) == fc.get_total_flops() // 2
    assert all(p.is_meta for p in model.parameters())  # nothing was materialised
