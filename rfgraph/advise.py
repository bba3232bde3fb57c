"""Convolution variants (seed §2.5-2.8): recognise them in an analysed graph, and cost the
alternatives of every standard convolution.

Recognised (:func:`variants`), over module convolutions (``nn.Conv1d/2d/3d``, not transposed):

- **flattened** (Jin et al. 2014): a 1×1 conv with ``groups=1`` (*channel*), then one depthwise
  1-D conv per spatial axis (2-D: *vertical* k×1 and *horizontal* 1×k, either order);
- **spatially separable**: a k×1 conv then a 1×m conv (or 1×m then k×1), k, m > 1;
- **depthwise-separable** (Chollet 2017): a depthwise conv (``groups == C_in > 1``,
  ``C_out`` a multiple of ``C_in``) then a pointwise 1×1 conv with ``groups=1``;
- **shuffled grouped** (ShuffleNet): a grouped conv (``groups > 1``) followed by a channel
  shuffle (``nn.ChannelShuffle``, ``F.channel_shuffle`` or the view → transpose → view idiom);
- what is left: a lone **grouped** conv (``groups > 1``, depthwise included) and a lone
  **channel shuffle**.

"Followed by" means consecutive in the data flow, with only per-channel ops between (norms,
activations, dropout: nodes of kind ``transparent`` or family ``norm``/``activation``), each
with one consumer. ``Variant.direct`` is True when nothing is between: only then is a
spatially separable pair exactly one k×m convolution (the seed's definition); with a norm or an
activation between it is the same *architecture* (Inception-v3's factorised convolutions).

Alternatives (:func:`alternatives`) of a standard conv (``groups=1``, kernel larger than 1): the
depthwise-separable, spatially separable (2-D), flattened and grouped (g = 2, 4, ... dividing
both channel counts) layers with the same output shape and the same field, as real modules
(:func:`build_alternative`) and as SymPy formulas of the input symbols (:func:`costs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd, prod
from typing import TYPE_CHECKING, Any

import sympy
from sympy import Expr, Integer
from torch import nn

from .kinds import Family, Kind
from .symbolic import format_expr
from .util import submodule

if TYPE_CHECKING:
    from .analysis import Analysis
    from .annotate import NodeInfo

FLATTENED = "flattened"
SPATIAL = "spatially separable"
DEPTHWISE = "depthwise-separable"
SHUFFLED = "shuffled grouped"
GROUPED = "grouped"
SHUFFLE = "channel shuffle"
ALTERNATIVES = (DEPTHWISE, SPATIAL, FLATTENED, GROUPED)

_CACHE_ATTR = "_rfgraph_variants"


@dataclass
class Variant:
    """One node's part in a recognised convolution variant."""

    node: str
    kind: str            # FLATTENED, SPATIAL, DEPTHWISE, SHUFFLED, GROUPED, SHUFFLE
    role: str            # "depthwise", "pointwise", "3×1", "channel", "shuffle", "g=4"...
    group: list[str]     # the nodes of the variant, in data-flow order (without in-betweens)
    direct: bool = True  # no op between the group's nodes

    @property
    def label(self) -> str:
        return f"{self.kind} ({self.role})"

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "variant": self.label, "kind": self.kind, "role": self.role,
                "group": list(self.group), "direct": self.direct}


# -- detection ---------------------------------------------------------------------------------
def _conv(a: Analysis, n: NodeInfo) -> nn.modules.conv._ConvNd | None:
    if n.op != "call_module" or a.graph_module is None:
        return None
    try:
        m = submodule(a.graph_module, n.module or str(n.target))
    except AttributeError:
        return None
    if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed:
        return m
    return None


def _is_depthwise(m: nn.modules.conv._ConvNd) -> bool:
    return m.groups > 1 and m.groups == m.in_channels and m.out_channels % m.in_channels == 0


def _is_pointwise(m: nn.modules.conv._ConvNd) -> bool:
    return m.groups == 1 and all(k == 1 for k in m.kernel_size)


def _one_d_axis(m: nn.modules.conv._ConvNd) -> int | None:
    """The one spatial axis along which the kernel is longer than 1 (None: zero or several)."""
    long = [i for i, k in enumerate(m.kernel_size) if k > 1]
    return long[0] if len(long) == 1 and len(m.kernel_size) >= 2 else None


