"""Deployment of an ASR bundle: ONNX export, int8 (dynamic or static with manifest calibration) and its report.

:func:`export_asr` writes::

    out/encoder.onnx, ctc.onnx, decoder.onnx, asr_config.json        float model (runs with OnnxRecognizer)
    out/int8/encoder.onnx, ctc.onnx, decoder.onnx, asr_config.json   int8 model (same file names)
    out/lm.arpa.gz, out/int8/lm.arpa.gz                              the language model, when the bundle has one
    out/report/quantization_report.md + .png                        per-layer float vs int8 (encoder), sizes,
                                                                    CER/WER of fp32 vs int8 on a test manifest
    out/export_summary.json                                         the same numbers as JSON

Static int8: the encoder and CTC are calibrated on real inputs: the float encoder is run chunk by chunk (with its
caches) over ``max_samples`` utterances of the calibration manifest and every encoder input set and CTC input is
recorded (min-max, entropy or percentile ranges); the attention decoder (used for rescoring only) is quantized
dynamically. Dynamic int8 quantizes the weights of MatMul/Gemm in all three models. ``keep_float`` names nodes
(or op types) left in float in whichever of the three graphs contains them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import load
from ..bundle import Bundle
from ..corpora.manifest import Manifest
from ..errors import InvalidParameterError
from .data import load_manifest

__all__ = ["INT8_MODES", "METHODS", "AsrExportResult", "calibration_feeds", "compact_tables", "export_asr"]

INT8_MODES = ("dynamic", "static")
METHODS = ("minmax", "entropy", "percentile")
MODEL_NAMES = ("encoder", "ctc", "decoder")
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Conv")


@dataclass
class AsrExportResult:
    """What :func:`export_asr` wrote and measured.

    Attributes
    ----------
    folder, int8_folder
        The float export and the int8 one (None without int8).
    report
        The markdown report (None without calibration data).
    sizes
        Bytes of the three float models (``fp32``) and the int8 ones (``int8``).
    metrics
        ``CER fp32``, ``CER int8``, ``WER fp32``, ``WER int8`` (percent) with a test manifest.
    worst_layers
        Encoder nodes with the lowest cosine similarity, worst first (``[(node, cosine), ...]``).
    keep_float
        The node names kept in float per model.
    """

    folder: Path
    int8_folder: Path | None = None
    report: Path | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    worst_layers: list[tuple[str, float]] = field(default_factory=list)
    keep_float: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = asdict(self)
        for k in ("folder", "int8_folder", "report"):
            d[k] = None if d[k] is None else str(d[k])
        return d


class _Recorder:
    """Wraps an OrtSession: records every input set (and optionally the outputs) passed to ``run``."""

    def __init__(self, session: Any, feeds: list[dict[str, np.ndarray]]) -> None:
        self.session = session
        self.inputs = session.inputs
        self.feeds = feeds

    def run(self, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        self.feeds.append({k: np.array(v, copy=True) for k, v in inputs.items()})
        return self.session.run(inputs, *args, **kwargs)


def calibration_feeds(
    folder: str | os.PathLike[str], manifest: Manifest, max_samples: int = 50
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Encoder and CTC input sets recorded while the float export decodes ``max_samples`` utterances.

    Raises
    ------
    InvalidParameterError
        ``max_samples < 1``.
    """
    from .onnx_infer import OnnxBackend, OnnxRecognizer

    if max_samples < 1:
        raise InvalidParameterError(f"max_samples must be >= 1, got {max_samples}")
    rec = OnnxRecognizer(folder)
    enc_feeds: list[dict[str, np.ndarray]] = []
    ctc_feeds: list[dict[str, np.ndarray]] = []
    for entry in list(manifest)[:max_samples]:
        samples, _ = load(manifest.audio_path(entry), sr=rec.sample_rate)
        backend = OnnxBackend(*rec.backend_args)
        backend.encoder = _Recorder(backend.encoder, enc_feeds)
        backend.ctc = _Recorder(backend.ctc, ctc_feeds)
        feats = rec._fbank().compute(samples)
        window = (backend.chunk_size - 1) * backend.subsampling_rate + backend.right_context + 1
        stride = backend.chunk_size * backend.subsampling_rate
        for cur in range(0, feats.shape[0] - backend.right_context, stride):
            backend.forward_chunk(feats[cur : cur + window])
    return enc_feeds, ctc_feeds


def _node_filter(path: Path, names: Sequence[str]) -> tuple[list[str], set[str]]:
    """Names of ``names`` that resolve in the graph at ``path`` and the set of entries that did."""
    from ..deploy import load_onnx, resolve_nodes

    model = load_onnx(path)
    out: list[str] = []
    used: set[str] = set()
    for item in names:
        try:
            found = resolve_nodes(model, [item])
        except InvalidParameterError:
            continue
        used.add(item)
        out.extend(n for n in found if n not in out)
    return out, used


