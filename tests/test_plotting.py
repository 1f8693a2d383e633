"""PNG plots: the curves helper draws what it is given and rejects what it cannot draw."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from audioforge.errors import InvalidParameterError
from audioforge.plotting import ema, plot_curves, plot_spectrogram


def test_ema_is_a_bias_corrected_moving_average() -> None:
    v = [4.0, 2.0, 6.0, 1.0]
    alpha = 0.3
    ref, acc, w = [], 0.0, 0.0
    for x in v:
        acc, w = (1 - alpha) * acc + alpha * x, (1 - alpha) * w + alpha
        ref.append(acc / w)
    np.testing.assert_allclose(ema(v, alpha), ref)
    assert ema([5.0, 5.0, 5.0], 0.01) == pytest.approx([5.0, 5.0, 5.0])
    with pytest.raises(InvalidParameterError):
        ema(v, 0.0)


def test_plot_curves_writes_a_png_and_checks_its_input(tmp_path: Path) -> None:
    path = plot_curves([("loss", {"a": ([1, 2, 3], [3.0, 2.0, 1.0]), "empty": ([], [])}), ("score", {})],
                       tmp_path / "c.png", xlabel="epoch", title="t")
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > img.shape[1] / 2  # two stacked panels
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically
    with pytest.raises(InvalidParameterError, match="x values"):
        plot_curves([("loss", {"a": ([1, 2], [1.0])})], tmp_path / "bad.png")
    with pytest.raises(InvalidParameterError):
        plot_curves([], tmp_path / "none.png")
    with pytest.raises(InvalidParameterError, match="2-D"):
        plot_spectrogram(np.zeros(5), tmp_path / "s.png", sr=16000, hop_length=160)
