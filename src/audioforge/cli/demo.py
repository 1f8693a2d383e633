"""``audioforge demo``: the shipped defaults on a generated sample, with timings and pictures."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import typer

from . import app


def _median_ms(fn: Callable[[], object], calls: int = 20) -> float:
    fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _sample(sr: int = 16000) -> np.ndarray:
    """A spoken sentence (flite, installed by the set-up) followed by a rising harmonic melody."""
    from ..corpora.tts import synthesize_one

    speech = synthesize_one("audioforge turns waveforms into features in microseconds.", "flite-slt",
                            sr=sr)
    t = np.arange(int(1.5 * sr)) / sr
    f0 = 220.0 * 2 ** (np.floor(t / 0.25) / 12 * 2)  # a whole-tone scale, quarter-second notes
    phase = 2 * np.pi * np.cumsum(f0) / sr
    melody = sum(0.15 / k * np.sin(k * phase) for k in range(1, 6)) * np.minimum(1.0, 20 * (t % 0.25))
    y = np.concatenate([speech, np.zeros(sr // 4, dtype=np.float32), melody.astype(np.float32)])
    return (0.9 * y / max(1e-9, np.abs(y).max())).astype(np.float32)


@app.command()
def demo(out: Path = typer.Option(Path("out/demo"), help="Folder for the demo's files.")) -> None:
    """Run every shipped component on generated input: features, tagging, streaming ASR, DDSP timbre transfer."""
    import librosa
    import torch
    from rich.console import Console
    from rich.table import Table

    from ..audio import save
    from ..features import melspectrogram, power_to_db
    from ..features.kaldi import kaldi_fbank
    from ..plotting import plot_spectrogram

    console = Console(width=110)
    torch.set_num_threads(1)
    try:  # numpy's BLAS too (librosa's mel product): "one thread" for both sides of the comparison
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with librosa's scikit-learn
        pass
    out.mkdir(parents=True, exist_ok=True)
    sr = 16000
    y = _sample(sr)
    wav = save(out / "sample.wav", y, sr)
    console.print(f"[bold]sample[/bold]: {wav} ({y.size / sr:.2f} s at {sr} Hz: speech, then a melody)")

    cfg = dict(sr=sr, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
    logmel = power_to_db(melspectrogram(y, **cfg))
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, **cfg))
    one_s = y[:sr]
    table = Table(title="features of a 1 s clip (one thread, median of 20 calls)")
    for col in ("feature", "audioforge ms", "peer", "peer ms", "speed-up"):
        table.add_column(col)
    ours = _median_ms(lambda: melspectrogram(one_s, **cfg))
    lib = _median_ms(lambda: librosa.feature.melspectrogram(y=one_s, **cfg))
    table.add_row("mel 80 (16k, 800/200)", f"{ours:.3f}", "librosa", f"{lib:.3f}", f"{lib / ours:.1f}x")
    x = one_s * 32768.0
    fb = _median_ms(lambda: kaldi_fbank(x, num_mel_bins=80, energy_floor=0.0))
    try:
        import kaldi_native_fbank as knf

        opts = knf.FbankOptions()
        opts.frame_opts.dither = 0.0
        opts.mel_opts.num_bins = 80
        opts.energy_floor = 0.0

        def peer() -> None:
            f = knf.OnlineFbank(opts)
            f.accept_waveform(sr, x)
            f.input_finished()
            [f.get_frame(i) for i in range(f.num_frames_ready)]

        pk = _median_ms(peer)
        table.add_row("Kaldi fbank 80 (WeNet)", f"{fb:.3f}", "kaldi-native-fbank", f"{pk:.3f}", f"{pk / fb:.1f}x")
    except ImportError:
        table.add_row("Kaldi fbank 80 (WeNet)", f"{fb:.3f}", "-", "-", "-")
    console.print(table)
    err = float(np.max(np.abs(logmel - ref)))
    console.print(f"log-mel (dB) max |audioforge - librosa| over the whole sample: {err:.1e} dB")
    np.save(out / "logmel.npy", logmel)
    png = plot_spectrogram(logmel, out / "logmel.png", sr=sr, hop_length=200, title="sample.wav: log-mel (80 bands)")
    console.print(f"[bold]spectrogram[/bold]: {png}")
    _demo_tagging(out, console)
    _demo_speech(out, console)
    _demo_transfer(out, console)


DEMO_SENTENCE = "the weather will be warm and sunny this afternoon with a light breeze from the south"


def _demo_speech(out: Path, console: object) -> None:
    """Stream a generated utterance, in a voice held out of the ASR training split, through the shipped recogniser."""
    from ..audio import save
    from ..bundle import Bundle, available_bundles
    from ..corpora.tts import synthesize_one
    from .asr import transcribe

    if "asr" not in available_bundles():
        console.print("[bold]speech recognition[/bold]: no ASR model ships in this version "  # type: ignore[attr-defined]
                      "(recipes/asr trains it)")
        return
    sr = 16000
    wav = save(out / "speech.wav", synthesize_one(DEMO_SENTENCE, "flite-kal", sr=sr), sr)
    metrics = Bundle.load("asr").metrics
    stream = (metrics.get("test") or {}).get("u2 streaming chunk 16") or {}
    quality = f"held-out streaming CER {stream['cer']:.1f}%, WER {stream['wer']:.1f}%" if stream else ""
    console.print(  # type: ignore[attr-defined]
        f"[bold]speech recognition[/bold] (shipped recogniser{', ' + quality if quality else ''}"
        f"{', an interim model' if metrics.get('interim') else ''}) streaming {wav}, flite-kal "
        f"(a voice held out of training) saying: {DEMO_SENTENCE!r}"
    )
    transcribe(file=wav, bundle="asr", as_json=False, stream=True, backend="torch", chunk_s=0.32, realtime=False)


def _demo_tagging(out: Path, console: object) -> None:
    """Tag a held-out generated sound-event clip with the shipped tagger and draw its timeline."""
    from ..audio import save
    from ..corpora.events import plan_event_jobs, render_event_clip
    from .tagging import tag

    job = next(j for j in plan_event_jobs(10, seed=2026) if j.get("split") == "test")
    audio, entry = render_event_clip(job)
    wav = save(out / "events_clip.wav", audio, entry["sr"])
    truth = ", ".join(sorted(entry["labels"]))
    console.print(f"[bold]tagging[/bold] (shipped tagger) {wav}: the clip mixes {truth}")  # type: ignore[attr-defined]
    tag(file=wav, bundle="tagger", top_k=5, timeline=out / "events_timeline.png", as_json=False)


def _demo_transfer(out: Path, console: object) -> None:
    """Timbre transfer with a shipped DDSP model: a generated violin melody re-played as a saxophone."""
    from ..audio import save
    from ..corpora.fluid import render_midi
    from ..corpora.melody import generate_melody
    from ..ddsp.transfer import raw_pitch_accuracy, timbre_transfer
    from ..features import melspectrogram, power_to_db
    from ..plotting import plot_spectrogram

    sr = 16000
    melody = render_midi(generate_melody("violin", 6.0, np.random.default_rng(7)), "FluidR3_GM", sr=sr)
    save(out / "melody_violin.wav", melody, sr)
    t0 = time.perf_counter()
    result = timbre_transfer(melody, "ddsp-sax", sr=sr, f0_method="yin")
    seconds = time.perf_counter() - t0
    wav = save(out / "melody_as_sax.wav", result.audio, result.sr)
    from ..ddsp.pitch import yin_f0

    f0_out, conf_out = yin_f0(result.audio, sr=result.sr)
    n = min(len(f0_out), len(result.f0_hz))
    voiced = (result.f0_hz[:n] > 0) & (conf_out[:n] > 0.5) & result.note[:n]
    rpa = raw_pitch_accuracy(result.f0_hz[:n][voiced], f0_out[:n][voiced]) if voiced.any() else float("nan")
    console.print(  # type: ignore[attr-defined]
        f"[bold]timbre transfer[/bold] (ddsp-sax): {wav} from {out / 'melody_violin.wav'}, "
        f"{melody.size / sr:.1f} s in {seconds:.2f} s, octave shift {result.octave_shift:+d} semitones, "
        f"output pitch within 50 cents of the target on {100 * rpa:.1f}% of voiced note frames"
    )
    both = np.concatenate([power_to_db(melspectrogram(melody, sr=sr, n_fft=1024, hop_length=256, n_mels=96)),
                           power_to_db(melspectrogram(result.audio, sr=sr, n_fft=1024, hop_length=256, n_mels=96))],
                          axis=0)
    png = plot_spectrogram(both, out / "transfer.png", sr=sr, hop_length=256,
                           title="violin input (lower half) and its saxophone rendering (upper half)")
    console.print(f"[bold]transfer spectrograms[/bold]: {png}")  # type: ignore[attr-defined]
