"""Input handling shared by the feature functions: accept numpy or torch, return the kind given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..audio import validate_audio
from ..errors import InvalidParameterError

__all__ = ["as_tensor", "check_finite_number", "check_positive_int"]


def as_tensor(
    y: Any, *, name: str = "y", min_samples: int = 1, check_finite: bool = True
) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """Validate ``y`` and return it as a float tensor plus a function that converts a result back.

    numpy input gives numpy output (float32 stays float32, float64 stays float64, float16 is computed and returned
    in float32); torch input keeps its device, dtype (half precision is promoted to float32) and autograd graph.
    Validation runs only when ``check_finite`` is True, because checking every sample for NaN forces a host sync
    (nn.Module transforms skip it so they can run inside CUDA graphs).
    """
    if isinstance(y, torch.Tensor):
        if check_finite:
            validate_audio(y, name=name, min_samples=min_samples)
        if y.dtype in (torch.float16, torch.bfloat16):
            # FFTs need float32 (CPU) or power-of-two sizes (cuFFT half): compute in float32, as librosa does
            return y.float(), lambda t: t
        return y, lambda t: t
    if isinstance(y, np.ndarray):
        validate_audio(y, name=name, min_samples=min_samples)
        if y.dtype == np.float16:
            y = y.astype(np.float32)  # computed and returned in float32, as librosa does
        t = torch.from_numpy(np.ascontiguousarray(y))

        def back(out: torch.Tensor) -> np.ndarray:
            return out.detach().cpu().numpy()

        return t, back
    raise InvalidParameterError(f"{name} must be a numpy array or torch tensor, got {type(y).__name__}")


def check_positive_int(value: Any, name: str, *, allow_none: bool = False, minimum: int = 1) -> Any:
    """Return ``value`` if it is an int >= ``minimum`` (or None when allowed), else raise InvalidParameterError."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_finite_number(value: Any, name: str, *, minimum: float | None = None, allow_none: bool = False) -> Any:
    """Return ``value`` as float if finite (and >= ``minimum``), else raise InvalidParameterError."""
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not np.isfinite(value)
    ):
        raise InvalidParameterError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value!r}")
    return float(value)


def check_power(power: Any) -> float:
    """Return the spectrogram exponent as float if it is finite and > 0, else raise InvalidParameterError."""
    p = check_finite_number(power, "power")
    if p <= 0:
        raise InvalidParameterError(f"power must be > 0 (1 for magnitude, 2 for power), got {power!r}")
    return p
