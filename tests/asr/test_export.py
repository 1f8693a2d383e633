from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from audioforge.asr.export import export_recognizer_onnx
from audioforge.asr.frontend import compute_fbank
from audioforge.asr.infer import Recognizer
from audioforge.asr.onnx_infer import NumpyFbank, OnnxRecognizer
from audioforge.asr.streaming import DecodingConfig
from audioforge.asr.tokenizer import CharTokenizer
from audioforge.deploy import read_metadata
from audioforge.errors import InvalidParameterError

from .conftest import tiny_model
from .test_infer import SYMBOLS, noise


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_model(vocab_size=len(SYMBOLS))
    with torch.no_grad():
        model.ctc.ctc_lo.bias[0] -= 3.0
    cfg = DecodingConfig(chunk_size=4, num_left_chunks=2, beam_size=4, nbest=4, reverse_weight=0.3)
    rec = Recognizer(model, CharTokenizer(SYMBOLS), config=cfg)
    folder = tmp_path_factory.mktemp("asr_onnx")
    paths = export_recognizer_onnx(rec, folder)  # verifies torch vs onnxruntime over 10 chunks
    return rec, folder, paths


def test_numpy_fbank_equals_torch() -> None:
    audio = noise(0.7, 5)
    ref = compute_fbank(audio).numpy()
    fb = NumpyFbank()
    np.testing.assert_allclose(fb.compute(audio), ref, rtol=1e-4, atol=2e-3)
    parts, pos = [], 0
    for size in [7, 400, 1234, 160, 100000]:
        parts.append(fb.accept_waveform(audio[pos : pos + size]))
        pos += size
    np.testing.assert_allclose(np.concatenate(parts), fb.compute(audio), rtol=1e-6, atol=1e-5)  # matmul batching


def test_metadata_and_files(exported) -> None:
    rec, folder, paths = exported
    meta = read_metadata(paths["encoder"])
    for key in (
        "output_size",
        "num_blocks",
        "head",
        "cnn_module_kernel",
        "subsampling_rate",
        "right_context",
        "sos",
        "eos",
        "chunk_size",
        "left_chunks",
        "vocab_size",
    ):
        assert key in meta
    assert int(meta["chunk_size"]) == 4 and int(meta["left_chunks"]) == 2 and int(meta["vocab_size"]) == len(SYMBOLS)
    assert int(meta["right_context"]) == 6 and int(meta["subsampling_rate"]) == 4
    assert json.loads(paths["config"].read_text())["decoding"]["chunk_size"] == 4
    with pytest.raises(InvalidParameterError):
        export_recognizer_onnx(rec, folder / "bad", left_chunks=-1)


def test_onnx_recognizer_matches_torch(exported) -> None:
    rec, folder, _ = exported
    onnx_rec = OnnxRecognizer(folder)
    audio = noise(1.3, 2)
    ref = rec.transcribe(audio, 16000, simulate_streaming=True)
    got = onnx_rec.transcribe(audio, 16000)
    assert got.text == ref.text and got.tokens == ref.tokens
    assert np.allclose([s for _, s in got.nbest], [s for _, s in ref.nbest], atol=2e-2)
    session = onnx_rec.stream()
    for pos in range(0, audio.shape[0], 1111):
        session.accept_waveform((audio[pos : pos + 1111] * 32767).astype(np.int16))
    final = session.finalize()
    ref_stream = rec.stream()
    for pos in range(0, audio.shape[0], 1111):
        ref_stream.accept_waveform((audio[pos : pos + 1111] * 32767).astype(np.int16))
    assert final.text == ref_stream.finalize().text


def test_onnx_recognizer_imports_no_torch(exported) -> None:
    _, folder, _ = exported
    code = (
        "import sys, numpy as np\n"
        "from audioforge.asr import OnnxRecognizer\n"
        f"rec = OnnxRecognizer({str(folder)!r})\n"
        "rng = np.random.default_rng(0)\n"
        "res = rec.transcribe((0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)\n"
        "s = rec.stream(); s.accept_waveform(np.zeros(8000, dtype=np.int16)); s.finalize()\n"
        "assert isinstance(res.text, str)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
