"""Model bundles: a folder holding everything a trained model needs, shared by every task package.

A bundle folder contains

``config.json``
    ``format_version``, ``task`` (``"tagging"``, ``"asr"``, ...), ``architecture`` (a name the task package knows)
    with its ``hyperparameters``, the ``frontend`` settings, ``labels``, the ``metrics`` the model reached, and
    task-specific ``options`` (for tagging: ``multi_label``, where the weights came from, ...).
``model.safetensors``
    The weights (a flat ``state_dict``), written with :func:`safetensors.torch.save_file`.
any other files
    Tokenizers, label files, notes: kept byte for byte in :attr:`Bundle.extra_files`.

:meth:`Bundle.load` accepts a folder path or the name of a bundle shipped with audioforge under
``audioforge/assets/bundles/<name>/`` (package data). :meth:`Bundle.save` writes a temporary folder next to the
target and renames it into place, so an interrupted save never leaves a half-written bundle under the final name.
This module knows nothing about any task: task packages build their modules from the config and check the weights
with :meth:`Bundle.check_state_dict`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, InvalidParameterError

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "Bundle",
    "available_bundles",
    "check_state_dict",
    "format_report",
    "shipped_bundles_dir",
    "state_dict_report",
]

#: Version of the folder layout and config schema written by :meth:`Bundle.save`.
BUNDLE_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_RESERVED = (CONFIG_FILE, WEIGHTS_FILE)
_MAX_LISTED = 12


def shipped_bundles_dir() -> Path:
    """The package-data folder that holds the bundles shipped with audioforge (it may not exist)."""
    return Path(__file__).resolve().parent / "assets" / "bundles"


def available_bundles() -> list[str]:
    """Names of the shipped bundles (sub-folders of :func:`shipped_bundles_dir` holding a ``config.json``)."""
    root = shipped_bundles_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CONFIG_FILE).is_file())


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in (value.shape if hasattr(value, "shape") else value))


def _listing(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def state_dict_report(state_dict: Mapping[str, Any], expected: Mapping[str, Any]) -> dict[str, Any]:
    """Compare the keys and shapes of ``state_dict`` with ``expected``.

    Parameters
    ----------
    state_dict
        Tensors (anything with ``.shape``) by name.
    expected
        Tensors or shapes by name, for example ``model.state_dict()`` (a model built on the ``meta`` device works).

    Returns
    -------
    dict
        ``missing`` (expected, absent), ``unexpected`` (present, not expected) and ``mismatched``
        (``{name: (found_shape, expected_shape)}``), each sorted by name.
    """
    exp = {k: _shape(v) for k, v in expected.items()}
    got = {k: _shape(v) for k, v in state_dict.items()}
    return {
        "missing": sorted(set(exp) - set(got)),
        "unexpected": sorted(set(got) - set(exp)),
        "mismatched": {k: (got[k], exp[k]) for k in sorted(set(exp) & set(got)) if got[k] != exp[k]},
    }


def format_report(report: Mapping[str, Any]) -> str:
    """One line per problem kind of a :func:`state_dict_report` (empty string when there is none)."""
    lines = []
    if report["missing"]:
        lines.append(f"missing keys ({len(report['missing'])}): {_listing(report['missing'])}")
    if report["unexpected"]:
        lines.append(f"unexpected keys ({len(report['unexpected'])}): {_listing(report['unexpected'])}")
    if report["mismatched"]:
        parts = [f"{k} {list(a)} (expected {list(b)})" for k, (a, b) in report["mismatched"].items()]
        lines.append(f"shape mismatches ({len(parts)}): {_listing(parts)}")
    return "\n".join(lines)


def check_state_dict(state_dict: Mapping[str, Any], expected: Mapping[str, Any], *, what: str = "weights") -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected and mis-shaped key; return None if all match."""
    report = state_dict_report(state_dict, expected)
    text = format_report(report)
    if text:
        raise CheckpointError(f"{what} do not match the model:\n{text}")


def _check_jsonable(config: Mapping[str, Any]) -> None:
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"bundle config must be plain JSON (str, numbers, lists, dicts): {exc}") from exc


