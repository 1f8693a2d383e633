"""Streaming Kaldi fbank: any chunking gives the batch result, one stream or many."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audioforge.errors import AudioDTypeError, AudioShapeError, InvalidParameterError, NonFiniteAudioError
from audioforge.features.kaldi import KaldiFbank, kaldi_fbank
from audioforge.features.kaldi_stream import BatchedOnlineKaldiFbank, OnlineKaldiFbank

OPTS = {"num_mel_bins": 40, "energy_floor": 0.0, "use_energy": True}


def _signal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * 3000.0 + 20.0).astype(np.float32)


def _reference(x: np.ndarray, matmul: bool, **opts) -> np.ndarray:
    if matmul:
        return KaldiFbank(use_matmul_dft=True, **opts)(torch.from_numpy(x)).numpy()
    return kaldi_fbank(x, **opts)


def _split(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    cuts = np.cumsum(sizes)
    cuts = cuts[cuts < x.size]
    return np.split(x, cuts)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 2400),
    sizes=st.lists(st.integers(1, 900), min_size=1, max_size=40),
    matmul=st.booleans(),
    torch_chunks=st.booleans(),
)
def test_online_equals_batch_for_any_chunking(n: int, sizes: list[int], matmul: bool, torch_chunks: bool) -> None:
    x = _signal(n, seed=n)
    fb = OnlineKaldiFbank(use_matmul_dft=matmul, **OPTS)
    outs = []
    for chunk in _split(x, sizes):
        out = fb.accept_waveform(torch.from_numpy(chunk) if torch_chunks else chunk)
        assert out.shape[1] == 41
        outs.append(out)
        assert fb.num_samples_pending < 400 + 160  # O(frame) memory
    outs.append(fb.flush())
    got = torch.cat(outs).numpy()
    want = _reference(x, matmul, **OPTS) if n else np.zeros((0, 41), np.float32)
    assert got.shape == want.shape and fb.num_frames_ready == want.shape[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def _shaped(kind: str, n: int, seed: int) -> np.ndarray:
    """Signals whose weak bins expose any change in float32 rounding (steep spectra, a pure tone)."""
    from scipy import signal

    rng = np.random.default_rng(seed)
    if kind == "sine":
        return np.sin(2 * np.pi * 440.0 * np.arange(n) / 16000.0).astype(np.float32)
    x = rng.standard_normal(n)
    if kind == "highpass":
        x = signal.lfilter(*signal.butter(8, 0.5, "high"), x)
    elif kind == "lowpass":
        x = signal.lfilter(*signal.butter(8, 0.05), x)
    return (x * 3000.0).astype(np.float32)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(400, 3000),
    hop_sizes=st.lists(st.sampled_from([1, 37, 160, 161, 320, 400]), min_size=1, max_size=8),
    kind=st.sampled_from(["noise", "highpass", "lowpass", "sine"]),
    remove_dc=st.booleans(),
    preemph=st.sampled_from([0.0, 0.97]),
    double=st.booleans(),
)
def test_one_frame_fast_path_equals_batch(
    n: int, hop_sizes: list[int], kind: str, remove_dc: bool, preemph: float, double: bool
) -> None:
    # plain log fbank (WeNet's settings): a hop completes one frame, which takes the numpy fast path
    opts = {"num_mel_bins": 80, "energy_floor": 0.0, "remove_dc_offset": remove_dc,
            "preemphasis_coefficient": preemph}
    x = _shaped(kind, n, seed=n)
    dtype = torch.float64 if double else torch.float32
    fb = OnlineKaldiFbank(dtype=dtype, **opts)
    assert fb._fc.one is not None
    sizes = (hop_sizes * (n // sum(hop_sizes) + 1))[: n + 1]
    got = torch.cat([fb.accept_waveform(c) for c in _split(x, sizes)]).numpy()
    want = kaldi_fbank(x.astype(np.float64) if double else x, **opts)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_fast_path_only_where_it_is_exact() -> None:
    assert OnlineKaldiFbank(num_mel_bins=80)._fc.one is not None
    assert OnlineKaldiFbank(num_mel_bins=80, dither=1.0)._fc.one is None  # random draws come from torch
    assert OnlineKaldiFbank(num_mel_bins=80, use_energy=True)._fc.one is None
    assert OnlineKaldiFbank(num_mel_bins=80, use_matmul_dft=True)._fc.one is None
    assert OnlineKaldiFbank(num_mel_bins=80, use_log_fbank=False)._fc.one is None


def test_frames_are_emitted_as_soon_as_complete() -> None:
    fb = OnlineKaldiFbank()
    x = _signal(1000, 1)
    assert fb.accept_waveform(x[:399]).shape == (0, 23)
    assert fb.accept_waveform(x[399:400]).shape == (1, 23)
    assert fb.accept_waveform(x[400:559]).shape == (0, 23)
    assert fb.accept_waveform(x[559:560]).shape == (1, 23)
    assert fb.num_frames_ready == 2
    fb.reset()
    assert fb.num_frames_ready == 0 and fb.accept_waveform(x[:400]).shape == (1, 23)


def test_long_chunk_and_float64() -> None:
    x = _signal(16000 * 60, 2).astype(np.float64)  # one minute in one call
    fb = OnlineKaldiFbank(dtype=torch.float64, num_mel_bins=80)
    out = torch.cat([fb.accept_waveform(x[:100]), fb.accept_waveform(x[100:])])
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), kaldi_fbank(x, num_mel_bins=80), atol=1e-9)
    assert fb.num_samples_pending < 400 and fb._capacity < 16000  # buffer shrinks back


def test_online_rejects_bad_use() -> None:
    with pytest.raises(InvalidParameterError, match="snip_edges"):
        OnlineKaldiFbank(snip_edges=False)
    with pytest.raises(InvalidParameterError, match="subtract_mean"):
        OnlineKaldiFbank(subtract_mean=True)
    with pytest.raises(InvalidParameterError, match="num_mel_bins"):
        OnlineKaldiFbank(num_mel_bins=0)
    fb = OnlineKaldiFbank()
    with pytest.raises(AudioShapeError):
        fb.accept_waveform(np.zeros((2, 100), np.float32))
    with pytest.raises(AudioDTypeError):
        fb.accept_waveform(np.zeros(100, np.int16))
    with pytest.raises(NonFiniteAudioError):
        fb.accept_waveform(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AudioDTypeError):
        fb.accept_waveform([0.0, 1.0])
    fb.flush()
    with pytest.raises(InvalidParameterError, match="reset"):
        fb.accept_waveform(np.zeros(10, np.float32))


@settings(max_examples=15, deadline=None)
@given(data=st.data(), num_streams=st.integers(1, 5), matmul=st.booleans())
def test_batched_streams_with_different_chunkings(data, num_streams: int, matmul: bool) -> None:
    lengths = [data.draw(st.integers(0, 2000)) for _ in range(num_streams)]
    signals = [_signal(n, seed=10 + i) for i, n in enumerate(lengths)]
    plans = [_split(x, data.draw(st.lists(st.integers(1, 700), min_size=1, max_size=30))) for x in signals]
    fb = BatchedOnlineKaldiFbank(num_streams, use_matmul_dft=matmul, **OPTS)
    outs: list[list[torch.Tensor]] = [[] for _ in range(num_streams)]
    for step in range(max(len(p) for p in plans)):
        chunks = [p[step] if step < len(p) else None for p in plans]
        for s, out in enumerate(fb.accept_waveform(chunks)):
            outs[s].append(out)
    for s in range(num_streams):
        got = torch.cat(outs[s]).numpy()
        want = _reference(signals[s], matmul, **OPTS) if lengths[s] else np.zeros((0, 41), np.float32)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert fb.num_frames_ready == [len(torch.cat(o)) for o in outs]


def test_batched_lockstep_tensor_and_reset() -> None:
    x = np.stack([_signal(3000, seed=s) for s in range(4)])
    fb = BatchedOnlineKaldiFbank(4, **OPTS)
    outs = [fb.accept_waveform(torch.from_numpy(x[:, i : i + 160])) for i in range(0, 3000, 160)]
    for s in range(4):
        got = torch.cat([o[s] for o in outs]).numpy()
        np.testing.assert_allclose(got, kaldi_fbank(x[s], **OPTS), atol=1e-5)
    fb.reset(2)
    out = fb.accept_waveform([x[0, :100], None, x[2, :400], x[3, :10]])
    assert [o.shape[0] for o in out] == [0, 0, 1, 0]
    np.testing.assert_allclose(out[2].numpy(), kaldi_fbank(x[2, :400], **OPTS), atol=1e-5)
    with pytest.raises(AudioShapeError):
        fb.accept_waveform(torch.zeros(3, 160))
    with pytest.raises(InvalidParameterError):
        fb.reset(4)
    with pytest.raises(InvalidParameterError):
        BatchedOnlineKaldiFbank(0)


def test_matches_knf_online_directly() -> None:
    knf = pytest.importorskip("kaldi_native_fbank")
    x = _signal(5000, 3)
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    ref = knf.OnlineFbank(opts)
    fb = OnlineKaldiFbank(num_mel_bins=80, energy_floor=0.0)
    for chunk in np.array_split(x, 37):
        got = fb.accept_waveform(chunk)
        before = ref.num_frames_ready
        ref.accept_waveform(16000.0, chunk)
        want = [ref.get_frame(i) for i in range(before, ref.num_frames_ready)]
        assert got.shape[0] == len(want)
        if want:
            np.testing.assert_allclose(got.numpy(), np.stack(want), atol=1e-3)
