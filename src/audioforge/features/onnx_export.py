"""Export a feature module (``MelSpectrogram``, ``LogMel``, ``MFCC``, ``KaldiFbank``) to ONNX with a dynamic length.

The graph takes ``waveform`` of shape ``(batch, samples)`` (float32) and returns ``features``; both the batch size and
the number of samples are dynamic. Use the modules' ``dft="matmul"`` (``use_matmul_dft=True`` for ``KaldiFbank``):
it exports with plain MatMul nodes and matches torch to float32 rounding in onnxruntime. ``dft="fft"`` also exports
(as the ONNX ``DFT`` op) but onnxruntime's DFT is much less accurate for sizes that are not powers of two.

The dynamo exporter (``torch.onnx.export(..., dynamo=True)``, via onnxscript) is used; if it fails, the TorchScript
exporter (opset 17) is tried, which cannot export the ``unfold`` framing of the librosa-style modules with a dynamic
length (it may work for other modules).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import torch

from ..errors import InvalidParameterError

__all__ = ["export_feature_onnx", "min_samples_for"]


def min_samples_for(module: torch.nn.Module) -> int:
    """The shortest input the exported graph is specialised for: one analysis frame of ``module`` (at least 2)."""
    for sub in module.modules():
        n_fft = getattr(sub, "n_fft", None)
        if isinstance(n_fft, int):
            return max(n_fft, 2)
        opts = getattr(sub, "opts", None)
        size = getattr(opts, "padded_window_size", None) or getattr(opts, "window_size", None)
        if isinstance(size, int):
            return max(size, 2)
    return 2


def export_feature_onnx(
    module: torch.nn.Module,
    path: str | os.PathLike[str],
    *,
    example_samples: int = 16000,
    min_samples: int | None = None,
    dynamo: bool | None = None,
    opset_version: int | None = None,
) -> Path:
    """Export ``module`` to ``path`` with dynamic ``batch`` and ``samples`` axes and return the path.

    Parameters
    ----------
    module
        A feature module whose ``forward`` maps float32 ``(batch, samples)`` to features.
    path
        Where to write the ``.onnx`` file (parent folders are created).
    example_samples
        Length of the example input used for tracing.
    min_samples
        Smallest number of samples the graph must accept (default: one frame, :func:`min_samples_for`). The
        exported graph is traced for signals at least this long; shorter ones are not supported by it.
    dynamo
        None (default): try the dynamo exporter, fall back to the TorchScript one (opset 17) if it fails.
        True / False: use only that exporter.
    opset_version
        Opset for the exporter (default: the dynamo exporter's own default, 17 for TorchScript).

    Raises
    ------
    InvalidParameterError
        Bad sizes, or neither exporter could export the module (the message carries both errors).
    """
    min_samples = min_samples_for(module) if min_samples is None else int(min_samples)
    if min_samples < 2:
        raise InvalidParameterError(f"min_samples must be >= 2, got {min_samples}")
    if example_samples < min_samples:
        raise InvalidParameterError(f"example_samples={example_samples} must be >= min_samples={min_samples}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()
    example = (torch.randn(2, example_samples, generator=torch.Generator().manual_seed(0)) * 0.1,)
    attempts = [True, False] if dynamo is None else [bool(dynamo)]
    errors = []
    try:
        for use_dynamo in attempts:
            try:
                _export(module, example, out, use_dynamo, min_samples, opset_version)
                return out
            except Exception as exc:
                errors.append(f"{'dynamo' if use_dynamo else 'torchscript'} exporter: {type(exc).__name__}: {exc}")
    finally:
        module.train(was_training)
    raise InvalidParameterError(
        f"could not export {type(module).__name__} to ONNX; use dft='matmul' (use_matmul_dft=True for KaldiFbank).\n"
        + "\n".join(e[:2000] for e in errors)
    )


def _export(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    out: Path,
    use_dynamo: bool,
    min_samples: int,
    opset_version: int | None,
) -> None:
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        if use_dynamo:
            dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("samples", min=min_samples)}
            kwargs = {} if opset_version is None else {"opset_version": opset_version}
            torch.onnx.export(module, example, str(out), dynamo=True, dynamic_shapes=(dims,), verbose=False,
                              input_names=["waveform"], output_names=["features"], **kwargs)
        else:
            torch.onnx.export(module, example, str(out), dynamo=False, opset_version=opset_version or 17,
                              input_names=["waveform"], output_names=["features"],
                              dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "features": {0: "batch"}})
