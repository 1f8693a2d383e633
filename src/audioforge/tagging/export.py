"""Exporting a PaSST tagger to ONNX, int8 quantization, and scoring a tagger (torch or ONNX) on a manifest.

The exported graph is the whole inference path: waveform ``(batch, samples)`` at the bundle's rate ->
:class:`~audioforge.tagging.PasstFrontend` with ``dft="matmul"`` (no complex tensors) -> PaSST, with outputs
``logits (batch, classes)`` and ``embeddings (batch, D)``. Both the batch and the sample axes are dynamic (inputs
from one patch, about 0.15 s, up to the span of the time embeddings, 10 s for the shipped models). Generic work
(export, check, parity, quantization) is done by :mod:`audioforge.deploy`; this module adds what is specific to
tagging: the wrapper module, the metadata (labels, rate, ``multi_label``), calibration on training clips, and
:func:`evaluate_tagger`, which scores a bundle (torch) or an ``.onnx`` file on the clips of a manifest with the
metrics of :mod:`audioforge.tagging.metrics`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..bundle import Bundle
from ..corpora.manifest import Manifest
from ..errors import CheckpointError, InvalidParameterError, ManifestError
from ..features.dft import factored_power, factored_rdft_bases, rdft_factors
from .data import load_clip, load_labels, multi_hot
from .frontend import PasstFrontend
from .infer import build_tagging_modules
from .metrics import accuracy, multilabel_metrics
from .model import PaSST

__all__ = [
    "TaggingGraph",
    "activation_matmuls",
    "evaluate_tagger",
    "evaluate_variants",
    "export_all",
    "export_tagger_onnx",
    "frontend_nodes",
    "quantize_tagger",
    "verify_tagger_onnx",
]

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("logits", "embeddings")


def _frames(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """``x.unfold(-1, n_fft, hop)`` from hop-sized blocks: the signal, cut to a whole number of blocks, is reshaped
    to ``(blocks, hop)`` and ``ceil(n_fft / hop)`` shifted slices of it are concatenated and trimmed to ``n_fft``.
    The same frames as ``unfold``, which exports as a Gather over an index tensor (in onnxruntime the slowest node of
    the whole tagger); this exports as Reshape/Slice/Concat."""
    k = -(-n_fft // hop)
    t = (x.shape[-1] - n_fft) // hop + 1
    # padded by more than the last frame needs, so that the cut is never provably empty: torch.export would drop
    # it for the traced lengths and the graph would then fail on the others
    x = torch.nn.functional.pad(x, (0, k * hop))[..., : (t + k - 1) * hop]
    blocks = x.reshape(*x.shape[:-1], t + k - 1, hop)
    return torch.cat([blocks[..., j : j + t, :] for j in range(k)], dim=-1)[..., :n_fft]


class TaggingGraph(nn.Module):
    """Front end + PaSST as one export-friendly module: ``waveform (batch, n)`` -> ``(logits, embeddings)``.

    It computes exactly what ``model(frontend(waveform))`` computes in evaluation mode, written so that
    ``torch.export`` can keep the sample axis symbolic and the graph has no complex tensors: for a composite
    ``n_fft`` (PaSST's 1024) the windowed frames go through the factored DFT
    (:func:`~audioforge.features.dft.factored_power`, two small matmuls), otherwise a strided ``conv1d`` applies the
    windowed real-DFT basis (:class:`PasstFrontend` with ``dft="matmul"``); the time embeddings are sliced with the
    bound ``t <= T`` stated to the tracer. Inputs need at least two time patches
    (``min_samples``, 0.25 s at 32 kHz) and at most ``max_samples`` (the span of the time embeddings).
    """

    def __init__(self, model: PaSST, frontend: PasstFrontend) -> None:
        super().__init__()
        cfg = frontend.config()
        self.frontend = PasstFrontend(**cfg, dft="matmul").eval()
        self.model = model.eval()
        self.factored = rdft_factors(self.frontend.n_fft) is not None
        if self.factored:  # the DFT as two small matmuls (features.dft.factored_power): ~7x less work at 1024
            stage1, stage2 = factored_rdft_bases(self.frontend.n_fft, dtype=torch.float64)
            self.register_buffer("stage1", stage1.float(), persistent=False)
            self.register_buffer("stage2", stage2.float(), persistent=False)
        else:
            basis = self.frontend.dft_basis  # (n_fft, 2 * bins): [re | im]
            self.register_buffer("kernels", basis.t().unsqueeze(1).contiguous(), persistent=False)
        self.min_samples = self.frontend.min_samples_for_frames(model.patch_size + model.stride[1])
        self.max_samples = self.frontend.min_samples_for_frames(model.max_frames + 1) - 1

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fe, m = self.frontend, self.model
        x = waveform[:, 1:] - fe.preemphasis * waveform[:, :-1]
        pad = fe.n_fft // 2
        x = torch.nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect")
        if self.factored:
            frames = _frames(x[:, 0], fe.n_fft, fe.hop_length) * fe.window  # (batch, frames, n_fft)
            power = factored_power(frames, self.stage1, self.stage2).transpose(1, 2)  # (batch, bins, frames)
        else:
            spec = torch.nn.functional.conv1d(x, self.kernels, stride=fe.hop_length)  # (batch, 2 * bins, frames)
            half = spec.shape[1] // 2
            re, im = spec[:, :half], spec[:, half:]
            power = re * re + im * im
        mel = torch.matmul(fe.mel_banks, power)
        mel = ((torch.log(mel + 1e-5) + 4.5) / 5.0).unsqueeze(1)
        tok = m.patch_embed(mel)  # (batch, D, f, t)
        t = tok.shape[-1]
        torch._check(t >= 2)
        torch._check(t <= m.time_new_pos_embed.shape[-1])
        steps = torch.arange(t, device=tok.device)
        tok = tok + m.time_new_pos_embed.index_select(3, steps) + m.freq_new_pos_embed  # no strided view of t
        b, d = tok.shape[0], tok.shape[1]
        tok = tok.permute(0, 2, 3, 1).reshape(b, tok.shape[2] * t, d)  # (batch, f * t, D), frequency-major
        cls = m.cls_token.expand(b, -1, -1) + m.new_pos_embed[:, :1, :]
        dist = m.dist_token.expand(b, -1, -1) + m.new_pos_embed[:, 1:, :]
        out = m.norm(m.blocks(torch.cat((cls, dist, tok), dim=1)))
        features = (out[:, 0] + out[:, 1]) / 2
        return m.head(features), features


def _bundle(bundle: Bundle | str | os.PathLike[str]) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)


def _graph(bundle: Bundle) -> TaggingGraph:
    state = {k: v.clone() for k, v in bundle.state_dict.items()}
    copy = Bundle(task=bundle.task, architecture=bundle.architecture, hyperparameters=bundle.hyperparameters,
                  state_dict=state, frontend=bundle.frontend, labels=bundle.labels, options=bundle.options)
    model, frontend = build_tagging_modules(copy)
    return TaggingGraph(model, frontend).eval()


def export_tagger_onnx(bundle: Bundle | str | os.PathLike[str], path: str | os.PathLike[str], *,
                       example_seconds: float = 10.0, verify: bool = True, opset: int = 18) -> Path:
    """Export a tagging bundle's inference path (front end + transformer) to one ONNX file.

    Parameters
    ----------
    bundle
        A :class:`Bundle`, a bundle folder or a shipped bundle name.
    path
        The ``.onnx`` file to write.
    example_seconds
        Length of the example input used for tracing (the sample axis stays dynamic).
    opset
        ONNX opset; 18 is what torch's dynamo exporter builds (asking for 17 makes it try a down-conversion that
        fails for ``Pad`` and keeps 18 anyway).
    verify
        Check onnxruntime against torch on three input lengths (see :func:`verify_tagger_onnx`; raises on mismatch).

    Raises
    ------
    CheckpointError
        Not a tagging bundle, or the export or the parity check failed.
    """
    from .. import deploy

    b = _bundle(bundle)
    graph = _graph(b)
    sr = graph.frontend.sample_rate
    max_seconds = graph.max_samples / sr
    if not graph.min_samples / sr <= example_seconds <= max_seconds:
        raise InvalidParameterError(
            f"example_seconds={example_seconds} must be in [{graph.min_samples / sr:.3f}, {max_seconds:.3f}]")
    # torch.export traces the sample axis as n = step * p + base (p + 1 time patches): linear in one symbol, so every
    # shape guard of the graph is provable; the ONNX graph computes its shapes at run time and takes any length in
    # [min_samples, max_samples] (checked by verify_tagger_onnx on lengths that are not of that form).
    step = graph.model.stride[1] * graph.frontend.hop_length
    base = graph.frontend.min_samples_for_frames(graph.model.patch_size)
    p_max = graph.model.grid_size[1] - 1
    p_ex = min(max(round((example_seconds * sr - base) / step), 1), p_max)
    g = torch.Generator().manual_seed(0)
    example = 0.1 * torch.randn(2, step * p_ex + base, generator=g)
    meta = {"audioforge.task": "tagging", "sample_rate": sr, "multi_label": bool(b.options.get("multi_label", True)),
            "labels": json.dumps(list(b.labels)), "architecture": b.architecture,
            "min_samples": graph.min_samples, "max_samples": graph.max_samples}
    from torch.export import Dim

    patches = Dim("patches", min=1, max=p_max)
    shapes = ({0: Dim("batch", min=1, max=4096), 1: step * patches + base},)
    out = deploy.export_onnx(graph, (example,), path, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                             dynamic_shapes=shapes, opset=opset, metadata=meta)
    if verify:
        verify_tagger_onnx(graph, out)
    return out


def verify_tagger_onnx(graph_or_bundle: TaggingGraph | Bundle | str | os.PathLike[str],
                       path: str | os.PathLike[str], *, seconds: Sequence[float] | None = None,
                       rtol: float = 1e-3, atol: float = 1e-4) -> Any:
    """onnxruntime vs torch on noise inputs (batch 2); returns the deploy ``VerifyReport`` (raises on mismatch).

    ``seconds`` defaults to three lengths: the longest input the model takes, about half of it and a short one,
    none of them of the traced form, so the dynamic sample axis is exercised.

    Raises
    ------
    InvalidParameterError
        A length outside what the model accepts.
    """
    from .. import deploy

    graph = graph_or_bundle if isinstance(graph_or_bundle, TaggingGraph) else _graph(_bundle(graph_or_bundle))
    sr = graph.frontend.sample_rate
    if seconds is None:
        lengths = [graph.max_samples, graph.max_samples // 2 + 123, graph.min_samples + 777]
    else:
        lengths = [round(s * sr) for s in seconds]
    bad = [n for n in lengths if not graph.min_samples <= n <= graph.max_samples]
    if bad:
        raise InvalidParameterError(
            f"input lengths {bad} samples are outside [{graph.min_samples}, {graph.max_samples}] that the model takes")
    g = torch.Generator().manual_seed(1)
    inputs = [(0.1 * torch.randn(2, n, generator=g),) for n in lengths]
    return deploy.verify_onnx(graph, path, inputs, rtol=rtol, atol=atol)


def _manifest(manifest: Manifest | str | os.PathLike[str]) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)


def _calibration(manifest: Manifest, sr: int, n: int, clips: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(manifest), size=min(clips, len(manifest)), replace=False)
    return [{INPUT_NAME: load_clip(manifest.audio_path(manifest[int(i)]), sample_rate=sr, n_samples=n)[None]}
            for i in sorted(idx)]


def frontend_nodes(model: Any) -> list[str]:
    """Names of the front-end nodes of an exported tagger (``onnx.ModelProto`` or path): those that read the DFT
    bases (``kernels``, or the factored ``stage1``/``stage2``) or the front end's window and mel banks. They are kept
    in float by :func:`quantize_tagger`: int8 frames or spectra would put the quantization noise floor of the audio
    itself into the log-mels."""
    from .. import deploy

    proto = deploy.load_onnx(model) if isinstance(model, (str, os.PathLike)) else model
    consts = {i.name for i in proto.graph.initializer
              if i.name in ("kernels", "stage1", "stage2") or i.name.startswith("frontend.")}
    return [n.name for n in proto.graph.node if n.name and any(i in consts for i in n.input)]


def activation_matmuls(model: Any) -> list[str]:
    """MatMul nodes with no constant operand (attention's ``q k^T`` and ``softmax v``). Static int8 keeps them
    float: fixed int8 ranges on attention scores and probabilities wrecked the embeddings (cosine ~0.5 to the
    float model in our tests, 0.9998 with them in float)."""
    from .. import deploy

    proto = deploy.load_onnx(model) if isinstance(model, (str, os.PathLike)) else model
    consts = {i.name for i in proto.graph.initializer}
    consts |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in proto.graph.node if n.op_type == "MatMul" and n.name
            and not any(i in consts for i in n.input)]


def quantize_tagger(fp32_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, mode: str = "dynamic",
                    calibration_manifest: Manifest | str | os.PathLike[str] | None = None,
                    calibration_split: str | None = "train", calibration_clips: int = 32, method: str = "minmax",
                    seed: int = 0) -> Path:
    """int8 version of an exported tagger.

    Parameters
    ----------
    mode
        ``"dynamic"`` (int8 weights, activations quantized at run time) or ``"static"`` (activation ranges
        calibrated on ``calibration_clips`` random clips of ``calibration_manifest``'s ``calibration_split``).
        The front end (:func:`frontend_nodes`) stays float in both, and static mode also keeps the
        activation-by-activation products of attention (:func:`activation_matmuls`) in float.
    method
        Static calibration method (``"minmax"``, ``"entropy"``, ``"percentile"``).

    Raises
    ------
    InvalidParameterError
        Unknown mode, or static mode without calibration clips.
    """
    from .. import deploy

    if mode not in ("dynamic", "static"):
        raise InvalidParameterError(f"mode={mode!r}; use 'dynamic' or 'static'")
    keep = frontend_nodes(fp32_path)
    if mode == "dynamic":
        return deploy.quantize_dynamic_int8(fp32_path, out_path, nodes_to_exclude=keep)
    if calibration_manifest is None:
        raise InvalidParameterError("static int8 needs calibration clips: pass calibration_manifest")
    m = _manifest(calibration_manifest)
    if calibration_split is not None:
        m = m.filter(split=calibration_split)
    if len(m) == 0:
        raise ManifestError(f"no calibration clips with split={calibration_split!r}")
    meta = deploy.read_metadata(fp32_path)
    sr = int(meta.get("sample_rate", 32000))
    n = min(int(meta.get("max_samples", 10 * sr)), 10 * sr)
    feeds = _calibration(m, sr, n, calibration_clips, seed)
    keep += [n for n in activation_matmuls(fp32_path) if n not in keep]
    return deploy.quantize_static_int8(fp32_path, out_path, feeds, method=method, progress=False,
                                       nodes_to_exclude=keep)


def _scorer(model: Any, *, threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], int, list[str], bool]:
    """A batch function waveform -> logits, its sample rate, labels and multi_label flag."""
    if isinstance(model, (str, os.PathLike)) and str(model).endswith(".onnx"):
        from .. import deploy

        sess = deploy.OrtSession(model, intra_op_num_threads=threads)
        meta = sess.metadata
        sr = int(meta.get("sample_rate", 32000))
        labels = json.loads(meta["labels"]) if "labels" in meta else []
        multi = str(meta.get("multi_label", "True")).lower() in ("true", "1")

        def run_onnx(x: np.ndarray) -> np.ndarray:
            return sess.run({INPUT_NAME: x.astype(np.float32)}, output_names=["logits"])["logits"]

        return run_onnx, sr, labels, multi
    b = _bundle(model)
    graph = _graph(b)
    graph.frontend = PasstFrontend(**graph.frontend.config()).eval()  # the FFT path for torch scoring

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return graph(torch.from_numpy(x))[0].float().numpy()

    return run_torch, graph.frontend.sample_rate, list(b.labels), bool(b.options.get("multi_label", True))


def evaluate_tagger(model: Bundle | str | os.PathLike[str], manifest: Manifest | str | os.PathLike[str], *,
                    split: str | None = "test", labels: Sequence[str] | None = None, batch_size: int = 16,
                    clip_seconds: float = 10.0, threads: int = 0, per_class: bool = False,
                    progress: bool = False) -> dict[str, Any]:
    """Score a tagger on the clips of a manifest: macro mAP, AUC and d-prime (multi-label) or accuracy.

    Parameters
    ----------
    model
        A tagging :class:`Bundle`, a bundle folder or shipped name (torch), or an ``.onnx`` file from
        :func:`export_tagger_onnx` / :func:`quantize_tagger` (onnxruntime).
    manifest
        A :class:`Manifest` or its path; ``labels.json`` next to it gives the corpus classes unless ``labels``.
    split
        Only score entries of this ``split`` (None: all).
    clip_seconds
        Every clip is cropped / zero-padded to this length (10 s: one model window).
    threads
        onnxruntime intra-op threads (0: onnxruntime decides).

    Returns
    -------
    dict
        ``mAP``, ``auc``, ``d_prime``, ``clips``, ``skipped`` (or ``accuracy`` for single-label models), and ``ap``
        per class with ``per_class``.

    Raises
    ------
    ManifestError
        No clips in the split, labels outside the class list, or corpus labels the model does not have.
    CheckpointError
        The model cannot be loaded.
    """
    m = _manifest(manifest)
    if split is not None:
        sub = m.filter(split=split)
        if len(sub) == 0:
            splits = sorted({str(e.get("split")) for e in m})
            raise ManifestError(f"no clips with split={split!r} in the manifest (splits present: {splits})")
        m = sub
    if len(m) == 0:
        raise ManifestError("the manifest has no clips to evaluate")
    names = load_labels(m, labels)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidParameterError(f"batch_size must be a positive integer, got {batch_size!r}")
    fn, sr, model_labels, multi = _scorer(model, threads=threads)
    if model_labels and model_labels != names:
        missing = [n for n in names if n not in model_labels]
        if missing:
            raise ManifestError(f"the corpus labels {missing} are not outputs of the model")
    order = [model_labels.index(n) for n in names] if model_labels else list(range(len(names)))
    n = round(clip_seconds * sr)
    scores, targets = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(m), desc="evaluating", unit="clip", dynamic_ncols=True)
    for start in range(0, len(m), batch_size):
        rows = m.entries[start : start + batch_size]
        x = np.stack([load_clip(m.audio_path(e), sample_rate=sr, n_samples=n) for e in rows])
        logits = fn(x)
        if logits.shape[-1] < max(order) + 1:
            raise CheckpointError(f"the model has {logits.shape[-1]} outputs for {len(names)} corpus labels")
        scores.append(logits[:, order])
        targets.append(np.stack([multi_hot(e["labels"], names) for e in rows]))
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    s, t = np.concatenate(scores), np.concatenate(targets)
    if not multi:
        return {"accuracy": accuracy(s, t.argmax(-1)), "clips": len(s)}
    return multilabel_metrics(s, t, names).as_dict(per_class=per_class)


def evaluate_variants(paths: Iterable[tuple[str, Any]], manifest: Manifest | str | os.PathLike[str], *,
                      split: str | None = "test", threads: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_tagger` for several ``(name, model)`` pairs (torch bundle, fp32 and int8 ONNX ...)."""
    m = _manifest(manifest)
    return {name: evaluate_tagger(model, m, split=split, threads=threads) for name, model in paths}


def export_all(bundle: Bundle | str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
               int8: Sequence[str] = ("dynamic", "static"), calibration_manifest: Any = None,
               calibration_clips: int = 32) -> dict[str, Path]:
    """Write ``tagger.onnx`` (verified) and the requested int8 variants (``tagger.int8-<mode>.onnx``) to ``out_dir``."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"onnx_fp32": export_tagger_onnx(bundle, folder / "tagger.onnx")}
    for mode in int8:
        paths[f"onnx_int8_{mode}"] = quantize_tagger(paths["onnx_fp32"], folder / f"tagger.int8-{mode}.onnx",
                                                     mode=mode, calibration_manifest=calibration_manifest,
                                                     calibration_clips=calibration_clips)
    return paths