def _kernel_text(k: tuple[int, ...]) -> str:
    return "×".join(map(str, k))


def _between(n: NodeInfo) -> bool:
    """Ops that may stand between the layers of a variant: per-channel, shape-preserving."""
    return n.kind == Kind.TRANSPARENT or n.family in (Family.NORM, Family.ACTIVATION)


class _Flow:
    """Single-consumer chains between nodes of one analysis."""

    def __init__(self, a: Analysis) -> None:
        self.a = a
        self.nodes = {n.name: n for n in a.nodes}
        self.users: dict[str, list[str]] = {}  # readers of the data (x.size() reads do not)
        for n in [*a.nodes, a.output]:
            if n.kind == Kind.SHAPE and n.tensor is None:
                continue
            for src in dict.fromkeys(n.inputs):
                self.users.setdefault(src, []).append(n.name)
        self.convs = {n.name: m for n in a.nodes if (m := _conv(a, n)) is not None}

    def next(self, name: str, accept) -> tuple[str, bool] | None:
        """The node after ``name`` through one-consumer per-channel ops that ``accept`` takes,
        and whether nothing was between."""
        cur, direct = name, True
        while True:
            users = self.users.get(cur, [])
            if len(users) != 1:
                return None
            nxt = self.nodes.get(users[0])
            if nxt is None:
                return None
            if accept(nxt):
                return nxt.name, direct
            if not _between(nxt) or nxt.inputs[:1] != [cur]:
                return None
            cur, direct = nxt.name, False

    def next_conv(self, name: str, pred) -> tuple[str, bool] | None:
        return self.next(name, lambda n: n.name in self.convs and pred(self.convs[n.name]))


def _shuffle_node(a: Analysis, n: NodeInfo, fx_nodes: dict[str, Any]) -> int | None:
    """The groups of a channel-shuffle module or call (None: not one)."""
    if n.op == "call_module" and a.graph_module is not None:
        try:
            m = submodule(a.graph_module, n.module or str(n.target))
        except AttributeError:
            return None
        return int(m.groups) if isinstance(m, nn.ChannelShuffle) else None
    if n.op == "call_function" and n.target.endswith("channel_shuffle"):
        node = fx_nodes.get(n.name)
        if node is not None:
            g = node.args[1] if len(node.args) > 1 else node.kwargs.get("groups")
            return int(g) if isinstance(g, int) else 0
        return 0
    return None


def _same(x: Expr, y: Expr) -> bool:
    return sympy.expand(sympy.sympify(x) - sympy.sympify(y)) == 0


def _swaps_1_2(node: Any) -> bool:
    name = str(getattr(node.target, "__name__", node.target))
    args = node.args[1:]
    if name in ("transpose", "swapaxes", "swapdims"):
        return sorted(int(x) for x in args[:2] if isinstance(x, int)) == [1, 2]
    if name == "permute":
        dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
        return len(dims) > 2 and tuple(dims[:3]) == (0, 2, 1)
    return False


def _shuffle_idioms(flow: _Flow, fx_nodes: dict[str, Any]) -> list[tuple[list[str], int]]:
    """The view → transpose → view channel shuffles, from the analysis's symbolic shapes (the
    same segments as verify's ``_shuffle_idioms``, which needs a meta run): a shape op that
    views (N, C, *S) as (N, g, C/g, *S), a transpose/permute swapping dims 1 and 2, and a last
    op giving (N, C, *S) again, through one-consumer shape/transparent ops."""
    found = []
    for n in flow.a.nodes:
        t = n.tensor
        if n.kind != Kind.SHAPE or t is None or not n.inputs:
            continue
        src = flow.nodes.get(n.inputs[0])
        s = src.tensor if src is not None else None
        if s is None or len(s.shape) < 3 or len(t.shape) != len(s.shape) + 1:
            continue
        a_, b_ = s.shape, t.shape
        if not (_same(b_[0], a_[0]) and _same(b_[1] * b_[2], a_[1])
                and all(_same(x, y) for x, y in zip(b_[3:], a_[2:]))):
            continue
        g = b_[1]
        chain, cur, swapped = [n.name], n.name, False
        while True:
            users = flow.users.get(cur, [])
            nxt = flow.nodes.get(users[0]) if len(users) == 1 else None
            if nxt is None or nxt.tensor is None or nxt.inputs[:1] != [cur] or \
                    nxt.kind not in (Kind.SHAPE, Kind.TRANSPARENT):
                break
            fxn = fx_nodes.get(nxt.name)
            swapped = swapped or (fxn is not None and _swaps_1_2(fxn))
            chain.append(nxt.name)
            cur = nxt.name
            shape = nxt.tensor.shape
            if swapped and len(shape) == len(a_) and all(_same(x, y) for x, y in zip(shape, a_)):
                found.append((chain, int(g) if g.is_Integer else 0))
                break
    return found


