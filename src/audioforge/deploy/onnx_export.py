"""Export any torch module to ONNX, check it against onnxruntime, and store configuration in the model.

:func:`export_onnx` tries the torch.export-based exporter (``dynamo=True``) first and falls back to the TorchScript
exporter, logging why; the file is written atomically and passes ``onnx.checker``. :func:`verify_onnx` runs the
module and onnxruntime on several input sets (several chunk lengths, cache sizes ...) and raises when they disagree.
Configuration a runtime needs (chunk size, subsampling rate, sos/eos ids ...) goes into ``metadata_props`` with
:func:`export_onnx`'s ``metadata`` and comes back typed from :func:`read_metadata`.

torch is imported inside the functions that need it, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import atomic_path
from ..errors import CheckpointError, InvalidParameterError, MissingToolError
from .runtime import OrtSession

__all__ = [
    "OutputError",
    "VerifyReport",
    "export_onnx",
    "load_onnx",
    "read_metadata",
    "verify_onnx",
    "write_onnx",
]

logger = logging.getLogger(__name__)

_TYPES_KEY = "audioforge.metadata_types"
_EXPORTER_KEY = "audioforge.exporter"
_MAX_PROTO_BYTES = 2_000_000_000  # protobuf's hard limit is 2 GiB; stay clear of it
_EXPORTERS = ("auto", "dynamo", "legacy")


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - installed with the [export] extra
        raise MissingToolError(
            "onnx is not installed; install the export extra: pip install 'audioforge[export]'"
        ) from exc
    return onnx


def load_onnx(path: str | os.PathLike[str], *, load_external_data: bool = True) -> Any:
    """Load an ``onnx.ModelProto``, raising :class:`CheckpointError` for a missing or unreadable file."""
    onnx = _onnx()
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"ONNX model {str(p)!r} does not exist (or is not a file)")
    try:
        return onnx.load(str(p), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise CheckpointError(f"{str(p)!r} is not a readable ONNX model: {exc}") from exc


def write_onnx(model: Any, path: str | os.PathLike[str], *, check: bool = True) -> Path:
    """Write ``model`` (an ``onnx.ModelProto``) to ``path`` atomically, optionally running ``onnx.checker`` first.

    Models above 2 GB are saved with their tensors in ``<name>.data`` next to the ``.onnx`` file (protobuf cannot
    hold more); the ``.onnx`` file itself is still renamed into place only after everything was written.

    Raises
    ------
    CheckpointError
        If ``onnx.checker`` rejects the model.
    """
    onnx = _onnx()
    p = Path(path)
    large = model.ByteSize() > _MAX_PROTO_BYTES
    with atomic_path(p) as tmp:
        if large:
            onnx.save_model(
                model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True, location=f"{p.name}.data"
            )
        else:
            onnx.save_model(model, str(tmp))
        if check:
            try:
                onnx.checker.check_model(str(tmp))
            except Exception as exc:
                raise CheckpointError(f"onnx.checker rejects the model for {str(p)!r}: {exc}") from exc
    return p


# --------------------------------------------------------------------------------------------------- metadata


def _encode_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    encoded: dict[str, str] = {}
    types: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise InvalidParameterError(f"metadata keys must be non-empty strings, got {key!r}")
        if key in (_TYPES_KEY, _EXPORTER_KEY):
            raise InvalidParameterError(f"metadata key {key!r} is reserved by audioforge")
        if isinstance(value, bool):
            encoded[key], types[key] = ("true" if value else "false"), "bool"
        elif isinstance(value, (int, np.integer)):
            encoded[key], types[key] = str(int(value)), "int"
        elif isinstance(value, (float, np.floating)):
            encoded[key], types[key] = repr(float(value)), "float"
        elif isinstance(value, str):
            encoded[key], types[key] = value, "str"
        else:
            raise InvalidParameterError(
                f"metadata[{key!r}] must be a str, int, float or bool, got {type(value).__name__}; "
                "serialise lists and dicts yourself (for example with json.dumps)"
            )
    encoded[_TYPES_KEY] = json.dumps(types, sort_keys=True)
    return encoded


def _set_metadata(model: Any, values: Mapping[str, str]) -> None:
    onnx = _onnx()
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the ``metadata_props`` of an ONNX model.

    Values written by :func:`export_onnx` come back with the type they were given (``int``, ``float``, ``bool``,
    ``str``); keys written by other tools come back as strings. The exporter that produced the file is under
    ``"audioforge.exporter"``.

    Raises
    ------
    CheckpointError
        If the file is missing or not an ONNX model.
    """
    model = load_onnx(path, load_external_data=False)
    raw = {p.key: p.value for p in model.metadata_props}
    try:
        types = json.loads(raw.pop(_TYPES_KEY, "{}"))
    except json.JSONDecodeError:
        types = {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kind = types.get(key)
        try:
            if kind == "int":
                out[key] = int(value)
            elif kind == "float":
                out[key] = float(value)
            elif kind == "bool":
                out[key] = value == "true"
            else:
                out[key] = value
        except ValueError:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------------------ export


def _is_tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def _normalise_inputs(example_inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    import torch

    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    raise InvalidParameterError(
        f"example_inputs must be a tensor, a tuple of positional inputs or a dict of keyword inputs, got "
        f"{type(example_inputs).__name__}"
    )


def _tensor_inputs(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[tuple[str | None, Any]]:
    """The tensors among the inputs (what becomes graph inputs), with their keyword names where known."""
    found = [(None, a) for a in args if _is_tensor(a)]
    found += [(k, v) for k, v in kwargs.items() if _is_tensor(v)]
    return found


def _dynamic_shapes_to_axes(
    dynamic_shapes: Any, input_names: Sequence[str], kwarg_names: Sequence[str]
) -> dict[str, dict[int, str]]:
    """Translate torch.export ``dynamic_shapes`` into the legacy exporter's ``dynamic_axes``."""
    if isinstance(dynamic_shapes, Mapping):
        pairs: list[tuple[str, Any]] = []
        for i, (key, spec) in enumerate(dynamic_shapes.items()):
            if key in kwarg_names:
                name = input_names[list(kwarg_names).index(key)]
            elif key in input_names:
                name = key
            elif i < len(input_names):
                name = input_names[i]  # forward's parameter name differs from the graph name: positional
            else:
                raise InvalidParameterError(f"dynamic_shapes names {key!r}, which is not one of the inputs")
            pairs.append((name, spec))
    elif isinstance(dynamic_shapes, (tuple, list)):
        pairs = list(zip(input_names, dynamic_shapes, strict=False))
    else:
        raise InvalidParameterError(f"dynamic_shapes must be a dict or a tuple, got {type(dynamic_shapes).__name__}")
    axes: dict[str, dict[int, str]] = {}
    for name, spec in pairs:
        if spec is None:
            continue
        if isinstance(spec, Mapping):
            items = spec.items()
        elif isinstance(spec, (tuple, list)):
            items = [(i, d) for i, d in enumerate(spec) if d is not None]
        else:
            raise InvalidParameterError(f"dynamic_shapes[{name!r}] must be a dict axis -> Dim, got {spec!r}")
        labels = {}
        for axis, dim in items:
            label = getattr(dim, "__name__", None)
            labels[int(axis)] = label if isinstance(label, str) and label else f"{name}_dim{axis}"
        axes[name] = labels
    return axes


def _validate_dynamic_axes(
    dynamic_axes: Mapping[str, Any], names: Sequence[str], ranks: Mapping[str, int]
) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for name, spec in dynamic_axes.items():
        if name not in names:
            raise InvalidParameterError(
                f"dynamic_axes names {name!r}, which is neither an input nor an output name; names: {list(names)}"
            )
        if isinstance(spec, Mapping):
            labels = {int(a): str(lbl) for a, lbl in spec.items()}
        elif isinstance(spec, (list, tuple)):
            labels = {int(a): f"{name}_dim{a}" for a in spec}
        else:
            raise InvalidParameterError(f"dynamic_axes[{name!r}] must be a dict axis -> label, got {spec!r}")
        rank = ranks.get(name)
        for axis in labels:
            if rank is not None and not 0 <= axis < rank:
                raise InvalidParameterError(
                    f"dynamic_axes[{name!r}] names axis {axis}, but that input has rank {rank}; use 0..{rank - 1}"
                )
        out[name] = labels
    return out


def _axes_to_dynamic_shapes(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], names: Sequence[str], axes: Mapping[str, Mapping[int, str]]
) -> Any:
    """Translate ``dynamic_axes`` into torch.export ``dynamic_shapes`` with one named ``Dim`` per label.

    Named (strict) dims make torch.export fail loudly when the code specialises a "dynamic" axis to the example's
    size (a GRU's sequence length, for one) instead of silently baking it in; ``auto`` then falls back to the
    TorchScript exporter.
    """
    import re

    from torch.export import Dim

    dims: dict[str, Any] = {}

    def dim(label: str) -> Any:
        if label not in dims:
            ident = re.sub(r"\W", "_", label)
            dims[label] = Dim(ident if ident[:1].isalpha() else f"d_{ident}")
        return dims[label]

    tensor_names = iter(names)
    specs_args: list[Any] = []
    for a in args:
        if _is_tensor(a):
            labels = axes.get(next(tensor_names), {})
            specs_args.append({ax: dim(lbl) for ax, lbl in labels.items()} or None)
        else:
            specs_args.append(None)
    specs_kwargs: dict[str, Any] = {}
    for k, v in kwargs.items():
        if _is_tensor(v):
            labels = axes.get(next(tensor_names), {})
            specs_kwargs[k] = {ax: dim(lbl) for ax, lbl in labels.items()} or None
        else:
            specs_kwargs[k] = None
    if kwargs and not args:
        return specs_kwargs
    if not kwargs:
        return tuple(specs_args)
    raise InvalidParameterError(
        "mixing positional and keyword example inputs is not supported with dynamic_axes; pass a tuple or a dict"
    )


def _export_dynamo(
    module: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    input_names: list[str],
    output_names: list[str] | None,
    dynamic_axes: dict[str, dict[int, str]] | None,
    dynamic_shapes: Any,
    opset: int,
) -> Any:
    import torch

    if dynamic_shapes is None and dynamic_axes:
        dynamic_shapes = _axes_to_dynamic_shapes(args, kwargs, input_names, dynamic_axes)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # Capture the graph ourselves with torch.export (non-strict): torch.onnx.export would otherwise retry with
        # draft_export, which quietly specialises a dynamic axis that the code fixes (a GRU's time axis) and gives
        # a model that only runs at the example's size.
        exported = torch.export.export(module, args, kwargs or None, dynamic_shapes=dynamic_shapes, strict=False)
        program = torch.onnx.export(
            exported,
            (),
            dynamo=True,
            input_names=input_names,
            output_names=output_names,
            opset_version=opset,
            verbose=False,
            optimize=True,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise RuntimeError("torch.onnx.export returned no ONNX program")
    return program.model_proto


def _export_legacy(
    module: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    input_names: list[str],
    output_names: list[str] | None,
    dynamic_axes: dict[str, dict[int, str]] | None,
    opset: int,
    tmp_dir: Path,
) -> Any:
    import tempfile

    import torch

    onnx = _onnx()
    if kwargs:
        # The TorchScript exporter takes keyword inputs as a trailing dict in args.
        args = (*args, dict(kwargs))
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix=".export-") as d:
        f = Path(d) / "model.onnx"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                module,
                args,
                str(f),
                dynamo=False,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        return onnx.load(str(f))


def _label_axes(model: Any, axes: Mapping[str, Mapping[int, str]] | None) -> None:
    """Write the ``dynamic_axes`` labels onto the graph's inputs and outputs.

    The dynamo exporter names input axes but can leave an output axis fixed to the example's size (GRU outputs, for
    one) although it follows a dynamic input; naming it here makes onnxruntime accept other sizes without warnings.
    """
    if not axes:
        return
    for value in [*model.graph.input, *model.graph.output]:
        labels = axes.get(value.name)
        if not labels or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        for axis, label in labels.items():
            if axis < len(dims):
                dims[axis].Clear()
                dims[axis].dim_param = label


def _first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    cause = exc.__cause__
    if cause is not None:
        text += f" (caused by {type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause) else ''})"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0][:500] if lines else type(exc).__name__


def export_onnx(
    module: Any,
    example_inputs: tuple[Any, ...] | Mapping[str, Any] | Any,
    path: str | os.PathLike[str],
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str] | Sequence[int]] | None = None,
    dynamic_shapes: Any = None,
    opset: int = 17,
    metadata: Mapping[str, str | int | float | bool] | None = None,
    exporter: str = "auto",
) -> Path:
    """Export ``module`` to an ONNX file and check it.

    Parameters
    ----------
    module
        Any ``torch.nn.Module``. It is exported in eval mode; its training flag is restored afterwards.
    example_inputs
        A tuple of positional inputs (tensors; Python numbers become constants of the graph), a dict of keyword
        inputs, or a single tensor. Use sizes larger than 1 on dynamic axes: torch.export specialises sizes 0 and 1.
    path
        Where to write the ``.onnx`` file (atomically; parent folders are created).
    input_names, output_names
        Graph names, one per tensor input and per output. Defaults: the dict keys (or ``input_0``, ``input_1``, ...)
        and the exporter's names.
    dynamic_axes
        ``{name: {axis: label}}`` for inputs and outputs, e.g. ``{"chunk": {1: "T"}, "output": {1: "T_out"}}``; a
        list of axes gets generated labels. Works with both exporters.
    dynamic_shapes
        torch.export ``dynamic_shapes`` (``torch.export.Dim`` objects); used instead of ``dynamic_axes`` by the
        dynamo exporter and translated to ``dynamic_axes`` for the legacy one. Give one or the other.
    opset
        The ONNX opset (17 by default). The dynamo exporter builds opset 18 and converts down when asked for less.
    metadata
        Configuration stored in ``ModelProto.metadata_props`` (values: str, int, float, bool); read it back with
        :func:`read_metadata` or :attr:`OrtSession.metadata`.
    exporter
        ``"auto"`` (dynamo, then the TorchScript exporter if dynamo fails, with the reason logged), ``"dynamo"`` or
        ``"legacy"``. The exporter used is stored under the metadata key ``"audioforge.exporter"``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InvalidParameterError
        For inconsistent names, axes, metadata or an unknown exporter.
    CheckpointError
        If every exporter tried fails, or ``onnx.checker`` rejects the result.
    """
    import torch

    onnx = _onnx()
    if exporter not in _EXPORTERS:
        raise InvalidParameterError(f"exporter must be one of {_EXPORTERS}, got {exporter!r}")
    if not isinstance(module, torch.nn.Module):
        raise InvalidParameterError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if dynamic_axes is not None and dynamic_shapes is not None:
        raise InvalidParameterError("give dynamic_axes or dynamic_shapes, not both")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 11 <= opset <= 25:
        raise InvalidParameterError(f"opset must be an integer in [11, 25], got {opset!r}")
    args, kwargs = _normalise_inputs(example_inputs)
    tensors = _tensor_inputs(args, kwargs)
    if not tensors:
        raise InvalidParameterError("example_inputs contain no tensor: the graph would have no input")
    kwarg_names = [k for k, _ in tensors if k is not None]
    if input_names is None:
        names = [k if k is not None else f"input_{i}" for i, (k, _) in enumerate(tensors)]
    else:
        names = list(input_names)
        if len(names) != len(tensors):
            raise InvalidParameterError(
                f"input_names has {len(names)} names but example_inputs hold {len(tensors)} tensors"
            )
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"input_names must be unique, got {names}")
    outs = list(output_names) if output_names is not None else None
    if outs is not None and len(set(outs)) != len(outs):
        raise InvalidParameterError(f"output_names must be unique, got {outs}")
    if outs is not None and set(outs) & set(names):
        raise InvalidParameterError(f"names used both as input and output: {sorted(set(outs) & set(names))}")
    ranks = {n: t.dim() for n, (_, t) in zip(names, tensors, strict=True)}
    axes = None
    if dynamic_axes is not None:
        axes = _validate_dynamic_axes(dynamic_axes, [*names, *(outs or [])], ranks)
    meta = _encode_metadata(metadata or {})

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    order = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    failures: list[str] = []
    model = None
    used = None
    was_training = module.training
    module.eval()
    try:
        for kind in order:
            try:
                if kind == "dynamo":
                    model = _export_dynamo(
                        module,
                        args,
                        kwargs,
                        input_names=names,
                        output_names=outs,
                        dynamic_axes=axes,
                        dynamic_shapes=dynamic_shapes,
                        opset=opset,
                    )
                else:
                    legacy_axes = axes
                    if dynamic_shapes is not None:
                        legacy_axes = _dynamic_shapes_to_axes(dynamic_shapes, names, kwarg_names)
                    with torch.no_grad():
                        model = _export_legacy(
                            module,
                            args,
                            kwargs,
                            input_names=names,
                            output_names=outs,
                            dynamic_axes=legacy_axes,
                            opset=opset,
                            tmp_dir=p.parent,
                        )
                try:
                    onnx.checker.check_model(model)
                except Exception as exc:
                    hint = ""
                    if kind == "dynamo" and opset < 18:
                        hint = " (the dynamo exporter builds opset 18 and converts down to the requested opset; "
                        hint += "opset=18 avoids the conversion)"
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise RuntimeError(f"onnx.checker rejects the exported graph: {first}{hint}") from exc
                graph_inputs = [i.name for i in model.graph.input]
                if graph_inputs != names:
                    raise RuntimeError(
                        f"the exported graph takes inputs {graph_inputs}, not {names} (an input unused by forward "
                        "is dropped by the exporter; remove it or use it)"
                    )
                used = kind
                break
            except Exception as exc:  # exporters raise a wide variety of errors
                reason = _first_line(exc)
                failures.append(f"{kind}: {reason}")
                if kind == "dynamo" and exporter == "auto":
                    logger.warning(
                        "dynamo ONNX export of %s failed, falling back to the TorchScript exporter: %s",
                        type(module).__name__,
                        reason,
                    )
                model = None
    finally:
        module.train(was_training)
    if model is None or used is None:
        raise CheckpointError(f"ONNX export of {type(module).__name__} failed: " + " | ".join(failures))
    actual_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if actual_opset != opset:
        logger.warning("requested opset %d, the %s exporter produced opset %s", opset, used, actual_opset)
    _label_axes(model, axes if dynamic_shapes is None else None)
    _set_metadata(model, {**meta, _EXPORTER_KEY: used})
    write_onnx(model, p, check=True)
    logger.info("exported %s to %s with the %s exporter (opset %s)", type(module).__name__, p, used, actual_opset)
    return p


