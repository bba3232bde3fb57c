"""The meta runs behind :mod:`rfgraph.costs`: the graph on meta tensors in the cost dtype, with or
without autograd, recording which tensors autograd saves per node (``CostRun``), and the
storages each run allocates (``walk``). Two kernels are made to behave as on the CPU: eval-mode
BatchNorm statistics and scaled-dot-product attention."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import RfgraphError
from .execute import MetaExecutor, tensors_in

__all__ = ["CostRun", "Walk", "storage_bytes", "storage_id", "walk"]


class CostRun(MetaExecutor):
    """The graph on meta tensors in ``dtype``, with or without autograd; records which node
    each tensor autograd saves belongs to."""

    def __init__(self, gm: fx.GraphModule, dtype: torch.dtype, grad: bool) -> None:
        super().__init__(gm)
        self.extra_traceback = False  # its errors stay one line (no "While executing ...")
        self.dtype = dtype
        self.grad = grad
        self.current: str | None = None
        self.saved: dict[str, list[torch.Tensor]] = {}
        #: storages of parameters and buffers (never activations)
        self.const_storages: set[int] = set()

    def _meta(self, t: torch.Tensor) -> torch.Tensor:
        key = id(t)
        if key not in self._meta_cache:
            dtype = self.dtype if t.is_floating_point() else t.dtype
            m = torch.empty(t.shape, dtype=dtype, device="meta")
            if self.grad and isinstance(t, torch.nn.Parameter) and t.requires_grad:
                m.requires_grad_(True)
            self._meta_cache[key] = m
            self.const_storages.add(storage_id(m))
        return self._meta_cache[key]

    def execute(self, n: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any],
                ) -> tuple[Any, int, str | None]:
        self.current = n.name
        try:
            out = getattr(self, n.op)(n.target, args, kwargs)
        except Exception as exc:
            raise RfgraphError(f"node '{n.name}' cannot run on meta tensors for the memory "
                               f"costs: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                               ) from None
        return out, 0, None

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        mod = self.fetch_attr(target)
        state = {name: self._meta(t) for name, t in
                 [*mod.named_parameters(remove_duplicate=False),
                  *mod.named_buffers(remove_duplicate=False)]}
        with torch.set_grad_enabled(self.grad):
            return torch.func.functional_call(mod, state, tuple(args), dict(kwargs))

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        with torch.set_grad_enabled(self.grad):
            return fx.Interpreter.call_function(self, target, args, kwargs)

    def call_method(self, target: Any, args: Any, kwargs: Any) -> Any:
        with torch.set_grad_enabled(self.grad):
            return fx.Interpreter.call_method(self, target, args, kwargs)

    def go(self, shape: Sequence[int]) -> None:
        x = torch.empty(tuple(shape), dtype=self.dtype, device="meta")

        def pack(t: torch.Tensor) -> torch.Tensor:
            if self.current is not None:
                self.saved.setdefault(self.current, []).append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                (_AsOnCpu() if self.grad else contextlib.nullcontext()), _SdpaAsOnCpu():
            self.run(x)


class _SdpaAsOnCpu(TorchFunctionMode):
    """``F.scaled_dot_product_attention`` on meta tensors through the kernel torch picks on
    the CPU for the same arguments. On meta, torch always takes the math path, which keeps the
    whole attention matrix for the backward; the CPU's flash kernel keeps the output and the
    log-sum-exp (as CUDA's fused kernels do), and that is what a real run saves."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None,
                           ) -> Any:
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            out = _sdpa_like_cpu(*args, **kwargs)
            if out is not None:
                return out
        if func is torch.nn.functional.multi_head_attention_forward:
            # itself an overridable function: the mode is off while it runs, so its own call
            # of scaled_dot_product_attention (a module-level name) is redirected for its span
            with _functional_sdpa_like_cpu():
                return func(*args, **kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def _functional_sdpa_like_cpu() -> Any:
    original = torch.nn.functional.scaled_dot_product_attention

    def sdpa(*args: Any, **kwargs: Any) -> Any:
        out = _sdpa_like_cpu(*args, **kwargs)
        return original(*args, **kwargs) if out is None else out

    torch.nn.functional.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = original


def _sdpa_like_cpu(query: Any, key: Any, value: Any, attn_mask: Any = None,
                   dropout_p: float = 0.0, is_causal: bool = False, scale: Any = None,
                   enable_gqa: bool = False) -> Any:
    """The flash kernel's output when the CPU would choose it for these arguments, else None
    (the caller runs the function as it is)."""
    tensors = [query, key, value] + ([attn_mask] if attn_mask is not None else [])
    if enable_gqa or not all(isinstance(t, torch.Tensor) and t.is_meta for t in tensors):
        return None

    def cpu(t: torch.Tensor) -> torch.Tensor:  # untouched pages: no memory is used
        return torch.empty(t.shape, dtype=t.dtype).requires_grad_(t.requires_grad)

    try:
        choice = torch._fused_sdp_choice(
            cpu(query), cpu(key), cpu(value),
            attn_mask=None if attn_mask is None else cpu(attn_mask), dropout_p=dropout_p,
            is_causal=is_causal, scale=scale)
        if int(choice) != 1:  # SDPBackend.FLASH_ATTENTION (an enum mypy cannot int())
            return None
        out, _ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)
    except (RuntimeError, TypeError, AttributeError):
        return None
    return out


