"""ONNX export of the decoder: parity with torch, fp16/int8 forms, controls.json, streaming state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audioforge.bundle import Bundle
from audioforge.ddsp import DDSPAutoencoder
from audioforge.ddsp.data import compute_statistics
from audioforge.ddsp.export import DecoderStep, export_bundle
from audioforge.deploy import OrtSession


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, DDSPAutoencoder]:
    torch.manual_seed(0)
    model = DDSPAutoencoder.from_preset("tiny").eval()
    stats = compute_statistics(np.full(100, 262.0), np.linspace(-50, -10, 100), np.ones(100, bool))
    folder = tmp_path_factory.mktemp("b") / "ddsp-test"
    Bundle(task="ddsp", architecture="tiny", hyperparameters={"preset": "tiny", "sr": 16000, "hop": 64,
                                                              "reverb_length": None},
           state_dict=model.state_dict(), options={"instrument": "test", "statistics": stats}).save(folder)
    out = folder.parent / "onnx"
    return out, export_bundle(folder, out), model


def test_forms_sizes_and_parity(exported: tuple[Path, dict, DDSPAutoencoder]) -> None:
    out, report, _ = exported
    sizes = report["sizes"]
    assert sizes["fp16"] <= 300_000 and sizes["fp16"] < 0.6 * sizes["fp32"]
    assert report["parity_max_abs"] < 1e-4
    controls = json.loads((out / "controls.json").read_text())
    assert controls["sr"] == 16000 and controls["hop"] == 64 and controls["n_harmonics"] == 60
    assert len(controls["statistics"]["quantiles"]["loudness_db"]) == 256


def test_onnx_streams_with_state(exported: tuple[Path, dict, DDSPAutoencoder]) -> None:
    """Frame-by-frame calls with the state carried equal one call over the whole block, and torch."""
    out, _, model = exported
    f0 = np.linspace(200, 400, 12, dtype=np.float32)[None]
    ld = np.linspace(-60, -20, 12, dtype=np.float32)[None]
    with torch.no_grad():
        ref = DecoderStep(model)(torch.from_numpy(f0), torch.from_numpy(ld), torch.zeros(1, 1, 64))
    for form, tol in (("fp32", 1e-5), ("fp16", 5e-2)):
        sess = OrtSession(out / f"decoder.{form}.onnx")
        state = np.zeros((1, 1, 64), np.float32)
        amps = []
        for t in range(12):
            o = sess.run({"f0_hz": f0[:, t: t + 1], "loudness_db": ld[:, t: t + 1], "state": state})
            state = o["state_out"]
            amps.append(o["amplitude"][0, 0])
        np.testing.assert_allclose(amps, ref[0][0].numpy(), rtol=tol, atol=tol * 1e-2)
