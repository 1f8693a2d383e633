"""``benchmarks/serve_load.py``'s reference results: every expected message is paired with the message it follows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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
