"""int8 quantization of ONNX models with onnxruntime.quantization: dynamic (weights only) and static (calibrated).

* :func:`quantize_dynamic_int8`: weights stored in int8, activations quantized on the fly at run time. No data
  needed; the usual choice for transformer and RNN models on CPU (WeNet and sherpa-onnx ship such models).
  onnxruntime quantizes MatMul, Attention, LSTM, Gather and Conv this way; ``Gemm`` nodes (``nn.Linear`` on 2-D
  input) are rewritten to MatMul + Add first so that they are quantized too.
* :func:`quantize_static_int8`: activations get fixed ranges from calibration inputs (min/max, entropy or
  percentile). QDQ format by default (QuantizeLinear/DequantizeLinear pairs around float ops, which keeps the float
  tensor names and lets :mod:`audioforge.deploy.compare` line up every layer).

Both take ``keep_float``: node names or op types that stay in float, the fix for the few layers that int8 hurts
most (find them with :func:`audioforge.deploy.compare_layers`). int8 can collapse accuracy (reported WER/CER
doublings on conformer and zipformer models); always gate a quantized model on a task metric.

Neither function imports torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import atomic_path
from ..errors import CheckpointError, InvalidParameterError, MissingToolError
from .onnx_export import load_onnx, write_onnx
from .runtime import OrtSession

__all__ = [
    "DEFAULT_DYNAMIC_OP_TYPES",
    "DEFAULT_STATIC_OP_TYPES",
    "model_size_bytes",
    "node_label",
    "quantize_dynamic_int8",
    "quantize_static_int8",
    "resolve_nodes",
]

logger = logging.getLogger(__name__)

#: Op types :func:`quantize_dynamic_int8` quantizes unless told otherwise (the weight-heavy ones).
DEFAULT_DYNAMIC_OP_TYPES: tuple[str, ...] = ("MatMul", "Gemm", "Attention", "LSTM")
#: Op types :func:`quantize_static_int8` quantizes unless told otherwise: the ops holding weights. Quantizing every
#: op onnxruntime can (``op_types=None``) also puts Add, Mul, Softmax, LayerNormalization ... in int8, which costs
#: more accuracy for little speed on CPU.
DEFAULT_STATIC_OP_TYPES: tuple[str, ...] = ("MatMul", "Gemm", "Conv", "ConvTranspose")

_METHODS = ("minmax", "entropy", "percentile")
_FORMATS = ("qdq", "qoperator")


def _quant() -> Any:
    try:
        import onnxruntime.quantization as q
    except ImportError as exc:  # pragma: no cover - installed with the [export] extra
        raise MissingToolError(
            "onnxruntime.quantization is not available; install the export extra: pip install 'audioforge[export]'"
        ) from exc
    return q


def node_label(node: Any, index: int) -> str:
    """The node's name, or ``"<op_type>_<index>"`` for an unnamed node (the name the quantizers give it)."""
    return node.name or f"{node.op_type}_{index}"


