"""ONNX export of the feature modules (dynamo exporter) and parity with torch in onnxruntime.

Each export takes a few seconds; the module runs on two input lengths (and batch sizes) in onnxruntime and must match
torch within 1e-4 of the maximum (dB outputs: 1e-3 dB; Kaldi log-fbank: 1e-3 absolute in natural-log units).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioforge.errors import InvalidParameterError
from audioforge.features.onnx_export import export_feature_onnx, min_samples_for
from audioforge.features.transforms import MFCC, LogMel, MelSpectrogram

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _inputs():
    rng = np.random.default_rng(3)
    return [(0.1 * rng.standard_normal((2, 8000))).astype(np.float32),
            (0.1 * rng.standard_normal((3, 12345))).astype(np.float32)]


def _assert_parity(module, path, *, db: bool = False, atol: float | None = None):
    for x in _inputs():
        got = _run(path, x)
        ref = module(torch.from_numpy(x)).numpy()
        assert got.shape == ref.shape
        err = np.max(np.abs(got - ref))
        if atol is not None:
            assert err < atol
        elif db:
            assert err < 1e-3
        else:
            assert err / np.max(np.abs(ref)) < 1e-4


KW = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40)


@pytest.mark.parametrize(
    ("cls", "kwargs", "db"),
    [
        (MelSpectrogram, dict(pad_mode="reflect"), False),
        (LogMel, dict(top_db=80.0), True),
        (MFCC, dict(n_mfcc=13, lifter=22.0, pad_mode="edge"), False),
    ],
)
def test_export_matmul_modules(tmp_path, cls, kwargs, db):
    module = cls(dft="matmul", **KW, **kwargs)
    path = export_feature_onnx(module, tmp_path / "features.onnx")
    assert path.exists()
    _assert_parity(module, path, db=db)
    assert module.training  # the helper restores the mode


def test_export_factored_dft(tmp_path):
    # the two-matmul DFT exports as plain MatMul nodes too, for the seed configuration's 800-point frames (25 x 32)
    module = LogMel(dft="factored", top_db=80.0, **KW)
    path = export_feature_onnx(module, tmp_path / "logmel_factored.onnx")
    _assert_parity(module, path, db=True)


def test_export_fft_path(tmp_path):
    # exported as the ONNX DFT op; onnxruntime's DFT is accurate for power-of-two sizes (see the module docstring)
    module = LogMel(dft="fft", sr=16000, n_fft=512, hop_length=160, n_mels=40)
    path = export_feature_onnx(module, tmp_path / "logmel_fft.onnx")
    _assert_parity(module, path, db=True)


def test_export_kaldi_fbank(tmp_path):
    kaldi = pytest.importorskip("audioforge.features.kaldi")
    module = kaldi.KaldiFbank(use_matmul_dft=True, num_mel_bins=80)
    assert min_samples_for(module) == 400
    path = export_feature_onnx(module, tmp_path / "fbank.onnx")
    _assert_parity(module, path, atol=1e-3)


def test_export_argument_errors(tmp_path):
    module = MelSpectrogram(dft="matmul", **KW)
    assert min_samples_for(module) == 400
    with pytest.raises(InvalidParameterError):
        export_feature_onnx(module, tmp_path / "x.onnx", example_samples=100)
    with pytest.raises(InvalidParameterError):
        export_feature_onnx(module, tmp_path / "x.onnx", min_samples=1)


def test_torchscript_exporter_limitation_is_reported(tmp_path):
    # the TorchScript exporter cannot export unfold with a dynamic length: the helper says so and suggests the fix
    module = MelSpectrogram(dft="matmul", **KW)
    with pytest.raises(InvalidParameterError, match="torchscript exporter"):
        export_feature_onnx(module, tmp_path / "ts.onnx", dynamo=False)