def compact_tables(path: str | os.PathLike[str], *, min_elements: int = 65536, max_rows: int | None = 2000) -> int:
    """Store large float lookup tables (constants read only by ``Gather`` on axis 0: positional encodings) as float16.

    Tables longer than ``max_rows`` rows are cut to ``max_rows`` (positions beyond are never gathered by a model
    decoding segments of at most ``max_rows`` tokens or frames). A ``Cast`` back to float32 follows each table, so
    the graph's interface is unchanged. Returns the bytes saved.
    """
    import onnx
    from onnx import helper, numpy_helper

    from ..deploy import load_onnx, write_onnx

    model = load_onnx(path)
    graph = model.graph
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    saved = 0
    new_nodes = []
    for node in graph.node:
        new_nodes.append(node)
        if node.op_type != "Constant" or not node.attribute or node.attribute[0].name != "value":
            continue
        tensor = node.attribute[0].t
        if tensor.data_type != onnx.TensorProto.FLOAT or int(np.prod(tensor.dims)) < min_elements:
            continue
        users = consumers.get(node.output[0], [])
        if not users or any(u.op_type != "Gather" or any(a.name == "axis" and a.i != 0 for a in u.attribute)
                            for u in users):
            continue
        table = numpy_helper.to_array(tensor)
        if max_rows is not None and table.ndim >= 1 and table.shape[0] > max_rows:
            table = table[:max_rows]
        half = numpy_helper.from_array(table.astype(np.float16), tensor.name)
        saved += len(tensor.raw_data) - len(half.raw_data)
        out = node.output[0]
        node.output[0] = out + "__fp16"
        node.attribute[0].t.CopyFrom(half)
        new_nodes.append(helper.make_node("Cast", [out + "__fp16"], [out], name=f"{node.name}__to_fp32",
                                          to=onnx.TensorProto.FLOAT))
    if saved:
        changed = {n.output[0] for n in new_nodes if n.op_type == "Cast" and n.name.endswith("__to_fp32")}
        kept_info = [v for v in graph.value_info if v.name not in changed]
        del graph.value_info[:]
        graph.value_info.extend(kept_info)
        del graph.node[:]
        graph.node.extend(new_nodes)
        write_onnx(model, path)
    return saved


def _total_size(folder: Path) -> int:
    from ..deploy import model_size_bytes

    return sum(model_size_bytes(folder / f"{n}.onnx") for n in MODEL_NAMES)


def _onnx_error_rates(folder: Path, manifest: Manifest, max_utterances: int | None) -> dict[str, float]:
    from .evaluate import evaluate_transcriber
    from .onnx_infer import OnnxRecognizer

    rec = OnnxRecognizer(folder)
    res = evaluate_transcriber(lambda x: rec.transcribe(x, rec.sample_rate).text, manifest, system=str(folder),
                               max_utterances=max_utterances, sample_rate=rec.sample_rate)
    return {"cer": res.cer, "wer": res.wer, "rtf": res.rtf}


