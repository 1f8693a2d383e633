"""ONNX export of the tagging path (front end + PaSST), onnxruntime parity, int8 variants, and manifest evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audioforge.bundle import Bundle
from audioforge.errors import CheckpointError, InvalidParameterError, ManifestError
from audioforge.tagging import PasstFrontend, build_passt
from audioforge.tagging.export import (
    TaggingGraph,
    evaluate_tagger,
    export_tagger_onnx,
    frontend_nodes,
    quantize_tagger,
    verify_tagger_onnx,
)

from .test_train import LABELS, make_tone_corpus

pytest.importorskip("onnxruntime")


def tiny_bundle() -> Bundle:
    """A random passt_mini whose time embeddings cover 3 s (keeps export and parity checks fast)."""
    torch.manual_seed(0)
    model = build_passt("passt_mini", num_classes=len(LABELS), img_size=[128, 300])
    fe = PasstFrontend()
    return Bundle(task="tagging", architecture="passt_mini", hyperparameters=model.config(),
                  state_dict={k: v.clone() for k, v in model.state_dict().items()}, frontend=fe.config(),
                  labels=list(LABELS), options={"multi_label": True})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone_corpus(tmp_path_factory.mktemp("tones"), clips=12)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Bundle, Path]:
    b = tiny_bundle()
    path = export_tagger_onnx(b, tmp_path_factory.mktemp("onnx") / "tagger.onnx", example_seconds=2.0)
    return b, path


def test_graph_equals_model_on_frontend() -> None:
    from audioforge.tagging import build_tagging_modules

    b = tiny_bundle()
    model, fe = build_tagging_modules(b)
    graph = TaggingGraph(model, fe)
    x = 0.1 * torch.randn(3, 40000)
    with torch.inference_mode():
        ref_logits, ref_feats = model(fe(x))
        logits, feats = graph(x)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(feats, ref_feats, atol=1e-4, rtol=1e-4)
    assert graph.min_samples == 8001 and graph.max_samples == (29 * 10 + 25) * 320


@pytest.mark.slow
def test_onnx_parity_dynamic_lengths_and_metadata(exported: tuple[Bundle, Path]) -> None:
    from audioforge.deploy import OrtSession

    b, path = exported
    report = verify_tagger_onnx(b, path, seconds=(2.9, 1.0, 0.3))  # lengths unlike the traced one
    assert report.ok
    sess = OrtSession(path)
    assert sess.metadata["sample_rate"] == "32000"
    out = sess.run({"waveform": np.zeros((1, 9000), dtype=np.float32)})
    assert out["logits"].shape == (1, 4) and out["embeddings"].shape == (1, 96)
    names = frontend_nodes(path)
    # the window product, the two matmuls of the factored DFT (n_fft 1024 = 32 x 32) and the mel-bank matmul
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(str(path)).graph.node}
    assert len(names) == 4 and sorted(ops[n] for n in names) == ["MatMul", "MatMul", "MatMul", "Mul"]


@pytest.mark.slow
def test_int8_variants_run_and_stay_close(exported: tuple[Bundle, Path], corpus: Path, tmp_path: Path) -> None:
    from audioforge.deploy import OrtSession

    _, path = exported
    dyn = quantize_tagger(path, tmp_path / "dyn.onnx", mode="dynamic")
    sta = quantize_tagger(path, tmp_path / "sta.onnx", mode="static", calibration_manifest=corpus,
                          calibration_clips=4)
    from audioforge.corpora.manifest import Manifest
    from audioforge.tagging.data import load_clip

    m = Manifest.load(corpus)  # static ranges hold for audio like the calibration clips, so test on such audio
    x = {"waveform": np.stack([load_clip(m.audio_path(e), sample_rate=32000, n_samples=64000) for e in [m[0], m[5]]])}
    ref = OrtSession(path).run(x)
    for p in (dyn, sta):
        got = OrtSession(p).run(x)
        assert got["logits"].shape == ref["logits"].shape and np.isfinite(got["logits"]).all()
        # a random model's logits are all near 0; its embeddings carry the signal int8 must keep
        a, b = got["embeddings"], ref["embeddings"]
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert np.all(cos > 0.95), cos
    with pytest.raises(InvalidParameterError, match="calibration"):
        quantize_tagger(path, tmp_path / "x.onnx", mode="static")
    with pytest.raises(InvalidParameterError, match="mode"):
        quantize_tagger(path, tmp_path / "x.onnx", mode="int4")


@pytest.mark.slow
def test_evaluate_torch_and_onnx_agree(exported: tuple[Bundle, Path], corpus: Path) -> None:
    b, path = exported
    torch_res = evaluate_tagger(b, corpus, split=None, clip_seconds=2.0)
    onnx_res = evaluate_tagger(path, corpus, split=None, clip_seconds=2.0)
    assert torch_res["clips"] == onnx_res["clips"] == 12
    assert abs(torch_res["mAP"] - onnx_res["mAP"]) < 1e-3
    assert set(torch_res) >= {"mAP", "auc", "d_prime", "clips", "skipped"}


def test_evaluate_errors(corpus: Path, tmp_path: Path) -> None:
    b = tiny_bundle()
    with pytest.raises(ManifestError, match="split='dev'"):
        evaluate_tagger(b, corpus, split="dev")
    with pytest.raises(ManifestError, match="not found"):
        evaluate_tagger(b, tmp_path / "none.jsonl")
    with pytest.raises(CheckpointError):
        evaluate_tagger(tmp_path / "missing.onnx", corpus)
    with pytest.raises(CheckpointError):
        evaluate_tagger(tmp_path / "no_bundle", corpus)
    other = Bundle(**{**b.__dict__, "labels": ["a", "b", "c", "d"]})
    with pytest.raises(ManifestError, match="not outputs of the model"):
        evaluate_tagger(other, corpus, clip_seconds=2.0)


def test_export_rejects_bad_length(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="example_seconds"):
        export_tagger_onnx(tiny_bundle(), tmp_path / "x.onnx", example_seconds=60.0)


@pytest.mark.parametrize(("n_fft", "hop"), [(1024, 320), (400, 160), (512, 512), (64, 100)])
def test_block_framing_equals_unfold(n_fft: int, hop: int) -> None:
    from audioforge.tagging.export import _frames

    for n in (n_fft, n_fft + 1, n_fft + hop - 1, n_fft + hop, 5 * n_fft + 7):
        x = torch.randn(2, n)
        got, ref = _frames(x, n_fft, hop), x.unfold(-1, n_fft, hop)
        assert got.shape == ref.shape and torch.equal(got, ref), (n_fft, hop, n)
