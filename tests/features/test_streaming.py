"""Streaming mel spectrograms give the frames of the batch function for every chunking.

Tolerance: float32 within 1e-6 of ``melspectrogram(whole_signal)`` relative to its maximum (the per-frame arithmetic
is the same; the mel product of one frame and of a batch of frames may round differently); dB within 1e-4 dB.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import audioforge.features as F
from audioforge.errors import (
    AudioDTypeError,
    AudioForgeError,
    AudioShapeError,
    InvalidParameterError,
    NonFiniteAudioError,
)
from audioforge.features.streaming import BatchedStreamingMelSpectrogram, StreamingMelSpectrogram

BASE = dict(sr=16000, n_fft=256, hop_length=64, n_mels=24)


def _signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    return (0.3 * np.sin(2 * np.pi * 700.0 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _chunks(y, sizes):
    out, pos, i = [], 0, 0
    while pos < len(y):
        size = sizes[i % len(sizes)]
        out.append(y[pos : pos + size])
        pos += size
        i += 1
    return out


def _reference(y, kw, log):
    ref = F.melspectrogram(y, **kw)
    return F.power_to_db(ref, top_db=None) if log else ref


def _check(got, ref, log):
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if got.size == 0:
        return
    if log:
        assert np.max(np.abs(got - ref)) < 1e-4
    else:
        assert np.max(np.abs(got - ref)) / np.max(np.abs(ref)) < 1e-6


def _stream(y, kw, sizes, *, log=False, as_torch=False, **extra):
    s = StreamingMelSpectrogram(log=log, **kw, **extra)
    outs = []
    for c in _chunks(y, sizes):
        o = s(torch.from_numpy(c) if as_torch else c)
        assert isinstance(o, torch.Tensor) == as_torch
        assert o.shape[0] == kw["n_mels"]
        outs.append(np.asarray(o))
    outs.append(np.asarray(s.flush()))
    return np.concatenate(outs, axis=1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.one_of(st.integers(1, 300), st.integers(300, 40000)),
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=6),
    center=st.booleans(),
    pad_mode=st.sampled_from(["constant", "reflect", "edge"]),
    log=st.booleans(),
    as_torch=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_streaming_equals_batch_for_any_chunking(n, sizes, center, pad_mode, log, as_torch, seed):
    kw = dict(BASE, center=center, pad_mode=pad_mode)
    y = _signal(n, seed)
    got = _stream(y, kw, sizes, log=log, as_torch=as_torch)
    if not center and n < kw["n_fft"]:
        assert got.shape == (kw["n_mels"], 0)  # the batch function raises: no complete frame
        return
    _check(got, _reference(y, kw, log), log)


@pytest.mark.parametrize(
    "kw",
    [
        dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0),
        dict(sr=16000, n_fft=511, hop_length=100, pad_mode="symmetric", power=1.0, n_mels=40),
        dict(sr=16000, n_fft=400, hop_length=160, win_length=300, pad_mode="linear_ramp", n_mels=40, power=1.5),
        dict(sr=16000, n_fft=400, hop_length=160, pad_mode="reflect", n_mels=40, dft="matmul"),
        dict(sr=16000, n_fft=512, hop_length=160, pad_mode="reflect", n_mels=40, power=1.0, dft="factored"),
        dict(sr=16000, n_fft=256, hop_length=300, pad_mode="reflect", n_mels=20),  # hop > n_fft
    ],
)
@pytest.mark.parametrize("n", [1, 3, 129, 200, 801, 16000])
@pytest.mark.parametrize("sizes", [[1], [7, 200, 3], [5000]])
def test_streaming_other_settings(kw, n, sizes):
    if sizes == [1] and n > 1000:
        sizes = [13]  # keep the test fast
    y = _signal(n)
    got = _stream(y, kw, sizes)
    batch_kw = {k: v for k, v in kw.items() if k != "dft"}
    # the matmul DFT is a float32 GEMM over n_fft products per bin: ~1e-6 from the fft, whichever way it is batched
    tol = 3e-6 if kw.get("dft") in ("matmul", "factored") else 1e-6
    ref = F.melspectrogram(y, **batch_kw)
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) / np.max(np.abs(ref)) < tol


def test_frames_come_out_as_soon_as_possible():
    kw = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    s = StreamingMelSpectrogram(**kw)
    # constant padding: frame 0 needs samples 0..399 only
    assert s(np.zeros(399, np.float32)).shape == (80, 0)
    assert s(np.zeros(1, np.float32)).shape == (80, 1)
    assert s(np.zeros(200, np.float32)).shape == (80, 1)
    r = StreamingMelSpectrogram(pad_mode="reflect", **kw)
    # reflect padding needs sample 400 as well (the reflection of position -400)
    assert r(np.ones(400, np.float32)).shape == (80, 0)
    assert r(np.ones(1, np.float32)).shape == (80, 1)
    assert r.frames_emitted == 1 and r.samples_seen == 401


def test_one_hop_in_one_frame_out_and_float64():
    kw = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
    y = _signal(16000).astype(np.float64)
    s = StreamingMelSpectrogram(dtype=torch.float64, **kw)
    outs = [s(torch.from_numpy(c)) for c in _chunks(y, [200])]
    assert all(o.dtype == torch.float64 for o in outs)
    assert [o.shape[1] for o in outs[2:]] == [1] * (len(outs) - 2)
    got = torch.cat([*outs, s.flush()], dim=1).numpy()
    ref = F.melspectrogram(y, **kw)
    assert np.max(np.abs(got - ref)) / np.max(ref) < 1e-12


def test_reset_flush_twice_and_empty_chunks():
    kw = dict(BASE, pad_mode="reflect")
    y = _signal(3000)
    s = StreamingMelSpectrogram(**kw)
    assert s(np.zeros(0, np.float32)).shape == (24, 0)
    s(y[:1000])
    s.reset()
    got = _concat_run(s, y, [333, 0, 17])
    _check(got, F.melspectrogram(y, **kw), False)
    second = s.flush()
    assert second.shape == (24, 0)
    with pytest.raises(InvalidParameterError):
        s(y[:10])
    s.reset()
    _check(_concat_run(s, y, [1000]), F.melspectrogram(y, **kw), False)
    fresh = StreamingMelSpectrogram(**kw)
    assert fresh.flush().shape == (24, 0)  # no samples: no frame


def _concat_run(s, y, sizes):
    outs = [s(c) for c in _chunks(y, sizes)]
    outs.append(s.flush())
    return np.concatenate(outs, axis=1)


@pytest.mark.parametrize(
    ("chunk", "error"),
    [
        (np.array([0.0, np.nan], np.float32), NonFiniteAudioError),
        (torch.tensor([0.0, float("inf")]), NonFiniteAudioError),
        (np.arange(10, dtype=np.int16), AudioDTypeError),
        (torch.arange(10), AudioDTypeError),
        (np.zeros((2, 10), np.float32), AudioShapeError),
        (np.float32(1.0), AudioDTypeError),
        ([0.0, 1.0], AudioDTypeError),
    ],
)
def test_bad_chunks_raise(chunk, error):
    s = StreamingMelSpectrogram(**BASE)
    with pytest.raises(error):
        s(chunk)
    assert issubclass(error, AudioForgeError)


@pytest.mark.parametrize(
    "kwargs",
    [dict(top_db=80.0), dict(log=True, top_db=80.0), dict(dtype=torch.float16), dict(dtype="int32"), dict(n_fft=0),
     dict(pad_mode="wrap"), dict(ref="max", log=True), dict(y=np.zeros(3))],
)
def test_bad_parameters(kwargs):
    kw = dict(BASE)
    kw.update(kwargs)
    with pytest.raises(InvalidParameterError):
        StreamingMelSpectrogram(**kw)


def test_gradient_free_and_torch_chunk_requiring_grad():
    s = StreamingMelSpectrogram(**BASE)
    out = s(torch.ones(1000, requires_grad=True) * 0.1)
    assert not out.requires_grad


# --- batched -----------------------------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(1, 6000), min_size=1, max_size=5),
    sizes=st.lists(st.lists(st.integers(0, 2500), min_size=1, max_size=4).filter(lambda v: max(v) > 0), min_size=5,
                   max_size=5),
    pad_mode=st.sampled_from(["constant", "reflect", "edge"]),
    center=st.booleans(),
    log=st.booleans(),
)
def test_batched_streams_with_different_chunkings(lengths, sizes, pad_mode, center, log):
    kw = dict(BASE, pad_mode=pad_mode, center=center)
    ys = [_signal(n, seed=i) for i, n in enumerate(lengths)]
    b = BatchedStreamingMelSpectrogram(len(ys), log=log, **kw)
    outs = [[] for _ in ys]
    pos = [0] * len(ys)
    step = 0
    while any(p < len(y) for p, y in zip(pos, ys, strict=True)):
        chunks = []
        for i, y in enumerate(ys):
            size = sizes[i][step % len(sizes[i])] if pos[i] < len(y) else 0
            chunks.append(y[pos[i] : pos[i] + size] if size else None)
            pos[i] += size
        for i, o in enumerate(b(chunks)):
            outs[i].append(o)
        step += 1
    for i, o in enumerate(b.flush()):
        outs[i].append(o)
    for i, y in enumerate(ys):
        got = np.concatenate(outs[i], axis=1)
        if not center and len(y) < kw["n_fft"]:
            assert got.shape == (24, 0)
            continue
        _check(got, _reference(y, kw, log), log)


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
@pytest.mark.parametrize("as_torch", [False, True])
def test_batched_block_fast_path_and_per_stream_reset(pad_mode, as_torch):
    kw = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, pad_mode=pad_mode)
    s_count, hop = 6, 200
    ys = [_signal(hop * 40, seed=i) for i in range(s_count)]
    b = BatchedStreamingMelSpectrogram(s_count, **kw)
    outs = [[] for _ in ys]
    # stream 2 is reset after 10 hops and restarts its signal: the others are then out of step with it
    for step in range(40 + 10):
        block = np.zeros((s_count, hop), np.float32)  # streams past their 40 hops get zeros (not compared)
        for i in range(s_count):
            offset = step - (10 if i == 2 and step >= 10 else 0)
            seg = ys[i][offset * hop : (offset + 1) * hop]
            block[i, : len(seg)] = seg
        if step == 10:
            b.reset(2)
            outs[2] = []
        res = b(torch.from_numpy(block) if as_torch else block)
        assert len(res) == s_count
        for i, o in enumerate(res):
            assert isinstance(o, torch.Tensor) == as_torch
            if i == 2 or step < 40:
                outs[i].append(np.asarray(o))
    tail = b.flush(2)
    outs[2].append(np.asarray(tail))
    for i in range(s_count):
        got = np.concatenate(outs[i], axis=1)
        ref = F.melspectrogram(ys[i], **kw)
        if i == 2:
            _check(got, ref, False)
        else:  # not flushed: every frame that does not need the right padding
            assert got.shape[1] == 1 + (len(ys[i]) - kw["n_fft"] // 2) // hop
            _check(got, ref[:, : got.shape[1]], False)


def test_batched_matches_single_stream_outputs():
    kw = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40)
    y = _signal(8000)
    single = StreamingMelSpectrogram(**kw)
    b = BatchedStreamingMelSpectrogram(3, **kw)
    for c in _chunks(y, [160]):
        one = single(c)
        many = b(np.stack([c, c, c]))
        for m in many:
            np.testing.assert_allclose(m, one, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(b.flush(1), single.flush(), rtol=1e-6, atol=1e-12)


def test_batched_errors():
    b = BatchedStreamingMelSpectrogram(3, **BASE)
    with pytest.raises(AudioShapeError):
        b([np.zeros(10, np.float32)] * 2)  # wrong stream count
    with pytest.raises(AudioShapeError):
        b(np.zeros((2, 10), np.float32))
    with pytest.raises(AudioShapeError):
        b(np.zeros(10, np.float32))
    with pytest.raises(NonFiniteAudioError):
        b([np.zeros(10, np.float32), np.array([np.nan], np.float32), None])
    with pytest.raises(AudioDTypeError):
        b(np.zeros((3, 10), np.int16))
    with pytest.raises(AudioDTypeError):
        b([np.zeros(10, np.float32), torch.zeros(10), None])
    with pytest.raises(InvalidParameterError):
        b.reset(3)
    with pytest.raises(InvalidParameterError):
        BatchedStreamingMelSpectrogram(0, **BASE)
    b.flush(1)
    with pytest.raises(InvalidParameterError):
        b([None, np.zeros(10, np.float32), None])
    assert [o.shape for o in b([np.zeros(10, np.float32), None, None])] == [(24, 0)] * 3
    assert b.samples_seen(0) == 10
