"""Kaldi fbank / MFCC: parity with kaldi-native-fbank, batching, dtypes, module, compile, ONNX, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from audioforge.errors import (
    AudioDTypeError,
    AudioForgeError,
    AudioShapeError,
    EmptyAudioError,
    InvalidParameterError,
    NonFiniteAudioError,
    UnsupportedSampleRateError,
)
from audioforge.features.kaldi import (
    KaldiFbank,
    kaldi_fbank,
    kaldi_mel_banks,
    kaldi_mfcc,
    kaldi_num_frames,
    kaldi_window,
)

knf = pytest.importorskip("kaldi_native_fbank")

EPS = float(np.finfo(np.float32).eps)


def _signal(sr: int, seconds: float = 0.3, *, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Noise plus two tones and a small DC offset, float32 in [-1, 1] (times ``scale``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = 0.1 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3100 * t)
    return ((x + 0.02) * 0.5 * scale).astype(np.float32)


def _knf_options(opts, sr: float, kw: dict) -> None:
    fo = opts.frame_opts
    fo.dither = 0.0
    fo.samp_freq = float(sr)
    fo.frame_length_ms = kw.get("frame_length", 25.0)
    fo.frame_shift_ms = kw.get("frame_shift", 10.0)
    fo.snip_edges = kw.get("snip_edges", True)
    fo.window_type = kw.get("window_type", "povey")
    fo.round_to_power_of_two = kw.get("round_to_power_of_two", True)
    fo.preemph_coeff = kw.get("preemphasis_coefficient", 0.97)
    fo.remove_dc_offset = kw.get("remove_dc_offset", True)
    fo.blackman_coeff = kw.get("blackman_coeff", 0.42)
    mo = opts.mel_opts
    mo.num_bins = kw.get("num_mel_bins", 23)
    mo.low_freq = kw.get("low_freq", 20.0)
    mo.high_freq = kw.get("high_freq", 0.0)
    opts.use_energy = kw.get("use_energy", False)
    opts.raw_energy = kw.get("raw_energy", True)
    opts.energy_floor = kw.get("energy_floor", 1.0)  # torchaudio's default; knf's is 0
    opts.htk_compat = kw.get("htk_compat", False)


def knf_fbank(x: np.ndarray, sr: float, **kw) -> np.ndarray:
    opts = knf.FbankOptions()
    _knf_options(opts, sr, kw)
    opts.use_log_fbank = kw.get("use_log_fbank", True)
    opts.use_power = kw.get("use_power", True)
    return _run_online(knf.OnlineFbank(opts), x, sr)


def knf_mfcc(x: np.ndarray, sr: float, **kw) -> np.ndarray:
    opts = knf.MfccOptions()
    _knf_options(opts, sr, kw)
    opts.num_ceps = kw.get("num_ceps", 13)
    opts.cepstral_lifter = kw.get("cepstral_lifter", 22.0)
    return _run_online(knf.OnlineMfcc(opts), x, sr)


def _run_online(comp, x: np.ndarray, sr: float) -> np.ndarray:
    comp.accept_waveform(float(sr), x)
    comp.input_finished()
    if comp.num_frames_ready == 0:
        return np.zeros((0, comp.dim), dtype=np.float32)
    return np.stack([comp.get_frame(i) for i in range(comp.num_frames_ready)])


def assert_log_close(ours: np.ndarray, ref: np.ndarray, *, atol: float = 1e-4, mel_cols: slice | None = None) -> None:
    """Log-domain comparison: ``atol`` plus the float32 rounding floor of weak bins.

    A float32 FFT rounds every bin to about eps times the frame's total power, so a mel bin holding a fraction p of
    it is only known to ~eps/p in log units (kaldi-native-fbank itself, being float32, shows this). The slack
    ``32 * eps * total / bin`` is below 1e-5 for bins holding more than ~40% of the frame's mel energy.
    """
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    slack = np.zeros_like(diff)
    if mel_cols is not None and diff.size:
        lin = np.exp(ref[..., mel_cols].astype(np.float64))
        slack[..., mel_cols] = 32 * EPS * lin.sum(-1, keepdims=True) / lin
    bad = diff > atol + slack
    assert not bad.any(), f"max diff {diff.max():.3g} at {np.unravel_index(diff.argmax(), diff.shape)}"


def _mel_cols(kw: dict) -> slice:
    if not kw.get("use_energy", False):
        return slice(None)
    return slice(0, -1) if kw.get("htk_compat", False) else slice(1, None)


# --------------------------------------------------------------------------------------------------------------
# Parity grid


def _grid() -> list[tuple[int, float, dict]]:
    base = {"energy_floor": 0.0}
    variations = [
        {},
        {"snip_edges": False},
        {"round_to_power_of_two": False},
        {"preemphasis_coefficient": 0.0},
        {"remove_dc_offset": False},
        {"use_energy": True},
        {"use_energy": True, "raw_energy": False},
        {"use_energy": True, "htk_compat": True, "energy_floor": 1.0},
        {"num_mel_bins": 40, "low_freq": 64.0, "high_freq": -400.0},
        {"num_mel_bins": 80, "high_freq": 3000.0},
        {"window_type": "hamming"},
        {"window_type": "hanning", "snip_edges": False},
        {"window_type": "rectangular", "preemphasis_coefficient": 0.0},
        {"window_type": "blackman", "blackman_coeff": 0.40},
        {"use_power": False},
        {"use_log_fbank": False, "use_energy": True},
        {"frame_length": 20.0, "frame_shift": 5.0},
    ]
    cases = []
    for sr, var in itertools.product((8000, 16000, 22050, 44100, 48000), variations):
        kw = {**base, **var}
        if sr == 22050 and not kw.get("round_to_power_of_two", True):
            continue  # 551-sample frames: odd FFT size, rejected (tested below)
        if sr == 8000 and kw.get("high_freq") == 3000.0:
            kw["num_mel_bins"] = 40  # 80 bins over 20..3000 Hz with 256-point FFT leaves bins empty
        cases.append((sr, 32768.0 if len(cases) % 2 else 1.0, kw))
    rng = np.random.default_rng(1)  # a few random combinations on top of the one-factor grid
    choices = {
        "snip_edges": [True, False],
        "round_to_power_of_two": [True, False],
        "preemphasis_coefficient": [0.0, 0.97],
        "remove_dc_offset": [True, False],
        "use_energy": [True, False],
        "raw_energy": [True, False],
        "window_type": ["povey", "hamming", "hanning", "rectangular", "blackman"],
        "num_mel_bins": [23, 40, 80],
        "energy_floor": [0.0, 1.0],
    }
    for _ in range(16):
        kw = {k: v[rng.integers(len(v))] for k, v in choices.items()}
        kw = {k: (v.item() if hasattr(v, "item") else v) for k, v in kw.items()}
        sr = int(rng.choice([16000, 44100, 48000]))
        cases.append((sr, float(rng.choice([1.0, 32768.0])), kw))
    return cases


@pytest.mark.parametrize(("sr", "scale", "kw"), _grid(), ids=lambda v: str(v) if not isinstance(v, dict) else "-")
def test_fbank_matches_kaldi_native_fbank(sr: int, scale: float, kw: dict) -> None:
    x = _signal(sr, 0.25, scale=scale)
    ref = knf_fbank(x, sr, **kw)
    ours = kaldi_fbank(x, sample_frequency=sr, **kw)
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
    if not kw.get("use_log_fbank", True):  # linear mel energies: compare their logs
        cols = _mel_cols(kw)
        ours, ref = ours.copy(), ref.copy()
        ours[..., cols] = np.log(np.maximum(ours[..., cols], EPS))
        ref[..., cols] = np.log(np.maximum(ref[..., cols], EPS))
    assert_log_close(ours, ref, mel_cols=_mel_cols(kw))


def test_wenet_configuration() -> None:
    """WeNet: x32768, 80 bins, 25/10 ms, povey, dither 0, energy_floor 0."""
    x = _signal(16000, 1.0, seed=3) * 32768.0
    kw = dict(num_mel_bins=80, frame_length=25.0, frame_shift=10.0, dither=0.0, energy_floor=0.0,
              sample_frequency=16000)  # fmt: skip
    ours = kaldi_fbank(torch.from_numpy(x), **kw)
    assert isinstance(ours, torch.Tensor) and ours.shape == (98, 80)
    assert_log_close(ours.numpy(), knf_fbank(x, 16000, num_mel_bins=80, energy_floor=0.0), mel_cols=slice(None))


def test_short_signals_and_reflection_match_knf() -> None:
    x = _signal(16000, 0.02, seed=5)[:57]  # shorter than half a frame: repeated reflections with snip_edges=False
    for n in (1, 57):
        ref = knf_fbank(x[:n], 16000, snip_edges=False, energy_floor=0.0)
        ours = kaldi_fbank(x[:n] + 0.0, snip_edges=False, energy_floor=0.0)
        assert ours.shape == ref.shape
        assert_log_close(ours, ref, mel_cols=slice(None))
    # snip_edges=True and too short for one frame: zero frames, as Kaldi and knf
    assert knf_fbank(x, 16000).shape == (0, 23)
    assert kaldi_fbank(x).shape == (0, 23)
    assert kaldi_fbank(torch.from_numpy(np.stack([x, x])), use_energy=True).shape == (2, 0, 24)


def test_frame_counts() -> None:
    for n in (399, 400, 401, 559, 560, 16000):
        assert kaldi_num_frames(n, 400, 160, True) == (0 if n < 400 else 1 + (n - 400) // 160)
        assert kaldi_num_frames(n, 400, 160, False) == (n + 80) // 160


# --------------------------------------------------------------------------------------------------------------
# Mel banks, windows, MFCC


@pytest.mark.parametrize(("sr", "bins", "low", "high", "warp"), [
    (16000, 23, 20.0, 0.0, 1.0),
    (16000, 80, 20.0, -400.0, 1.0),
    (16000, 40, 20.0, 0.0, 0.85),
    (16000, 40, 20.0, 0.0, 1.15),
    (8000, 23, 60.0, 3800.0, 0.9),
    (44100, 80, 0.0, 0.0, 1.1),
])  # fmt: skip
def test_mel_banks_match_knf_including_vtln(sr: int, bins: int, low: float, high: float, warp: float) -> None:
    mo, fo = knf.MelBanksOptions(), knf.FrameExtractionOptions()
    mo.num_bins, mo.low_freq, mo.high_freq = bins, low, high
    fo.samp_freq = float(sr)
    ref = knf.MelBanks(mo, fo, warp).get_matrix()
    n_fft = 1 << (int(sr * 0.025) - 1).bit_length()
    ours = kaldi_mel_banks(bins, n_fft, sr, low, high, vtln_warp=warp, include_nyquist=False).numpy()
    assert ours.shape == (bins, n_fft // 2)
    np.testing.assert_allclose(ours, ref[:, : n_fft // 2], atol=2e-5)
    full = kaldi_mel_banks(bins, n_fft, sr, low, high, vtln_warp=warp, dtype=torch.float64)
    assert full.shape == (bins, n_fft // 2 + 1) and full.dtype == torch.float64 and not full[:, -1].any()


def test_mel_banks_passt_layout() -> None:
    """PaSST: get_mel_banks(128, 1024, 32000, fmin, fmax, 100, -500) padded with one zero column."""
    m = kaldi_mel_banks(128, 1024, 32000, 0.0, 15500.0)
    assert m.shape == (128, 513) and m.dtype == torch.float32
    assert torch.all(m[:, -1] == 0) and torch.all(m.sum(1) > 0)
    # peak of each triangle at most 1, triangles ordered by centre frequency
    assert float(m.max()) <= 1.0
    assert torch.all(torch.diff(m.argmax(1)) >= 0)


def test_fbank_with_vtln_uses_warped_banks() -> None:
    x = _signal(16000, 0.2)
    a = kaldi_fbank(x, vtln_warp=0.9, use_log_fbank=False, dither=0.0)
    plain = kaldi_fbank(x, use_power=True, use_log_fbank=False)
    assert a.shape == plain.shape and not np.allclose(a, plain)
    with pytest.raises(InvalidParameterError, match="vtln"):
        kaldi_fbank(x, vtln_warp=0.9, vtln_low=10.0)  # vtln_low must exceed low_freq (20 Hz)


def test_windows() -> None:
    n = np.arange(400)
    a = 2 * np.pi * n / 399
    np.testing.assert_allclose(kaldi_window("povey", 400).numpy(), (0.5 - 0.5 * np.cos(a)) ** 0.85, atol=1e-12)
    np.testing.assert_allclose(kaldi_window("hanning", 400).numpy(), 0.5 - 0.5 * np.cos(a), atol=1e-12)
    np.testing.assert_allclose(kaldi_window("hamming", 400).numpy(), 0.54 - 0.46 * np.cos(a), atol=1e-12)
    bl = 0.4 - 0.5 * np.cos(a) + 0.1 * np.cos(2 * a)
    np.testing.assert_allclose(kaldi_window("blackman", 400, blackman_coeff=0.4).numpy(), bl, atol=1e-12)


@pytest.mark.parametrize("kw", [
    {},
    {"use_energy": True, "energy_floor": 0.0},
    {"use_energy": True, "raw_energy": False, "htk_compat": True},
    {"htk_compat": True, "cepstral_lifter": 0.0, "num_ceps": 23},
    {"num_mel_bins": 40, "num_ceps": 20, "window_type": "hamming"},
])  # fmt: skip
def test_mfcc_matches_knf(kw: dict) -> None:
    x = _signal(16000, 0.25, seed=2, scale=32768.0)
    ref = knf_mfcc(x, 16000, **kw)
    ours = kaldi_mfcc(x, **kw)
    assert ours.shape == ref.shape
    # cepstra mix all log bins: compare relative to the frame's coefficient scale
    np.testing.assert_allclose(ours, ref, atol=2e-4 * max(1.0, float(np.abs(ref).max())))


def test_mfcc_matches_float64_formula() -> None:
    x = _signal(16000, 0.2, seed=4).astype(np.float64)
    logmel = kaldi_fbank(x, num_mel_bins=23)
    m = np.arange(23)
    dct = np.sqrt(2 / 23) * np.cos(np.pi / 23 * (m + 0.5) * np.arange(13)[:, None])
    dct[0] = np.sqrt(1 / 23)
    lifter = 1 + 11 * np.sin(np.pi * np.arange(13) / 22)
    np.testing.assert_allclose(kaldi_mfcc(x), (logmel @ dct.T) * lifter, atol=1e-10)
    with pytest.raises(InvalidParameterError, match="num_ceps"):
        kaldi_mfcc(x, num_ceps=30)


# --------------------------------------------------------------------------------------------------------------
# Shapes, dtypes, batching, gradients


def test_batch_equals_items_and_kinds() -> None:
    x = np.stack([_signal(16000, 0.3, seed=s) for s in range(6)]).reshape(2, 3, -1)
    batched = kaldi_fbank(x, num_mel_bins=40, use_energy=True, subtract_mean=True)
    assert isinstance(batched, np.ndarray) and batched.shape == (2, 3, 28, 41)
    for i, j in itertools.product(range(2), range(3)):
        np.testing.assert_allclose(
            batched[i, j], kaldi_fbank(x[i, j], num_mel_bins=40, use_energy=True, subtract_mean=True), atol=1e-5
        )
    t = kaldi_fbank(torch.from_numpy(x), num_mel_bins=40, use_energy=True, subtract_mean=True)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), batched, atol=1e-5)


def test_float64_path() -> None:
    x = _signal(16000, 0.3)
    f64 = kaldi_fbank(x.astype(np.float64), num_mel_bins=80, energy_floor=0.0)
    assert f64.dtype == np.float64
    ref = knf_fbank(x, 16000, num_mel_bins=80, energy_floor=0.0)
    assert_log_close(f64, ref, mel_cols=slice(None))
    t = kaldi_fbank(torch.from_numpy(x).double(), num_mel_bins=80)
    assert t.dtype == torch.float64


def test_gradcheck_float64() -> None:
    x = torch.from_numpy(_signal(8000, 0.0175, seed=7).astype(np.float64)).requires_grad_(True)

    def f(y: torch.Tensor) -> torch.Tensor:
        return kaldi_fbank(y, sample_frequency=8000, num_mel_bins=6, use_energy=True, frame_length=12.5, frame_shift=5)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    g = kaldi_fbank(x, sample_frequency=8000, snip_edges=False).sum()
    g.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_dither_uses_generator() -> None:
    x = _signal(16000, 0.2)
    a = kaldi_fbank(x, dither=1e-3, generator=torch.Generator().manual_seed(0))
    b = kaldi_fbank(x, dither=1e-3, generator=torch.Generator().manual_seed(0))
    c = kaldi_fbank(x, dither=1e-3, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and np.abs(a - kaldi_fbank(x)).max() < 0.5


def test_min_duration() -> None:
    x = _signal(16000, 0.2)
    assert kaldi_fbank(x, min_duration=0.5).shape == (0, 23)
    assert kaldi_fbank(x, min_duration=0.1).shape == (18, 23)


def test_silence_is_floored() -> None:
    out = kaldi_fbank(np.zeros(1600, np.float32), use_energy=True, energy_floor=0.0)
    np.testing.assert_allclose(out, math.log(EPS), rtol=1e-6)
    out = kaldi_fbank(np.zeros(1600, np.float32), use_energy=True, energy_floor=2.0)
    np.testing.assert_allclose(out[:, 0], math.log(2.0), rtol=1e-6)


# --------------------------------------------------------------------------------------------------------------
# Module, compile, ONNX


@pytest.mark.parametrize("matmul", [False, True])
@pytest.mark.parametrize("kw", [
    {},
    {"use_energy": True, "raw_energy": False},
    {"snip_edges": False, "use_energy": True},
    {"use_power": False, "htk_compat": True, "use_energy": True},
])  # fmt: skip
def test_module_matches_function(matmul: bool, kw: dict) -> None:
    x = torch.from_numpy(np.stack([_signal(16000, 0.3, seed=s, scale=32768.0) for s in range(3)]))
    mod = KaldiFbank(num_mel_bins=80, energy_floor=0.0, use_matmul_dft=matmul, **kw)
    ref = kaldi_fbank(x, num_mel_bins=80, energy_floor=0.0, **kw)
    out = mod(x)
    assert out.shape == ref.shape
    assert_log_close(out.numpy(), ref.numpy(), atol=1e-4 if matmul else 1e-6, mel_cols=_mel_cols(kw))
    assert len(list(mod.buffers())) > 0 and mod.double()(x.double()).dtype == torch.float64


@pytest.mark.slow
def test_torch_compile_fullgraph() -> None:
    x = torch.from_numpy(np.stack([_signal(16000, 0.5, seed=s) for s in range(2)]))
    for matmul in (False, True):
        mod = KaldiFbank(num_mel_bins=80, use_matmul_dft=matmul)
        compiled = torch.compile(mod, fullgraph=True)
        torch.testing.assert_close(compiled(x), mod(x), atol=1e-4, rtol=1e-5)


def test_onnx_export_matmul_dft(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    mod = KaldiFbank(num_mel_bins=80, energy_floor=0.0, use_matmul_dft=True, use_energy=True).eval()
    path = tmp_path / "fbank.onnx"
    x = torch.from_numpy(np.stack([_signal(16000, 0.5, seed=1, scale=32768.0)]))
    torch.onnx.export(
        mod,
        (x,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["waveform"],
        output_names=["fbank"],
        dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "fbank": {0: "batch", 1: "frames"}},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seconds, seed in ((0.5, 1), (1.37, 2)):  # a length other than the traced one
        y = np.stack([_signal(16000, seconds, seed=seed, scale=32768.0) for _ in range(2)])
        (got,) = sess.run(None, {"waveform": y})
        want = mod(torch.from_numpy(y)).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.slow
def test_onnx_export_dynamo(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    mod = KaldiFbank(num_mel_bins=80, energy_floor=0.0, use_matmul_dft=True).eval()
    x = torch.from_numpy(np.stack([_signal(16000, 0.5, seed=s, scale=32768.0) for s in range(2)]))
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("samples", min=400, max=10**7)}
    torch.onnx.export(mod, (x,), str(tmp_path / "f.onnx"), dynamo=True, dynamic_shapes={"waveform": dims})
    sess = ort.InferenceSession(str(tmp_path / "f.onnx"), providers=["CPUExecutionProvider"])
    y = np.stack([_signal(16000, 0.77, seed=s, scale=32768.0) for s in range(3)])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: y})
    np.testing.assert_allclose(got, mod(torch.from_numpy(y)).numpy(), atol=1e-4)


# --------------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(("value", "error"), [
    (np.zeros(0, np.float32), EmptyAudioError),
    (np.array([0.0, np.nan] * 300, np.float32), NonFiniteAudioError),
    (np.array([0.0, np.inf] * 300), NonFiniteAudioError),
    (np.array(1.0, dtype=np.float32), AudioShapeError),
    (np.zeros(1600, np.int16), AudioDTypeError),
    (torch.zeros(1600, dtype=torch.int32), AudioDTypeError),
    ([0.0] * 1600, InvalidParameterError),
])  # fmt: skip
def test_bad_waveforms(value, error) -> None:
    with pytest.raises(error):
        kaldi_fbank(value)


@pytest.mark.parametrize(("kw", "match"), [
    ({"frame_length": -25.0}, "frame_length"),
    ({"frame_shift": 0.0}, "frame_shift"),
    ({"num_mel_bins": 0}, "num_mel_bins"),
    ({"num_mel_bins": 2}, "num_mel_bins"),
    ({"low_freq": 4000.0, "high_freq": 3000.0}, "low_freq"),
    ({"high_freq": 9000.0}, "high_freq"),
    ({"high_freq": -8000.0}, "high_freq"),
    ({"window_type": "kaiser"}, "window_type"),
    ({"preemphasis_coefficient": 1.5}, "preemphasis"),
    ({"dither": -1.0}, "dither"),
    ({"energy_floor": float("nan")}, "energy_floor"),
    ({"vtln_warp": 0.0}, "vtln_warp"),
    ({"num_mel_bins": 200}, "mel bin"),
    ({"sample_frequency": 22050, "round_to_power_of_two": False}, "odd"),
    ({"snip_edges": "yes"}, "snip_edges"),
])  # fmt: skip
def test_bad_options(kw: dict, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        kaldi_fbank(np.zeros(16000, np.float32), **kw)
    with pytest.raises(InvalidParameterError, match=match):
        KaldiFbank(**kw)


@pytest.mark.parametrize("sr", [0, -16000.0, float("nan"), "16k"])
def test_bad_sample_frequency(sr) -> None:
    with pytest.raises(UnsupportedSampleRateError, match="sample_frequency"):
        kaldi_fbank(np.zeros(16000, np.float32), sample_frequency=sr)


def test_errors_are_audioforge_errors() -> None:
    with pytest.raises(AudioForgeError):
        kaldi_mel_banks(23, 511, 16000, 20.0, 0.0)
    with pytest.raises(AudioForgeError):
        kaldi_window("hann", 400)
