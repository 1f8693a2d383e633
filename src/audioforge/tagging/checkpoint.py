"""Convert the official PaSST checkpoints (kkoutini/PaSST ``.pt`` files) into audioforge bundles, strictly checked.

Nothing is downloaded: pass the path of a checkpoint you obtained yourself (e.g. ``passt-s-f128-p16-s10-ap.476-swa.pt``
from the PaSST releases). The file is read with ``torch.load(..., weights_only=True)`` (no arbitrary pickles).
Accepted layouts: a plain state_dict, or one wrapped as ``{"state_dict": ...}`` or ``{"model": ...}``; key prefixes
``net.``, ``model.`` and ``module.`` (Lightning modules, ``torch.optim.swa_utils.AveragedModel``) are stripped and the
SWA counter ``n_averaged`` is ignored. Every other difference from the architecture (a missing, unexpected or
mis-shaped key) is an error that names the keys and, from the positional-embedding shapes, the preset the file
looks like.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..bundle import Bundle, format_report, state_dict_report
from ..errors import CheckpointError, InvalidParameterError
from .frontend import PasstFrontend
from .model import PRESETS, PaSST, available_presets, preset_config

__all__ = [
    "AUDIOSET_NUM_CLASSES",
    "default_labels",
    "describe_state_dict",
    "load_official_checkpoint",
    "read_labels",
]

#: Classes of the AudioSet ontology the official checkpoints were trained on.
AUDIOSET_NUM_CLASSES = 527
_PREFIXES = ("net.", "model.", "module.")
# the classifier: replaced when a checkpoint is loaded or fine-tuned for another label set
HEAD_KEYS = ("head.1.weight", "head.1.bias", "head_dist.weight", "head_dist.bias")


def default_labels(num_classes: int) -> list[str]:
    """Index names ``class_000``, ``class_001``, ... (audioforge ships no ontology file)."""
    width = max(3, len(str(num_classes - 1)))
    return [f"class_{i:0{width}d}" for i in range(num_classes)]


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """Read class labels from a file: one label per line, or a CSV with a ``display_name`` (or ``label``) column.

    AudioSet's ``class_labels_indices.csv`` (columns ``index,mid,display_name``) is read by its ``display_name``
    column in file order. Blank lines are skipped.

    Raises
    ------
    InvalidParameterError
        The file is missing, unreadable or holds no label.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParameterError(f"cannot read the labels file {p}: {exc}") from exc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InvalidParameterError(f"the labels file {p} holds no label")
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    column = next((c for c in ("display_name", "label", "name") if c in header), None)
    if p.suffix.lower() == ".csv" and column is not None:
        rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
        key = next(k for k in rows[0] if k.strip().lower() == column) if rows else column
        labels = [r[key].strip() for r in rows]
    else:
        labels = [ln.strip() for ln in lines]
    if not labels:
        raise InvalidParameterError(f"the labels file {p} holds no label")
    return labels


def _resolve_labels(labels: Sequence[str] | str | os.PathLike[str] | None, num_classes: int) -> list[str]:
    if labels is None:
        return default_labels(num_classes)
    out = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else [str(x) for x in labels]
    if len(out) != num_classes:
        raise InvalidParameterError(f"got {len(out)} labels for a model with {num_classes} classes")
    return out


# --------------------------------------------------------------------------------------------------------------
# reading


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"cannot read {path} as a PyTorch state_dict (loaded with weights_only=True, so files holding "
            f"arbitrary Python objects are refused): {exc}"
        ) from exc
    for _ in range(2):
        if isinstance(obj, Mapping):
            for wrapper in ("state_dict", "model"):
                if isinstance(obj.get(wrapper), Mapping):
                    obj = obj[wrapper]
                    break
            else:
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: state_dict key {key!r} is not a string")
        name = key
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        if name == "n_averaged":  # the SWA averaging counter, not a weight
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        if name in state:
            raise CheckpointError(f"{path}: key {name!r} appears twice after stripping the prefixes {_PREFIXES}")
        state[name] = value
    if not state:
        raise CheckpointError(f"{path} holds no tensor")
    return state


