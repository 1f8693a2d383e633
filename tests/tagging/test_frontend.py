"""PasstFrontend against an independent float64 numpy implementation of the documented AugmentMelSTFT recipe.

The reference below is written from the recipe (pre-emphasis, centred reflect-padded STFT with a symmetric Hann
window of 800 zero-padded to 1024, power, Kaldi mel banks with a zero Nyquist column, log(x + 1e-5), (x + 4.5) / 5)
and shares no code with the implementation. Tolerance: 1e-4 absolute on the normalised float32 output.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from audioforge.errors import InvalidParameterError
from audioforge.tagging import PasstFrontend
from audioforge.tagging import frontend as frontend_module

SR = 32000
RNG = np.random.default_rng(3)


def _signal(n: int) -> np.ndarray:
    t = np.arange(n) / SR
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 5000 * t * (1 + t)) + 0.05 * RNG.standard_normal(n)
    return y.astype(np.float32)


def _kaldi_banks_ref(n_mels: int, n_fft: int, sr: float, fmin: float, fmax: float) -> np.ndarray:
    """Kaldi triangles in the mel domain, (n_mels, n_fft // 2 + 1) with the Nyquist column zero."""

    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    lo, hi = mel(fmin), mel(fmax)
    delta = (hi - lo) / (n_mels + 1)
    bin_mel = mel(np.arange(n_fft // 2) * sr / n_fft)
    banks = np.zeros((n_mels, n_fft // 2 + 1))
    for b in range(n_mels):
        left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        up = (bin_mel - left) / (centre - left)
        down = (right - bin_mel) / (right - centre)
        banks[b, : n_fft // 2] = np.maximum(0.0, np.minimum(up, down))
    return banks


def _reference(y: np.ndarray, fmin: float = 0.0, fmax: float = 15000.0) -> np.ndarray:
    """(n_mels, frames) float64 normalised log-mel of one signal."""
    x = y.astype(np.float64)
    x = x[1:] - 0.97 * x[:-1]
    x = np.pad(x, 512, mode="reflect")
    win = np.zeros(1024)
    win[112 : 112 + 800] = scipy.signal.get_window("hann", 800, fftbins=False)
    n_frames = 1 + (len(x) - 1024) // 320
    frames = np.stack([x[i * 320 : i * 320 + 1024] for i in range(n_frames)])
    spec = np.fft.rfft(frames * win, axis=-1)
    power = spec.real**2 + spec.imag**2
    mel = _kaldi_banks_ref(128, 1024, SR, fmin, fmax) @ power.T
    return (np.log(mel + 1e-5) + 4.5) / 5.0


@pytest.mark.parametrize("n", [320000, 32000, 4801, 777, 300])
def test_eval_matches_numpy_reference(n):
    """float32 (the official precision): 99.9 % of cells within 1e-4, all within 5e-4.

    The few cells above 1e-4 are mel bins whose power is tiny relative to the frame (float32 FFT rounding), where
    the log magnifies relative error; the float64 path below shows the recipe itself is exact.
    """
    y = _signal(n)
    fe = PasstFrontend().eval()
    out = fe(torch.from_numpy(y)[None]).numpy()
    ref = _reference(y)
    assert out.dtype == np.float32
    assert out.shape == (1, 1, 128, 1 + (n - 1) // 320) == (1, 1, *ref.shape)
    err = np.abs(out[0, 0] - ref)
    assert np.quantile(err, 0.999) <= 1e-4
    assert err.max() <= 5e-4


@pytest.mark.parametrize("dft", ["fft", "matmul"])
@pytest.mark.parametrize("n", [96000, 777])
def test_float64_matches_numpy_reference_exactly(n, dft):
    y = _signal(n).astype(np.float64)
    out = PasstFrontend(dft=dft).eval()(torch.from_numpy(y)[None]).numpy()
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[0, 0], _reference(y), atol=1e-9, rtol=0)


def test_ten_seconds_gives_1000_frames_and_batch_rows_are_independent():
    y = np.stack([_signal(320000), _signal(320000)])
    fe = PasstFrontend().eval()
    out = fe(torch.from_numpy(y))
    assert out.shape == (2, 1, 128, 1000)
    single = fe(torch.from_numpy(y[1:]))
    torch.testing.assert_close(out[1:], single, atol=1e-5, rtol=0)


def test_power_spectrum_matches_torch_stft_recipe():
    """The official code's own calls: conv1d pre-emphasis and torch.stft with the symmetric window."""
    x = torch.from_numpy(np.stack([_signal(50000), _signal(50000)]))
    pre = torch.nn.functional.conv1d(x.unsqueeze(1), torch.tensor([[[-0.97, 1.0]]])).squeeze(1)
    z = torch.stft(pre, 1024, hop_length=320, win_length=800, window=torch.hann_window(800, periodic=False),
                   center=True, normalized=False, return_complex=True)
    ref = z.real**2 + z.imag**2
    out = PasstFrontend().power_spectrogram(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_matmul_dft_matches_fft():
    x = torch.from_numpy(np.stack([_signal(40000), _signal(40000)]))
    a = PasstFrontend().eval()(x)
    b = PasstFrontend(dft="matmul").eval()(x)
    err = (a - b).abs()
    assert float(err.flatten().quantile(0.999)) <= 1e-4 and float(err.max()) <= 5e-4


def test_default_band_is_the_pretrained_one():
    fe = PasstFrontend()
    assert fe.fmin == 0.0 and fe.fmax == 15000.0
    np.testing.assert_allclose(fe.mel_banks.numpy(), _kaldi_banks_ref(128, 1024, SR, 0.0, 15000.0), atol=1e-6)
    assert fe.mel_banks.shape == (128, 513) and float(fe.mel_banks[:, -1].abs().max()) == 0.0
    assert PasstFrontend(**fe.config()).config() == fe.config()


def test_training_band_jitter_ranges(monkeypatch):
    seen = []
    real = frontend_module.kaldi_mel_banks

    def spy(n_mels, n_fft, sr, fmin, fmax, **kw):
        seen.append((fmin, fmax))
        return real(n_mels, n_fft, sr, fmin, fmax, **kw)

    monkeypatch.setattr(frontend_module, "kaldi_mel_banks", spy)
    fe = PasstFrontend()
    torch.manual_seed(0)
    for _ in range(300):
        fe._train_banks(torch.device("cpu"))
    lows = np.array([s[0] for s in seen])
    highs = np.array([s[1] for s in seen])
    assert lows.min() >= 0 and lows.max() <= 9 and len(set(lows)) > 5
    assert highs.min() >= 14001 and highs.max() <= 16000 and highs.max() - highs.min() > 1000


def test_training_masks_are_per_example():
    torch.manual_seed(1)
    fe = PasstFrontend(fmin_aug_range=1, fmax_aug_range=1)  # masks only: same band as eval
    x = torch.from_numpy(np.stack([_signal(64000)] * 4))
    ref = fe.eval()(x)
    out = fe.train()(x)
    assert out.shape == ref.shape
    changed = ~torch.isclose(out, ref, atol=1e-6)
    # masked cells hold the normalised 0: (0 + 4.5) / 5
    assert torch.allclose(out[changed], torch.tensor(0.9), atol=1e-6)
    freq_rows = [set(torch.nonzero(changed[i, 0].all(dim=1)).flatten().tolist()) for i in range(4)]
    time_cols = [set(torch.nonzero(changed[i, 0].all(dim=0)).flatten().tolist()) for i in range(4)]
    assert any(r for r in freq_rows) and any(c for c in time_cols)
    assert len({frozenset(r) for r in freq_rows}) > 1 or len({frozenset(c) for c in time_cols}) > 1
    assert all(len(r) < 48 for r in freq_rows) and all(len(c) < 192 for c in time_cols)


def test_bad_parameters_and_inputs():
    with pytest.raises(InvalidParameterError):
        PasstFrontend(dft="fftw")
    with pytest.raises(InvalidParameterError):
        PasstFrontend(fmin=16000.0, fmax=15000.0)
    with pytest.raises(InvalidParameterError):
        PasstFrontend(win_length=2048)
    with pytest.raises(InvalidParameterError):
        PasstFrontend(fmax=16000.0)  # the +1000 Hz training jitter would pass Nyquist
    with pytest.raises(InvalidParameterError):
        PasstFrontend()(torch.zeros(1, 1))
    with pytest.raises(InvalidParameterError):
        PasstFrontend()(torch.zeros(1, 2, 100))


def test_matmul_front_end_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from audioforge.features.onnx_export import export_feature_onnx

    fe = PasstFrontend(dft="matmul").eval()
    path = export_feature_onnx(fe, tmp_path / "passt_frontend.onnx", example_samples=32000)
    session = ort.InferenceSession(str(path))
    x = np.stack([_signal(48123), _signal(48123)])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(out, fe(torch.from_numpy(x)).numpy(), atol=1e-4, rtol=0)