def model_size_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of an ONNX model: the ``.onnx`` file plus every external-data file it references.

    Raises
    ------
    CheckpointError
        If the model file (or a referenced data file) does not exist.
    """
    p = Path(path)
    model = load_onnx(p, load_external_data=False)
    total = p.stat().st_size
    seen: set[str] = set()
    for tensor in model.graph.initializer:
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if location and location not in seen:
            seen.add(location)
            data = p.parent / location
            if not data.is_file():
                raise CheckpointError(f"{str(p)!r} references external data {location!r}, which does not exist")
            total += data.stat().st_size
    return total


def _quant_type(value: Any, name: str) -> Any:
    q = _quant()
    if isinstance(value, q.QuantType):
        if value not in (q.QuantType.QInt8, q.QuantType.QUInt8):
            raise InvalidParameterError(f"{name} must be QInt8 or QUInt8 for int8 quantization, got {value}")
        return value
    aliases = {
        "qint8": q.QuantType.QInt8,
        "int8": q.QuantType.QInt8,
        "quint8": q.QuantType.QUInt8,
        "uint8": q.QuantType.QUInt8,
    }
    if isinstance(value, str) and value.lower() in aliases:
        return aliases[value.lower()]
    raise InvalidParameterError(f"{name} must be 'qint8' or 'quint8' (or an onnxruntime QuantType), got {value!r}")


def resolve_nodes(model: Any, names_or_op_types: Iterable[str] | None, *, what: str = "keep_float") -> list[str]:
    """Turn node names and op types into node names of ``model`` (an ``onnx.ModelProto``).

    A string that is a node name selects that node; otherwise a string that is an op type present in the graph
    selects every node of that type.

    Raises
    ------
    InvalidParameterError
        For a string that is neither, naming a few nodes and the op types the graph has.
    """
    if names_or_op_types is None:
        return []
    if isinstance(names_or_op_types, str):
        names_or_op_types = [names_or_op_types]
    nodes = [(node_label(n, i), n.op_type) for i, n in enumerate(model.graph.node)]
    by_name = {name for name, _ in nodes}
    op_types = sorted({op for _, op in nodes})
    out: list[str] = []
    for item in names_or_op_types:
        if item in by_name:
            selected = [item]
        elif item in op_types:
            selected = [name for name, op in nodes if op == item]
        else:
            sample = [name for name, _ in nodes[:8]]
            raise InvalidParameterError(
                f"{what} entry {item!r} is neither a node name nor an op type of this graph; op types: {op_types}; "
                f"first node names: {sample}"
            )
        out.extend(s for s in selected if s not in out)
    return out


def _name_unnamed_nodes(model: Any) -> None:
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = node_label(node, i)


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _gemm_to_matmul(model: Any, nodes: set[str] | None = None) -> list[str]:
    """Rewrite plain ``Gemm(A, W, C)`` nodes with a constant 2-D ``W`` as ``MatMul(A, W') + C`` in place.

    onnxruntime's dynamic quantization has no integer Gemm; after this rewrite the MatMul (which keeps the Gemm's
    name) is quantized. Returns the rewritten node names.
    """
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    new_nodes = []
    rewritten: list[str] = []
    for node in model.graph.node:
        ok = (
            node.op_type == "Gemm"
            and (nodes is None or node.name in nodes)
            and len(node.input) >= 2
            and node.input[1] in inits
            and _attr(node, "transA", 0) == 0
            and float(_attr(node, "alpha", 1.0)) == 1.0
            and float(_attr(node, "beta", 1.0)) == 1.0
            and len(inits[node.input[1]].dims) == 2
        )
        if not ok:
            new_nodes.append(node)
            continue
        weight = node.input[1]
        if _attr(node, "transB", 0):
            w = numpy_helper.to_array(inits[weight])
            new_name = f"{weight}_transposed"
            if new_name not in inits:
                t = numpy_helper.from_array(np.ascontiguousarray(w.T), name=new_name)
                model.graph.initializer.append(t)
                inits[new_name] = t
            weight = new_name
        has_bias = len(node.input) >= 3 and node.input[2] != ""
        out = node.output[0]
        mm_out = f"{out}_matmul" if has_bias else out
        new_nodes.append(helper.make_node("MatMul", [node.input[0], weight], [mm_out], name=node.name))
        if has_bias:
            new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [out], name=f"{node.name}_bias"))
        rewritten.append(node.name)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    unused = {t.name for t in model.graph.initializer if t.name not in used}
    if unused:  # the untransposed weights, and their (now stale) value_info
        kept = [t for t in model.graph.initializer if t.name not in unused]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        for field_ in (model.graph.value_info, model.graph.input):
            kept_vi = [v for v in field_ if v.name not in unused]
            del field_[:]
            field_.extend(kept_vi)
    return rewritten


def _check_paths(fp32_path: Any, out_path: Any) -> tuple[Path, Path]:
    src, dst = Path(fp32_path), Path(out_path)
    if not src.is_file():
        raise CheckpointError(f"float model {str(src)!r} does not exist (or is not a file)")
    if src.resolve() == dst.resolve():
        raise InvalidParameterError(f"out_path must differ from fp32_path ({str(src)!r}); it would be overwritten")
    return src, dst


def _log_size(src: Path, dst: Path) -> None:
    a, b = model_size_bytes(src), model_size_bytes(dst)
    logger.info("quantized %s (%.1f kB) -> %s (%.1f kB), ratio %.3f", src.name, a / 1e3, dst.name, b / 1e3, b / a)


def quantize_dynamic_int8(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    op_types: Sequence[str] = DEFAULT_DYNAMIC_OP_TYPES,
    per_channel: bool = False,
    weight_type: str | Any = "qint8",
    reduce_range: bool = False,
    keep_float: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] | None = None,
) -> Path:
    """Quantize weights to int8 with activations quantized at run time (no calibration data needed).

    Parameters
    ----------
    fp32_path, out_path
        The float model and where to write the int8 one (atomically).
    op_types
        Op types to quantize. Supported: onnxruntime's dynamic registry (MatMul, Attention, LSTM, Gather, Conv,
        EmbedLayerNormalization, Transpose) plus Gemm, which is rewritten as MatMul + Add (plain Gemm only:
        alpha = beta = 1, no transA, constant weight). GRU has no integer kernel and stays float.
    per_channel
        One scale per output channel of each weight (more accurate, slightly larger).
    weight_type
        ``"qint8"`` (default; sherpa-onnx, icefall) or ``"quint8"`` (WeNet's choice). ``Conv`` needs ``"quint8"``:
        onnxruntime's CPU ConvInteger has no int8-weight kernel.
    reduce_range
        Use 7-bit weights (for old CPUs without VNNI whose int8 dot products can saturate).
    keep_float
        Node names or op types left in float.
    nodes_to_exclude
        Exact node names left in float (onnxruntime's spelling of ``keep_float``; both may be given).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    CheckpointError
        If the float model is missing or unreadable, or onnxruntime fails to quantize it.
    InvalidParameterError
        For unsupported op types, weight types, or unknown node names.
    """
    q = _quant()
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    src, dst = _check_paths(fp32_path, out_path)
    wtype = _quant_type(weight_type, "weight_type")
    supported = set(IntegerOpsRegistry) | {"Gemm"}
    ops = list(op_types)
    bad = [o for o in ops if o not in supported]
    if bad:
        raise InvalidParameterError(f"op_types {bad} cannot be dynamically quantized; supported: {sorted(supported)}")
    if "Conv" in ops and wtype == q.QuantType.QInt8:
        raise InvalidParameterError(
            "dynamic quantization of Conv needs weight_type='quint8' (onnxruntime's CPU ConvInteger has no int8-weight "
            "kernel); drop 'Conv' from op_types or pass weight_type='quint8'"
        )
    model = load_onnx(src)
    _name_unnamed_nodes(model)
    excluded = resolve_nodes(model, keep_float) + [
        n for n in resolve_nodes(model, nodes_to_exclude, what="nodes_to_exclude") if n not in (keep_float or ())
    ]
    excluded = list(dict.fromkeys(excluded))
    if "Gemm" in ops:
        gemms = {n.name for n in model.graph.node if n.op_type == "Gemm" and n.name not in excluded}
        rewritten = _gemm_to_matmul(model, gemms)
        if rewritten:
            logger.info("rewrote %d Gemm nodes as MatMul + Add for dynamic quantization", len(rewritten))
        if "MatMul" not in ops:
            ops.append("MatMul")  # the rewritten Gemms are MatMuls now; keep_float still protects other MatMuls
            excluded += [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in rewritten]
    ops = [o for o in ops if o != "Gemm"]
    dst = Path(dst).resolve()
    with tempfile.TemporaryDirectory(prefix=".af-quant-", dir=dst.parent if dst.parent.exists() else None) as d, \
            _scratch_cwd(d):
        named = Path(d) / "named.onnx"
        write_onnx(model, named, check=False)
        prepared = _preprocess(named, Path(d) / "prepared.onnx")
        with atomic_path(dst) as tmp:
            try:
                q.quantize_dynamic(
                    str(prepared),
                    str(tmp),
                    op_types_to_quantize=ops,
                    per_channel=per_channel,
                    reduce_range=reduce_range,
                    weight_type=wtype,
                    nodes_to_exclude=excluded,
                )
            except Exception as exc:
                raise CheckpointError(f"dynamic quantization of {str(src)!r} failed: {exc}") from exc
    _log_size(src, dst)
    return dst


class _ReaderMixin:
    """Serves validated input sets to onnxruntime's calibrator, counting them on a progress bar."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], progress: bool) -> None:
        self._feeds = feeds
        self._start, self._end = 0, len(feeds)
        self._pos = 0
        self.count = 0
        self._bar: Any = None
        self._task: Any = None
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("calibrating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self._bar.start()
            self._task = self._bar.add_task("calibrating", total=len(feeds))

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, min(end_index, len(self._feeds))
        self._pos = self._start

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        feed = self._feeds[self._pos]
        self._pos += 1
        self.count += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1)
        return feed

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _make_reader(feeds: list[dict[str, np.ndarray]], progress: bool) -> Any:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``feeds`` (the base class is imported lazily)."""
    q = _quant()

    class _Reader(_ReaderMixin, q.CalibrationDataReader):
        pass

    return _Reader(feeds, progress)


def _collect_feeds(session: OrtSession, data: Iterable[Any], max_samples: int | None) -> list[dict[str, np.ndarray]]:
    from itertools import islice

    # islice stops before pulling input set max_samples + 1 (a generator may compute features lazily).
    feeds = [session.prepare(sample) for sample in islice(data, max_samples)]
    if not feeds:
        raise InvalidParameterError("calibration produced no input sets; give at least one")
    return feeds


@contextlib.contextmanager
def _scratch_cwd(directory: str | Path) -> Iterator[None]:
    """Run onnxruntime's quantization tools from ``directory``: they drop scratch files (symbolic shape inference
    models, uuid-named external-data blobs) into the current directory, which must not be the user's."""
    old = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(old)


def _preprocess(src: Path, dst: Path) -> Path:
    """Shape inference (symbolic, then ONNX) without graph optimisation, so node and tensor names survive."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_optimization=True)
        return dst
    except Exception as exc:  # symbolic shape inference gives up on some graphs
        logger.warning("shape inference before quantization failed (%s); quantizing the model as it is", exc)
        return src


def quantize_static_int8(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration: Iterable[Mapping[str, Any] | Sequence[Any]] | Callable[[], Iterable[Any]],
    *,
    method: str = "minmax",
    percentile: float = 99.999,
    max_samples: int | None = None,
    per_channel: bool = True,
    quant_format: str = "qdq",
    op_types: Sequence[str] | None = DEFAULT_STATIC_OP_TYPES,
    keep_float: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] | None = None,
    activation_type: str | Any = "qint8",
    weight_type: str | Any = "qint8",
    reduce_range: bool = False,
    symmetric_activations: bool = False,
    preprocess: bool = True,
    progress: bool = True,
) -> Path:
    """Quantize weights and activations to int8 with activation ranges measured on calibration inputs.

    Parameters
    ----------
    fp32_path, out_path
        The float model and where to write the int8 one (atomically).
    calibration
        Input sets: dicts ``{input name: array}`` or sequences in input order (torch tensors are accepted), or a
        callable returning such an iterable. Use real, matched data: ranges from mismatched data are what makes
        static int8 collapse.
    method
        ``"minmax"`` (the observed range), ``"entropy"`` (the range minimising KL divergence of the histogram) or
        ``"percentile"`` (clip at ``percentile`` of the absolute-value histogram; robust to outliers).
    percentile
        The percentile for ``method="percentile"``, in (90, 100].
    max_samples
        Stop after this many input sets (WeNet's board flow uses 50).
    per_channel
        One weight scale per output channel (recommended; default True).
    quant_format
        ``"qdq"`` (default: QuantizeLinear/DequantizeLinear around float ops; onnxruntime fuses them into integer
        kernels) or ``"qoperator"`` (QLinearMatMul, QLinearConv ... directly).
    op_types
        Op types to quantize; ``None`` means every op onnxruntime can quantize. Default: MatMul, Gemm, Conv,
        ConvTranspose.
    keep_float
        Node names or op types kept in float (e.g. the worst layers from :func:`~audioforge.deploy.compare_layers`).
    nodes_to_exclude
        Exact node names kept in float (onnxruntime's spelling; merged with ``keep_float``).
    activation_type, weight_type
        ``"qint8"`` or ``"quint8"``. ``activation_type="quint8"`` with ``weight_type="qint8"`` (U8S8) is the fast
        path on x86 with QOperator format; S8S8 QDQ (the default) is what onnxruntime recommends for accuracy.
    reduce_range
        7-bit weights, for CPUs without VNNI.
    symmetric_activations
        Force activation ranges symmetric around zero.
    preprocess
        Run onnxruntime's shape inference first (names are preserved; no graph optimisation).
    progress
        Show a progress bar while calibrating.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    CheckpointError
        If the float model is missing or unreadable, or onnxruntime fails to calibrate or quantize it.
    InvalidParameterError
        For bad options, unknown node names or op types, calibration inputs that do not fit the model, or no
        calibration data at all.
    """
    q = _quant()
    src, dst = _check_paths(fp32_path, out_path)
    methods = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise InvalidParameterError(f"method must be one of {_METHODS}, got {method!r}")
    if not 90.0 < float(percentile) <= 100.0:
        raise InvalidParameterError(f"percentile must be in (90, 100], got {percentile!r}")
    if quant_format not in _FORMATS:
        raise InvalidParameterError(f"quant_format must be one of {_FORMATS}, got {quant_format!r}")
    if max_samples is not None and (isinstance(max_samples, bool) or int(max_samples) < 1):
        raise InvalidParameterError(f"max_samples must be a positive integer or None, got {max_samples!r}")
    atype = _quant_type(activation_type, "activation_type")
    wtype = _quant_type(weight_type, "weight_type")
    if quant_format == "qoperator" and atype == q.QuantType.QInt8 and wtype == q.QuantType.QUInt8:
        raise InvalidParameterError("activation_type='qint8' with weight_type='quint8' is not supported by onnxruntime")
    if op_types is not None:
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        registry = QDQRegistry if quant_format == "qdq" else QLinearOpsRegistry
        if tuple(op_types) == DEFAULT_STATIC_OP_TYPES:  # the default adapts to the format
            op_types = [o for o in op_types if o in registry]
        bad = [o for o in op_types if o not in registry]
        if bad:
            raise InvalidParameterError(
                f"op_types {bad} cannot be statically quantized in {quant_format} format; supported: {sorted(registry)}"
            )
    data = calibration() if callable(calibration) else calibration
    if data is None or isinstance(data, (str, bytes, Mapping)):
        raise InvalidParameterError(
            "calibration must be an iterable of input sets (dicts or sequences) or a callable returning one; "
            "wrap a single input dict in a list"
        )
    model = load_onnx(src)
    _name_unnamed_nodes(model)
    excluded = list(
        dict.fromkeys(
            resolve_nodes(model, keep_float) + resolve_nodes(model, nodes_to_exclude, what="nodes_to_exclude")
        )
    )
    dst = Path(dst).resolve()
    with tempfile.TemporaryDirectory(prefix=".af-quant-", dir=dst.parent if dst.parent.exists() else None) as d, \
            _scratch_cwd(d):
        named = Path(d) / "named.onnx"
        write_onnx(model, named, check=False)
        prepared = _preprocess(named, Path(d) / "prepared.onnx") if preprocess else named
        session = OrtSession(prepared)
        feeds = _collect_feeds(session, data, None if max_samples is None else int(max_samples))
        extra: dict[str, Any] = {
            "ActivationSymmetric": bool(symmetric_activations),
            "CalibTensorRangeSymmetric": bool(symmetric_activations),
        }
        if method == "percentile":
            extra["CalibPercentile"] = float(percentile)
        shapes = {tuple((k, v.shape) for k, v in f.items()) for f in feeds}
        if len(shapes) > 1:
            # onnxruntime stacks the outputs of one collection pass into one array, which fails for input sets of
            # different lengths (histogram calibrators); collecting one input set per pass avoids that.
            extra["CalibStridedMinMax"] = 1
        reader = _make_reader(feeds, progress)
        try:
            with atomic_path(dst) as tmp:
                try:
                    q.quantize_static(
                        str(prepared),
                        str(tmp),
                        reader,
                        quant_format=q.QuantFormat.QDQ if quant_format == "qdq" else q.QuantFormat.QOperator,
                        op_types_to_quantize=list(op_types) if op_types is not None else None,
                        per_channel=per_channel,
                        reduce_range=reduce_range,
                        activation_type=atype,
                        weight_type=wtype,
                        nodes_to_exclude=excluded,
                        calibrate_method=methods[method],
                        extra_options=extra,
                    )
                except Exception as exc:
                    raise CheckpointError(f"static quantization of {str(src)!r} failed: {exc}") from exc
        finally:
            reader.close()
    logger.info("calibrated %s with %d input sets (%s)", src.name, len(feeds), method)
    _log_size(src, dst)
    return dst
