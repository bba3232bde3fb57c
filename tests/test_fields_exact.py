"""Issue 9: receptive fields exact at every output position of every node.

Each reproduction from the issue (and its neighbours) is checked at EVERY position of EVERY node
against the one-hot dependency oracle of tests/fieldcheck.py (torch's own forward, linearised),
plus closed forms with the arithmetic in a comment where one is short.
"""

from __future__ import annotations

import pytest
import torch
from fieldcheck import check_all_positions
from torch import nn

import rfgraph

pytestmark = pytest.mark.usefixtures("one_thread")


def _exact(model: nn.Module, spec: tuple, sizes: dict) -> None:
    """No position where torch reads a pixel outside the reported field, or the reported field
    has a real pixel torch does not read (``serious``; the oracle's ``extra@border`` kind is a
    sparse field whose unclipped interval reaches virtual pixels beyond the border)."""
    bad = check_all_positions(model.eval(), spec, sizes)
    assert not bad.serious, bad.summary()


def _span(model: nn.Module, spec: tuple, sizes: dict, y: int, axis: int = 0,
          node: str | None = None) -> tuple[int, int]:
    a = rfgraph.analyze(model.eval(), spec).evaluate(**sizes)
    f = a.field(a.output if node is None else node)[axis]
    return a.int_of(f.start_at(y)), a.int_of(f.end_at(y))


# -- 1. non-monotone field bounds under a window -----------------------------------------------
def _alternating() -> nn.Module:
    return nn.Sequential(nn.ConvTranspose1d(1, 1, 1, stride=2, bias=False),
                         nn.Conv1d(1, 1, 3, dilation=3, padding=3),
                         nn.Conv1d(1, 1, 3, padding=1))


def test_window_over_alternating_fields_is_the_union_of_its_taps():
    # after the transposed conv element e (even) reads input e/2 and odd elements read nothing;
    # the dilated conv's element y reads y-3, y, y+3: even y -> [y/2, y/2], odd y ->
    # [(y-3)/2, (y+3)/2]. Output 11 reads 10, 11, 12: [5,5] u [4,7] u [6,6] = [4, 7];
    # output 13: [6,6] u [5,8] u [7,7] = [5, 8] (the truth; rfgraph said [5,6], [6,7])
    m = _alternating()
    assert _span(m, (1, 1, "L"), {"L": 16}, 11) == (4, 7)
    assert _span(m, (1, 1, "L"), {"L": 16}, 13) == (5, 8)
    a = rfgraph.analyze(m, (1, 1, "L")).evaluate(L=16)
    assert a.field_at(a.output)[0].min_size == 4  # even y: [y/2 - 2, y/2 + 1] ... 4 wide
    _exact(m, (1, 1, "L"), {"L": 16})


def test_alternating_fields_then_global_pool_symbolic():
    m = nn.Sequential(_alternating(), nn.AdaptiveAvgPool1d(1))
    a = rfgraph.analyze(m, (1, 1, "L"))
    for n in (5, 8, 13):
        _exact(m, (1, 1, "L"), {"L": n})
        ev = a.evaluate(L=n)
        f = ev.field(ev.output)[0]
        # the union over all positions: the first layer's element 0 .. 2n-1 -> input 0 .. n-1,
        # widened by the dilated conv's virtual taps (3 elements = 1.5 input pixels, each side)
        # and the last conv's padding: measured by the oracle above; here: it covers the input
        assert ev.int_of(f.start_at(0)) <= 0 and ev.int_of(f.end_at(0)) >= n - 1


# -- 2. pixel (un)shuffle follows channels -----------------------------------------------------
def test_unshuffle_then_shuffle_is_the_identity():
    m = nn.Sequential(nn.PixelUnshuffle(2), nn.PixelShuffle(2))
    a = rfgraph.analyze(m, (1, 1, "H", "W"))
    f = a.field(a.output)
    assert [(r.size, r.jump) for r in f] == [(1, 1), (1, 1)]  # every pixel sees itself
    _exact(m, (1, 1, "H", "W"), {"H": 6, "W": 8})


class _CatShuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 1)
        self.b = nn.Conv2d(1, 2, 5, padding=2)
        self.p = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.p(torch.cat([self.a(x), self.b(x)], 1))


def test_pixel_shuffle_after_cat_follows_the_channels():
    # output (h, w) is channel (h mod 2)*2 + (w mod 2) at (h//2, w//2): even rows come from the
    # 1x1 conv (channels 0, 1): row 12 reads row 6 only; odd rows from the 5x5: row 13 -> 4..8
    m = _CatShuffle()
    assert _span(m, (1, 1, "H", "W"), {"H": 16, "W": 16}, 12, axis=0) == (6, 6)
    assert _span(m, (1, 1, "H", "W"), {"H": 16, "W": 16}, 13, axis=0) == (4, 8)
    a = rfgraph.analyze(m, (1, 1, "H", "W"))
    h, w = a.field(a.output)
    assert not h.upper
    # along W the channel depends on the row's phase too: no per-axis answer is exact at every
    # (h, w), so the union over the rows' phases is given and said to be an upper bound
    assert w.upper and any("upper bound" in n for n in w.notes)
    _exact(m, (1, 1, "H", "W"), {"H": 8, "W": 6})