def variants(a: Analysis) -> dict[str, Variant]:
    """Node name → its :class:`Variant`, for every node that is part of a recognised
    convolution variant (computed once per analysis and kept on it)."""
    shared = a._shared  # the same nodes: the analyses evaluated from this one share the answer
    cached = shared.get(_CACHE_ATTR)
    if cached is None:
        cached = shared[_CACHE_ATTR] = _detect(a)
    return cached


def _detect(a: Analysis) -> dict[str, Variant]:
    flow = _Flow(a)
    convs = flow.convs
    out: dict[str, Variant] = {}
    fx_nodes: dict[str, Any] = ({n.name: n for n in a.graph_module.graph.nodes}
                                if a.graph_module is not None else {})

    def claim(kind: str, members: list[tuple[str, str]], direct: bool) -> None:
        group = [name for name, _ in members]
        for name, role in members:
            out[name] = Variant(name, kind, role, group, direct)

    free = lambda name: name not in out  # noqa: E731
    order = [n.name for n in a.nodes if n.name in convs]
    for name in order:  # flattened: channel 1×1, then one depthwise 1-D conv per axis
        m = convs[name]
        nd = len(m.kernel_size)
        if not free(name) or nd < 2 or not _is_pointwise(m):
            continue
        members, cur, direct, axes = [(name, "channel")], name, True, set()
        for _ in range(nd):
            step = flow.next_conv(cur, lambda c: _is_depthwise(c) and _one_d_axis(c) is not None
                                  and c.out_channels == c.in_channels)
            if step is None or not free(step[0]):
                break
            ax = _one_d_axis(convs[step[0]])
            if ax is None or ax in axes:
                break
            axes.add(ax)
            cur, direct = step[0], direct and step[1]
            k = _kernel_text(convs[cur].kernel_size)
            role = ({0: "vertical", 1: "horizontal"}.get(ax, f"axis {ax}") if nd == 2
                    else f"axis {ax}")
            members.append((cur, f"{role} {k}"))
        if len(axes) == nd:
            claim(FLATTENED, members, direct)
    for name in order:  # spatially separable: k×1 then 1×m, or 1×m then k×1
        m = convs[name]
        if not free(name) or len(m.kernel_size) != 2 or _one_d_axis(m) is None:
            continue
        ax = _one_d_axis(m)
        step = flow.next_conv(name, lambda c, ax=ax, g=m.groups: len(c.kernel_size) == 2
                              and _one_d_axis(c) not in (None, ax) and c.groups == g)
        if step is None or not free(step[0]):
            continue
        claim(SPATIAL, [(name, _kernel_text(m.kernel_size)),
                        (step[0], _kernel_text(convs[step[0]].kernel_size))], step[1])
    for name in order:  # depthwise separable: depthwise, then pointwise
        m = convs[name]
        if not free(name) or not _is_depthwise(m):
            continue
        step = flow.next_conv(name, _is_pointwise)
        if step is None or not free(step[0]):
            continue
        claim(DEPTHWISE, [(name, "depthwise"), (step[0], "pointwise")], step[1])
    shuffles: dict[str, tuple[list[str], int]] = {}
    for n in a.nodes:
        g = _shuffle_node(a, n, fx_nodes)
        if g is not None:
            shuffles[n.name] = ([n.name], g)
    for chain, g in _shuffle_idioms(flow, fx_nodes):
        shuffles[chain[-1]] = (chain, g)
    starts = {chain[0]: key for key, (chain, _) in shuffles.items()}
    for name in order:  # grouped conv, then a channel shuffle
        m = convs[name]
        if m.groups < 2 or not free(name):  # a layer of another variant keeps that label
            continue
        step = flow.next(name, lambda n: n.name in starts)
        if step is None:
            continue
        chain, sg = shuffles.pop(starts[step[0]])
        role = ("depthwise, " if _is_depthwise(m) else "") + f"g={m.groups}"
        members = [(name, role)] + [(c, f"shuffle, g={sg}" if sg else "shuffle") for c in chain]
        claim(SHUFFLED, members, step[1])
    for name in order:
        m = convs[name]
        if free(name) and m.groups > 1:
            role = ("depthwise, " if _is_depthwise(m) else "") + f"g={m.groups}"
            claim(GROUPED, [(name, role)], True)
    for chain, g in shuffles.values():
        if all(free(c) for c in chain):
            claim(SHUFFLE, [(c, f"g={g}" if g else "idiom") for c in chain], True)
    return {n.name: out[n.name] for n in a.nodes if n.name in out}


