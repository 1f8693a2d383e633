"""onnxruntime inference without torch: :class:`OrtSession`, a thin, validating wrapper around ``InferenceSession``.

This module imports only numpy and onnxruntime, so a recognizer run with ``--backend onnx`` never loads torch.
Inputs are checked against the model's declared inputs before onnxruntime sees them, so a wrong name, dtype or rank
fails with a message that names the input and the shape the model expects (``['B', 'T', 80]``) instead of an
onnxruntime stack trace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, InvalidParameterError, MissingToolError

__all__ = ["InputSpec", "OrtSession", "load_onnxruntime"]

# onnxruntime's type strings -> numpy dtypes (the element types an audio model can plausibly take).
_ORT_TO_NUMPY: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
}

_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def load_onnxruntime() -> Any:
    """Import and return the ``onnxruntime`` module, or raise :class:`MissingToolError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - onnxruntime is installed with the [export] extra
        raise MissingToolError(
            "onnxruntime is not installed; install the export extra: pip install 'audioforge[export]'"
        ) from exc
    return onnxruntime


@dataclass(frozen=True)
class InputSpec:
    """One declared model input (or output).

    Attributes
    ----------
    name
        The graph name.
    type
        onnxruntime's type string, e.g. ``"tensor(float)"``.
    shape
        Declared dimensions: ints for fixed sizes, strings for named dynamic axes, ``None`` for unnamed ones.
    """

    name: str
    type: str
    shape: tuple[int | str | None, ...]

    @property
    def dtype(self) -> np.dtype | None:
        """The numpy dtype for :attr:`type`, or ``None`` for types numpy cannot hold (sequences, maps)."""
        return _ORT_TO_NUMPY.get(self.type)

    def describe(self) -> str:
        """``"name: float32 ['B', 'T', 80]"`` for error messages."""
        dims = [d if d is not None else "?" for d in self.shape]
        dtype = self.dtype.name if self.dtype is not None else self.type
        return f"{self.name}: {dtype} {dims}"


def _spec(arg: Any) -> InputSpec:
    shape = arg.shape if isinstance(arg.shape, (list, tuple)) else ()
    dims: list[int | str | None] = []
    for d in shape:
        if isinstance(d, (int, np.integer)) and int(d) >= 0:
            dims.append(int(d))
        elif isinstance(d, str) and d:
            dims.append(d)
        else:
            dims.append(None)
    return InputSpec(name=arg.name, type=arg.type, shape=tuple(dims))


def _to_numpy(value: Any) -> Any:
    """Torch tensors (without importing torch) and array-likes to numpy; arrays pass through untouched."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


class OrtSession:
    """An onnxruntime ``InferenceSession`` on the CPU with input validation and dict outputs.

    Parameters
    ----------
    path
        The ``.onnx`` file.
    intra_op_num_threads
        Threads used inside one operator (1 by default: real-time audio runs many streams side by side, and one
        thread per stream is what the published RTF figures use). 0 lets onnxruntime choose.
    inter_op_num_threads
        Threads used to run independent operators in parallel (only with a parallel execution mode); 1 by default.
    graph_optimization_level
        ``"disable"``, ``"basic"``, ``"extended"`` or ``"all"`` (default), or an ``onnxruntime.GraphOptimizationLevel``.
    providers
        Execution providers, ``("CPUExecutionProvider",)`` by default.
    optimized_model_path
        If given, onnxruntime writes the graph it actually runs there (useful to inspect fusions).

    Raises
    ------
    CheckpointError
        If the file does not exist or onnxruntime cannot load it.
    InvalidParameterError
        For a negative thread count or an unknown optimisation level or provider.

    Examples
    --------
    >>> sess = OrtSession("encoder.onnx")  # doctest: +SKIP
    >>> out = sess.run({"chunk": chunk, "offset": np.array(0, dtype=np.int64)})  # doctest: +SKIP
    >>> out["output"].shape  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        intra_op_num_threads: int = 1,
        inter_op_num_threads: int = 1,
        graph_optimization_level: str | Any = "all",
        providers: Sequence[str] = ("CPUExecutionProvider",),
        optimized_model_path: str | os.PathLike[str] | None = None,
    ) -> None:
        ort = load_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX model {str(self.path)!r} does not exist (or is not a file)")
        threads = {"intra_op_num_threads": intra_op_num_threads, "inter_op_num_threads": inter_op_num_threads}
        for name, value in threads.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InvalidParameterError(f"{name} must be an integer >= 0 (0 = onnxruntime decides), got {value!r}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_num_threads)
        opts.inter_op_num_threads = int(inter_op_num_threads)
        opts.graph_optimization_level = self._opt_level(ort, graph_optimization_level)
        if optimized_model_path is not None:
            opts.optimized_model_filepath = str(optimized_model_path)
        available = set(ort.get_available_providers())
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise InvalidParameterError(
                f"execution providers {unknown} are not available in this onnxruntime build; available: "
                f"{sorted(available)}"
            )
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... classes
            raise CheckpointError(f"onnxruntime cannot load {str(self.path)!r}: {exc}") from exc
        self.inputs: list[InputSpec] = [_spec(a) for a in self._session.get_inputs()]
        self.outputs: list[InputSpec] = [_spec(a) for a in self._session.get_outputs()]
        self._by_name = {s.name: s for s in self.inputs}

    @staticmethod
    def _opt_level(ort: Any, level: Any) -> Any:
        if isinstance(level, ort.GraphOptimizationLevel):
            return level
        if isinstance(level, str) and level.lower() in _OPT_LEVELS:
            return getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level.lower()])
        raise InvalidParameterError(
            f"graph_optimization_level must be one of {sorted(_OPT_LEVELS)} or an onnxruntime.GraphOptimizationLevel, "
            f"got {level!r}"
        )

    @property
    def input_names(self) -> list[str]:
        """The model's input names, in declaration order."""
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """The model's output names, in declaration order."""
        return [s.name for s in self.outputs]

    @property
    def metadata(self) -> dict[str, str]:
        """The model's ``metadata_props`` as strings (see :func:`audioforge.deploy.read_metadata` for typed values)."""
        return dict(self._session.get_modelmeta().custom_metadata_map)

    @property
    def session(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession``."""
        return self._session

    def _check(self, spec: InputSpec, value: Any) -> np.ndarray:
        value = _to_numpy(value)
        expected = spec.dtype
        if not isinstance(value, np.ndarray):
            # Python scalars and lists: convert to the declared dtype (an int offset for an int64 input is fine).
            try:
                arr = np.asarray(value, dtype=expected)
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(
                    f"input {spec.name!r} cannot be converted to an array; expected {spec.describe()}, got "
                    f"{type(value).__name__}"
                ) from exc
            if expected is not None and np.asarray(value).dtype.kind == "f" and expected.kind in "iub":
                raise InvalidParameterError(
                    f"input {spec.name!r} expects {expected.name} ({spec.describe()}), got a float value {value!r}"
                )
        else:
            arr = value
            if expected is not None and arr.dtype != expected:
                raise InvalidParameterError(
                    f"input {spec.name!r} has dtype {arr.dtype.name}, but the model expects {expected.name} "
                    f"(expected {spec.describe()}); convert it with .astype(np.{expected.name})"
                )
        if arr.ndim != len(spec.shape):
            raise InvalidParameterError(
                f"input {spec.name!r} has rank {arr.ndim} (shape {list(arr.shape)}), but the model expects rank "
                f"{len(spec.shape)}: {spec.describe()}"
            )
        for axis, (got, want) in enumerate(zip(arr.shape, spec.shape, strict=True)):
            if isinstance(want, int) and got != want:
                raise InvalidParameterError(
                    f"input {spec.name!r} has size {got} on axis {axis} (shape {list(arr.shape)}), but the model fixes "
                    f"that axis to {want}: {spec.describe()}"
                )
        return arr

    def prepare(self, inputs: Mapping[str, Any] | Sequence[Any] | np.ndarray) -> dict[str, np.ndarray]:
        """Validate ``inputs`` and return the feed dict onnxruntime takes.

        Parameters
        ----------
        inputs
            A mapping from input name to array, a sequence of arrays in :attr:`input_names` order, or one array
            for a single-input model. Torch tensors are accepted and converted; Python scalars and lists are
            converted to the declared dtype.

        Raises
        ------
        InvalidParameterError
            On missing or unknown input names, a wrong number of positional inputs, a dtype that differs from the
            declared one, a wrong rank, or a size that differs from a fixed dimension.
        """
        if isinstance(inputs, Mapping):
            names = list(inputs)
            unknown = [n for n in names if n not in self._by_name]
            missing = [s for s in self.inputs if s.name not in inputs]
            if unknown or missing:
                parts = []
                if missing:
                    parts.append("missing " + ", ".join(repr(s.describe()) for s in missing))
                if unknown:
                    parts.append(f"unknown {unknown}")
                raise InvalidParameterError(
                    f"inputs do not match the model {self.path.name!r}: {'; '.join(parts)}; the model takes "
                    f"{[s.describe() for s in self.inputs]}"
                )
            return {s.name: self._check(s, inputs[s.name]) for s in self.inputs}
        if isinstance(inputs, np.ndarray) or hasattr(inputs, "detach"):
            inputs = [inputs]
        if not isinstance(inputs, Sequence) or isinstance(inputs, (str, bytes)):
            raise InvalidParameterError(
                f"inputs must be a dict of name -> array or a sequence of arrays, got {type(inputs).__name__}"
            )
        if len(inputs) != len(self.inputs):
            raise InvalidParameterError(
                f"the model {self.path.name!r} takes {len(self.inputs)} inputs "
                f"{[s.describe() for s in self.inputs]}, got {len(inputs)} positional arrays"
            )
        return {s.name: self._check(s, v) for s, v in zip(self.inputs, inputs, strict=True)}

    def run(
        self,
        inputs: Mapping[str, Any] | Sequence[Any] | np.ndarray,
        output_names: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the model and return ``{output name: array}``.

        Parameters
        ----------
        inputs
            See :meth:`prepare`.
        output_names
            A subset of :attr:`output_names` to compute; all outputs by default.

        Raises
        ------
        InvalidParameterError
            For invalid inputs (see :meth:`prepare`), unknown output names, or when onnxruntime rejects the inputs
            at run time (for example, sizes that are inconsistent with each other).
        """
        feed = self.prepare(inputs)
        names = list(output_names) if output_names is not None else self.output_names
        unknown = [n for n in names if n not in self.output_names]
        if unknown:
            raise InvalidParameterError(f"unknown output names {unknown}; the model has {self.output_names}")
        try:
            values = self._session.run(names, feed)
        except Exception as exc:  # onnxruntime's own exception classes
            shapes = {k: list(v.shape) for k, v in feed.items()}
            raise InvalidParameterError(
                f"onnxruntime failed to run {self.path.name!r} on inputs with shapes {shapes}: {exc}"
            ) from exc
        return dict(zip(names, values, strict=True))

    def __call__(self, inputs: Mapping[str, Any] | Sequence[Any] | np.ndarray) -> dict[str, np.ndarray]:
        """Same as :meth:`run` with all outputs."""
        return self.run(inputs)

    def __repr__(self) -> str:
        return (
            f"OrtSession({str(self.path)!r}, inputs={[s.describe() for s in self.inputs]}, outputs={self.output_names})"
        )