class _PhaseBranches(nn.Module):
    """Unshuffle, a depthwise conv per phase channel, channel shuffles, shuffle back."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.PixelUnshuffle(2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.shuffle = nn.ChannelShuffle(2)
        self.up = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(self.down(x))
        return self.up(self.shuffle(self.shuffle(y)))  # two 2-group shuffles of 8: a permutation


def test_depthwise_and_channel_shuffle_follow_the_channels():
    m = _PhaseBranches()
    _exact(m, (1, 2, "H", "W"), {"H": 8, "W": 10})


def test_pixel_shuffle_of_mixed_channels_is_uniform():
    # a 1x1 conv mixes every channel: the channels are alike again, the shuffle is exact
    m = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4, 4, 1), nn.PixelShuffle(2))
    a = rfgraph.analyze(m, (1, 1, "H", "W"))
    assert not any(r.upper for r in a.field(a.output))
    # output (h, w) reads the 2x2 block of (h//2, w//2): rows 2(h//2) .. 2(h//2)+1
    assert _span(m, (1, 1, "H", "W"), {"H": 8, "W": 8}, 5) == (4, 5)
    _exact(m, (1, 1, "H", "W"), {"H": 8, "W": 8})


# -- 8. transposed conv with dilation and stride; cat along a spatial axis ----------------------
@pytest.mark.parametrize("k,s,d,p,op", [(3, 2, 2, 0, 0), (3, 2, 3, 1, 1), (2, 3, 2, 1, 0),
                                        (4, 2, 3, 2, 1), (3, 3, 2, 0, 1)])
def test_transposed_conv_with_dilation_and_stride(k, s, d, p, op):
    m = nn.Sequential(nn.ConvTranspose1d(1, 2, k, stride=s, padding=p, output_padding=op,
                                         dilation=d), nn.Conv1d(2, 1, 3, padding=1))
    a = rfgraph.analyze(m, (1, 1, "L"))
    assert a.field(a.output) is not None
    _exact(m, (1, 1, "L"), {"L": 9})


def test_transposed_conv_with_dilation_and_stride_closed_form():
    # ConvTranspose1d(k=3, s=2, d=2, p=0): input i feeds outputs 2i, 2i+2, 2i+4, so even y
    # reads inputs y/2-2 .. y/2 and odd y reads nothing (empty: end = start - 1)
    m = nn.ConvTranspose1d(1, 1, 3, stride=2, dilation=2)
    assert _span(m, (1, 1, "L"), {"L": 10}, 6) == (1, 3)
    lo, hi = _span(m, (1, 1, "L"), {"L": 10}, 7)
    assert hi == lo - 1


class _CatSpatial(nn.Module):
    def __init__(self, pool: bool) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 1, 3, padding=1)
        self.d = nn.Conv2d(1, 1, 3, padding=1)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.d(torch.cat([x, self.c(x)], 2))
        return y.mean((2, 3), keepdim=True) if self.pool else y


def test_cat_along_a_spatial_axis():
    # rows 0..H-1 are x itself, rows H..2H-1 the 3x3 conv of x: row H + 2 reads x rows 1..3
    m = _CatSpatial(False)
    assert _span(m, (1, 1, "H", "W"), {"H": 6, "W": 5}, 8, node="cat") == (1, 3)
    _exact(m, (1, 1, "H", "W"), {"H": 6, "W": 5})


def test_cat_along_a_spatial_axis_then_global_pool_is_symbolic():
    a = rfgraph.analyze(_CatSpatial(True), (1, 1, "H", "W"))
    assert a.complete  # the union over the pieces is one formula, not a measured node
    f = a.field(a.output)[0]
    # the last conv's virtual row -1 lies in the first piece (x: row -1) and its virtual row 2H
    # in the second (conv row H: rows H-1 .. H+1): rows -1 .. H+1, H + 3 of them
    assert f.size.equals(a.field(a.output)[0].size) and str(f.size) == "H + 3"
    for h in (3, 6):
        _exact(_CatSpatial(True), (1, 1, "H", "W"), {"H": h, "W": 4})


# -- 4. a merge branch that reads only padding ------------------------------------------------
class _PaddedBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 1, 3)
        self.d = nn.Conv2d(1, 1, (1, 3), stride=(3, 1), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d(torch.nn.functional.pad(self.c(x), (2, 0, 2, 0)) + x)


def test_merge_with_a_branch_of_padding_is_an_upper_bound():
    # at H=3 the padded branch's row 0 is padding: the output (one row) reads x only, W
    # position 5 reads columns 4..6 (the truth). The padded branch's virtual field
    # (columns 2..6) cannot be told apart per axis: the union is given as an upper bound.
    m = _PaddedBranch()
    a = rfgraph.analyze(m, (1, 1, "H", "W")).evaluate(H=3, W=12)
    h, w = a.field(a.output)
    assert w.upper and any("padding" in n for n in w.notes)
    lo, hi = a.int_of(w.start_at(5)), a.int_of(w.end_at(5))
    assert lo <= 4 and hi >= 6  # an upper bound contains the truth
    _exact(m, (1, 1, "H", "W"), {"H": 3, "W": 12})


def test_same_padding_then_conv_is_not_an_upper_bound():
    # F.pad(x, (0, 1)) then a 3-wide conv: every window holds real pixels, no element reads
    # only padding, so a residual merge stays exact
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv1d(1, 1, 3, stride=1)
            self.e = nn.Conv1d(1, 1, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(torch.nn.functional.pad(x, (1, 1))) + self.e(x)

    a = rfgraph.analyze(Net(), (1, 1, "L"))
    assert not a.field(a.output)[0].upper
    _exact(Net(), (1, 1, "L"), {"L": 9})
