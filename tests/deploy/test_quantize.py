"""audioforge.deploy quantization: dynamic and static int8, calibration methods, keep-float, sizes, errors."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from audioforge.deploy import (
    OrtSession,
    export_onnx,
    model_size_bytes,
    quantize_dynamic_int8,
    quantize_static_int8,
    resolve_nodes,
)
from audioforge.errors import CheckpointError, InvalidParameterError


class FeatureMLP(nn.Module):
    """Dominated by MatMul weights: 80 -> 256 -> 256 -> 32 on (B, T, 80) log-mel-like frames."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(80, 256)
        self.l2 = nn.Linear(256, 256)
        self.l3 = nn.Linear(256, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l3(torch.relu(self.l2(torch.relu(self.l1(x)))))


class TinyAttention(nn.Module):
    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        x = x + self.proj(att @ v)
        return x + self.ff(x)


def _frames(rng: np.random.Generator, t: int = 50) -> np.ndarray:
    """Feature-like frames: smooth over time, per-band offsets, unit-ish scale (like normalised log-mels)."""
    base = rng.standard_normal((1, t, 80)).astype(np.float32)
    smooth = (base + np.roll(base, 1, axis=1) + np.roll(base, 2, axis=1)) / math.sqrt(3)
    return (smooth + np.linspace(-1, 1, 80, dtype=np.float32)).astype(np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("q")
    path = export_onnx(FeatureMLP().eval(), (torch.randn(1, 20, 80),), d / "mlp.onnx", input_names=["x"],
                       output_names=["y"], dynamic_axes={"x": {1: "T"}}, exporter="legacy")
    return path


@pytest.fixture(scope="module")
def mlp_gemm(tmp_path_factory):
    """The same network on (N, 80) frames: the exporter emits Gemm nodes."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("g")
    return export_onnx(FeatureMLP().eval(), (torch.randn(4, 80),), d / "mlp_gemm.onnx", input_names=["x"],
                       output_names=["y"], dynamic_axes={"x": {0: "N"}}, exporter="legacy")


def _eval_cos(fp32, int8, inputs) -> float:
    a, b = OrtSession(fp32), OrtSession(int8)
    return min(_cos(a.run({"x": x})["y"], b.run({"x": x})["y"]) for x in inputs)


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_dynamic_int8_is_small_and_close(mlp, tmp_path):
    out = quantize_dynamic_int8(mlp, tmp_path / "mlp.dyn.onnx")
    ratio = model_size_bytes(out) / model_size_bytes(mlp)
    assert ratio <= 0.35
    assert "MatMulInteger" in _ops(out) or "DynamicQuantizeMatMul" in _ops(out)
    rng = np.random.default_rng(1)
    assert _eval_cos(mlp, out, [_frames(rng, t) for t in (7, 50, 130)]) > 0.99


def test_dynamic_int8_quantizes_gemm(mlp_gemm, tmp_path):
    assert "Gemm" in _ops(mlp_gemm)
    out = quantize_dynamic_int8(mlp_gemm, tmp_path / "g.dyn.onnx", weight_type="quint8", per_channel=True)
    assert "Gemm" not in _ops(out)
    assert model_size_bytes(out) / model_size_bytes(mlp_gemm) <= 0.35
    rng = np.random.default_rng(2)
    a, b = OrtSession(mlp_gemm), OrtSession(out)
    x = _frames(rng, 64)[0]
    assert _cos(a.run({"x": x})["y"], b.run({"x": x})["y"]) > 0.99


def test_dynamic_keep_float_by_name_and_op_type(mlp, tmp_path):
    model = onnx.load(str(mlp))
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == 3
    out = quantize_dynamic_int8(mlp, tmp_path / "k.onnx", keep_float=[matmuls[0]])
    nodes = {n.name: n for n in onnx.load(str(out)).graph.node}
    assert nodes[matmuls[0]].op_type == "MatMul"  # left in float, weight untouched
    inits = {t.name: t for t in onnx.load(str(out)).graph.initializer}
    assert inits[nodes[matmuls[0]].input[1]].data_type == onnx.TensorProto.FLOAT
    assert matmuls[1] not in nodes or nodes[matmuls[1]].op_type != "MatMul"
    all_float = quantize_dynamic_int8(mlp, tmp_path / "k2.onnx", keep_float=["MatMul"])
    assert "MatMulInteger" not in _ops(all_float)
    assert resolve_nodes(model, ["MatMul"]) == matmuls


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_int8_each_calibration_method(mlp, tmp_path, method):
    rng = np.random.default_rng(3)
    calib = [{"x": _frames(rng, 40)} for _ in range(12)]
    out = quantize_static_int8(mlp, tmp_path / f"{method}.onnx", calib, method=method, progress=False)
    ops = _ops(out)
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert model_size_bytes(out) / model_size_bytes(mlp) <= 0.35
    assert _eval_cos(mlp, out, [_frames(rng, t) for t in (9, 40, 100)]) > 0.98


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_with_variable_lengths(mlp, tmp_path, method):
    rng = np.random.default_rng(7)
    calib = [{"x": _frames(rng, t)} for t in (20, 35, 50, 64)]  # utterances differ in length
    out = quantize_static_int8(mlp, tmp_path / f"{method}.onnx", calib, method=method, progress=False)
    assert _eval_cos(mlp, out, [_frames(rng, 33)]) > 0.98


def test_static_qoperator_format_and_callable_calibration(mlp, tmp_path):
    rng = np.random.default_rng(4)
    consumed = []

    def calib():
        for i in range(100):
            consumed.append(i)
            yield [_frames(rng, 30)]  # positional input sets work too

    out = quantize_static_int8(mlp, tmp_path / "qop.onnx", calib, quant_format="qoperator",
                               activation_type="quint8", max_samples=6, progress=True)
    assert len(consumed) == 6
    assert "QLinearMatMul" in _ops(out)
    assert _eval_cos(mlp, out, [_frames(rng, 30)]) > 0.98


def test_static_keep_float_leaves_named_nodes_unquantized(mlp, tmp_path):
    rng = np.random.default_rng(5)
    calib = [{"x": _frames(rng, 30)} for _ in range(4)]
    model = onnx.load(str(mlp))
    first = next(n for n in model.graph.node if n.op_type == "MatMul")
    out = quantize_static_int8(mlp, tmp_path / "kf.onnx", calib, keep_float=[first.name], progress=False)
    q = onnx.load(str(out))
    producers = {o: n for n in q.graph.node for o in n.output}
    inits = {t.name for t in q.graph.initializer}
    kept = next(n for n in q.graph.node if n.name == first.name)
    assert kept.input[1] in inits  # the float weight, not a DequantizeLinear output
    assert kept.input[1] == first.input[1]
    others = [n for n in q.graph.node if n.op_type == "MatMul" and n.name != first.name]
    assert others and all(producers[n.input[1]].op_type == "DequantizeLinear" for n in others)


def test_static_transformer_block(tmp_path):
    torch.manual_seed(0)
    model = TinyAttention().eval()
    path = export_onnx(model, (torch.randn(1, 16, 64),), tmp_path / "att.onnx", input_names=["x"],
                       output_names=["y"], dynamic_axes={"x": {1: "T"}}, exporter="legacy")
    rng = np.random.default_rng(6)
    calib = [{"x": rng.standard_normal((1, 16, 64), dtype=np.float32)} for _ in range(8)]
    out = quantize_static_int8(path, tmp_path / "att.int8.onnx", calib, method="entropy", progress=False)
    dyn = quantize_dynamic_int8(path, tmp_path / "att.dyn.onnx")
    test = [{"x": rng.standard_normal((1, t, 64), dtype=np.float32)} for t in (5, 16, 33)]
    ref = OrtSession(path)
    for q in (out, dyn):
        sess = OrtSession(q)
        assert min(_cos(ref.run(x)["y"], sess.run(x)["y"]) for x in test) > 0.98


def test_quantize_errors(mlp, tmp_path):
    calib = [{"x": np.zeros((1, 10, 80), np.float32)}]
    with pytest.raises(CheckpointError, match="does not exist"):
        quantize_dynamic_int8(tmp_path / "missing.onnx", tmp_path / "o.onnx")
    with pytest.raises(CheckpointError, match="does not exist"):
        quantize_static_int8(tmp_path / "missing.onnx", tmp_path / "o.onnx", calib)
    with pytest.raises(InvalidParameterError, match="must differ"):
        quantize_dynamic_int8(mlp, mlp)
    with pytest.raises(InvalidParameterError, match="cannot be dynamically quantized"):
        quantize_dynamic_int8(mlp, tmp_path / "o.onnx", op_types=("GRU",))
    with pytest.raises(InvalidParameterError, match="ConvInteger"):
        quantize_dynamic_int8(mlp, tmp_path / "o.onnx", op_types=("Conv",))
    with pytest.raises(InvalidParameterError, match="weight_type"):
        quantize_dynamic_int8(mlp, tmp_path / "o.onnx", weight_type="int4")
    with pytest.raises(InvalidParameterError, match="neither a node name nor an op type"):
        quantize_dynamic_int8(mlp, tmp_path / "o.onnx", keep_float=["/encoder/nothing"])
    with pytest.raises(InvalidParameterError, match="method"):
        quantize_static_int8(mlp, tmp_path / "o.onnx", calib, method="kl")
    with pytest.raises(InvalidParameterError, match="percentile"):
        quantize_static_int8(mlp, tmp_path / "o.onnx", calib, method="percentile", percentile=50)
    with pytest.raises(InvalidParameterError, match="no input sets"):
        quantize_static_int8(mlp, tmp_path / "o.onnx", [], progress=False)
    with pytest.raises(InvalidParameterError, match="unknown"):
        quantize_static_int8(mlp, tmp_path / "o.onnx", [{"feats": np.zeros((1, 10, 80), np.float32)}], progress=False)
    with pytest.raises(InvalidParameterError, match="dtype float64"):
        quantize_static_int8(mlp, tmp_path / "o.onnx", [{"x": np.zeros((1, 10, 80))}], progress=False)
    with pytest.raises(InvalidParameterError, match="wrap a single input dict"):
        quantize_static_int8(mlp, tmp_path / "o.onnx", calib[0], progress=False)
    assert not (tmp_path / "o.onnx").exists()
    with pytest.raises(CheckpointError, match="does not exist"):
        model_size_bytes(tmp_path / "missing.onnx")