# -- alternatives --------------------------------------------------------------------------------
@dataclass
class Alternative:
    """One alternative layer for a standard conv: its layers, costs and their ratios."""

    name: str                   # DEPTHWISE, SPATIAL, FLATTENED or "grouped g=4"
    layers: list[str]           # "Conv2d(8→8, 3×3, groups=8)", ...
    params: Expr
    macs: Expr
    params_ratio: Expr
    macs_ratio: Expr
    field: str                  # "same field", or how it changes
    groups: int | None = None
    params_ratio_formula: str = ""  # in C_in, C_out, k (symbols): the general algebra
    macs_ratio_formula: str = ""


@dataclass
class ConvAdvice:
    """A standard conv (``groups=1``, kernel > 1) and its alternatives."""

    node: str
    module: str
    layer: str
    params: Expr
    macs: Expr
    alternatives: list[Alternative] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _geometry(m: nn.modules.conv._ConvNd) -> dict[str, Any]:
    return {"in": m.in_channels, "out": m.out_channels, "k": tuple(m.kernel_size),
            "bias": m.bias is not None}


def grouped_choices(c_in: int, c_out: int) -> list[int]:
    """g = 2, 4, 8, ... dividing both channel counts."""
    g, out, common = 2, [], gcd(c_in, c_out)
    while g <= common:
        if common % g == 0:
            out.append(g)
        g *= 2
    return out


def costs(kind: str, c_in: Any, c_out: Any, k: tuple, n: Any, in_sizes: tuple,
          out_sizes: tuple, bias: bool = False, groups: int = 1) -> tuple[Expr, Expr]:
    """(params, MACs) of a conv (kind ``"standard"``) or of one of its alternatives, for
    batch ``n``, input sizes ``in_sizes`` and output sizes ``out_sizes`` (one per axis): any
    of them may be SymPy symbols. The alternatives keep the conv's output shape and field:

    - DEPTHWISE: depthwise k (C_in → C_in, stride/padding/dilation of the conv) at the output
      size, then pointwise 1×1 (C_in → C_out): params ``C_in·∏k + C_in·C_out``;
    - SPATIAL (2-D): k_h×1 (C_in → C_out, the conv's geometry along H) at ``O_h × L_w``, then
      1×k_w (C_out → C_out) at ``O_h × O_w``: params ``C_in·C_out·k_h + C_out²·k_w``;
    - FLATTENED: 1×1 (C_in → C_out) at the input size, then one depthwise 1-D conv per axis
      (axis i at ``O_1..O_i × L_i+1..``): params ``C_in·C_out + C_out·Σk``;
    - GROUPED: the same conv with ``groups``: params ``C_out·(C_in/g)·∏k``.

    A bias (when the conv has one) stays on the last layer only: ``+ C_out``. MACs do not count
    the bias (as everywhere in rfgraph).
    """
    k_prod = prod(k)
    b = c_out if bias else 0
    n_out = n * prod(out_sizes)
    if kind == "standard":
        return (sympy.sympify(c_out * c_in * k_prod + b),
                sympy.sympify(n_out * c_out * c_in * k_prod))
    if kind == GROUPED:
        return (sympy.sympify(c_out * (c_in / Integer(groups)) * k_prod + b),
                sympy.sympify(n_out * c_out * (c_in / Integer(groups)) * k_prod))
    if kind == DEPTHWISE:
        return (sympy.sympify(c_in * k_prod + c_in * c_out + b),
                sympy.sympify(n_out * (c_in * k_prod + c_in * c_out)))
    if kind == SPATIAL:
        if len(k) != 2:
            raise ValueError("spatially separable alternatives are 2-D only")
        return (sympy.sympify(c_in * c_out * k[0] + c_out * c_out * k[1] + b),
                sympy.sympify(n * out_sizes[0] * in_sizes[1] * c_in * c_out * k[0]
                              + n_out * c_out * c_out * k[1]))
    if kind == FLATTENED:
        macs = n * prod(in_sizes) * c_in * c_out
        for i, ki in enumerate(k):
            sizes = tuple(out_sizes[: i + 1]) + tuple(in_sizes[i + 1:])
            macs += n * prod(sizes) * c_out * ki
        return sympy.sympify(c_in * c_out + c_out * sum(k) + b), sympy.sympify(macs)
    raise ValueError(f"unknown alternative {kind!r}")


