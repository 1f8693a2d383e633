"""Parity of the browser DSP (web/dsp/*.js, run under node) with the Python reference implementations."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf
import torch

from audioforge.ddsp.data import compute_statistics
from audioforge.ddsp.effects import Reverb
from audioforge.ddsp.loudness import compute_loudness
from audioforge.ddsp.model import DDSPAutoencoder
from audioforge.ddsp.pitch import yin_f0
from audioforge.ddsp.synths import FilteredNoise, HarmonicSynth
from audioforge.ddsp.transfer import adjust_controls

from .helpers import node_path, run_js

pytestmark = pytest.mark.skipif(node_path() is None, reason="node is not installed (scripts/web_setup.sh needs it)")

SR = 16000


def _melody(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A vibrato tone with notes, a silent gap and a noisy stretch: voiced, unvoiced and silent YIN frames."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    notes = np.array([220.0, 330.0, 277.2, 440.0, 196.0])
    f0 = notes[np.minimum((t / (seconds / len(notes))).astype(int), len(notes) - 1)]
    f0 = f0 * 2.0 ** (0.3 * np.sin(2 * np.pi * 5.5 * t) / 12.0)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(0.3 / k * np.sin(k * phase) for k in range(1, 6))
    y[int(0.55 * n): int(0.62 * n)] = 0.0
    y[int(0.8 * n): int(0.86 * n)] = 0.1 * rng.uniform(-1, 1, int(0.86 * n) - int(0.8 * n))
    return y.astype(np.float32)


def test_yin_matches_python(tmp_path):
    y = _melody()
    f0_py, conf_py = yin_f0(y, SR)
    out = run_js("yin", tmp_path, audio=y)
    f0_js, conf_js = np.array(out["f0"]), np.array(out["confidence"])
    assert f0_js.shape == f0_py.shape == (y.size // 64 + 1,)
    np.testing.assert_array_equal(f0_js > 0, f0_py > 0)
    np.testing.assert_allclose(f0_js, f0_py, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(conf_js, conf_py, atol=1e-5)
    assert (f0_py > 0).mean() > 0.5 and (f0_py == 0).any()


def test_yin_settings_match_python(tmp_path):
    y = _melody(0.8, seed=1)
    f0_py, conf_py = yin_f0(y, SR, hop_length=80, frame_length=2048, fmin=60.0, fmax=1000.0, threshold=0.15)
    out = run_js("yin", tmp_path, audio=y, options={"hopLength": 80, "frameLength": 2048, "fmin": 60.0,
                                                     "fmax": 1000.0, "threshold": 0.15})
    np.testing.assert_allclose(out["f0"], f0_py, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out["confidence"], conf_py, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loudness_matches_python(tmp_path, dtype):
    y = (_melody(1.0, seed=2) * np.linspace(0.001, 1.0, 16000)).astype(dtype)
    ref = compute_loudness(y, SR)
    out = np.array(run_js("loudness", tmp_path, audio=y)["loudness"])
    assert out.shape == ref.shape == (y.size // 64 + 1,)
    np.testing.assert_allclose(out, ref, atol=1e-6 if dtype == np.float64 else 2e-3)
    assert ref.min() == -80.0 or ref.min() < -40.0


def _harmonic_controls(t: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    amps = rng.uniform(0.0, 0.2, (t, k)) * rng.uniform(0.0, 1.0, (t, 1))
    f0 = np.geomspace(80.0, 1900.0, t) * (1 + 0.02 * np.sin(np.arange(t) / 3.0))
    f0[t // 3: t // 3 + 4] = 0.0  # an unvoiced stretch
    return amps, f0


@pytest.mark.parametrize("upsampling", ["windowed", "linear"])
def test_harmonic_synth_matches_python_streaming(tmp_path, upsampling):
    t, k = 120, 60
    amps, f0 = _harmonic_controls(t, k)
    synth = HarmonicSynth(n_harmonics=k, amplitude_upsampling=upsampling)
    a, d = torch.from_numpy(amps.sum(-1, keepdims=True)), torch.from_numpy(amps)
    dist = d / a.clamp(min=1e-12)
    ref, state = synth(a[None, :, 0], dist[None], torch.from_numpy(f0)[None])
    out = run_js("harmonic", tmp_path, amps=amps, f0=f0, blocks=[1, 7, 30, 13],
                 options={"nHarmonics": k, "amplitudeUpsampling": upsampling})
    audio = np.array(out["audio"])
    assert audio.shape == (t * 64,)
    np.testing.assert_allclose(audio, ref[0].numpy(), atol=1e-9)
    assert abs(out["phase"] - float(state.phase[0])) < 1e-9


def test_harmonic_phase_stays_exact_for_minutes(tmp_path):
    """A 6.6 kHz tone for 60 s: the float64 phase with wrapping keeps the tone at > 90 dB SNR."""
    t = 60 * 250
    f0 = np.full(t, 6600.0)
    amps = np.zeros((t, 1))
    amps[:, 0] = 0.5
    out = np.array(run_js("harmonic", tmp_path, amps=amps, f0=f0, blocks=[250] * 240,
                          options={"nHarmonics": 1})["audio"])
    n = np.arange(t * 64, dtype=np.float64)
    exact = 0.5 * np.sin(2 * np.pi * 6600.0 * (n + 1) / SR)
    err = out - exact
    snr = 10 * np.log10(np.sum(exact[-16000:] ** 2) / np.sum(err[-16000:] ** 2))
    assert snr > 90.0, snr


def test_filtered_noise_matches_python_streaming(tmp_path):
    t = 50
    rng = np.random.default_rng(3)
    mags = rng.uniform(0.0, 1.0, (t, 65)) ** 3
    noise = rng.uniform(-1.0, 1.0, t * 64)
    fn = FilteredNoise()
    ref, state = fn(torch.from_numpy(mags)[None], noise=torch.from_numpy(noise)[None])
    out = run_js("noise", tmp_path, mags=mags, noise=noise, blocks=[3, 1, 20])
    np.testing.assert_allclose(out["audio"], ref[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(out["tail"], state.tail[0].numpy(), atol=1e-12)


def test_reverb_matches_python_streaming(tmp_path):
    rng = np.random.default_rng(4)
    rv = Reverb(ir_length=3000).double()
    audio = rng.uniform(-0.5, 0.5, 5000)
    ref = []
    state = None
    for s, e in [(0, 1000), (1000, 1100), (1100, 5000)]:
        y, state = rv(torch.from_numpy(audio[s:e])[None], state=state)
        ref.append(y[0].detach().numpy())
    out = run_js("reverb", tmp_path, audio=audio, ir=rv.ir.detach(), blocks=[1000, 100])
    np.testing.assert_allclose(out["audio"], np.concatenate(ref), atol=1e-12)


def test_render_matches_autoencoder_synthesis(tmp_path):
    """Raw decoder outputs -> scale functions -> harmonic + noise: the JS renderer equals DDSPAutoencoder."""
    torch.manual_seed(0)
    model = DDSPAutoencoder.from_preset("tiny").eval()
    t = 80
    f0 = torch.from_numpy(np.geomspace(110.0, 880.0, t))[None].float()
    ld = torch.linspace(-60.0, -5.0, t)[None]
    with torch.no_grad():
        raw, _ = model.decoder(f0, ld)
        raw = raw.double() * 3.0  # spread the outputs over the range of the scale functions
        noise = torch.from_numpy(np.random.default_rng(5).uniform(-1, 1, t * 64))[None]
        controls = model.controls(f0.double(), model.decoder.split_outputs(raw))
        ref, _, _ = model.synthesize(controls, noise=noise)
    cfg = {"n_harmonics": 60, "n_noise_bands": 65, "state_shape": [1, 1, 64]}
    out = run_js("render", tmp_path, raw=raw[0], f0=f0[0].double(), noise=noise[0], config=cfg, blocks=[10, 25])
    np.testing.assert_allclose(out["audio"], ref[0].numpy(), atol=1e-8)


def test_controls_match_adjust_controls(tmp_path):
    y = _melody(2.0, seed=6)
    f0, conf = yin_f0(y, SR)
    ld = compute_loudness(y, SR).astype(np.float32)
    note = (conf >= 0.6) & (ld > -60.0)
    rng = np.random.default_rng(7)
    stats = compute_statistics(rng.uniform(300, 600, 4000), rng.uniform(-50, -10, 4000), rng.uniform(size=4000) > 0.2)
    for auto in (True, False):
        ref_f0, ref_ld, octave = adjust_controls(f0, ld, note, stats, auto_adjust=auto, pitch_shift=2.0,
                                                 loudness_shift=-3.0)
        out = run_js("controls", tmp_path, tracked={"f0": f0, "confidence": conf, "loudness": ld}, statistics=stats,
                     options={"autoAdjust": auto, "pitchShift": 2.0, "loudnessShift": -3.0})
        assert out["octave"] == octave
        np.testing.assert_array_equal(np.array(out["note"], dtype=bool), note)
        np.testing.assert_allclose(out["f0"], ref_f0, rtol=1e-6)
        np.testing.assert_allclose(out["loudness"], ref_ld, atol=1e-4)


def test_controls_reject_silence_and_unpitched_input(tmp_path):
    silent = run_js("controls", tmp_path, tracked={"f0": np.zeros(100), "confidence": np.zeros(100),
                                                   "loudness": np.full(100, -80.0)})
    assert "silent" in silent["error"]
    noisy = run_js("controls", tmp_path, tracked={"f0": np.full(100, 300.0), "confidence": np.full(100, 0.2),
                                                  "loudness": np.full(100, -20.0)})
    assert "no pitch found" in noisy["error"]


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (16000, 48000), (22050, 16000)])
def test_resample_is_band_limited_and_aligned(tmp_path, rates):
    src, dst = rates
    n = src  # one second
    t = np.arange(n) / src
    # second tone: above the output's Nyquist when downsampling (must vanish), in band when upsampling (must stay)
    f2 = dst / 2 + 1500.0 if dst < src else 0.4 * src
    x = 0.5 * np.sin(2 * np.pi * 1000.0 * t) + 0.3 * np.sin(2 * np.pi * f2 * t)
    out = np.array(run_js("resample", tmp_path, audio=x, in_rate=src, out_rate=dst)["audio"])
    assert out.size == -(-n * dst // src)
    tt = np.arange(out.size) / dst
    want = 0.5 * np.sin(2 * np.pi * 1000.0 * tt)
    if dst > src:  # upsampling keeps the second tone too
        want = want + 0.3 * np.sin(2 * np.pi * f2 * tt)
    mid = slice(dst // 20, out.size - dst // 20)  # away from the zero-padded edges
    err = out[mid] - want[mid]
    snr = 10 * np.log10(np.sum(want[mid] ** 2) / np.sum(err**2))
    assert snr > 55.0, snr


@pytest.mark.parametrize("as_float", [False, True])
def test_wav_round_trip(tmp_path, as_float):
    y = (0.9 * np.sin(np.arange(1600) / 7.0)).astype(np.float32)
    out = run_js("wav", tmp_path, audio=y, sr=SR, float=as_float)
    data, sr = sf.read(io.BytesIO(base64.b64decode(out["bytes"])), dtype="float32")
    assert sr == out["sr"] == SR
    tol = 1e-7 if as_float else 2.0 / 32767  # PCM: x * 32767 rounded, read back / 32768
    np.testing.assert_allclose(data, y, atol=tol)
    np.testing.assert_allclose(out["audio"], y, atol=tol)
