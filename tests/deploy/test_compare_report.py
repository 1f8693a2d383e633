"""audioforge.deploy layer-wise float-vs-int8 comparison and the quantization report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from audioforge.deploy import (
    LayerComparisons,
    OrtSession,
    compare_layers,
    export_onnx,
    model_size_bytes,
    quantize_dynamic_int8,
    quantize_static_int8,
    tensor_metrics,
    write_quantization_report,
)
from audioforge.errors import InvalidParameterError


class FragileNet(nn.Module):
    """``spread`` puts one channel 300x larger than the rest; ``fragile`` reads only the small channels.

    With one int8 scale per activation tensor, the outlier channel sets the step size and the small channels round
    to a few levels, so ``fragile``'s output is what int8 hurts most, while every other layer stays accurate.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(32, 64)
        self.spread = nn.Linear(64, 64)
        self.fragile = nn.Linear(64, 32)
        with torch.no_grad():
            self.spread.weight[0] *= 300.0
            self.spread.bias[0] = 0.0
            self.fragile.weight[:, 0] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fragile(self.spread(torch.relu(self.inp(x))))


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("cmp")
    path = export_onnx(FragileNet().eval(), (torch.randn(1, 20, 32),), d / "fragile.onnx", input_names=["x"],
                       output_names=["y"], dynamic_axes={"x": {1: "T"}}, exporter="dynamo", opset=18)
    rng = np.random.default_rng(0)
    inputs = [{"x": rng.standard_normal((1, t, 32), dtype=np.float32)} for t in (10, 20, 30, 40)]
    return path, inputs


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return tensor_metrics(a, b)[0]


@pytest.mark.parametrize("mode", ["qdq", "qoperator", "dynamic"])
def test_comparison_ranks_the_fragile_layer_worst(fragile, tmp_path, mode):
    path, inputs = fragile
    if mode == "dynamic":
        q = quantize_dynamic_int8(path, tmp_path / "q.onnx")
    else:
        q = quantize_static_int8(path, tmp_path / "q.onnx", inputs, quant_format=mode, progress=False)
    comps = compare_layers(path, q, inputs)
    assert isinstance(comps, LayerComparisons) and len(comps) >= 4
    assert [c.index for c in comps] == sorted(c.index for c in comps)  # graph order
    worst = comps.worst(1)[0]
    assert worst.scope == "fragile", [(c.label, round(c.cosine, 4)) for c in comps]
    assert worst.cosine < 0.9
    healthy = [c for c in comps if c.scope in ("inp", "spread")]
    assert healthy and all(c.cosine > 0.99 for c in healthy)
    assert all(c.n_inputs == len(inputs) for c in comps)
    assert set(comps.below(0.99)) == {c.node_name for c in comps if c.scope == "fragile"}


def test_keeping_the_layer_and_its_input_producer_in_float_repairs_the_output(fragile, tmp_path):
    path, inputs = fragile
    q = quantize_static_int8(path, tmp_path / "q.onnx", inputs, progress=False)
    comps = compare_layers(path, q, inputs)
    flagged = comps.below(0.99)
    # The damage enters through the quantized output of `spread` (its outlier channel sets the scale), so keeping
    # only the flagged layer in float is not enough; keeping its input's producer too is.
    spread = [c.node_name for c in comps if c.scope == "spread"]
    only_flagged = quantize_static_int8(path, tmp_path / "a.onnx", inputs, keep_float=flagged, progress=False)
    fixed = quantize_static_int8(path, tmp_path / "b.onnx", inputs, keep_float=flagged + spread, progress=False)
    ref, bad, a, b = OrtSession(path), OrtSession(q), OrtSession(only_flagged), OrtSession(fixed)
    x = inputs[1]
    assert _cos(ref.run(x)["y"], bad.run(x)["y"]) < 0.9
    assert _cos(ref.run(x)["y"], a.run(x)["y"]) < 0.9
    assert _cos(ref.run(x)["y"], b.run(x)["y"]) > 0.99
    assert compare_layers(path, fixed, inputs).worst(1)[0].cosine > 0.99


