"""The nn.Module transforms (MelSpectrogram, LogMel, MFCC) against the functional API.

Tolerances: float32 within 1e-6 of the functional result relative to its maximum for dft="fft" and 3e-6 for
dft="matmul" and "factored" (float32 GEMMs accumulate n_fft products per bin: typically 3e-7 to 2.2e-6 here);
float64 within 1e-12; dB outputs within 1e-4 dB absolute.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import audioforge.features as F
from audioforge.errors import AudioForgeError, EmptyAudioError, InvalidParameterError
from audioforge.features.transforms import MFCC, LogMel, MelSpectrogram

RNG = np.random.default_rng(7)
TOL = {"fft": 1e-6, "matmul": 3e-6, "factored": 3e-6}


def _signal(*shape: int, dtype=np.float32) -> np.ndarray:
    n = shape[-1]
    t = np.arange(n) / 16000.0
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.1 * np.sin(2 * np.pi * 3100.0 * t * (1 + t))
    return (tone + 0.05 * RNG.standard_normal(shape)).astype(dtype)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


MEL_GRID = [
    dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0),
    dict(sr=16000, n_fft=512, hop_length=160, win_length=400, pad_mode="reflect", n_mels=64),
    dict(sr=22050, n_fft=511, hop_length=97, pad_mode="symmetric", power=1.0, htk=True, norm=None, n_mels=40),
    dict(sr=16000, n_fft=400, hop_length=100, pad_mode="edge", window="hamming", n_mels=40, power=1.5),
    dict(sr=16000, n_fft=256, hop_length=64, pad_mode="linear_ramp", n_mels=32, norm=1.0),
    dict(sr=16000, n_fft=256, hop_length=128, center=False, n_mels=24),
]


@pytest.mark.parametrize(("kw", "dft"), list(itertools.product(MEL_GRID, ["fft", "matmul", "factored"])))
def test_melspectrogram_module_matches_functional(kw, dft):
    y = _signal(2, 3000)
    module = MelSpectrogram(dft=dft, **kw)
    got = module(torch.from_numpy(y))
    ref = F.melspectrogram(y, **kw)
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert _rel(got.numpy(), ref) < TOL[dft]


@pytest.mark.parametrize("dft", ["fft", "matmul", "factored"])
@pytest.mark.parametrize("n", [1, 5, 300, 257])
def test_short_signals_and_multichannel_shapes(dft, n):
    # shorter than n_fft // 2: the general padding path (numpy's repeated reflection)
    kw = dict(sr=16000, n_fft=512, hop_length=128, pad_mode="reflect", n_mels=16)
    y = _signal(2, 3, n)
    got = MelSpectrogram(dft=dft, **kw)(torch.from_numpy(y))
    ref = F.melspectrogram(y, **kw)
    assert got.shape == ref.shape == (2, 3, 16, 1 + n // 128)
    assert _rel(got.numpy(), ref) < TOL[dft]


@pytest.mark.parametrize("dft", ["fft", "matmul", "factored"])
def test_double_is_float64_end_to_end(dft):
    kw = MEL_GRID[1]
    module = MelSpectrogram(dft=dft, **kw).double()
    assert module.mel_basis.dtype == module.window.dtype == torch.float64
    # rebuilt from the float64 definition, not the float32 basis cast up
    exact = F.mel_filterbank(sr=16000, n_fft=512, n_mels=64, dtype=np.float64)
    np.testing.assert_array_equal(module.mel_basis.numpy(), exact)
    y = _signal(3000, dtype=np.float64)
    got = module(torch.from_numpy(y))
    assert got.dtype == torch.float64
    assert _rel(got.numpy(), F.melspectrogram(y, **kw)) < 1e-12
    back = module.float()
    assert back.mel_basis.dtype == torch.float32
    np.testing.assert_array_equal(back.mel_basis.numpy(), F.mel_filterbank(sr=16000, n_fft=512, n_mels=64))


def test_to_device_moves_every_constant():
    module = MFCC(sr=16000, n_fft=256, hop_length=64, n_mels=20, n_mfcc=13, dft="matmul").to("meta")
    assert {b.device.type for b in module.buffers()} == {"meta"}
    out = module(torch.empty(2, 1000, device="meta"))
    assert out.shape == (2, 13, 1 + 1000 // 64) and out.device.type == "meta"
    assert module.state_dict() == {}  # constants are not persistent: nothing to load or to get out of date


@pytest.mark.parametrize("dft", ["fft", "matmul", "factored"])
@pytest.mark.parametrize(("ref", "amin", "top_db"), [(1.0, 1e-10, 80.0), (0.5, 1e-5, None), (2.0, 1e-10, 30.0)])
def test_logmel_matches_power_to_db(dft, ref, amin, top_db):
    kw = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40)
    y = _signal(2, 4000)
    y[1] *= 0.01  # a quiet second example: the global top_db floor is set by the first
    got = LogMel(ref=ref, amin=amin, top_db=top_db, dft=dft, **kw)(torch.from_numpy(y)).numpy()
    ref_db = F.power_to_db(F.melspectrogram(y, **kw), ref=ref, amin=amin, top_db=top_db)
    assert np.max(np.abs(got - ref_db)) < 1e-4


def test_logmel_top_db_per_example():
    kw = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40)
    y = _signal(2, 4000)
    y[1] *= 1e-3
    per = LogMel(top_db=40.0, top_db_per_example=True, **kw)(torch.from_numpy(y)).numpy()
    glob = LogMel(top_db=40.0, **kw)(torch.from_numpy(y)).numpy()
    mel = F.melspectrogram(y, **kw)
    for i in range(2):
        expected = F.power_to_db(mel[i], top_db=40.0)  # one example: librosa's global max is that example's max
        assert np.max(np.abs(per[i] - expected)) < 1e-4
        assert per[i].max() - per[i].min() <= 40.0 + 1e-4
    # librosa's global floor comes from the loud example: the quiet one (60 dB down) is clamped flat to it
    floor = glob.max() - 40.0
    assert glob.min() >= floor - 1e-4
    np.testing.assert_allclose(glob[1], floor, atol=1e-4)
    assert per[1].max() < floor


@pytest.mark.parametrize("dft", ["fft", "matmul", "factored"])
@pytest.mark.parametrize(
    "kw",
    [
        dict(sr=16000, n_fft=512, hop_length=160, n_mels=40, n_mfcc=13),
        dict(sr=16000, n_fft=400, hop_length=160, n_mels=40, n_mfcc=20, lifter=22.0, dct_type=3),
        dict(sr=22050, n_fft=512, hop_length=128, n_mels=32, n_mfcc=12, norm=None, mel_norm=None, dct_type=1),
    ],
)
def test_mfcc_matches_functional(dft, kw):
    y = _signal(2, 4000)
    got = MFCC(dft=dft, **kw)(torch.from_numpy(y)).numpy()
    ref = F.mfcc(y=y, **kw)
    assert got.shape == ref.shape
    assert _rel(got, ref) < 1e-5  # dB values through a DCT: float32 rounding of values in the hundreds


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (MelSpectrogram, dict(dft="rfft")),
        (MelSpectrogram, dict(n_fft=0)),
        (MelSpectrogram, dict(n_fft=256, win_length=512)),
        (MelSpectrogram, dict(pad_mode="wrap")),
        (MelSpectrogram, dict(power=0.0)),
        (MelSpectrogram, dict(fmax=30000.0)),
        (MelSpectrogram, dict(norm="l2")),
        (MelSpectrogram, dict(window="no-such-window")),
        (MelSpectrogram, dict(dtype=torch.int32)),
        (MelSpectrogram, dict(center="yes")),
        (LogMel, dict(ref="max")),
        (LogMel, dict(amin=0.0)),
        (LogMel, dict(top_db=-1.0)),
        (LogMel, dict(y=np.zeros(10))),
        (MFCC, dict(n_mfcc=200, n_mels=40)),
        (MFCC, dict(dct_type=4)),
        (MFCC, dict(lifter=-1.0)),
    ],
)
def test_bad_parameters_raise_in_init(cls, kwargs):
    with pytest.raises(AudioForgeError):
        cls(**kwargs)


def test_center_false_short_input_raises_and_validate():
    module = MelSpectrogram(n_fft=512, center=False)
    with pytest.raises(EmptyAudioError):
        module(torch.zeros(100))
    with pytest.raises(AudioForgeError):
        module.validate(torch.tensor([0.0, float("nan")] * 300))
    assert isinstance(InvalidParameterError("x"), AudioForgeError)


def test_factored_dft_needs_a_composite_n_fft():
    with pytest.raises(InvalidParameterError, match="prime"):
        MelSpectrogram(sr=16000, n_fft=257, hop_length=64, n_mels=20, dft="factored")
    with pytest.raises(InvalidParameterError, match="factored"):
        MelSpectrogram(sr=16000, n_fft=256, hop_length=64, n_mels=20, dft="fast")


@pytest.mark.parametrize("n_fft", [4, 9, 15, 400, 511, 800, 1000, 1024, 2048])
def test_factored_power_against_float64_fft(n_fft):
    from audioforge.features.dft import factored_power, factored_rdft_bases, rdft_factors

    p, q = rdft_factors(n_fft)
    assert p * q == n_fft and 2 <= p <= q
    frames = torch.from_numpy(RNG.standard_normal((2, 7, n_fft)))
    ref = torch.fft.rfft(frames).abs().square()
    got = factored_power(frames, *factored_rdft_bases(n_fft, dtype=torch.float64))
    assert got.shape == ref.shape and _rel(got, ref) < 1e-13
    got32 = factored_power(frames.float(), *factored_rdft_bases(n_fft))
    assert _rel(got32, ref) < 2e-6
    with pytest.raises(InvalidParameterError, match="frames must have shape"):
        factored_power(frames[..., :-1], *factored_rdft_bases(n_fft, dtype=torch.float64))


def test_gradcheck_float64():
    y = torch.from_numpy(_signal(2, 40, dtype=np.float64)).requires_grad_(True)
    for dft in ("fft", "matmul", "factored"):
        mel = MelSpectrogram(sr=16000, n_fft=16, hop_length=4, n_mels=4, pad_mode="reflect", dft=dft).double()
        assert torch.autograd.gradcheck(mel, (y,), eps=1e-6, atol=1e-6)
    logmel = LogMel(sr=16000, n_fft=16, hop_length=8, n_mels=4, top_db=None, dft="matmul").double()
    assert torch.autograd.gradcheck(logmel, (y,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("cls", [MelSpectrogram, LogMel, MFCC])
def test_forward_has_no_graph_breaks(cls):
    # a graph break (.item(), data-dependent branch, host sync) would show up here; fullgraph compile is slower
    module = cls(sr=16000, n_fft=256, hop_length=64, n_mels=20, pad_mode="reflect")
    explanation = torch._dynamo.explain(module)(torch.randn(2, 2000))
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "dft"), [(LogMel, "matmul"), (MelSpectrogram, "fft")])
def test_torch_compile_fullgraph_matches_eager(cls, dft):
    module = cls(sr=16000, n_fft=400, hop_length=160, n_mels=40, pad_mode="reflect", dft=dft)
    compiled = torch.compile(module, fullgraph=True)
    x = torch.from_numpy(_signal(2, 8000))
    ref = module(x)
    got = compiled(x)
    scale = 1.0 if cls is LogMel else float(ref.abs().max())
    assert float((got - ref).abs().max()) / scale < 1e-5
