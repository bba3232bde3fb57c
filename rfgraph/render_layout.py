"""What a drawing shows and where: the boxes (one per node, or per module collapsed at a depth),
the module clusters around them, and the columns a long drawing is wrapped into. No Graphviz
here: :mod:`rfgraph.render` turns this layout into DOT text."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .analysis import Analysis
    from .annotate import NodeInfo

#: Collapsed (depth) drawings longer than this many boxes are laid out in columns.
WRAP_RANKS = 12


@dataclass
class _Item:
    """One box: a single node, or every node of a collapsed module."""

    id: str
    nodes: list[NodeInfo]
    key: str  # the module it stands for (collapsed) or its node's module
    collapsed: bool


@dataclass
class _Cluster:
    key: str
    children: list[Any] = field(default_factory=list)  # _Item or _Cluster, in graph order
    depth: int = 0


def _hidden(n: NodeInfo) -> bool:
    """Shape arithmetic (x.size(), its getitems and sums) and export guards carry no tensor."""
    return (n.kind in ("shape", "guard", "constant") and n.tensor is None) or \
        (n.kind == "guard")


def _parts(module: str) -> list[str]:
    return module.split(".") if module else []


def _own_box(n: NodeInfo) -> bool:
    """True when the node *is* its module (a leaf module call), not an op inside it."""
    return n.op == "call_module"


def _containers(nodes: Iterable[NodeInfo]) -> set[str]:
    """Modules that hold more than a single leaf call: every proper prefix of a node's module,
    and the module of every functional op (``x + y`` inside a block's forward)."""
    out: set[str] = set()
    for n in nodes:
        parts = _parts(n.module)
        stop = len(parts) if _own_box(n) else len(parts) + 1
        for i in range(1, stop):
            out.add(".".join(parts[:i]))
    return out


def _module_types(a: Analysis) -> dict[str, str]:
    """Qualified module name -> class name, from fx's nn_module_stack."""
    types: dict[str, str] = {}
    gm = a.graph_module
    if gm is None:
        return types
    for node in gm.graph.nodes:
        for key, value in (node.meta.get("nn_module_stack") or {}).items():
            path, cls = (value if isinstance(value, tuple) else (key, value))
            name = getattr(cls, "__name__", None) or str(cls).rsplit(".", 1)[-1].strip("'>")
            types.setdefault(str(path), name)
    for n in a.nodes:
        if n.module and n.module_type:
            types.setdefault(n.module, n.module_type)
    return types


def auto_depth(a: Analysis, limit: int = 100) -> int | None:
    """The deepest module depth whose drawing has at most ``limit`` boxes (None: every node)."""
    if len(_items(a, None, False)) <= limit:
        return None
    deepest = max((len(_parts(n.module)) for n in a.nodes), default=0)
    for depth in range(deepest, 0, -1):
        if len(_items(a, depth, False)) <= limit:
            return depth
    return 1


def _items(a: Analysis, depth: int | None, show_shape_ops: bool) -> list[_Item]:
    nodes = [n for n in [*a.nodes, a.output] if show_shape_ops or not _hidden(n)]
    containers = _containers(nodes)
    items: list[_Item] = []
    groups: dict[str, _Item] = {}
    for n in nodes:
        key = None
        if depth is not None and n.kind not in ("input", "output"):
            if depth == 0:
                key = ""
            else:
                parts = _parts(n.module)
                prefix = ".".join(parts[:depth])
                if len(parts) >= depth and prefix in containers:
                    key = prefix
        if key is None:
            items.append(_Item(n.name, [n], n.module, False))
            continue
        if key not in groups:
            groups[key] = _Item(f"mod:{key}", [], key, True)
            items.append(groups[key])
        groups[key].nodes.append(n)
    for it in items:  # a module of one node is drawn as that node
        if it.collapsed and len(it.nodes) == 1:
            it.id, it.collapsed, it.key = it.nodes[0].name, False, it.nodes[0].module
    return items


def _cluster_tree(items: list[_Item], depth: int | None) -> _Cluster:
    """Clusters for the expanded modules (above ``depth``) holding two or more boxes."""
    candidates = _containers(n for it in items for n in it.nodes)
    candidates.discard("")
    if depth is not None:
        candidates = {c for c in candidates if len(_parts(c)) < depth}

    def home(it: _Item) -> list[str]:
        """The candidate clusters an item sits in, outermost first."""
        parts = _parts(it.key)
        own = it.collapsed or _own_box(it.nodes[0])
        stop = len(parts) - 1 if own else len(parts)
        return [p for p in (".".join(parts[:i]) for i in range(1, stop + 1)) if p in candidates]

    members: dict[str, int] = {}
    for it in items:
        for c in home(it):
            members[c] = members.get(c, 0) + 1
    root = _Cluster("")
    nodes_of: dict[str, _Cluster] = {"": root}
    for it in items:
        parent = root
        chain = [c for c in home(it) if members[c] >= 2]
        for c in chain:
            if c not in nodes_of:
                cl = _Cluster(c, depth=parent.depth + 1)
                nodes_of[c] = cl
                parent.children.append(cl)
            parent = nodes_of[c]
        parent.children.append(it)

    def squash(cl: _Cluster) -> None:  # a cluster whose only content is one cluster: drop inner
        while len(cl.children) == 1 and isinstance(cl.children[0], _Cluster) and cl.key:
            inner = cl.children[0]
            cl.children = inner.children
        for ch in cl.children:
            if isinstance(ch, _Cluster):
                ch.depth = cl.depth + 1
                squash(ch)

    squash(root)
    return root


def _flatten(cl: _Cluster) -> list[_Item]:
    out: list[_Item] = []
    for ch in cl.children:
        out.extend(_flatten(ch) if isinstance(ch, _Cluster) else [ch])
    return out


def _longest_path(items: list[_Item], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Rank (longest path from a source, in boxes) of every item; items are in graph order."""
    import networkx as nx

    index = {it.id: i for i, it in enumerate(items)}
    g = nx.DiGraph()
    g.add_nodes_from(index)
    # a module called twice may point backwards: that edge is not part of the order
    g.add_edges_from((src, dst) for src, dst in edges if index[src] < index[dst])
    rank: dict[str, int] = {}
    for v in nx.lexicographical_topological_sort(g, key=index.__getitem__):
        rank[v] = 1 + max((rank[p] for p in g.predecessors(v)), default=0)
    return rank


def _columns(root: _Cluster, items: list[_Item], edges: list[tuple[str, str]],
             wrap: bool | None) -> list[list[_Item]] | None:
    """Columns for a long drawing: the top-level clusters (each kept whole) and loose boxes, in
    graph order, packed into columns no taller than the tallest cluster (at least 8 boxes).
    None when wrapping is off, or (``wrap=None``) when the drawing is not collapsed, short
    enough, or has edges that skip a column."""
    if wrap is False:
        return None
    rank = _longest_path(items, edges)
    if wrap is None and (not any(it.collapsed for it in items)
                         or max(rank.values(), default=0) <= WRAP_RANKS):
        return None
    groups: list[tuple[bool, list[_Item]]] = []
    for ch in root.children:
        if isinstance(ch, _Cluster):
            groups.append((True, _flatten(ch)))
        elif groups and not groups[-1][0]:
            groups[-1][1].append(ch)
        else:
            groups.append((False, [ch]))

    def height(col: list[_Item]) -> int:
        ranks = [rank[it.id] for it in col]
        return max(ranks) - min(ranks) + 1

    limit = max([8] + [height(col) for is_cluster, col in groups if is_cluster])
    columns: list[list[_Item]] = []
    for is_cluster, col in groups:  # pack whole clusters and single boxes, in graph order
        pieces = [col] if is_cluster else [[it] for it in col]
        for piece in pieces:
            if columns and height(columns[-1] + piece) <= limit:
                columns[-1].extend(piece)
            else:
                columns.append(list(piece))
    if len(columns) < 2:
        return None
    if wrap is None:  # only a chain of columns: skips across columns (U-Net) read better in one
        column_of = {it.id: i for i, col in enumerate(columns) for it in col}
        if any(column_of[d] - column_of[s] not in (0, 1) for s, d in edges):
            return None
    return columns
