"""``audioforge mel`` and ``audioforge fbank``: features of an audio file, saved as .npy and drawn as PNG."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer

from . import app


def _save_npy(path: Path, array: np.ndarray) -> None:
    from ..audio import atomic_path

    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.save(fh, array)


@app.command()
def mel(
    file: Path = typer.Argument(..., help="Audio file (wav, flac, ogg ...)."),
    out: Path | None = typer.Option(None, "--out", help="Write the features to this .npy file."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw the log-mel spectrogram to this PNG."),
    sr: int | None = typer.Option(None, help="Resample to this rate first (default: the file's rate)."),
    n_fft: int = typer.Option(2048, help="FFT size."),
    hop_length: int = typer.Option(512, help="Hop in samples."),
    win_length: int | None = typer.Option(None, help="Window length (default n_fft)."),
    n_mels: int = typer.Option(128, help="Mel bands."),
    fmin: float = typer.Option(0.0, help="Lowest frequency (Hz)."),
    fmax: float | None = typer.Option(None, help="Highest frequency (Hz; default sr/2)."),
    htk: bool = typer.Option(False, help="HTK mel scale instead of Slaney."),
    power: float = typer.Option(2.0, help="Exponent of the magnitude (2 = power)."),
    db: bool = typer.Option(True, help="Convert to dB (power_to_db, ref 1, top_db 80)."),
) -> None:
    """Mel spectrogram of FILE with librosa's semantics and defaults."""
    from ..audio import load
    from ..features import melspectrogram, power_to_db

    y, rate = load(file, sr=sr)
    t0 = time.perf_counter()
    spec = melspectrogram(y, sr=rate, n_fft=n_fft, hop_length=hop_length, win_length=win_length, n_mels=n_mels,
                       fmin=fmin, fmax=fmax, htk=htk, power=power)
    if db:
        spec = power_to_db(spec)
    ms = (time.perf_counter() - t0) * 1e3
    typer.echo(f"{file}: {y.size / rate:.2f} s at {rate} Hz -> mel {spec.shape[0]} x {spec.shape[1]} frames "
               f"in {ms:.2f} ms")
    if out is not None:
        _save_npy(out, spec)
        typer.echo(f"wrote {out}")
    if plot is not None:
        from ..plotting import plot_spectrogram

        plot_spectrogram(spec if db else np.log(spec + 1e-10), plot, sr=rate, hop_length=hop_length,
                         title=f"{file.name}: log-mel", colorbar_label="dB" if db else "log")
        typer.echo(f"wrote {plot}")


@app.command()
def fbank(
    file: Path = typer.Argument(..., help="Audio file (wav, flac, ogg ...)."),
    out: Path | None = typer.Option(None, "--out", help="Write the features to this .npy file."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw the filterbank to this PNG."),
    sample_frequency: int = typer.Option(16000, help="Resample to this rate first (Kaldi features are rate-bound)."),
    num_mel_bins: int = typer.Option(80, help="Mel bins (WeNet uses 80)."),
    frame_length: float = typer.Option(25.0, help="Frame length in ms."),
    frame_shift: float = typer.Option(10.0, help="Frame shift in ms."),
    dither: float = typer.Option(0.0, help="Dither (0 = deterministic)."),
    scale_int16: bool = typer.Option(True, help="Scale samples by 32768 first, as WeNet/Kaldi expect int16 range."),
) -> None:
    """Kaldi filterbank of FILE (WeNet's settings by default: 80 bins, 25/10 ms, povey window, energy floor 0)."""
    from ..audio import load
    from ..features.kaldi import kaldi_fbank

    y, rate = load(file, sr=sample_frequency)
    x = y * 32768.0 if scale_int16 else y
    t0 = time.perf_counter()
    feats = kaldi_fbank(x, num_mel_bins=num_mel_bins, frame_length=frame_length, frame_shift=frame_shift, dither=dither,
                    energy_floor=0.0, sample_frequency=float(rate))
    ms = (time.perf_counter() - t0) * 1e3
    typer.echo(f"{file}: {y.size / rate:.2f} s at {rate} Hz -> fbank {feats.shape[0]} frames x {feats.shape[1]} bins "
               f"in {ms:.2f} ms")
    if out is not None:
        _save_npy(out, feats)
        typer.echo(f"wrote {out}")
    if plot is not None:
        from ..plotting import plot_spectrogram

        hop = int(rate * frame_shift / 1000)
        plot_spectrogram(feats.T, plot, sr=rate, hop_length=hop, title=f"{file.name}: Kaldi fbank", ylabel="fbank bin",
                         colorbar_label="log energy")
        typer.echo(f"wrote {plot}")
