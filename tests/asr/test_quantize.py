"""ASR deployment: export + int8 (dynamic / static from a manifest), per-layer report, keep-float, size ratio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audioforge.asr.onnx_infer import OnnxRecognizer
from audioforge.asr.quantize import calibration_feeds, compact_tables, export_asr
from audioforge.corpora.manifest import Manifest
from audioforge.errors import InvalidParameterError

from .test_data import tone_manifest  # noqa: F401  (fixture)
from .test_evaluate import tiny_bundle  # noqa: F401  (fixture)

KEEP = "/encoders.0/feed_forward_macaron/w_1/MatMul"


def _node(path: Path, name: str) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node if n.name == name]


@pytest.mark.slow
def test_static_int8_report_keep_float(tiny_bundle: Path, tone_manifest: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "exp"
    res = export_asr(tiny_bundle, out, int8="static", calibration=tone_manifest, calibration_split="train",
                     max_samples=3, method="entropy", keep_float=[KEEP], test_manifest=tone_manifest,
                     max_test_utterances=2, verify=False)
    for name in ("encoder", "ctc", "decoder"):
        assert (out / f"{name}.onnx").is_file() and (out / "int8" / f"{name}.onnx").is_file()
    assert res.report == out / "report" / "quantization_report.md"
    assert (out / "report" / "quantization_report.png").stat().st_size > 1000
    md = res.report.read_text(encoding="utf-8")
    worst = res.worst_layers
    assert worst and all(np.isfinite(c) for _, c in worst)
    assert f"`{worst[0][0]}`" in md and "Worst" in md
    assert "CER fp32" in md or "CER" in md
    assert set(res.metrics) == {"CER fp32", "CER int8", "WER fp32", "WER int8"}
    # keep-float honoured: the node is still a float MatMul fed by no DequantizeLinear of its weight
    assert res.keep_float["encoder"] == [KEEP]
    assert _node(out / "int8" / "encoder.onnx", KEEP) == ["MatMul"]
    assert res.sizes["int8"] < res.sizes["fp32"]
    summary = json.loads((out / "export_summary.json").read_text(encoding="utf-8"))
    assert summary["sizes"] == res.sizes
    # the int8 folder runs on onnxruntime alone
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    assert isinstance(OnnxRecognizer(out / "int8").transcribe(x, 16000).text, str)


def test_dynamic_int8_size_and_tables(tiny_bundle: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "dyn"
    res = export_asr(tiny_bundle, out, int8="dynamic", verify=False)
    assert res.report is None and res.int8_folder == out / "int8"
    # weights int8 (MatMul/Conv), positional tables float16: well under half of fp32 even for this tiny model
    assert res.sizes["int8"] / res.sizes["fp32"] < 0.5
    assert compact_tables(out / "int8" / "decoder.onnx") == 0  # already compact
    assert "MatMulInteger" in {op for op in _ops(out / "int8" / "encoder.onnx")}


def _ops(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_calibration_feeds(tiny_bundle: Path, tone_manifest: Path, tmp_path: Path) -> None:  # noqa: F811
    res = export_asr(tiny_bundle, tmp_path / "f", int8=None, verify=False)
    enc, ctc = calibration_feeds(res.folder, Manifest.load(tone_manifest), max_samples=2)
    assert len(enc) == len(ctc) >= 2
    assert set(enc[0]) == {"chunk", "offset", "required_cache_size", "att_cache", "cnn_cache", "att_mask"}
    assert int(enc[1]["offset"]) > 0  # caches fed back
    with pytest.raises(InvalidParameterError):
        calibration_feeds(res.folder, Manifest.load(tone_manifest), max_samples=0)


def test_export_errors(tiny_bundle: Path, tone_manifest: Path, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(InvalidParameterError, match="calibration"):
        export_asr(tiny_bundle, tmp_path / "a", int8="static")
    with pytest.raises(InvalidParameterError, match="int8 must be"):
        export_asr(tiny_bundle, tmp_path / "a", int8="int4")
    with pytest.raises(InvalidParameterError, match="method"):
        export_asr(tiny_bundle, tmp_path / "a", int8="static", calibration=tone_manifest, method="kl")
    with pytest.raises(InvalidParameterError, match="keep_float only"):
        export_asr(tiny_bundle, tmp_path / "a", int8=None, keep_float=["MatMul"])
    with pytest.raises(InvalidParameterError, match="neither node names"):
        export_asr(tiny_bundle, tmp_path / "b", int8="dynamic", keep_float=["/no/such/node"], verify=False)