def test_report_files(fragile, tmp_path):
    path, inputs = fragile
    q = quantize_static_int8(path, tmp_path / "q.onnx", inputs, method="percentile", progress=False)
    comps = compare_layers(path, q, inputs, max_inputs=2)
    assert all(c.n_inputs == 2 for c in comps)
    sizes = {"fp32": model_size_bytes(path), "int8": model_size_bytes(q)}
    md = write_quantization_report(
        comps, tmp_path / "report", title="FragileNet static int8", model_sizes=sizes,
        task_metrics={"CER fp32": 5.19, "CER int8": 5.81, "RTF int8": 0.05}, worst_n=3,
    )
    png = md.with_suffix(".png")
    assert md.is_file() and png.is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text(encoding="utf-8")
    worst = comps.worst(1)[0]
    assert text.startswith("# FragileNet static int8")
    assert f"`{worst.node_name}`" in text and "fragile" in text
    assert "size ratio int8 / fp32" in text and f"{sizes['int8'] / sizes['fp32']:.3f}" in text
    assert "| CER | 5.19 | 5.81 | +0.62 (+11.9 %) |" in text
    assert "keep_float=" in text and worst.node_name in text.split("## Suggestion")[1]
    assert "## Worst 3 layers" in text
    assert not [p for p in md.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_report_without_layers_below_threshold(fragile, tmp_path):
    path, inputs = fragile
    q = quantize_dynamic_int8(path, tmp_path / "q.onnx", keep_float=["MatMul"])  # nothing quantized
    comps = compare_layers(path, q, inputs[:1])
    assert comps.worst(1)[0].cosine > 0.9999
    md = write_quantization_report(comps, tmp_path / "r", title="all float", threshold=0.99)
    assert "Keep in float: none" in md.read_text(encoding="utf-8")


def test_tensor_metrics():
    a = np.array([1.0, 2.0, 3.0])
    assert tensor_metrics(a, a) == (1.0, 0.0, 0.0)
    cos, mx, rel = tensor_metrics(a, -a)
    assert cos == pytest.approx(-1.0) and mx == 6.0 and rel == pytest.approx(2.0)
    assert tensor_metrics(np.zeros(3), np.zeros(3))[0] == 1.0
    assert tensor_metrics(np.zeros(3), a)[0] == 0.0
    assert math.isinf(tensor_metrics(np.zeros(3), a)[2])
    with pytest.raises(InvalidParameterError):
        tensor_metrics(a, a[:2])


def test_compare_errors(fragile, tmp_path):
    path, inputs = fragile
    torch.manual_seed(1)
    other = export_onnx(nn.Sequential(nn.Linear(32, 8)).eval(), (torch.randn(1, 5, 32),), tmp_path / "o.onnx",
                        input_names=["x"], dynamic_axes={"x": {1: "T"}}, exporter="legacy")
    with pytest.raises(InvalidParameterError, match="could be matched"):
        compare_layers(path, other, inputs)
    q = quantize_dynamic_int8(path, tmp_path / "q.onnx")
    with pytest.raises(InvalidParameterError, match="no input set"):
        compare_layers(path, q, [])
    with pytest.raises(InvalidParameterError, match="unknown"):
        compare_layers(path, q, [{"feats": inputs[0]["x"]}])
    with pytest.raises(InvalidParameterError, match="empty"):
        write_quantization_report([], tmp_path / "r", title="x")


def test_tensor_metrics_ignore_shared_masked_positions():
    from audioforge.deploy.compare import tensor_metrics

    a = np.array([1.0, -np.inf, 2.0, -np.inf])
    b = np.array([1.0, -np.inf, 2.1, -np.inf])
    cos, max_abs, rel = tensor_metrics(a, b)
    assert np.isfinite(cos) and cos > 0.99 and max_abs == pytest.approx(0.1) and rel == pytest.approx(0.1 / 5**0.5)
    cos, max_abs, _ = tensor_metrics(a, np.array([1.0, 0.0, 2.0, -np.inf]))
    assert cos == 0.0 and max_abs == np.inf
