"""Export of a DDSP model's decoder for the browser and other runtimes: ONNX fp32 / fp16 / int8 and ``controls.json``.

The exported graph is :class:`DecoderStep`: the decoder with its scale functions, an explicit GRU state input and
output, and a dynamic number of frames (1 frame per call for frame-by-frame use, or a block)::

    inputs   f0_hz (B, T) float32 Hz (0 = unvoiced), loudness_db (B, T) float32 dB, state (1, B, H) float32
    outputs  amplitude (B, T)  harmonic_distribution (B, T, 60)  noise_magnitudes (B, T, 65)  state_out (1, B, H)

``amplitude`` and the distribution (harmonics at or above 8 kHz removed, summing to one) feed the additive synth,
``noise_magnitudes`` the 65-band filtered noise (linear magnitudes, 0 Hz..8 kHz); see ``recipes/ddsp/README.md``.
Synthesis stays outside the graph (the harmonic phase needs float64-grade accumulation and the noise an FFT).

Forms: ``decoder.fp32.onnx``; ``decoder.fp16.onnx`` (float initializers stored as float16, each followed by a Cast to
float32, so the arithmetic stays float32 and only the file halves); ``decoder.int8.onnx`` (dynamic int8 on
MatMul/Gemm; onnxruntime has no int8 GRU, so the GRU stays float32). :func:`export_bundle` writes all three with
``controls.json`` (statistics and quantile tables for auto-adjust, the I/O contract) and measures the parity with
torch and the quality of each form (loudness L1 and spectral distance of its rendering on held-out examples).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..bundle import Bundle
from ..errors import InvalidParameterError
from .core import exp_sigmoid
from .data import HOP, SR, load_cache
from .decoders import RnnFcDecoder, scale_inputs
from .losses import multiscale_spectral_loss
from .loudness import compute_loudness
from .model import DDSPAutoencoder

__all__ = ["DecoderStep", "convert_fp16", "export_bundle", "export_decoder", "render_with_onnx"]

INPUT_NAMES = ["f0_hz", "loudness_db", "state"]
OUTPUT_NAMES = ["amplitude", "harmonic_distribution", "noise_magnitudes", "state_out"]


class DecoderStep(nn.Module):
    """The decoder of an :class:`DDSPAutoencoder` (RNN decoders) with scale functions and explicit state."""

    def __init__(self, model: DDSPAutoencoder) -> None:
        super().__init__()
        if not isinstance(model.decoder, RnnFcDecoder):
            raise InvalidParameterError("ONNX export supports RnnFcDecoder models (presets tiny, vst, ...)")
        self.decoder = model.decoder
        self.sr = model.sr
        self.n_harmonics = model.decoder.config.n_harmonics
        self.noise_bias = model.noise.initial_bias
        k = torch.arange(1, self.n_harmonics + 1, dtype=torch.float32)
        self.register_buffer("harmonic_numbers", k, persistent=False)

    def forward(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor, state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scaled controls and the next state (see the module docstring)."""
        d = self.decoder
        f0_in, ld_in = scale_inputs(f0_hz, loudness_db)
        f = d.f0_mlp(f0_in.unsqueeze(-1))
        ld = d.loudness_mlp(ld_in.unsqueeze(-1))
        h, state_out = d.gru(torch.cat([f, ld], dim=-1), state)
        raw = d.dense(d.out_mlp(torch.cat([h, f, ld], dim=-1)))
        amplitude = exp_sigmoid(raw[..., 0])
        dist = exp_sigmoid(raw[..., 1: 1 + self.n_harmonics])
        audible = (f0_hz.unsqueeze(-1) * self.harmonic_numbers) < (self.sr / 2.0)
        dist = torch.where(audible, dist, torch.zeros_like(dist))
        dist = dist / (dist.sum(-1, keepdim=True) + 1e-7)
        noise = exp_sigmoid(raw[..., 1 + self.n_harmonics:] + self.noise_bias)
        return amplitude, dist, noise, state_out


