"""Synthesizers and reverb against float64 numpy/scipy references; streaming equals offline; bad controls raise."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from audioforge.ddsp import DDSPAutoencoder, FilteredNoise, HarmonicSynth, Reverb
from audioforge.ddsp.model import DDSPState
from audioforge.errors import AudioForgeError, InvalidParameterError

from .test_ddsp_core import _np_ola_hann, snr_db

SR, HOP = 16000, 64


def _controls(seed: int, n_frames: int, n_harm: int, n_bands: int = 65, batch: int = 1):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, n_frames, dtype=torch.float64)
    f0 = (180.0 + 500.0 * t**2 + 20.0 * torch.sin(2 * torch.pi * 5 * t)).repeat(batch, 1)
    amp = 0.3 + 0.2 * torch.rand(batch, n_frames, generator=g, dtype=torch.float64)
    dist = torch.softmax(torch.randn(batch, n_frames, n_harm, generator=g, dtype=torch.float64), -1)
    mags = 0.05 * torch.rand(batch, n_frames, n_bands, generator=g, dtype=torch.float64)
    noise = torch.rand(batch, n_frames * HOP, generator=g, dtype=torch.float64) * 2 - 1
    return f0, amp, dist, mags, noise


def test_harmonic_synth_matches_sum_of_sinusoids_float64():
    n_frames, k = 120, 30
    f0, amp, dist, _, _ = _controls(0, n_frames, k)
    f0[0, 80:] = 400.0  # harmonics 20+ cross Nyquist: must be silenced
    audio, _ = HarmonicSynth(sr=SR, hop=HOP, n_harmonics=k)(amp.float(), dist.float(), f0.float())
    # float64 reference: linear f0, Hann-OLA amplitudes, phase by np.cumsum
    f0n = f0[0].numpy().astype(np.float32).astype(np.float64)
    prev = np.concatenate([f0n[:1], f0n[:-1]])
    f_up = (prev[:, None] + (f0n - prev)[:, None] * (np.arange(1, HOP + 1) / HOP)[None]).reshape(-1)
    phase = np.cumsum(2 * np.pi * f_up / SR)
    a = (amp[0].numpy()[:, None] * dist[0].numpy()).astype(np.float32).astype(np.float64)
    ref = np.zeros_like(phase)
    for h in range(1, k + 1):
        a_up = _np_ola_hann(a[:, h - 1], HOP)
        ref += np.where(h * f_up < SR / 2, a_up, 0.0) * np.sin(h * phase)
    assert snr_db(ref, audio[0].numpy()) > 80.0


def test_harmonic_synth_linear_amplitudes():
    n_frames, k = 40, 4
    f0, amp, dist, _, _ = _controls(1, n_frames, k)
    synth = HarmonicSynth(sr=SR, hop=HOP, n_harmonics=k, amplitude_upsampling="linear")
    audio, _ = synth(amp, dist, f0)  # float64 controls: float64 all the way
    f0n = f0[0].numpy()
    prev = np.concatenate([f0n[:1], f0n[:-1]])
    ramp = (np.arange(1, HOP + 1) / HOP)[None]
    f_up = (prev[:, None] + (f0n - prev)[:, None] * ramp).reshape(-1)
    phase = np.cumsum(2 * np.pi * f_up / SR)
    a = amp[0].numpy()[:, None] * dist[0].numpy()
    pa = np.concatenate([a[:1], a[:-1]])
    a_up = (pa[:, None, :] + (a - pa)[:, None, :] * ramp[..., None]).reshape(-1, k)
    ref = (a_up * np.sin(phase[:, None] * np.arange(1, k + 1))).sum(-1)
    assert snr_db(ref, audio[0].numpy()) > 120.0


def _np_filtered_noise(mags: np.ndarray, noise: np.ndarray, hop: int) -> np.ndarray:
    n_frames, n_bands = mags.shape
    size = 2 * (n_bands - 1)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / size)
    out = np.zeros(n_frames * hop + size)
    for i in range(n_frames):
        ir = np.roll(np.fft.irfft(mags[i], n=size), size // 2) * win
        seg = scipy.signal.fftconvolve(noise[i * hop: (i + 1) * hop], ir)
        out[i * hop: i * hop + len(seg)] += seg
    return out


def test_filtered_noise_matches_scipy_fftconvolve():
    n_frames = 50
    _, _, _, mags, noise = _controls(2, n_frames, 1)
    fn = FilteredNoise(n_bands=65, hop=HOP)
    assert fn.ir_size == 128
    audio, state = fn(mags.float(), noise=noise.float())
    ref = _np_filtered_noise(mags[0].numpy(), noise[0].numpy(), HOP)
    assert snr_db(ref[: n_frames * HOP], audio[0].numpy()) > 100.0
    np.testing.assert_allclose(state.tail[0].numpy(), ref[n_frames * HOP: n_frames * HOP + 127], atol=1e-6)


def test_filtered_noise_deterministic_with_generator():
    fn = FilteredNoise()
    mags = torch.full((1, 10, 65), 0.1)
    a, _ = fn(mags, generator=torch.Generator().manual_seed(3))
    b, _ = fn(mags, generator=torch.Generator().manual_seed(3))
    c, _ = fn(mags, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_reverb_matches_np_convolve_and_streams():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3000))
    rv = Reverb(ir_length=700, init_scale=0.1).double()
    out, _ = rv(torch.from_numpy(x))
    ir = rv.ir.detach().numpy().copy()
    ir[0] = 0.0  # tap 0 masked
    ref = np.convolve(x[0], ir)[:3000] + x[0]
    np.testing.assert_allclose(out[0].detach().numpy(), ref, atol=1e-10)
    parts, state = [], None
    for a in range(0, 3000, 320):  # blocks shorter than the IR: tails span several blocks
        y, state = rv(torch.from_numpy(x[:, a: a + 320]), state=state)
        parts.append(y.detach())
    np.testing.assert_allclose(torch.cat(parts, 1)[0].numpy(), ref, atol=1e-10)
    dry = Reverb(ir_length=16, add_dry=False)
    assert torch.allclose(dry(torch.zeros(1, 100))[0], torch.zeros(1, 100))


def test_streaming_equals_offline_harmonic_noise_reverb():
    """20 ms blocks (5 frames) of harmonic + noise + reverb equal one-shot synthesis (>= 60 dB), no clicks."""
    torch.manual_seed(0)
    model = DDSPAutoencoder.from_preset("tiny", reverb_length=4000).eval()
    with torch.no_grad():
        model.reverb.ir.mul_(30.0)  # an audible reverb
        model.decoder.dense.bias[1 + 60:] += 5.0  # undo the -5 noise bias of an untrained model: audible noise
    n_frames = 250
    f0, _, _, _, noise = _controls(6, n_frames, 1)
    f0 = f0.float()
    loud = torch.linspace(-50, -10, n_frames)[None]
    noise = noise.float()
    with torch.no_grad():
        offline, controls = model(f0, loud, noise=noise)
        blocks, state = [], None
        for i in range(0, n_frames, 5):
            block_noise = noise[:, i * HOP: (i + 5) * HOP]
            y, _, state = model.stream(f0[:, i: i + 5], loud[:, i: i + 5], state, noise=block_noise)
            blocks.append(y)
    assert isinstance(state, DDSPState)
    streamed = torch.cat(blocks, 1)[0].numpy().astype(np.float64)
    ref = offline[0].numpy().astype(np.float64)
    assert float(controls["harmonic"].abs().max()) > 0.01 and float(controls["noise"].abs().max()) > 0.01
    assert snr_db(ref, streamed) >= 60.0
    # no discontinuity: the sample-to-sample steps across block boundaries are those of the offline signal
    edges = np.arange(5 * HOP, n_frames * HOP, 5 * HOP)
    step_stream = streamed[edges] - streamed[edges - 1]
    step_ref = ref[edges] - ref[edges - 1]
    assert np.abs(step_stream - step_ref).max() < 1e-4


@pytest.mark.parametrize(
    ("amp", "f0", "exc"),
    [
        (torch.full((1, 4), float("nan")), torch.full((1, 4), 220.0), InvalidParameterError),
        (torch.ones(1, 4), torch.full((1, 4), -5.0), InvalidParameterError),
        (torch.ones(1, 4), torch.full((1, 5), 220.0), InvalidParameterError),
        (torch.ones(4), torch.full((4,), 220.0), InvalidParameterError),
    ],
)
def test_bad_controls_raise(amp, f0, exc):
    synth = HarmonicSynth(n_harmonics=3)
    dist = torch.ones(*amp.shape, 3) / 3
    with pytest.raises(exc):
        synth(amp, dist, f0)


def test_model_bad_inputs():
    model = DDSPAutoencoder.from_preset("tiny")
    with pytest.raises(AudioForgeError):
        model(torch.full((1, 10), float("nan")), torch.zeros(1, 10))
    with pytest.raises(AudioForgeError):
        model(torch.full((1, 10), -1.0), torch.zeros(1, 10))
    with pytest.raises(AudioForgeError):
        DDSPAutoencoder.from_preset("huge")
    with pytest.raises(AudioForgeError):
        FilteredNoise()(torch.ones(1, 3, 10))
