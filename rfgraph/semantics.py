"""Independent references for what the covered layers compute (used by ``rfgraph verify``).

Every reference here is written from the definition of the layer, with plain tensor indexing,
slicing, ``matmul`` and reductions -- never with the torch op it checks:

* :func:`conv_reference`: convolution as im2col + matmul. The columns are the strided, dilated
  slices of the padded input, one per kernel offset (valid for 1-, 2- and 3-D), multiplied by the
  weight slices of each group. Padding (zeros, reflect, replicate, circular, asymmetric) is done
  by index arithmetic (:func:`pad_reference`).
* :func:`conv_transpose_by_matrix`: the transposed convolution as the explicit transpose of the
  matrix of the convolution with the same weights (seed §2.3), the matrix built from
  :func:`conv_reference` at a small size (one spatial matrix per kernel tap, Kronecker-combined
  with the tap's block-diagonal channel matrix: :func:`conv_matrix`); for a large kernel,
  matrix-free, as the adjoint (:func:`conv_transpose_by_adjoint`).
* :func:`dilate_kernel` (zero-dilated kernel), :func:`block_diagonal` (a grouped weight as one
  dense weight), :func:`compose_convs` (a chain of convolutions as one convolution, when that is
  exact).
* :func:`max_pool_reference`, :func:`avg_pool_reference`, :func:`adaptive_pool_reference`:
  window reductions, ceil_mode and count_include_pad by the definition.
* :func:`resize_reference`: ``interpolate`` (nearest, nearest-exact, linear modes) with exact
  rational source coordinates, axis by axis.
* :func:`channel_shuffle_permutation`: the permutation a channel shuffle applies.

The module imports nothing from rfgraph.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

__all__ = [
    "LINEAR_MODES",
    "ConvSpec",
    "adaptive_pool_reference",
    "avg_pool_reference",
    "block_diagonal",
    "channel_shuffle_permutation",
    "compose_chain",
    "compose_convs",
    "conv_matrix",
    "conv_output_size",
    "conv_reference",
    "conv_transpose_by_adjoint",
    "conv_transpose_by_matrix",
    "conv_transpose_output_size",
    "dilate_kernel",
    "max_pool_reference",
    "pad_reference",
    "pool_output_size",
    "rel_error",
    "resize_reference",
]


def _tuple(value: int | Sequence[int], nd: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * nd
    values = tuple(int(v) for v in value)
    return values * nd if len(values) == 1 else values


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max(1, max |want|); inf when the shapes differ."""
    if tuple(got.shape) != tuple(want.shape):
        return math.inf
    if got.numel() == 0:
        return 0.0
    got, want = got.double(), want.double()
    same = (got == want) | (got.isnan() & want.isnan())      # equal infinities count as equal
    diff = torch.where(same, torch.zeros_like(got), (got - want).abs())
    finite = want[want.isfinite()]
    scale = max(1.0, finite.abs().max().item() if finite.numel() else 1.0)
    worst = diff.max().item()
    return math.inf if math.isnan(worst) else worst / scale


# -- padding --------------------------------------------------------------------------------------
def _source_index(i: int, n: int, mode: str) -> int | None:
    """The input index a padded coordinate ``i`` (may be < 0 or >= n) stands for."""
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    if mode == "reflect":
        period = 2 * (n - 1)
        if period == 0:
            return 0
        j = i % period
        return j if j < n else period - j
    raise ValueError(f"unknown padding mode {mode!r}")


def pad_reference(x: torch.Tensor, left: Sequence[int], right: Sequence[int],
                  mode: str = "zeros", value: float = 0.0) -> torch.Tensor:
    """Pad the last ``len(left)`` dims of ``x`` by index arithmetic (negative pads crop)."""
    nd = len(left)
    out = x
    for a in range(nd):
        dim = x.dim() - nd + a
        n = out.shape[dim]
        coords = range(-left[a], n + right[a])
        src = [_source_index(i, n, mode) for i in coords]
        idx = torch.tensor([s if s is not None else 0 for s in src], dtype=torch.long)
        picked = out.index_select(dim, idx)
        if any(s is None for s in src):
            keep = torch.tensor([s is not None for s in src])
            shape = [1] * out.dim()
            shape[dim] = len(src)
            picked = torch.where(keep.view(shape), picked,
                                 torch.full((), value, dtype=picked.dtype))
        out = picked
    return out