def _general_ratios(kind: str, nd: int, groups: int) -> tuple[str, str]:
    """The ratios alternative / standard in symbols C_in, C_out, k_i, L_i, O_i (bias-free)."""
    ci, co = sympy.symbols("C_in C_out", positive=True)
    letters = ("h", "w") if nd == 2 else tuple(str(i) for i in range(1, nd + 1))
    k = tuple(sympy.Symbol(f"k_{c}", positive=True) for c in letters)
    ls = tuple(sympy.Symbol(f"L_{c}", positive=True) for c in letters)
    os_ = tuple(sympy.Symbol(f"O_{c}", positive=True) for c in letters)
    p0, m0 = costs("standard", ci, co, k, 1, ls, os_)
    p1, m1 = costs(kind, ci, co, k, 1, ls, os_, groups=groups)
    return format_expr(sympy.expand(p1 / p0)), format_expr(sympy.expand(m1 / m0))


def _layers(kind: str, m: nn.modules.conv._ConvNd, groups: int) -> list[str]:
    nd, ci, co, k = len(m.kernel_size), m.in_channels, m.out_channels, tuple(m.kernel_size)
    cls = type(m).__name__
    one = _kernel_text((1,) * nd)
    if kind == DEPTHWISE:
        return [f"{cls}({ci}→{ci}, {_kernel_text(k)}, groups={ci})", f"{cls}({ci}→{co}, {one})"]
    if kind == SPATIAL:
        return [f"{cls}({ci}→{co}, {k[0]}×1)", f"{cls}({co}→{co}, 1×{k[1]})"]
    if kind == FLATTENED:
        out = [f"{cls}({ci}→{co}, {one})"]
        for i, ki in enumerate(k):
            kk = tuple(ki if j == i else 1 for j in range(nd))
            out.append(f"{cls}({co}→{co}, {_kernel_text(kk)}, groups={co})")
        return out
    return [f"{cls}({ci}→{co}, {_kernel_text(k)}, groups={groups})"]


def _ratio(x: Expr, y: Expr) -> Expr:
    r = sympy.cancel(sympy.sympify(x) / sympy.sympify(y))
    return r if r.is_Number else sympy.expand(r)


