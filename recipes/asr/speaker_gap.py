"""How much of the test error is the unseen speaker? Same held-out sentences, every natural voice, clean audio.

The test split mixes two things a model has never met: new sentences and new speakers. This diagnostic separates
them. It takes the first N transcripts of the corpus's test split (sentences no training utterance says), speaks
each with every natural-sounding voice of the catalogue, the held-out ones and the training ones, without
augmentation (a fixed -25 dBFS RMS), and scores the bundle's streaming recogniser on each voice. Training voices
then measure the sentence effect alone; the gap between them and the held-out voices is the speaker effect.

Usage::

    python recipes/asr/speaker_gap.py asr --utterances 40          # the shipped model
    python recipes/asr/speaker_gap.py ~/.cache/audioforge/recipes/asr/train/bundle --out /tmp/gap

Writes ``speaker_gap.json`` and ``speaker_gap.png`` into ``--out`` (default: the work dir).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_WORK = Path("~/.cache/audioforge/recipes/asr").expanduser()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="ASR bundle folder or shipped name")
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="recipe work dir (its corpus/ is read)")
    ap.add_argument("--utterances", type=int, default=40, help="test transcripts to speak with every voice")
    ap.add_argument("--voices", default=None,
                    help="comma-separated voice names (default: every non-espeak voice but the Kokoro blends)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: --work-dir)")
    ap.add_argument("--with-extra", action="store_true",
                    help="the bundle was also trained on the supplements the work dir's training used "
                         "(train/train_config.json's extra_train_manifests; their speakers count as seen)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from rich.progress import track

    from audioforge.asr.evaluate import error_rates, normalize_text
    from audioforge.asr.infer import Recognizer
    from audioforge.audio import atomic_path
    from audioforge.corpora.manifest import Manifest
    from audioforge.corpora.tts import VOICES, get_voice, synthesize
    from audioforge.plotting import save_figure

    torch.set_num_threads(1)
    manifest = Manifest.load(args.work_dir / "corpus" / "manifest.jsonl")
    test = [e for e in manifest if e["split"] == "test"]
    train_speakers = {e["speaker"] for e in manifest if e["split"] == "train"}
    if args.with_extra:
        used = json.loads((args.work_dir / "train" / "train_config.json").read_text(encoding="utf-8"))
        for extra in used.get("extra_train_manifests") or []:  # what training read, not every folder lying there
            train_speakers |= {e["speaker"] for e in Manifest.load(extra)}
    texts: list[str] = []
    for e in test:  # distinct transcripts, in manifest order
        if e["txt"] not in texts:
            texts.append(e["txt"])
        if len(texts) == args.utterances:
            break
    names = args.voices.split(",") if args.voices else [n for n, v in VOICES.items()
                                                        if v.engine not in ("espeak-ng", "kokoro-blend")]
    rec = Recognizer.from_bundle(args.bundle)
    refs = [normalize_text(t) for t in texts]
    rows = []
    for name in names:
        voice = get_voice(name)
        t0 = time.perf_counter()
        hyps = []
        for y in track(synthesize(texts, voice, sr=16000), description=f"{name:<22}", transient=True):
            y = y * np.float32(10 ** (-25 / 20) / max(1e-6, float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))))
            hyps.append(normalize_text(rec.transcribe(y, 16000, simulate_streaming=True).text))
        r = error_rates(refs, hyps)
        seen = voice.speaker in train_speakers
        rows.append({"voice": name, "speaker": voice.speaker, "engine": voice.engine,
                     "seen_in_training": seen, "cer": round(r["cer"], 2), "wer": round(r["wer"], 2)})
        print(f"{name:<22} {'training' if seen else 'HELD OUT':<9} CER {r['cer']:6.2f}  WER {r['wer']:6.2f}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    out = args.out or args.work_dir
    out.mkdir(parents=True, exist_ok=True)
    report = {"bundle": str(args.bundle), "utterances": len(texts), "streaming": True, "voices": rows}
    with atomic_path(out / "speaker_gap.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    colors = ["tab:blue" if r["seen_in_training"] else "tab:red" for r in rows]
    ax.bar([r["voice"] for r in rows], [r["cer"] for r in rows], color=colors)
    ax.set_ylabel("streaming CER (%)")
    ax.set_title(f"Same {len(texts)} held-out sentences: training voices (blue) vs held-out voices (red)")
    ax.tick_params(axis="x", rotation=45)
    for lab in ax.get_xticklabels():
        lab.set_horizontalalignment("right")
    fig.tight_layout()
    save_figure(fig, out / "speaker_gap.png")
    print(f"wrote {out / 'speaker_gap.json'} and {out / 'speaker_gap.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