@dataclass
class Bundle:
    """A model with its configuration, labels and weights.

    Attributes
    ----------
    task
        The task package that can run it (``"tagging"``, ...).
    architecture
        Name of the architecture within the task (for tagging: a PaSST preset such as ``"passt_s"``).
    hyperparameters
        Keyword arguments that rebuild the module (JSON values).
    state_dict
        The weights by name (CPU tensors).
    frontend
        Front-end settings (keyword arguments of the task's front-end module).
    labels
        Class labels or tokens, in output order.
    metrics
        Metrics the model reached, e.g. ``{"audioset_map": 0.476}`` (empty when unknown).
    options
        Task-specific settings (tagging: ``multi_label``) and provenance (``source``).
    extra_files
        Other files of the folder, by file name, as bytes.
    path
        The folder it was loaded from (None for a bundle built in memory).
    """

    task: str
    architecture: str
    hyperparameters: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    frontend: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    extra_files: dict[str, bytes] = field(default_factory=dict)
    path: Path | None = None

    # ------------------------------------------------------------------------------------------------------------
    # config

    def config(self) -> dict[str, Any]:
        """The content of ``config.json``."""
        return {
            "format_version": BUNDLE_FORMAT_VERSION,
            "task": self.task,
            "architecture": self.architecture,
            "hyperparameters": self.hyperparameters,
            "frontend": self.frontend,
            "labels": list(self.labels),
            "metrics": self.metrics,
            "options": self.options,
        }

    def check_state_dict(self, expected: Mapping[str, Any]) -> None:
        """Raise :class:`CheckpointError` unless the weights have exactly the keys and shapes of ``expected``."""
        where = f"bundle {self.path}" if self.path is not None else f"bundle ({self.architecture})"
        check_state_dict(self.state_dict, expected, what=f"the weights of {where}")

    # ------------------------------------------------------------------------------------------------------------
    # save / load

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the bundle folder at ``path`` atomically and return the path.

        Everything is written into a temporary folder next to ``path`` first, then renamed onto ``path``. With
        ``overwrite=True`` an existing bundle folder is replaced (moved aside, then deleted after the rename).

        Raises
        ------
        InvalidParameterError
            ``path`` exists and ``overwrite`` is False, an extra file uses a reserved or nested name, or the config
            holds values that are not plain JSON.
        """
        target = Path(path)
        if target.exists() and not overwrite:
            raise InvalidParameterError(f"{target} already exists; pass overwrite=True to replace it")
        if target.exists() and not target.is_dir():
            raise InvalidParameterError(f"{target} exists and is not a folder; a bundle is a folder")
        for name in self.extra_files:
            if name in _RESERVED or Path(name).name != name or name.startswith("."):
                raise InvalidParameterError(f"extra file name {name!r} is reserved or not a plain file name")
        config = self.config()
        _check_jsonable(config)
        from safetensors.torch import save_file

        tensors = {}
        for k, v in self.state_dict.items():
            if not isinstance(v, torch.Tensor):
                raise InvalidParameterError(f"state_dict[{k!r}] is a {type(v).__name__}, not a tensor")
            tensors[k] = v.detach().to("cpu").contiguous().clone()  # clone: safetensors refuses shared storage
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, allow_nan=False) + "\n", encoding="utf-8")
            save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "task": self.task})
            for name, data in self.extra_files.items():
                (tmp / name).write_bytes(data)
            # mkdtemp creates 0700 and some writers 0600: give the bundle ordinary permissions (umask applied)
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)
            for f in tmp.iterdir():
                f.chmod(0o666 & ~umask)
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
                os.replace(target, old / "bundle")
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.path = target
        return target

    @classmethod
    def load(cls, name_or_path: str | os.PathLike[str]) -> Bundle:
        """Load a bundle from a folder, or a shipped bundle by name.

        Parameters
        ----------
        name_or_path
            A bundle folder, or the name of a shipped bundle (see :func:`available_bundles`).

        Raises
        ------
        CheckpointError
            No such folder or shipped name (the message lists the shipped names), a missing or malformed
            ``config.json``, an unknown ``format_version``, or unreadable weights.
        """
        folder = cls._resolve(name_or_path)
        cfg_path = folder / CONFIG_FILE
        if not cfg_path.is_file():
            raise CheckpointError(f"{folder} is not a bundle: it has no {CONFIG_FILE}")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read {cfg_path}: {exc}") from exc
        if not isinstance(config, dict):
            raise CheckpointError(f"{cfg_path} must hold a JSON object")
        version = config.get("format_version")
        if version != BUNDLE_FORMAT_VERSION:
            raise CheckpointError(
                f"{cfg_path} has format_version={version!r}; this audioforge reads version {BUNDLE_FORMAT_VERSION}"
            )
        missing = [k for k in ("task", "architecture", "hyperparameters") if k not in config]
        if missing:
            raise CheckpointError(f"{cfg_path} lacks required entries: {', '.join(missing)}")
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise CheckpointError(f"bundle {folder} has no {WEIGHTS_FILE}")
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state_dict = load_file(str(weights), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the weights {weights}: {exc}") from exc
        extra = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name not in _RESERVED}
        return cls(
            task=str(config["task"]),
            architecture=str(config["architecture"]),
            hyperparameters=dict(config["hyperparameters"]),
            state_dict=state_dict,
            frontend=dict(config.get("frontend") or {}),
            labels=[str(x) for x in config.get("labels") or []],
            metrics=dict(config.get("metrics") or {}),
            options=dict(config.get("options") or {}),
            extra_files=extra,
            path=folder,
        )

    @staticmethod
    def _resolve(name_or_path: str | os.PathLike[str]) -> Path:
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise InvalidParameterError(f"expected a bundle name or folder path, got {type(name_or_path).__name__}")
        p = Path(name_or_path)
        if p.is_dir():
            return p
        text = os.fspath(name_or_path)
        shipped = available_bundles()
        if text and os.sep not in text and "/" not in text and not p.suffix:
            if text in shipped:
                return shipped_bundles_dir() / text
        names = ", ".join(shipped) if shipped else "none (no bundle ships with this version of audioforge)"
        if p.exists():
            raise CheckpointError(f"{p} is a file; a bundle is a folder with {CONFIG_FILE} and {WEIGHTS_FILE}")
        raise CheckpointError(f"no bundle folder at {text!r} and no shipped bundle of that name; shipped: {names}")
