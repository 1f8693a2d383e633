"""A tiny random recogniser and an in-process uvicorn server for the serve tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from audioforge.asr.infer import Recognizer
from audioforge.asr.model import build_u2_model
from audioforge.asr.streaming import DecodingConfig
from audioforge.asr.tokenizer import CharTokenizer
from audioforge.serve.app import Server, create_app

SYMBOLS = ["<blank>", "<unk>", *"abcdefghijklmnopqrstuvwxyz", "▁", "<sos/eos>"]


def tiny_recognizer(seed: int = 0, **decoding: Any) -> Recognizer:
    """A 2-block conformer with random weights, biased away from blank so that it emits tokens."""
    torch.manual_seed(seed)
    config = {
        "input_dim": 80,
        "vocab_size": len(SYMBOLS),
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": 64,
            "attention_heads": 4,
            "linear_units": 128,
            "num_blocks": 2,
            "dropout_rate": 0.0,
            "positional_dropout_rate": 0.0,
            "input_layer": "conv2d",
            "pos_enc_layer_type": "rel_pos",
            "use_dynamic_chunk": True,
            "causal": True,
            "cnn_module_norm": "layer_norm",
            "cnn_module_kernel": 8,
        },
        "decoder": "bitransformer",
        "decoder_conf": {"num_blocks": 1, "r_num_blocks": 1, "linear_units": 128, "dropout_rate": 0.0},
        "model_conf": {"ctc_weight": 0.3, "reverse_weight": 0.3, "lsm_weight": 0.1},
    }
    model = build_u2_model(config).eval()
    with torch.no_grad():
        model.ctc.ctc_lo.bias[0] -= 3.0
    settings = {"chunk_size": 4, "num_left_chunks": 2, "beam_size": 4, "nbest": 4, "reverse_weight": 0.3}
    settings.update(decoding)
    return Recognizer(model, CharTokenizer(SYMBOLS), config=DecodingConfig(**settings))


def pcm16(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise as 16 kHz int16 PCM."""
    rng = np.random.default_rng(seed)
    return np.clip(3000 * rng.standard_normal(int(16000 * seconds)), -32768, 32767).astype(np.int16)


class RunningServer:
    """A :class:`Server` on 127.0.0.1 (any free port) in a background thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.server = Server(app, "127.0.0.1", 0, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.port = self.server.port
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.http = f"http://127.0.0.1:{self.port}"

    @property
    def service(self) -> Any:
        return self.app.state.service

    def stop(self, timeout: float = 30.0) -> None:
        self.server.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the test server did not stop"


@pytest.fixture(scope="session")
def recognizer() -> Recognizer:
    return tiny_recognizer()


@pytest.fixture(scope="session")
def server(recognizer: Recognizer) -> Iterator[RunningServer]:
    running = RunningServer(create_app(recognizer, workers=2, static_dir=None))
    yield running
    running.stop()
