"""The block engine: streaming output == offline rendering of the same controls, no clicks, bad blocks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from audioforge.ddsp import DDSPAutoencoder, compute_loudness, yin_f0
from audioforge.ddsp.engine import (
    DDSPEngine,
    loudness_frames,
    offline_controls,
    render_file,
    render_offline,
    yin_frames,
)
from audioforge.errors import AudioDTypeError, InvalidAudioError, NonFiniteAudioError

SR = 16000


def _melody(seconds: float = 1.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f = 220.0 * 2.0 ** (np.floor(t * 4) / 12.0) * (1 + 0.005 * np.sin(2 * np.pi * 5 * t))
    env = np.clip((t - 0.1) * 20, 0, 1)
    return (0.3 * env * np.sin(2 * np.pi * np.cumsum(f) / SR)).astype(np.float32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small per-block tensors: one thread is fastest (several threads on a shared machine are much slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> DDSPAutoencoder:
    torch.manual_seed(0)
    return DDSPAutoencoder.from_preset("tiny").eval()


def test_frame_features_match_offline() -> None:
    y = _melody(0.5).astype(np.float64)
    f0, conf = yin_f0(y, SR)
    ld = compute_loudness(y.astype(np.float32), SR)
    pad = np.pad(y, (1024, 1024))
    i = np.arange(10, 60, 5)
    frames = np.stack([pad[1024 + k * 64 - 312: 1024 + k * 64 + 712] for k in i])
    f0_b, conf_b = yin_frames(frames)
    np.testing.assert_allclose(f0_b, f0[i], rtol=1e-6)
    assert (f0_b[-5:] > 200).all()
    np.testing.assert_allclose(conf_b, conf[i], atol=1e-6)
    lframes = np.stack([pad[1024 + k * 64 - 256: 1024 + k * 64 + 256] for k in i])
    np.testing.assert_allclose(loudness_frames(lframes), ld[i], atol=1e-3)


@pytest.mark.parametrize("block", [320, 256])
def test_streaming_equals_offline(model: DDSPAutoencoder, block: int) -> None:
    y = _melody()
    engine = DDSPEngine(model, block_size=block, pitch_shift=-3.0, noise_seed=7)
    streamed = render_file(engine, y, sr=SR)
    f0, ld = offline_controls(y, initial_f0=engine.initial_f0, **engine.settings)
    offline = render_offline(model, f0, ld, noise_seed=7, n_samples=y.size)
    assert streamed.shape == offline.shape == y.shape
    snr = 10 * np.log10(np.sum(offline**2) / np.sum((streamed - offline) ** 2))
    assert snr >= 60.0
    # no clicks: the jumps across block boundaries are no larger than anywhere else
    jumps = np.abs(np.diff(streamed))
    bounds = np.arange(block, y.size + engine.delay_samples, block) - engine.delay_samples - 1
    bounds = bounds[(bounds >= 0) & (bounds < jumps.size)]
    assert jumps[bounds].max() <= jumps.max() + 1e-7
    assert jumps[bounds].max() <= 1.05 * np.abs(np.diff(offline))[bounds].max() + 1e-6


def test_latency_and_silence(model: DDSPAutoencoder) -> None:
    engine = DDSPEngine(model)
    assert engine.delay_samples == 704 and engine.latency_ms == pytest.approx(64.0)
    out = [engine.process_block(np.zeros(320, np.float32)) for _ in range(10)]
    assert all(o.shape == (320,) and np.isfinite(o).all() for o in out)
    assert np.abs(np.concatenate(out)).max() < 0.05


def test_bad_blocks(model: DDSPAutoencoder) -> None:
    engine = DDSPEngine(model)
    with pytest.raises(NonFiniteAudioError):
        engine.process_block(np.full(320, np.nan, np.float32))
    with pytest.raises(InvalidAudioError, match="320"):
        engine.process_block(np.zeros(100, np.float32))
    with pytest.raises(AudioDTypeError):
        engine.process_block(np.zeros(320, np.int16))