class _AsOnCpu(TorchDispatchMode):
    """Meta kernels that return more than the CPU (and cuDNN) kernels, made to return the same:
    ``native_batch_norm`` with running statistics (eval) returns ``save_mean``/``save_invstd``
    of C elements on meta but empty on CPU, and autograd saves them."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None,
                           ) -> Any:
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.native_batch_norm.default and not _arg(args, kwargs, 5,
                                                                            "training"):
            out = (out[0], *(t.new_empty((0,)) for t in out[1:]))
        return out


def _arg(args: Any, kwargs: Any, i: int, name: str) -> Any:
    return args[i] if len(args) > i else (kwargs or {}).get(name)


def storage_id(t: torch.Tensor) -> int:
    return int(t.untyped_storage()._cdata)


def storage_bytes(t: torch.Tensor) -> int:
    return int(t.untyped_storage().nbytes())


@dataclass
class Walk:
    """Storages of one run: which node allocated each, its bytes, who holds views of it."""

    owner: dict[int, tuple[str, int]]         # storage -> (node, leaf index)
    nbytes: dict[int, int]
    item: dict[int, int]                      # storage -> element size of its first tensor
    fresh: dict[str, list[tuple[int, int]]]   # node -> [(leaf index, storage)] it allocates
    holds: dict[str, set[int]]                # node -> storages its value lives on
    const: set[int]


def walk(run: CostRun, nodes: Sequence[fx.Node]) -> Walk:
    owner: dict[int, tuple[str, int]] = {}
    nbytes: dict[int, int] = {}
    item: dict[int, int] = {}
    fresh: dict[str, list[tuple[int, int]]] = {}
    holds: dict[str, set[int]] = {}
    const = set(run.const_storages)
    for n in nodes:
        value = run.values.get(n.name)
        ts = tensors_in(value)
        if n.op == "get_attr":
            const.update(storage_id(t) for t in ts)
            continue
        held: set[int] = set()
        for k, t in enumerate(ts):
            if t.layout != torch.strided:
                continue
            sid = storage_id(t)
            held.add(sid)
            if sid in const or sid in owner:
                continue
            owner[sid] = (n.name, k)
            nbytes[sid] = storage_bytes(t)
            item[sid] = t.element_size()
            fresh.setdefault(n.name, []).append((k, sid))
        holds[n.name] = held
    return Walk(owner, nbytes, item, fresh, holds, const)
