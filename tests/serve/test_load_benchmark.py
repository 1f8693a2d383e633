"""``benchmarks/serve_load.py``'s reference results: every expected message is paired with the message it follows."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"


@pytest.fixture(scope="module")
def serve_load():
    spec = importlib.util.spec_from_file_location("serve_load_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("blank_bias", [-3.0, 30.0])
def test_expected_results_align_messages_with_their_origin(serve_load, blank_bias: float) -> None:
    rec = serve_load.random_recognizer("tiny")
    with torch.no_grad():  # -3: text from the first chunk on; +30: every partial empty (nothing sent for them)
        rec.model.ctc.ctc_lo.bias[0] += 3.0 + blank_bias
    pcm = serve_load.utterance(3.0, 7)
    chunk = 8000
    messages, origin = serve_load.expected_results(rec, pcm, chunk)
    assert len(messages) == len(origin)
    assert messages[-1]["type"] == "final_result" and origin[-1] == -1
    partials = [i for m, i in zip(messages, origin, strict=True) if m["type"] == "partial_result"]
    if blank_bias > 0:
        assert partials == []
    else:
        n_messages = -(-pcm.shape[0] // chunk)
        assert partials and partials == sorted(partials) and all(0 <= i < n_messages for i in partials)


def test_speech_streams_follow_the_test_split_utterance_after_utterance(serve_load, tmp_path: Path) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows, audio = [], []
    for i in range(6):  # utterances 1, 3, 5 are the test split
        y = (0.1 * rng.standard_normal(int(16000 * (0.3 + 0.1 * i)))).astype(np.float32)
        sf.write(tmp_path / f"u{i}.wav", y, 16000, subtype="FLOAT")
        split = "test" if i % 2 else "train"
        rows.append({"key": f"u{i}", "wav": f"u{i}.wav", "txt": "a b", "duration": len(y) / 16000, "split": split})
        if split == "test":
            audio.append(y)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    streams = serve_load.speech_streams(str(manifest), 2, 2.0)
    assert [s.shape for s in streams] == [(32000,), (32000,)] and all(s.dtype == np.int16 for s in streams)
    for i, s in enumerate(streams):  # stream i starts at test utterance i, then i + 2, ...
        order = np.concatenate([audio[j % 3] for j in range(i, i + 40, 2)])[:32000]
        np.testing.assert_array_equal(s, np.clip(np.round(order * 32768.0), -32768, 32767).astype(np.int16))