def _example(step: DecoderStep, frames: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    f0 = torch.linspace(200.0, 400.0, frames).reshape(1, frames).repeat(2, 1)
    ld = torch.linspace(-50.0, -20.0, frames).reshape(1, frames).repeat(2, 1)
    return f0, ld, torch.zeros(1, 2, step.decoder.config.gru_units)


def export_decoder(model: DDSPAutoencoder, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
                   ) -> Path:
    """Export :class:`DecoderStep` of ``model`` to ``path`` (fp32, dynamic batch and frames) and verify it."""
    from .. import deploy

    step = DecoderStep(model).eval()
    axes = {"f0_hz": {0: "B", 1: "T"}, "loudness_db": {0: "B", 1: "T"}, "state": {1: "B"},
            "amplitude": {0: "B", 1: "T"}, "harmonic_distribution": {0: "B", 1: "T"},
            "noise_magnitudes": {0: "B", 1: "T"}, "state_out": {1: "B"}}
    out = deploy.export_onnx(step, _example(step), path, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                             dynamic_axes=axes, metadata={"sr": SR, "hop": HOP, **(metadata or {})},
                             exporter="legacy")
    deploy.verify_onnx(step, out, [_example(step, 3), _example(step, 7)], rtol=1e-3, atol=1e-5)
    return out


def convert_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Store every float32 initializer of ``src`` as float16 followed by a Cast to float32 (compute stays fp32)."""
    import onnx
    from onnx import helper, numpy_helper

    from ..deploy import write_onnx

    model = onnx.load(str(src))
    graph = model.graph
    casts = []
    kept = []
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and int(np.prod(init.dims)) > 1:
            arr = numpy_helper.to_array(init).astype(np.float16)
            half = numpy_helper.from_array(arr, name=init.name + "__fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                          name=init.name + "__cast"))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return write_onnx(model, dst)


def render_with_onnx(path: str | os.PathLike[str], model: DDSPAutoencoder, f0_hz: np.ndarray, loudness_db: np.ndarray,
                     *, noise_seed: int = 0) -> np.ndarray:
    """Render ``(T,)`` controls with the ONNX decoder at ``path`` and the torch synthesizers (seeded noise)."""
    from ..deploy import OrtSession

    sess = OrtSession(path)
    h = model.decoder.config.gru_units
    out = sess.run({"f0_hz": f0_hz[None].astype(np.float32), "loudness_db": loudness_db[None].astype(np.float32),
                    "state": np.zeros((1, 1, h), np.float32)})
    controls = {"f0_hz": torch.from_numpy(f0_hz[None].astype(np.float32)),
                "amplitude": torch.from_numpy(out["amplitude"]),
                "harmonic_distribution": torch.from_numpy(out["harmonic_distribution"]),
                "noise_magnitudes": torch.from_numpy(out["noise_magnitudes"])}
    noise = np.random.default_rng(noise_seed).uniform(-1.0, 1.0, (1, f0_hz.shape[0] * HOP)).astype(np.float32)
    with torch.no_grad():
        audio = model.synthesize(controls, noise=torch.from_numpy(noise))[0]
    return audio[0].numpy()


def _render_torch(model: DDSPAutoencoder, f0: np.ndarray, ld: np.ndarray, noise_seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(noise_seed).uniform(-1.0, 1.0, (1, f0.shape[0] * HOP)).astype(np.float32)
    with torch.no_grad():
        audio = model(torch.from_numpy(f0[None]), torch.from_numpy(ld[None]), noise=torch.from_numpy(noise))[0]
    return audio[0].numpy()


def _quality(audio: np.ndarray, target: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    lo, lt = compute_loudness(audio, SR), compute_loudness(target, SR)
    err = audio - reference
    snr = 10.0 * np.log10(np.sum(reference**2) / max(float(np.sum(err**2)), 1e-30))
    return {"loudness_l1_db": float(np.abs(lo - lt).mean()),
            "spectral_distance": float(multiscale_spectral_loss(torch.from_numpy(audio), torch.from_numpy(target))),
            "snr_vs_torch_db": float(snr)}


def controls_json(bundle: Bundle, model: DDSPAutoencoder) -> dict[str, Any]:
    """What the browser page needs besides the ONNX file: rates, statistics, quantile tables, I/O contract."""
    model_cfg = bundle.hyperparameters
    return {
        "instrument": bundle.options.get("instrument"),
        "sr": int(model_cfg.get("sr", SR)), "hop": int(model_cfg.get("hop", HOP)),
        "frame_rate": int(model_cfg.get("sr", SR)) // int(model_cfg.get("hop", HOP)),
        "preset": bundle.architecture,
        "inputs": {"f0_hz": "(B, T) float32 Hz, held through unvoiced frames",
                   "loudness_db": "(B, T) float32 A-weighted dB (0 = full-scale 1 kHz sine, floor -80)",
                   "state": "(1, B, gru_units) float32, zeros at the start"},
        "outputs": {"amplitude": "(B, T)", "harmonic_distribution": "(B, T, n_harmonics), sums to 1",
                    "noise_magnitudes": "(B, T, n_noise_bands) linear", "state_out": "(1, B, gru_units)"},
        "gru_units": int(model.decoder.config.gru_units),
        "n_harmonics": int(model.decoder.config.n_harmonics),
        "n_noise_bands": int(model.decoder.config.n_noise_bands),
        "statistics": bundle.options.get("statistics", {}),
        "auto_adjust": {"octave_shift": "12 * round((pitch_note.mean - input note mean midi) / 12)",
                        "loudness": "input note-frame quantiles -> statistics.quantiles.loudness_db",
                        "quiet_db": 20.0, "note": "confidence >= 0.6 and loudness > -60 dB"},
    }


def export_bundle(bundle: Bundle | str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                  eval_cache: str | os.PathLike[str] | None = None, eval_examples: int = 8) -> dict[str, Any]:
    """Write ``decoder.{fp32,fp16,int8}.onnx`` and ``controls.json`` to ``out_dir``; return sizes and quality.

    Returns
    -------
    dict
        ``sizes`` (bytes per form, and the torch float32 parameter bytes), ``parity_max_abs`` (fp32 ONNX vs
        torch), and with ``eval_cache`` a ``quality`` entry per form (``torch``, ``fp32``, ``fp16``, ``int8``):
        loudness L1 (dB) and spectral distance against the held-out audio, SNR (dB) against the torch rendering.
    """
    from ..deploy import model_size_bytes, quantize_dynamic_int8
    from .train import load_model

    model, b = load_model(bundle)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fp32 = export_decoder(model, out / "decoder.fp32.onnx", metadata={"instrument": str(b.options.get("instrument"))})
    fp16 = convert_fp16(fp32, out / "decoder.fp16.onnx")
    forms = {"fp32": fp32, "fp16": fp16}
    report: dict[str, Any] = {}
    try:
        forms["int8"] = quantize_dynamic_int8(fp32, out / "decoder.int8.onnx")
    except Exception as exc:  # onnxruntime's quantizer raises many types; the int8 form is optional
        report["int8_error"] = str(exc).splitlines()[0]
    (out / "controls.json").write_text(json.dumps(controls_json(b, model), indent=1) + "\n", encoding="utf-8")
    report["sizes"] = {k: model_size_bytes(p) for k, p in forms.items()}
    report["sizes"]["torch_fp32_params"] = sum(p.numel() for p in model.decoder.parameters()) * 4
    step = DecoderStep(model).eval()
    ex = _example(step, 9)
    with torch.no_grad():
        ref = step(*ex)
    from ..deploy import OrtSession

    got = OrtSession(fp32).run({"f0_hz": ex[0].numpy(), "loudness_db": ex[1].numpy(), "state": ex[2].numpy()})
    report["parity_max_abs"] = float(max(np.abs(got[n] - r.numpy()).max() for n, r in zip(OUTPUT_NAMES, ref,
                                                                                           strict=True)))
    if eval_cache is not None:
        data = load_cache(eval_cache)
        n = min(int(eval_examples), data["audio"].shape[0])
        acc: dict[str, list[dict[str, float]]] = {k: [] for k in ["torch", *forms]}
        for i in range(n):
            f0 = np.array(data["f0_hz"][i], dtype=np.float32)
            ld = np.array(data["loudness_db"][i], dtype=np.float32)
            target = np.array(data["audio"][i], dtype=np.float32)
            reference = _render_torch(model, f0, ld)
            acc["torch"].append(_quality(reference, target, reference))
            for k, p in forms.items():
                acc[k].append(_quality(render_with_onnx(p, model, f0, ld), target, reference))
        report["quality"] = {k: {m: round(float(np.mean([r[m] for r in v])), 4) for m in v[0]} | {"examples": n}
                             for k, v in acc.items()}
        report["quality"]["torch"].pop("snr_vs_torch_db", None)
    return report