# -- convolution ----------------------------------------------------------------------------------
def conv_output_size(n: int, k: int, s: int, pl: int, pr: int, d: int) -> int:
    return (n + pl + pr - d * (k - 1) - 1) // s + 1


def _window_slices(xp: torch.Tensor, nd: int, kernel: Sequence[int], stride: Sequence[int],
                   dilation: Sequence[int], out: Sequence[int]) -> list[torch.Tensor]:
    """One strided slice of the padded input per kernel offset (row-major offset order)."""
    slices = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        index = [slice(None)] * (xp.dim() - nd)
        for t, s, d, o in zip(offset, stride, dilation, out):
            index.append(slice(t * d, t * d + s * (o - 1) + 1, s))
        slices.append(xp[tuple(index)])
    return slices


def conv_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                   dilation: int | Sequence[int] = 1, groups: int = 1,
                   padding_right: Sequence[int] | None = None,
                   padding_mode: str = "zeros") -> torch.Tensor:
    """N-D convolution (N = weight.dim() - 2) as im2col + matmul, per group.

    ``x``: (N, C_in, *spatial) or (C_in, *spatial); ``weight``: (C_out, C_in/groups, *k).
    ``padding`` is the left padding per axis; ``padding_right`` (default: the same) the right.
    """
    nd = weight.dim() - 2
    unbatched = x.dim() == nd + 1
    if unbatched:
        x = x.unsqueeze(0)
    kernel = tuple(weight.shape[2:])
    stride, dilation = _tuple(stride, nd), _tuple(dilation, nd)
    left = _tuple(padding, nd)
    right = left if padding_right is None else _tuple(padding_right, nd)
    xp = pad_reference(x, left, right, padding_mode)
    n, c_in = x.shape[:2]
    c_out = weight.shape[0]
    out = [conv_output_size(x.shape[2 + a], kernel[a], stride[a], left[a], right[a],
                            dilation[a]) for a in range(nd)]
    if min(out) < 1:
        raise ValueError(f"empty convolution output {out}")
    cols = torch.stack(_window_slices(xp, nd, kernel, stride, dilation, out), dim=2)
    positions = math.prod(out)
    k = math.prod(kernel)
    cols = cols.reshape(n, groups, (c_in // groups) * k, positions)      # im2col per group
    w = weight.reshape(groups, c_out // groups, (c_in // groups) * k)
    y = torch.matmul(w, cols).reshape(n, c_out, *out)                    # (N, g, C_out/g, L)
    if bias is not None:
        y = y + bias.reshape(1, c_out, *([1] * nd))
    return y.squeeze(0) if unbatched else y


def dilate_kernel(weight: torch.Tensor, dilation: int | Sequence[int]) -> torch.Tensor:
    """The kernel with ``d - 1`` zeros inserted between taps along every spatial axis."""
    nd = weight.dim() - 2
    dilation = _tuple(dilation, nd)
    kernel = weight.shape[2:]
    size = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    out = weight.new_zeros(*weight.shape[:2], *size)
    out[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in dilation)] = weight
    return out


def block_diagonal(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped conv weight (C_out, C_in/g, *k) as the dense (C_out, C_in, *k) weight whose
    channel matrix is block diagonal."""
    c_out, c_in_g = weight.shape[:2]
    dense = weight.new_zeros(c_out, c_in_g * groups, *weight.shape[2:])
    per = c_out // groups
    for g in range(groups):
        dense[g * per:(g + 1) * per, g * c_in_g:(g + 1) * c_in_g] = weight[g * per:(g + 1) * per]
    return dense


# -- transposed convolution as the transpose of the conv matrix ---------------------------------
def conv_transpose_output_size(n: int, k: int, s: int, p: int, op: int, d: int) -> int:
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


def _spatial_tap_matrices(kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                          dilation: Sequence[int], in_sizes: Sequence[int],
                          out_sizes: Sequence[int]) -> list[torch.Tensor]:
    """For every kernel tap t: the (prod(out_sizes) x prod(in_sizes)) matrix of a one-channel
    convolution whose kernel is 1 at t and 0 elsewhere, built by applying :func:`conv_reference`
    to every basis image of size ``in_sizes``; only the first ``out_sizes`` outputs are kept."""
    nd = len(kernel)
    n_in = math.prod(in_sizes)
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, *in_sizes)
    mats = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        onehot = torch.zeros(1, 1, *kernel, dtype=torch.float64)
        onehot[(0, 0) + offset] = 1.0
        y = conv_reference(basis, onehot, None, stride, padding, dilation)
        y = y[(slice(None), 0) + tuple(slice(0, o) for o in out_sizes)]
        mats.append(y.reshape(n_in, -1).T.contiguous())           # (n_out, n_in)
        assert y.shape[1:] == tuple(out_sizes), (y.shape, out_sizes, nd)
    return mats


def conv_matrix(weight: torch.Tensor, stride: int | Sequence[int], padding: int | Sequence[int],
                dilation: int | Sequence[int], groups: int, in_sizes: Sequence[int],
                out_sizes: Sequence[int] | None = None) -> torch.Tensor:
    """The dense matrix M of the convolution with ``weight`` (C_out, C_in/g, *k) on inputs of
    spatial size ``in_sizes``: ``conv(x).flatten() == M @ x.flatten()`` (one sample), restricted
    to the first ``out_sizes`` outputs. M = sum over taps t of kron(W_t, S_t) with W_t the tap's
    block-diagonal channel matrix and S_t the tap's spatial matrix."""
    nd = weight.dim() - 2
    kernel = tuple(weight.shape[2:])
    stride, padding, dilation = (_tuple(v, nd) for v in (stride, padding, dilation))
    if out_sizes is None:
        out_sizes = [conv_output_size(n, k, s, p, p, d)
                     for n, k, s, p, d in zip(in_sizes, kernel, stride, padding, dilation)]
    dense = block_diagonal(weight.double(), groups)
    taps = _spatial_tap_matrices(kernel, stride, padding, dilation, in_sizes, out_sizes)
    c_out, c_in = dense.shape[:2]
    flat = dense.reshape(c_out, c_in, -1)
    spatial = torch.stack(taps)                                   # (taps, n_out, n_in)
    # M[(o, y), (i, x)] = sum_t W_t[o, i] * S_t[y, x]: the Kronecker products kron(W_t, S_t)
    m = torch.einsum("oit,tyx->oyix", flat, spatial)
    m = m.reshape(c_out * math.prod(out_sizes), c_in * math.prod(in_sizes))
    return m


def conv_transpose_by_matrix(x: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor | None = None,
                             stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                             output_padding: int | Sequence[int] = 0, groups: int = 1,
                             dilation: int | Sequence[int] = 1) -> torch.Tensor:
    """Transposed convolution of ``x`` (N, C_in, *n_in) with ``weight`` (C_in, C_out/g, *k):
    ``M.T @ x`` for M the matrix of the convolution with the same weight that maps the
    transposed conv's output space (C_out, *n_out) back to (C_in, *n_in)."""
    nd = weight.dim() - 2
    unbatched = x.dim() == nd + 1
    if unbatched:
        x = x.unsqueeze(0)
    kernel = tuple(weight.shape[2:])
    stride, padding, output_padding, dilation = (
        _tuple(v, nd) for v in (stride, padding, output_padding, dilation))
    n_in = list(x.shape[2:])
    n_out = [conv_transpose_output_size(n, k, s, p, op, d) for n, k, s, p, op, d in
             zip(n_in, kernel, stride, padding, output_padding, dilation)]
    # the conv from the output space (channels C_out) back to the input space (channels C_in)
    m = conv_matrix(weight, stride, padding, dilation, groups, n_out, n_in)
    c_out = weight.shape[1] * groups
    flat = x.double().reshape(x.shape[0], -1)                    # (N, C_in * prod(n_in))
    y = (flat @ m).reshape(x.shape[0], c_out, *n_out)            # x^T M = (M^T x)^T
    if bias is not None:
        y = y + bias.double().reshape(1, c_out, *([1] * nd))
    return y.squeeze(0) if unbatched else y


def conv_transpose_by_adjoint(x: torch.Tensor, weight: torch.Tensor,
                              bias: torch.Tensor | None, stride: Sequence[int],
                              padding: Sequence[int], groups: int, dilation: Sequence[int],
                              n_out: Sequence[int]) -> torch.Tensor:
    """``M^T x`` for M the im2col convolution with ``weight`` (C_in, C_out/g, *k) from the
    transposed conv's output space (C_out, *n_out) back to (C_in, *n_in), restricted to the
    first n_in outputs (as :func:`conv_transpose_by_matrix`), computed as the
    gradient of ``<x, M y>`` with respect to ``y`` (M is linear: slicing and matmul)."""
    n_in = x.shape[2:]
    y = torch.zeros(x.shape[0], weight.shape[1] * groups, *n_out, dtype=torch.float64,
                    requires_grad=True)
    with torch.enable_grad():
        back = conv_reference(y, weight.double(), None, tuple(stride), tuple(padding),
                                  tuple(dilation), groups)
        back = back[(slice(None), slice(None)) + tuple(slice(0, n) for n in n_in)]
        (got,) = torch.autograd.grad((back * x.double()).sum(), y)
    if bias is not None:
        got = got + bias.double().reshape(1, -1, *([1] * len(n_out)))
    return got


# -- pooling --------------------------------------------------------------------------------------
def pool_output_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Windows of extent d(k-1)+1 every s, over [-p, n+p); with ceil_mode a last partial window
    is kept when it starts inside the input or the left padding."""
    span = n + 2 * p - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= n + p:
        out -= 1
    return out


def _pool_geometry(x: torch.Tensor, nd: int, kernel, stride, padding, dilation, ceil_mode):
    kernel = _tuple(kernel, nd)
    stride = _tuple(stride if stride not in (None, (), []) else kernel, nd)
    padding, dilation = _tuple(padding, nd), _tuple(dilation, nd)
    sizes = x.shape[-nd:]
    out = [pool_output_size(sizes[a], kernel[a], stride[a], padding[a], dilation[a], ceil_mode)
           for a in range(nd)]
    right = [max((out[a] - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + 1 - sizes[a]
                 - padding[a], padding[a]) for a in range(nd)]
    return kernel, stride, padding, dilation, out, right


def max_pool_reference(x: torch.Tensor, nd: int, kernel_size, stride=None, padding=0,
                       dilation=1, ceil_mode: bool = False) -> torch.Tensor:
    """Max over every window (padding is -inf: never the max)."""
    kernel, stride, padding, dilation, out, right = _pool_geometry(
        x, nd, kernel_size, stride, padding, dilation, ceil_mode)
    xp = pad_reference(x, padding, right, "zeros", value=-math.inf)
    return torch.stack(_window_slices(xp, nd, kernel, stride, dilation, out)).amax(0)


def avg_pool_reference(x: torch.Tensor, nd: int, kernel_size, stride=None, padding=0,
                       ceil_mode: bool = False, count_include_pad: bool = True,
                       divisor_override: int | None = None) -> torch.Tensor:
    """Window sum / divisor. The divisor counts the window's cells inside [-p, n+p) when
    count_include_pad, else inside [0, n) (the part of a ceil_mode window past n+p never
    counts); divisor_override replaces it."""
    kernel, stride, padding, dilation, out, right = _pool_geometry(
        x, nd, kernel_size, stride, padding, 1, ceil_mode)
    xp = pad_reference(x, padding, right)
    total = torch.stack(_window_slices(xp, nd, kernel, stride, dilation, out)).sum(0)
    if divisor_override:
        return total / divisor_override
    sizes = x.shape[-nd:]
    mask = torch.ones(*sizes, dtype=x.dtype)
    if count_include_pad:  # the padded frame [-p, n+p) counts, the extra ceil_mode margin not
        mask = pad_reference(mask, padding, padding, "zeros", value=1.0)
        mask = pad_reference(mask, [0] * nd, [r - p for r, p in zip(right, padding)])
    else:
        mask = pad_reference(mask, padding, right)
    count = torch.stack(_window_slices(mask, nd, kernel, stride, dilation, out)).sum(0)
    return total / count


def adaptive_pool_reference(x: torch.Tensor, nd: int, output_size, reduce: str = "avg",
                            ) -> torch.Tensor:
    """Bin i of n inputs into o outputs covers [floor(i*n/o), ceil((i+1)*n/o)); the reduction
    (mean or max over a box) is done axis by axis."""
    sizes = list(x.shape[-nd:])
    outs = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size] * nd
    y = x
    for a in range(nd):
        dim = x.dim() - nd + a
        n = sizes[a]
        o = n if outs[a] is None else int(outs[a])
        bins = []
        for i in range(o):
            lo, hi = (i * n) // o, -(-((i + 1) * n) // o)
            piece = y.narrow(dim, lo, hi - lo)
            bins.append(piece.mean(dim) if reduce == "avg" else piece.amax(dim))
        y = torch.stack(bins, dim=dim)
    return y


# -- resizing -------------------------------------------------------------------------------------
LINEAR_MODES = ("linear", "bilinear", "trilinear")


def resize_output_sizes(sizes: Sequence[int], size: Any = None, scale_factor: Any = None,
                        ) -> list[int]:
    """Output sizes of interpolate: ``size``, or floor(n * scale) (as torch, in double)."""
    nd = len(sizes)
    if size is not None:
        return list(_tuple(size, nd))
    scales = scale_factor if isinstance(scale_factor, (tuple, list)) else [scale_factor] * nd
    return [int(math.floor(n * float(s))) for n, s in zip(sizes, scales)]


def _axis_weights(n: int, o: int, mode: str, align: bool, scale: Fraction | None,
                  ) -> torch.Tensor:
    """The (o x n) matrix of one axis of interpolate, with exact (rational) coordinates."""
    w = torch.zeros(o, n, dtype=torch.float64)
    if mode in LINEAR_MODES:
        if align:
            step = Fraction(n - 1, o - 1) if o > 1 else Fraction(0)
        else:
            step = scale if scale is not None else Fraction(n, o)
        for y in range(o):
            src = y * step if align else max((y + Fraction(1, 2)) * step - Fraction(1, 2),
                                             Fraction(0))
            i0 = min(math.floor(src), n - 1)
            i1 = min(i0 + 1, n - 1)
            lam = src - i0 if i0 < n - 1 else Fraction(0)
            w[y, i0] += float(1 - lam)
            if lam:
                w[y, i1] += float(lam)
        return w
    step = scale if scale is not None else Fraction(n, o)
    for y in range(o):
        idx = math.floor(y * step) if mode == "nearest" else math.floor((y + Fraction(1, 2))
                                                                        * step)
        w[y, min(idx, n - 1)] = 1.0
    return w


def resize_reference(x: torch.Tensor, size: Any = None, scale_factor: Any = None,
                     mode: str = "nearest", align_corners: bool | None = None,
                     recompute_scale_factor: bool | None = None) -> torch.Tensor:
    """``F.interpolate`` (nearest, nearest-exact, linear, bilinear, trilinear) computed with
    exact rational source coordinates, axis by axis: nearest reads floor(y*s) (nearest-exact
    floor((y+1/2)*s)), the linear modes read floor(src) and floor(src)+1 with weights 1-λ, λ,
    src = (y+1/2)*s - 1/2 clamped at 0 (align_corners: src = y*(n-1)/(o-1)); s is 1/scale_factor
    when a scale factor is given (and not recomputed), else n/o."""
    nd = x.dim() - 2
    sizes = list(x.shape[2:])
    outs = resize_output_sizes(sizes, size, scale_factor)
    scales = (scale_factor if isinstance(scale_factor, (tuple, list))
              else [scale_factor] * nd)
    y = x.double()
    for a in range(nd):
        scale = None
        if scale_factor is not None and not recompute_scale_factor and scales[a]:
            scale = 1 / Fraction(scales[a])
        if mode in ("linear", "bilinear", "trilinear") and sizes[a] == outs[a]:
            # torch's linear kernels copy an axis whose length does not change, whatever the
            # scale factor (aten/src/ATen/native/UpSample*.cpp)
            w = torch.eye(sizes[a], dtype=torch.float64)
        else:
            w = _axis_weights(sizes[a], outs[a], mode, bool(align_corners), scale)
        y = torch.tensordot(y, w, dims=([2 + a], [1])).movedim(-1, 2 + a)
    return y


# -- channel shuffle ------------------------------------------------------------------------------
def channel_shuffle_permutation(channels: int, groups: int) -> list[int]:
    """Output channel j of a shuffle with ``groups`` groups is input channel perm[j]: the
    (groups, C/groups) channel grid read column by column."""
    per = channels // groups
    return [(j % groups) * per + j // groups for j in range(channels)]


def pixel_shuffle_reference(x: torch.Tensor, r: int) -> torch.Tensor:
    """``PixelShuffle(r)`` from its definition, one sub-pixel phase at a time:
    out[n, c, h·r + i, w·r + j] = x[n, c·r² + i·r + j, h, w]."""
    n, channels, h, w = x.shape
    c = channels // (r * r)
    out = x.new_zeros(n, c, h * r, w * r)
    for i in range(r):
        for j in range(r):
            out[:, :, i::r, j::r] = x[:, [k * r * r + i * r + j for k in range(c)]]
    return out


def pixel_unshuffle_reference(x: torch.Tensor, r: int) -> torch.Tensor:
    """``PixelUnshuffle(r)``, the inverse:
    out[n, c·r² + i·r + j, h, w] = x[n, c, h·r + i, w·r + j]."""
    n, c, h, w = x.shape
    out = x.new_zeros(n, c * r * r, h // r, w // r)
    for i in range(r):
        for j in range(r):
            out[:, [k * r * r + i * r + j for k in range(c)]] = x[:, :, i::r, j::r]
    return out


# -- chains of convolutions -----------------------------------------------------------------------
@dataclass(frozen=True)
class ConvSpec:
    """One convolution with a dense weight (C_out, C_in, *k), asymmetric zero padding."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, ...]
    pad_left: tuple[int, ...]
    pad_right: tuple[int, ...]
    dilation: tuple[int, ...]

    @property
    def nd(self) -> int:
        return self.weight.dim() - 2

    def trivial(self, axis: int) -> bool:
        """Kernel 1 and no padding along ``axis``: the conv only subsamples there."""
        return (self.weight.shape[2 + axis] == 1 and self.pad_left[axis] == 0
                and self.pad_right[axis] == 0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return conv_reference(x, self.weight, self.bias, self.stride, self.pad_left,
                              self.dilation, 1, self.pad_right)

    @staticmethod
    def of(weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
           groups: int, padding_right=None) -> ConvSpec:
        nd = weight.dim() - 2
        left = _tuple(padding, nd)
        return ConvSpec(block_diagonal(weight.double(), groups),
                        None if bias is None else bias.double(), _tuple(stride, nd), left,
                        left if padding_right is None else _tuple(padding_right, nd),
                        _tuple(dilation, nd))


def compose_convs(first: ConvSpec, second: ConvSpec) -> tuple[ConvSpec | None, str]:
    """``second(first(x))`` as one convolution, when that is exact: (spec, "") or (None, why).

    Exact when, along every axis, one of the two only subsamples (kernel 1, no padding): the
    other one's taps then map one to one onto input pixels. A bias of ``first`` folds into the
    result only when ``second`` pads nowhere (its padding would read zeros, not the bias).
    The composed conv may produce a few more outputs than the chain; compare the leading ones.
    """
    nd = first.nd
    stride, left, right, dilation = [], [], [], []
    for a in range(nd):
        if second.trivial(a):          # first owns the axis; second subsamples its output
            stride.append(first.stride[a] * second.stride[a])
            left.append(first.pad_left[a])
            right.append(first.pad_right[a])
            dilation.append(first.dilation[a])
        elif first.trivial(a):         # second owns the axis on a subsampled input
            s1 = first.stride[a]
            stride.append(s1 * second.stride[a])
            left.append(s1 * second.pad_left[a])
            right.append(s1 * second.pad_right[a])
            dilation.append(s1 * second.dilation[a])
        else:
            return None, f"both layers have a kernel or padding along axis {a}"
    w1, w2 = first.weight, second.weight
    if w2.shape[1] != w1.shape[0]:
        raise ValueError(f"{w1.shape[0]} channels out of the first conv, {w2.shape[1]} into "
                         "the second")
    if first.bias is not None and (any(second.pad_left) or any(second.pad_right)):
        return None, "the first layer has a bias and the second pads"
    # W[o, i, *k] = sum_m W2[o, m, *k2] * W1[m, i, *k1]; on every axis one kernel has length 1
    weight = (w2.unsqueeze(2) * w1.unsqueeze(0)).sum(1)
    bias = second.bias
    if first.bias is not None:
        folded = (w2.sum(dim=tuple(range(2, w2.dim()))) @ first.bias)
        bias = folded if bias is None else bias + folded
    spec = ConvSpec(weight, bias, tuple(stride), tuple(left), tuple(right), tuple(dilation))
    return spec, ""


def compose_chain(specs: Sequence[ConvSpec]) -> tuple[ConvSpec | None, str]:
    """:func:`compose_convs` folded over a chain."""
    spec = specs[0]
    for nxt in specs[1:]:
        composed, why = compose_convs(spec, nxt)
        if composed is None:
            return None, why
        spec = composed
    return spec, ""

