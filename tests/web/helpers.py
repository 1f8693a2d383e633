"""Shared helpers of the web tests: run web/dsp under node, export a random test instrument, locate the tools."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
RUNNER = Path(__file__).with_name("runner.mjs")
CHROMIUM = Path("/usr/bin/chromium")


def node_path() -> str | None:
    return shutil.which("node")


def web_deps_ready() -> bool:
    """onnxruntime-web and playwright-core are installed in web/node_modules (scripts/web_setup.sh)."""
    return all((WEB / "node_modules" / p / "package.json").is_file() for p in ("onnxruntime-web", "playwright-core"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.astype(np.float64).ravel().tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def run_js(op: str, tmp_path: Path, **payload: Any) -> dict[str, Any]:
    """Run ``op`` of tests/web/runner.mjs on ``payload`` (arrays become JSON lists) and return its JSON result."""
    node = node_path()
    assert node is not None, "node is not installed"
    src, dst = tmp_path / f"{op}.in.json", tmp_path / f"{op}.out.json"
    src.write_text(json.dumps({"op": op, **_jsonable(payload)}))
    proc = subprocess.run([node, str(RUNNER), str(src), str(dst)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"node {op} failed:\n{proc.stderr}"
    return json.loads(dst.read_text())


def export_test_instrument(folder: Path, *, preset: str = "tiny", seed: int = 0,
                           statistics: dict[str, Any] | None = None) -> dict[str, Any]:
    """A randomly initialised model exported as the real bundles are: ``folder/decoder.fp32.onnx`` by
    :func:`audioforge.ddsp.export.export_decoder` and ``folder/controls.json`` by ``controls_json``. Returns the
    controls."""
    from audioforge.ddsp.export import controls_json, export_decoder
    from audioforge.ddsp.model import DDSPAutoencoder

    torch.manual_seed(seed)
    model = DDSPAutoencoder.from_preset(preset).eval()
    folder.mkdir(parents=True, exist_ok=True)
    export_decoder(model, folder / "decoder.fp32.onnx", metadata={"instrument": "test"})
    bundle = SimpleNamespace(hyperparameters={"sr": 16000, "hop": 64}, architecture=preset,
                             options={"instrument": "test", "statistics": statistics or {}})
    controls = controls_json(bundle, model)  # type: ignore[arg-type]
    (folder / "controls.json").write_text(json.dumps(controls))
    return controls