# ------------------------------------------------------------------------------------------------------ verify


@dataclass(frozen=True)
class OutputError:
    """The disagreement between torch and onnxruntime on one output for one input set."""

    input_index: int
    output_name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    within_tolerance: bool
    note: str = ""


@dataclass
class VerifyReport:
    """What :func:`verify_onnx` measured: one :class:`OutputError` per input set and output."""

    path: Path
    rtol: float
    atol: float
    errors: list[OutputError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every output of every input set is within tolerance."""
        return all(e.within_tolerance for e in self.errors)

    @property
    def max_abs_error(self) -> float:
        """The largest absolute error over all outputs and input sets."""
        return max((e.max_abs_error for e in self.errors), default=0.0)

    @property
    def max_rel_error(self) -> float:
        """The largest relative error over all outputs and input sets."""
        return max((e.max_rel_error for e in self.errors), default=0.0)

    def per_output(self) -> dict[str, tuple[float, float]]:
        """``{output name: (max abs error, max rel error)}`` over all input sets."""
        out: dict[str, tuple[float, float]] = {}
        for e in self.errors:
            a, r = out.get(e.output_name, (0.0, 0.0))
            out[e.output_name] = (max(a, e.max_abs_error), max(r, e.max_rel_error))
        return out

    def __str__(self) -> str:
        lines = [f"{self.path.name}: rtol={self.rtol:g} atol={self.atol:g} -> {'OK' if self.ok else 'MISMATCH'}"]
        for e in self.errors:
            flag = "ok" if e.within_tolerance else "FAIL"
            extra = f" ({e.note})" if e.note else ""
            lines.append(
                f"  input set {e.input_index} {e.output_name} {list(e.shape)}: max abs {e.max_abs_error:.3g}, "
                f"max rel {e.max_rel_error:.3g} {flag}{extra}"
            )
        return "\n".join(lines)


def _flatten_outputs(value: Any) -> list[Any]:
    if _is_tensor(value):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _flatten_outputs(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flatten_outputs(v)]
    return []  # Python numbers and None are not graph outputs


def _compare(ref: np.ndarray, got: np.ndarray, rtol: float, atol: float) -> tuple[float, float, bool, str]:
    if ref.shape != got.shape:
        return float("inf"), float("inf"), False, f"shape {list(got.shape)} != torch {list(ref.shape)}"
    if ref.size == 0:
        return 0.0, 0.0, True, ""
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    both_nan = np.isnan(r) & np.isnan(g)
    diff = np.where(both_nan, 0.0, np.abs(r - g))
    diff = np.where(np.isnan(diff), np.inf, diff)
    rel = diff / np.maximum(np.abs(r), np.finfo(np.float64).tiny)
    rel = np.where(diff == 0, 0.0, rel)
    ok = bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(r))))
    return float(diff.max()), float(rel.max()), ok, ""


def verify_onnx(
    module: Any,
    path: str | os.PathLike[str],
    inputs_list: Sequence[tuple[Any, ...] | Mapping[str, Any] | Any],
    *,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    intra_op_num_threads: int = 1,
    raise_on_mismatch: bool = True,
) -> VerifyReport:
    """Run ``module`` and the ONNX model on every input set and compare every output.

    An element passes when ``|onnx - torch| <= atol + rtol * |torch|`` (``numpy.allclose``'s rule).

    Parameters
    ----------
    module
        The torch module that was exported (run in eval mode under ``torch.no_grad``).
    path
        The ``.onnx`` file.
    inputs_list
        Input sets, each in the form given to :func:`export_onnx` (tuple, dict or single tensor). Use several
        shapes (chunk lengths, cache sizes) to exercise the dynamic axes.
    rtol, atol
        Tolerances (WeNet checks its streaming encoder with rtol 1e-3, atol 1e-5).
    intra_op_num_threads
        onnxruntime threads.
    raise_on_mismatch
        Raise when anything is out of tolerance (default); otherwise just return the report.

    Returns
    -------
    VerifyReport
        Max absolute and relative error per input set and output.

    Raises
    ------
    CheckpointError
        When an output differs beyond tolerance, has another shape, or the number of outputs differs.
    InvalidParameterError
        When an input set does not match the model's inputs, or ``inputs_list`` is empty.
    """
    import torch

    if not inputs_list:
        raise InvalidParameterError("inputs_list is empty: give at least one input set")
    if rtol < 0 or atol < 0:
        raise InvalidParameterError(f"rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    session = OrtSession(path, intra_op_num_threads=intra_op_num_threads)
    report = VerifyReport(path=Path(path), rtol=rtol, atol=atol)
    was_training = module.training
    module.eval()
    try:
        for index, example in enumerate(inputs_list):
            args, kwargs = _normalise_inputs(example)
            with torch.no_grad():
                expected = _flatten_outputs(module(*args, **kwargs))
            tensors = [t for _, t in _tensor_inputs(args, kwargs)]
            if kwargs and all(k in session.input_names for k in kwargs if _is_tensor(kwargs[k])) and not args:
                feed: Any = {k: v.detach().cpu().numpy() for k, v in kwargs.items() if _is_tensor(v)}
            else:
                feed = [t.detach().cpu().numpy() for t in tensors]
            got = session.run(feed)
            if len(got) != len(expected):
                raise CheckpointError(
                    f"input set {index}: the module returns {len(expected)} tensors but {Path(path).name!r} has "
                    f"{len(got)} outputs {session.output_names}"
                )
            for name, ref in zip(session.output_names, expected, strict=True):
                ref_np = ref.detach().cpu().numpy()
                max_abs, max_rel, ok, note = _compare(ref_np, got[name], rtol, atol)
                report.errors.append(OutputError(index, name, tuple(got[name].shape), max_abs, max_rel, ok, note))
    finally:
        module.train(was_training)
    logger.info("%s", report)
    if raise_on_mismatch and not report.ok:
        bad = [e for e in report.errors if not e.within_tolerance]
        details = "; ".join(
            f"input set {e.input_index} output {e.output_name!r}: max abs {e.max_abs_error:.3g}, max rel "
            f"{e.max_rel_error:.3g}{' (' + e.note + ')' if e.note else ''}"
            for e in bad[:5]
        )
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CheckpointError(
            f"{Path(path).name!r} disagrees with {type(module).__name__} beyond rtol={rtol:g}, atol={atol:g}: "
            f"{details}{more}"
        )
    return report
