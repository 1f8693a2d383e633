"""Lazy package exports: names resolved from their submodule on first use.

Packages whose submodules pull in heavy dependencies (torch, onnx) use this so that importing one light name, such
as the onnxruntime-only recognizer, does not import the rest.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` that load ``name`` from ``package.<exports[name]>``.

    Examples
    --------
    >>> __getattr__, __dir__ = lazy_exports(__name__, {"OrtSession": "runtime"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module-level hook's required name
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        vars(sys.modules[package])[name] = value  # later look-ups skip this hook
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