def alternatives(a: Analysis, node: NodeInfo | str) -> ConvAdvice | None:
    """The alternatives of a standard conv node (None: not a module conv with ``groups=1`` and
    a kernel larger than 1). Formulas use the node's input and output shapes from ``a``."""
    n = a[node] if isinstance(node, str) else node
    m = _conv(a, n)
    if m is None or m.groups != 1 or prod(m.kernel_size) == 1 or n.tensor is None:
        return None
    src = a[n.inputs[0]].tensor if n.inputs else None
    if src is None:
        return None
    nd, geo = len(m.kernel_size), _geometry(m)
    x, y = src.shape, n.tensor.shape
    batch = prod(x[: len(x) - nd - 1]) if len(x) > nd + 1 else Integer(1)
    ins, outs = tuple(x[-nd:]), tuple(y[-nd:])
    p0, m0 = costs("standard", geo["in"], geo["out"], geo["k"], batch, ins, outs, geo["bias"])
    adv = ConvAdvice(n.name, n.module, f"{type(m).__name__}({geo['in']}→{geo['out']}, "
                     f"{_kernel_text(geo['k'])})", p0, m0)
    kinds: list[tuple[str, int]] = [(DEPTHWISE, 1)]
    if nd == 2 and all(k > 1 for k in geo["k"]):
        kinds.append((SPATIAL, 1))
    else:
        adv.skipped[SPATIAL] = ("2-D only" if nd != 2 else
                                "the kernel is already one-dimensional")
    kinds.append((FLATTENED, 1))
    choices = grouped_choices(geo["in"], geo["out"])
    if not choices:
        adv.skipped[GROUPED] = (f"no g = 2, 4, ... divides both {geo['in']} and "
                                f"{geo['out']} channels")
    kinds += [(GROUPED, g) for g in choices]
    for kind, g in kinds:
        p1, m1 = costs(kind, geo["in"], geo["out"], geo["k"], batch, ins, outs, geo["bias"], g)
        field_text = "same field"
        if kind == GROUPED:
            field_text = (f"same spatial field; each output channel sees {geo['in'] // g} of "
                          f"the {geo['in']} input channels")
        pr, mr = _general_ratios(kind, nd, g)
        adv.alternatives.append(Alternative(
            f"grouped g={g}" if kind == GROUPED else kind, _layers(kind, m, g), p1, m1,
            _ratio(p1, p0), _ratio(m1, m0), field_text, g if kind == GROUPED else None, pr, mr))
    return adv


def build_alternative(conv: nn.modules.conv._ConvNd, kind: str,
                      groups: int = 1) -> nn.Module:
    """The alternative as real modules, with the conv's output shape and field (weights are
    fresh): see :func:`costs` for the layers. ``kind`` is DEPTHWISE, SPATIAL, FLATTENED or
    GROUPED (with ``groups``)."""
    nd = len(conv.kernel_size)
    cls: Any = type(conv)  # Conv1d/2d/3d
    ci, co, k = conv.in_channels, conv.out_channels, tuple(conv.kernel_size)
    s, d = tuple(conv.stride), tuple(conv.dilation)
    pad = conv.padding
    mode = conv.padding_mode
    bias = conv.bias is not None

    def along(i: int) -> dict[str, Any]:  # the conv's geometry along axis i only
        def one(v: tuple, default: int) -> tuple:
            return tuple(v[j] if j == i else default for j in range(nd))
        p = pad if isinstance(pad, str) else one(tuple(pad), 0)
        return {"kernel_size": one(k, 1), "stride": one(s, 1), "padding": p,
                "dilation": one(d, 1), "padding_mode": mode}

    full: dict[str, Any] = {"kernel_size": k, "stride": s, "padding": pad, "dilation": d,
                            "padding_mode": mode}
    if kind == GROUPED:
        return cls(ci, co, groups=groups, bias=bias, **full)
    if kind == DEPTHWISE:
        return nn.Sequential(cls(ci, ci, groups=ci, bias=False, **full),
                             cls(ci, co, 1, bias=bias))
    if kind == SPATIAL:
        if nd != 2:
            raise ValueError("spatially separable alternatives are 2-D only")
        return nn.Sequential(cls(ci, co, bias=False, **along(0)),
                             cls(co, co, bias=bias, **along(1)))
    if kind == FLATTENED:
        layers: list[nn.Module] = [cls(ci, co, 1, bias=False)]
        layers += [cls(co, co, groups=co, bias=bias and i == nd - 1, **along(i))
                   for i in range(nd)]
        return nn.Sequential(*layers)
    raise ValueError(f"unknown alternative {kind!r}")