def describe_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What the shapes of a PaSST state_dict say: width, depth, positional grid, stride, classes (None if unknown)."""
    info: dict[str, Any] = {"embed_dim": None, "depth": None, "grid": None, "stride": None, "num_classes": None}
    if "cls_token" in state_dict:
        info["embed_dim"] = int(state_dict["cls_token"].shape[-1])
    blocks = [int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))]
    if blocks:
        info["depth"] = max(blocks) + 1
    f_emb, t_emb = state_dict.get("freq_new_pos_embed"), state_dict.get("time_new_pos_embed")
    if f_emb is not None and t_emb is not None and f_emb.dim() == 4 and t_emb.dim() == 4:
        grid = (int(f_emb.shape[2]), int(t_emb.shape[3]))
        info["grid"] = grid
        img = PRESETS["passt_s"]["img_size"]
        strides = [s for s in range(1, 33) if img[0] // s == grid[0] and img[1] // s == grid[1]]
        info["stride"] = strides[0] if len(strides) == 1 else None
    if "head.1.weight" in state_dict and state_dict["head.1.weight"].dim() == 2:
        info["num_classes"] = int(state_dict["head.1.weight"].shape[0])
    return info


def _suggestion(info: Mapping[str, Any], arch: str) -> str:
    matches = []
    for name in available_presets():
        cfg = PRESETS[name]
        grid = (cfg["img_size"][0] // cfg["stride"], cfg["img_size"][1] // cfg["stride"])
        if (info["embed_dim"], info["depth"], info["grid"]) == (cfg["embed_dim"], cfg["depth"], grid):
            matches.append(name)
    matches = [m for m in matches if m != arch]
    if matches:
        best = PRESETS[matches[0]]
        if arch in PRESETS and best["stride"] != PRESETS[arch]["stride"]:
            return f"this looks like stride {best['stride']}: use arch={matches[0]!r}"
        return (
            f"this looks like width {best['embed_dim']}, {best['depth']} blocks, stride {best['stride']}: "
            f"use arch={matches[0]!r}"
        )
    parts = []
    if info["stride"] is not None:
        parts.append(f"stride {info['stride']}")
    elif info["grid"] is not None:
        parts.append(f"a {info['grid'][0]} x {info['grid'][1]} positional grid (not a 10 s, 128-bin model?)")
    if info["depth"] is not None:
        parts.append(f"{info['depth']} blocks")
    if info["embed_dim"] is not None:
        parts.append(f"width {info['embed_dim']}")
    if not parts:
        return "the file does not look like a PaSST checkpoint"
    return f"the file looks like {', '.join(parts)}, which matches no preset of {available_presets()}"


# --------------------------------------------------------------------------------------------------------------
# conversion


def load_official_checkpoint(
    path: str | os.PathLike[str],
    arch: str = "passt_s",
    num_classes: int | None = None,
    labels: Sequence[str] | str | os.PathLike[str] | None = None,
) -> Bundle:
    """Load an official PaSST ``.pt`` checkpoint into a tagging :class:`~audioforge.bundle.Bundle`.

    Parameters
    ----------
    path
        The ``.pt`` file.
    arch
        The preset it was trained as: ``"passt_s"`` (stride 10, the default and most checkpoints), ``"passt_s_s12"``,
        ``"passt_s_s14"``, ``"passt_s_s16"`` or ``"passt_l"`` (7 blocks).
    num_classes
        Output classes. None keeps the checkpoint's head (527 for AudioSet, 200 for FSD50K, ...). Any other value
        drops ``head.1.*`` and ``head_dist.*`` and initialises a new head (for fine-tuning).
    labels
        Class labels in output order, or the path of a labels file (see :func:`read_labels`). None gives index
        names ``class_000`` ... (audioforge does not ship the AudioSet ontology).

    Returns
    -------
    Bundle
        ``task="tagging"``, the preset's hyper-parameters, the official front-end settings
        (:class:`~audioforge.tagging.frontend.PasstFrontend` defaults), ``multi_label=True`` and the weights in
        float32. Save it with :meth:`Bundle.save`; run it with :class:`audioforge.tagging.Tagger`.

    Raises
    ------
    CheckpointError
        The file is missing or not a state_dict, or its keys/shapes differ from ``arch`` (the message lists the
        missing, unexpected and mis-shaped keys and suggests the matching preset).
    InvalidParameterError
        Unknown ``arch``, a bad ``num_classes``, or labels whose count differs from the classes.
    """
    if arch not in PRESETS:
        raise InvalidParameterError(f"unknown arch {arch!r}; use one of {available_presets()}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise InvalidParameterError(f"num_classes must be a positive integer or None, got {num_classes!r}")
    p = Path(path)
    state = _read_state_dict(p)
    info = describe_state_dict(state)
    ckpt_classes = info["num_classes"]
    target = num_classes if num_classes is not None else (ckpt_classes or AUDIOSET_NUM_CLASSES)
    reinit = ckpt_classes is not None and target != ckpt_classes
    if reinit:
        state = {k: v for k, v in state.items() if k not in HEAD_KEYS}
    params = preset_config(arch, num_classes=target)
    with torch.device("meta"):
        reference = PaSST(**params)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    if reinit:
        expected = {k: v for k, v in expected.items() if k not in HEAD_KEYS}
    report = state_dict_report(state, expected)
    text = format_report(report)
    if text:
        raise CheckpointError(
            f"{p.name} does not match arch={arch!r}:\n{text}\n{_suggestion(info, arch)}"
        )
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    if reinit:
        d = params["embed_dim"]
        for name in ("head.1", "head_dist"):
            w = torch.empty(target, d)
            torch.nn.init.trunc_normal_(w, std=0.02)
            weights[f"{name}.weight"] = w
            weights[f"{name}.bias"] = torch.zeros(target)
    return Bundle(
        task="tagging",
        architecture=arch,
        hyperparameters=params,
        state_dict=weights,
        frontend=PasstFrontend().config(),
        labels=_resolve_labels(labels, target),
        metrics={},
        options={
            "multi_label": True,
            "source": {
                "kind": "official PaSST checkpoint (kkoutini/PaSST)",
                "file": p.name,
                "checkpoint_classes": ckpt_classes,
                "head_reinitialised": reinit,
            },
        },
    )
