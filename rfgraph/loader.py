"""Turn a model SPEC into an nn.Module: ``package.module:callable``, ``file.py:callable``,
or a saved model file. Every failure is a one-line :class:`SpecError`."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import sympy
from torch import nn

from .errors import SizeOutOfRange, SpecError, UnsafePickleError
from .util import first_line

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".bin", ".ckpt")


def _resolve(obj: object, attr_path: str, spec: str) -> object:
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SpecError(f"bad model spec {spec!r}: no attribute {part!r}") from None
    return obj


def _instantiate(obj: object, spec: str) -> nn.Module:
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise SpecError(f"bad model spec {spec!r}: {type(obj).__name__} is not callable")
    try:
        model = obj()
    except TypeError as exc:
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            sig = "(...)"
        raise SpecError(f"bad model spec {spec!r}: calling it with no arguments failed "
                        f"({first_line(exc)}); its signature is {sig}") from None
    except Exception as exc:
        raise SpecError(f"bad model spec {spec!r}: building the model failed: "
                        f"{first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise SpecError(f"bad model spec {spec!r}: it returned {type(model).__name__}, "
                        "not a torch.nn.Module")
    return model


def load_model(spec: str, trust_pickle: bool = False) -> nn.Module:
    """Load the model named by ``spec`` (see module docstring)."""
    spec = spec.strip()
    path_part, sep, attr = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not sep:
        return _load_file(Path(spec), spec, trust_pickle)
    if not attr:
        raise SpecError(f"bad model spec {spec!r}: name the callable after ':'")
    if path_part.endswith(".py") or "/" in path_part or "\\" in path_part:
        module = _import_file(Path(path_part), spec)
    else:
        if os.getcwd() not in sys.path:  # like `python -m`: modules next to the user resolve
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(path_part)
        except ImportError as exc:
            raise SpecError(f"bad model spec {spec!r}: cannot import {path_part!r} "
                            f"({first_line(exc)})") from None
        except Exception as exc:
            raise SpecError(f"bad model spec {spec!r}: importing {path_part!r} failed: "
                            f"{first_line(exc)}") from None
    return _instantiate(_resolve(module, attr, spec), spec)


def load_spec(spec: str | None, trust_pickle: bool = False,
              ) -> tuple[nn.Module, tuple | None, str]:
    """The model a command-line SPEC names, the input shape stored with it (a ``.pt2`` file's)
    or None, and its display name; no SPEC: the built-in seed-tour model."""
    if spec is None:
        from .models import DEFAULT_INPUT, DEFAULT_MODEL

        return DEFAULT_MODEL(), DEFAULT_INPUT, "seed_tour"
    model = load_model(spec, trust_pickle=trust_pickle)
    name = spec.rpartition(":")[2] if ":" in spec else spec.replace("\\", "/").rsplit("/", 1)[-1]
    meta = getattr(model, "meta", None)
    stored = meta.get("rfgraph_input_shape") if isinstance(meta, dict) else None
    return model, tuple(stored) if stored else None, name


def _import_file(path: Path, spec: str) -> object:
    if not path.is_file():
        raise SpecError(f"bad model spec {spec!r}: no such file {str(path)!r}")
    name = f"_rfgraph_user_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise SpecError(f"bad model spec {spec!r}: {str(path)!r} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    parent = str(path.resolve().parent)
    added = parent not in sys.path
    if added:
        sys.path.insert(0, parent)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise SpecError(f"bad model spec {spec!r}: running {str(path)!r} failed: "
                        f"{first_line(exc)}") from None
    finally:
        if added:
            sys.path.remove(parent)
    return module


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """Silence torch's own logging and warnings: ``torch.export.load`` logs a multi-line
    traceback (logger ``torch.export``) before raising on a corrupt file; rfgraph reports one
    line instead."""
    names = ["torch"] + [n for n in list(logging.root.manager.loggerDict)
                         if n.startswith("torch.")]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _dim_ranges(program: object, dims: list, shape: list) -> dict[str, tuple[int, int | None]]:
    """name -> (min, max or None) for every dynamic input dim that is a plain symbol of the
    program's ``range_constraints``."""
    constraints = getattr(program, "range_constraints", None) or {}
    by_name = {str(k): v for k, v in constraints.items()}
    ranges: dict[str, tuple[int, int | None]] = {}
    for d, name in zip(dims, shape):
        if isinstance(d, int) or not isinstance(name, str):
            continue
        expr = getattr(getattr(d, "node", None), "expr", None)
        vr = by_name.get(str(expr)) if expr is not None else None
        if vr is None:
            continue
        try:
            lower = int(vr.lower)
        except (TypeError, ValueError, OverflowError):
            continue
        upper = int(vr.upper) if isinstance(vr.upper, (int, sympy.Integer)) else None
        ranges[name] = (lower, upper)
    return ranges


def load_exported(path: Path) -> nn.Module:
    """A ``torch.export.save`` file: its stored graph, as an fx GraphModule whose
    ``meta["rfgraph_input_shape"]`` is the stored input shape (dynamic dims named D/H/W) and
    ``meta["rfgraph_size_ranges"]`` the sizes it was exported for ({'H': (64, 2048)}; max None
    when unbounded)."""
    import torch

    try:
        with _quiet_torch():
            program = torch.export.load(str(path))
    except Exception as exc:
        detail = first_line(exc).replace(  # the warnings it points to are silenced
            " Please check the warnings above for possible errors.", "").rstrip()
        raise SpecError(f"cannot load {str(path)!r} as a torch.export program (corrupt or "
                        f"truncated file?): {detail}") from None
    try:
        with _quiet_torch():
            gm = program.module()
    except Exception as exc:
        raise SpecError(f"cannot rebuild the graph stored in {str(path)!r}: "
                        f"{first_line(exc)}") from None
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    shape: list[int | str] | None = None
    ranges: dict[str, tuple[int, int | None]] = {}
    if inputs:
        val = inputs[0].meta.get("val")
        if val is not None and hasattr(val, "shape"):
            dims = list(val.shape)
            names = {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}.get(len(dims) - 2, [])
            shape = []
            for i, d in enumerate(dims):
                if isinstance(d, int):
                    shape.append(d)
                else:  # a dynamic dim (SymInt)
                    k = i - 2
                    shape.append(names[k] if 0 <= k < len(names) else ("N" if i == 0 else
                                                                         f"S{i}"))
            ranges = _dim_ranges(program, dims, shape)
    gm.meta["rfgraph_input_shape"] = shape
    gm.meta["rfgraph_size_ranges"] = ranges
    gm.meta["rfgraph_source"] = f"torch.export program {path.name}"
    return gm


def check_size_ranges(model: object, sizes: Mapping[str, int] | None) -> None:
    """Refuse sizes outside the range a ``.pt2`` program was exported for (its graph is only
    valid there), as a one-line :class:`SizeOutOfRange`. Models without stored ranges pass."""
    meta = getattr(model, "meta", None)
    ranges = meta.get("rfgraph_size_ranges") if isinstance(meta, dict) else None
    if not ranges or not sizes:
        return
    for name, value in sizes.items():
        if name not in ranges:
            continue
        lower, upper = ranges[name]
        if value < lower or (upper is not None and value > upper):
            bounds = f"{lower} <= {name} <= {upper}" if upper is not None else f"{name} >= {lower}"
            raise SizeOutOfRange(f"{name}={value} is outside the range the .pt2 was exported "
                                 f"for ({bounds})")


def _load_file(path: Path, spec: str, trust_pickle: bool) -> nn.Module:
    if not path.exists():
        raise SpecError(f"bad model spec {spec!r}: use package.module:callable, "
                        "path/to/file.py:callable or a saved model file")
    if path.suffix == ".py":
        raise SpecError(f"bad model spec {spec!r}: name the callable, e.g. {spec}:MyNet")
    if path.suffix.lower() == ".pt2":
        return load_exported(path)
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        raise SpecError(f"bad model spec {spec!r}: unknown model file type {path.suffix!r}")
    if not trust_pickle:
        raise UnsafePickleError(
            f"refusing to unpickle {str(path)!r}: loading a pickle runs arbitrary code; "
            "pass --trust-pickle if you trust this file, or use package.module:callable")
    import torch

    cwd = os.getcwd()  # like `python -m`: classes in modules next to the user unpickle
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise SpecError(f"cannot load {str(path)!r}: {first_line(exc)}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, dict):
        raise SpecError(
            f"{str(path)!r} holds a state_dict (weights only), not a model: build the model "
            "with its factory, e.g. `rfgraph analyze package.module:factory`; weights do not "
            "change shapes, fields or costs")
    raise SpecError(f"{str(path)!r} holds a {type(obj).__name__}, not a torch.nn.Module")