def export_asr(
    bundle: Bundle | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    int8: str | None = "dynamic",
    calibration: Manifest | str | os.PathLike[str] | None = None,
    calibration_split: str | None = None,
    max_samples: int = 50,
    method: str = "minmax",
    keep_float: Sequence[str] = (),
    test_manifest: Manifest | str | os.PathLike[str] | None = None,
    test_split: str | None = "test",
    max_test_utterances: int | None = None,
    chunk_size: int | None = None,
    left_chunks: int | None = None,
    worst_n: int = 10,
    verify: bool = True,
    progress: bool = False,
) -> AsrExportResult:
    """Export a bundle to ONNX, optionally quantize to int8 and report float vs int8.

    Parameters
    ----------
    bundle
        An ASR bundle (object, folder or shipped name).
    out_dir
        Output folder (see the module docstring).
    int8
        ``"dynamic"``, ``"static"`` or None (float only).
    calibration, calibration_split
        Manifest of calibration audio (needed for ``"static"``; with ``"dynamic"`` it feeds the per-layer report).
    max_samples
        Calibration utterances (each gives one encoder input set per chunk).
    method
        Static calibration: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
    keep_float
        Node names or op types to keep in float (see the report's suggestion).
    test_manifest, test_split, max_test_utterances
        Score CER/WER of the float and int8 exports on these utterances.
    chunk_size, left_chunks
        Streaming layout of the exported encoder (default: the bundle's chunk size; all left context of utterances
        up to ``chunk_size * left_chunks`` encoder frames: 24 chunks when the bundle keeps all history).
    worst_n
        Layers listed in the report.
    verify
        Check torch vs onnxruntime after export.
    progress
        Progress bar during calibration.

    Raises
    ------
    InvalidParameterError
        Unknown mode or method, static without calibration, ``keep_float`` names found in no graph.
    CheckpointError, ManifestError
        Unusable bundle or manifests.
    """
    from ..deploy import (
        LayerComparisons,
        compare_layers,
        quantize_dynamic_int8,
        quantize_static_int8,
        write_quantization_report,
    )
    from .export import ONNX_CONFIG_FILE, export_recognizer_onnx
    from .infer import Recognizer
    from .lm import LM_FILE

    if int8 is not None and int8 not in INT8_MODES:
        raise InvalidParameterError(f"int8 must be one of {INT8_MODES} or None, got {int8!r}")
    if method not in METHODS:
        raise InvalidParameterError(f"method must be one of {METHODS}, got {method!r}")
    if int8 == "static" and calibration is None:
        raise InvalidParameterError("static int8 needs calibration data: pass a calibration manifest")
    if max_samples < 1:
        raise InvalidParameterError(f"max_samples must be >= 1, got {max_samples}")
    if keep_float and int8 is None:
        raise InvalidParameterError("keep_float only applies to an int8 export")
    calib = load_manifest(calibration, split=calibration_split) if calibration is not None else None
    test = load_manifest(test_manifest, split=test_split) if test_manifest is not None else None
    rec = Recognizer.from_bundle(bundle)
    chunk = int(chunk_size or rec.config.chunk_size)
    left = left_chunks if left_chunks is not None else (rec.config.num_left_chunks if rec.config.num_left_chunks > 0
                                                        else 24)
    out = Path(out_dir)
    export_recognizer_onnx(rec, out, chunk_size=chunk, left_chunks=int(left), verify=verify)
    result = AsrExportResult(folder=out, sizes={"fp32": _total_size(out)})
    if int8 is None:
        _write_summary(result)
        return result
    q = out / "int8"
    q.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / ONNX_CONFIG_FILE, q / ONNX_CONFIG_FILE)
    if (out / LM_FILE).is_file():
        shutil.copyfile(out / LM_FILE, q / LM_FILE)
    else:
        (q / LM_FILE).unlink(missing_ok=True)
    used: set[str] = set()
    for name in MODEL_NAMES:
        kept, found = _node_filter(out / f"{name}.onnx", list(keep_float))
        used |= found
        result.keep_float[name] = kept
    missing = [k for k in keep_float if k not in used]
    if missing:
        raise InvalidParameterError(f"keep_float names {missing} are neither node names nor op types of the export")
    enc_feeds: list[dict[str, np.ndarray]] = []
    ctc_feeds: list[dict[str, np.ndarray]] = []
    if calib is not None:
        enc_feeds, ctc_feeds = calibration_feeds(out, calib, max_samples)
    for name in MODEL_NAMES:
        src = out / f"{name}.onnx"
        kept = result.keep_float[name]
        feeds = {"encoder": enc_feeds, "ctc": ctc_feeds}.get(name)
        if int8 == "static" and feeds:
            quantize_static_int8(src, q / src.name, feeds, method=method, keep_float=kept or None,
                                 progress=progress)
        else:
            # quint8 weights (WeNet's choice): onnxruntime's ConvInteger has no int8-weight kernel
            quantize_dynamic_int8(src, q / src.name, op_types=DYNAMIC_OP_TYPES, weight_type="quint8",
                                  keep_float=kept or None)
    for name in MODEL_NAMES:
        compact_tables(q / f"{name}.onnx")
    result.int8_folder = q
    result.sizes["int8"] = _total_size(q)
    if test is not None:
        fp = _onnx_error_rates(out, test, max_test_utterances)
        iq = _onnx_error_rates(q, test, max_test_utterances)
        result.metrics = {"CER fp32": fp["cer"], "CER int8": iq["cer"], "WER fp32": fp["wer"], "WER int8": iq["wer"]}
    if enc_feeds:
        # masked attention scores hold -inf in both graphs: their cosine is undefined (NaN), not an int8 error
        comps = LayerComparisons(
            c for c in compare_layers(out / "encoder.onnx", q / "encoder.onnx", enc_feeds) if np.isfinite(c.cosine)
        )
        result.worst_layers = [(c.node_name, float(c.cosine)) for c in comps.worst(worst_n)]
        what = f"{int8} int8" + (f" ({method}, {min(max_samples, len(calib or []))} utterances)" if int8 == "static"
                                 else "")
        result.report = write_quantization_report(
            comps, out / "report", title=f"U2 encoder, {what}", model_sizes=result.sizes,
            task_metrics=result.metrics or None, worst_n=worst_n,
        )
    _write_summary(result)
    return result


def _write_summary(result: AsrExportResult) -> None:
    path = result.folder / "export_summary.json"
    path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