# -- the whole report ------------------------------------------------------------------------
@dataclass
class Advice:
    """Every recognised variant and the alternatives of every standard conv of an analysis."""

    analysis: Analysis
    variants: dict[str, Variant]
    convs: list[ConvAdvice]

    def _v(self, expr: Expr) -> Any:
        v = self.analysis.value_of(expr)
        return int(v) if v.is_Integer else format_expr(v)

    def _r(self, expr: Expr) -> str:
        v = self.analysis.value_of(expr)
        v = sympy.nsimplify(v) if v.is_Float else v
        return format_expr(v)

    def to_dict(self) -> dict[str, Any]:
        a = self.analysis
        return {
            "model": a.model_name,
            "input": [format_expr(s) for s in a.input_shape],
            "at": dict(a.at) if a.at is not None else None,
            "variants": [v.to_dict() for v in self.variants.values()],
            "convs": [{
                "node": c.node, "module": c.module, "layer": c.layer,
                "params": self._v(c.params), "macs": self._v(c.macs),
                "alternatives": [{
                    "name": alt.name, "layers": alt.layers, "groups": alt.groups,
                    "params": self._v(alt.params), "macs": self._v(alt.macs),
                    "params_ratio": self._r(alt.params_ratio),
                    "macs_ratio": self._r(alt.macs_ratio),
                    "params_ratio_formula": alt.params_ratio_formula,
                    "macs_ratio_formula": alt.macs_ratio_formula,
                    "field": alt.field} for alt in c.alternatives],
                "skipped": dict(c.skipped)} for c in self.convs],
        }

    def format(self) -> str:
        a = self.analysis
        title = f"{a.model_name}  input {tuple(format_expr(s) for s in a.input_shape)}"
        if a.at:
            title += "  at " + ", ".join(f"{k}={v}" for k, v in a.at.items())
        lines = [title, "", f"recognised variants ({len(self.variants)} nodes):"]
        if not self.variants:
            lines.append("  (none)")
        seen: set[tuple[str, ...]] = set()
        for v in self.variants.values():
            key = tuple(v.group)
            if key in seen:
                continue
            seen.add(key)
            parts = ", ".join(f"{g} ({self.variants[g].role})" for g in v.group)
            lines.append(f"  {v.kind}: {parts}" + ("" if v.direct else "  [ops between]"))
        lines += ["", f"standard convolutions ({len(self.convs)}) and their alternatives:"]
        if not self.convs:
            lines.append("  (none)")
        for c in self.convs:
            part = self.variants.get(c.node)
            lines.append(f"  {c.node} ({c.module}) {c.layer}: params {self._fmt(c.params)}, "
                         f"MACs {self._fmt(c.macs)}" + (f"  [{part.label}]" if part else ""))
            grouped = [alt.groups for alt in c.alternatives if alt.groups]
            shown = set(grouped[:2] + grouped[-1:])  # the text shows g = 2, 4 and the largest
            for alt in c.alternatives:
                if alt.groups and alt.groups not in shown:
                    continue
                lines.append(f"    {alt.name:20} params {self._fmt(alt.params)} "
                             f"(×{self._r(alt.params_ratio)}), MACs {self._fmt(alt.macs)} "
                             f"(×{self._r(alt.macs_ratio)}); {alt.field}")
            for kind, why in c.skipped.items():
                lines.append(f"    {kind:20} -: {why}")
            if len(shown) < len(grouped):
                lines.append(f"    (grouped g={', '.join(map(str, grouped))}: every g in --json)")
        return "\n".join(lines)

    def _fmt(self, expr: Expr) -> str:
        v = self._v(expr)
        return f"{v:,}" if isinstance(v, int) else str(v)


def advise(a: Analysis) -> Advice:
    """The variants recognised in ``a`` and the alternatives of each standard conv."""
    convs = [c for n in a.nodes if (c := alternatives(a, n)) is not None]
    return Advice(a, variants(a), convs)


def drawing_row(a: Analysis, n: NodeInfo) -> str | None:
    """The row naming a node's variant in its box of the Graphviz drawing (render.py), or
    None when the node is no part of a recognised variant."""
    v = variants(a).get(n.name)
    if v is None:
        return None
    text = v.label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return ('<TR><TD ALIGN="LEFT" BALIGN="LEFT"><FONT POINT-SIZE="8" COLOR="#6a3d9a">'
            f"<I>{text}</I></FONT></TD></TR>")
