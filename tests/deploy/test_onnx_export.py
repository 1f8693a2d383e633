"""audioforge.deploy export, verification, metadata and the torch-free onnxruntime session."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from audioforge.deploy import OrtSession, export_onnx, read_metadata, verify_onnx
from audioforge.errors import AudioForgeError, CheckpointError, InvalidParameterError

# ----------------------------------------------------------------------------------------------------- models


class MLP(nn.Module):
    def __init__(self, d_in: int = 40, d_hidden: int = 64, d_out: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyTransformerLayer(nn.Module):
    """Pre-norm self-attention + GELU feed-forward, written out like the ASR/PaSST blocks are."""

    def __init__(self, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.ff(self.norm2(x))


class ConvGRU(nn.Module):
    """A conv1d stack followed by a GRU (the DDSP decoder's shape)."""

    def __init__(self, d_in: int = 16, d: int = 24) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(d_in, d, 3, padding=1), nn.ReLU(), nn.Conv1d(d, d, 3, padding=1))
        self.gru = nn.GRU(d, d, batch_first=True)
        self.out = nn.Linear(d, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        y, _ = self.gru(h)
        return self.out(y)


class StreamingEncoder(nn.Module):
    """The streaming encoder interface: a chunk with a dynamic time axis, a cache and an int64 offset."""

    def __init__(self, d: int = 16, cache: int = 4) -> None:
        super().__init__()
        self.cache = cache
        self.inp = nn.Linear(d, d)
        self.conv = nn.Conv1d(d, d, cache + 1)
        self.out = nn.Linear(d, d)

    def forward(self, chunk: torch.Tensor, cache: torch.Tensor, offset: torch.Tensor):
        x = torch.cat([cache, self.inp(chunk)], dim=1)  # (B, cache + T, d)
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, d): causal conv over the cache
        pos = (torch.arange(y.shape[1]) + offset).to(y.dtype).unsqueeze(-1)
        return self.out(torch.tanh(y)) + 0.01 * torch.sin(pos), x[:, -self.cache :]


class DataDependent(nn.Module):
    """Python control flow on tensor values: torch.export refuses it, the TorchScript tracer records one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1e9:
            return self.lin(x)
        return x  # pragma: no cover


def _streaming_inputs(t: int, offset: int, *, d: int = 16, cache: int = 4) -> tuple[torch.Tensor, ...]:
    return torch.randn(1, t, d), torch.randn(1, cache, d), torch.tensor(offset, dtype=torch.int64)


CASES = {
    "mlp": (lambda: MLP(), lambda t: (torch.randn(2, t, 40),), {"x": {1: "T"}}),
    "transformer": (lambda: TinyTransformerLayer(), lambda t: (torch.randn(2, t, 32),), {"x": {1: "T"}}),
    "conv_gru": (lambda: ConvGRU(), lambda t: (torch.randn(1, t, 16),), {"x": {1: "T"}, "y": {1: "T"}}),
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ------------------------------------------------------------------------------------------------------ export


@pytest.mark.parametrize(
    ("kind", "exporter", "opset"),
    [
        ("mlp", "dynamo", 17),
        ("mlp", "legacy", 17),
        ("transformer", "dynamo", 18),
        ("transformer", "legacy", 17),
        pytest.param("transformer", "auto", 17, marks=pytest.mark.slow),
        ("conv_gru", "legacy", 17),
        ("conv_gru", "auto", 17),
    ],
)
def test_export_and_verify_over_several_lengths(tmp_path, kind, exporter, opset):
    make, inputs, axes = CASES[kind]
    model = make().eval()
    path = export_onnx(
        model, inputs(12), tmp_path / f"{kind}.onnx", input_names=["x"], output_names=["y"], dynamic_axes=axes,
        exporter=exporter, opset=opset,
    )
    assert path.is_file()
    used = read_metadata(path)["audioforge.exporter"]
    assert used == exporter or exporter == "auto"
    report = verify_onnx(model, path, [inputs(t) for t in (3, 12, 50)])
    assert report.ok
    assert len(report.errors) == 3
    assert report.max_abs_error < 1e-4


def test_dynamo_refuses_a_gru_time_axis_it_would_bake_in(tmp_path):
    # torch.export specialises the GRU's sequence length; with named dims that is an error, not a silently
    # fixed-length model (which would only fail later, at another chunk length).
    make, inputs, axes = CASES["conv_gru"]
    with pytest.raises(CheckpointError, match="dynamo"):
        export_onnx(make().eval(), inputs(12), tmp_path / "g.onnx", input_names=["x"], output_names=["y"],
                    dynamic_axes=axes, exporter="dynamo")
    path = export_onnx(make().eval(), inputs(12), tmp_path / "g.onnx", input_names=["x"], output_names=["y"],
                       dynamic_axes=axes)
    assert read_metadata(path)["audioforge.exporter"] == "legacy"


@pytest.mark.slow
def test_dynamo_opset_17_conversion_failure_is_explained(tmp_path):
    make, inputs, axes = CASES["transformer"]
    try:
        export_onnx(make().eval(), inputs(12), tmp_path / "t.onnx", input_names=["x"], dynamic_axes=axes,
                    exporter="dynamo", opset=17)
    except CheckpointError as exc:  # torch's 18 -> 17 conversion leaves Split(num_outputs) behind
        assert "opset=18" in str(exc)


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_streaming_encoder_with_cache_and_int64_offset(tmp_path, exporter):
    model = StreamingEncoder().eval()
    path = export_onnx(
        model, _streaming_inputs(8, 0), tmp_path / "enc.onnx", input_names=["chunk", "cache", "offset"],
        output_names=["output", "new_cache"], dynamic_axes={"chunk": {1: "T"}, "output": {1: "T"}},
        metadata={"chunk_size": 8, "subsampling_rate": 4, "right_context": 6, "model": "toy"}, exporter=exporter,
    )
    sess = OrtSession(path)
    assert sess.input_names == ["chunk", "cache", "offset"]
    assert sess.output_names == ["output", "new_cache"]
    by_name = {s.name: s for s in sess.inputs}
    assert by_name["chunk"].shape == (1, "T", 16)
    assert by_name["offset"].shape == () and by_name["offset"].dtype == np.int64
    report = verify_onnx(model, path, [_streaming_inputs(t, off) for t, off in ((1 + 3, 0), (8, 8), (16, 24), (33, 5))])
    assert report.ok, str(report)
    assert set(report.per_output()) == {"output", "new_cache"}
    # Chunk by chunk: onnxruntime carries the cache exactly like torch does.
    chunks = [torch.randn(1, 8, 16) for _ in range(3)]
    cache_t = torch.zeros(1, 4, 16)
    cache_o = np.zeros((1, 4, 16), np.float32)
    for i, c in enumerate(chunks):
        with torch.no_grad():
            out_t, cache_t = model(c, cache_t, torch.tensor(8 * i))
        res = sess.run({"chunk": c.numpy(), "cache": cache_o, "offset": 8 * i})  # a Python int is accepted
        cache_o = res["new_cache"]
        np.testing.assert_allclose(res["output"], out_t.numpy(), rtol=1e-4, atol=1e-5)


def test_auto_falls_back_to_legacy_with_a_logged_reason(tmp_path, caplog):
    model = DataDependent().eval()
    with caplog.at_level(logging.WARNING, logger="audioforge.deploy.onnx_export"):
        path = export_onnx(model, (torch.randn(2, 8),), tmp_path / "dd.onnx", input_names=["x"], output_names=["y"])
    assert read_metadata(path)["audioforge.exporter"] == "legacy"
    assert any("falling back to the TorchScript exporter" in r.getMessage() for r in caplog.records)
    verify_onnx(model, path, [(torch.randn(2, 8),)])


@pytest.mark.slow
def test_auto_uses_dynamo_for_nn_transformer_layer(tmp_path):
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True).eval()
    path = export_onnx(layer, (torch.randn(2, 10, 32),), tmp_path / "tel.onnx", input_names=["x"],
                       output_names=["y"], dynamic_axes={"x": {1: "T"}})
    assert read_metadata(path)["audioforge.exporter"] == "dynamo"
    verify_onnx(layer, path, [(torch.randn(2, t, 32),) for t in (4, 17)])


def test_dynamic_shapes_with_both_exporters(tmp_path):
    from torch.export import Dim

    model = MLP().eval()
    shapes = {"x": {1: Dim("frames", min=2, max=4096)}}
    for exporter in ("dynamo", "legacy"):
        path = export_onnx(model, (torch.randn(2, 9, 40),), tmp_path / f"{exporter}.onnx", input_names=["x"],
                           dynamic_shapes=shapes, exporter=exporter)
        dims = OrtSession(path).inputs[0].shape
        assert isinstance(dims[1], str) and dims[2] == 40
        verify_onnx(model, path, [(torch.randn(2, t, 40),) for t in (2, 31)])


def test_keyword_example_inputs(tmp_path):
    model = StreamingEncoder().eval()
    chunk, cache, offset = _streaming_inputs(8, 0)
    kwargs = {"chunk": chunk, "cache": cache, "offset": offset}
    path = export_onnx(model, kwargs, tmp_path / "kw.onnx", dynamic_axes={"chunk": {1: "T"}})
    assert OrtSession(path).input_names == ["chunk", "cache", "offset"]
    verify_onnx(model, path, [dict(zip(kwargs, _streaming_inputs(t, 3), strict=True)) for t in (5, 12)])


def test_export_restores_training_mode(tmp_path):
    model = MLP().train()
    export_onnx(model, (torch.randn(2, 5, 40),), tmp_path / "m.onnx", exporter="legacy")
    assert model.training


def test_metadata_round_trip_keeps_types(tmp_path):
    meta = {"output_size": 256, "chunk_size": 16, "cmvn_floor": 1e-20, "causal": True, "tokenizer": "bpe 500 ü"}
    path = export_onnx(MLP().eval(), (torch.randn(2, 5, 40),), tmp_path / "m.onnx", metadata=meta, exporter="legacy")
    back = read_metadata(path)
    for key, value in meta.items():
        assert back[key] == value and type(back[key]) is type(value)
    # Other tools (and the C++ runtime) see plain strings.
    raw = OrtSession(path).metadata
    assert raw["output_size"] == "256" and raw["causal"] == "true"


def test_export_argument_errors(tmp_path):
    model = MLP().eval()
    x = (torch.randn(2, 5, 40),)
    with pytest.raises(InvalidParameterError, match="reserved"):
        export_onnx(model, x, tmp_path / "a.onnx", metadata={"audioforge.exporter": "x"})
    with pytest.raises(InvalidParameterError, match="str, int, float or bool"):
        export_onnx(model, x, tmp_path / "a.onnx", metadata={"vocab": [1, 2]})
    with pytest.raises(InvalidParameterError, match="input_names has 2 names"):
        export_onnx(model, x, tmp_path / "a.onnx", input_names=["a", "b"])
    with pytest.raises(InvalidParameterError, match="neither an input nor an output"):
        export_onnx(model, x, tmp_path / "a.onnx", input_names=["x"], dynamic_axes={"feats": {1: "T"}})
    with pytest.raises(InvalidParameterError, match="rank 3"):
        export_onnx(model, x, tmp_path / "a.onnx", input_names=["x"], dynamic_axes={"x": {3: "T"}})
    with pytest.raises(InvalidParameterError, match="exporter"):
        export_onnx(model, x, tmp_path / "a.onnx", exporter="tf")
    with pytest.raises(InvalidParameterError, match="no tensor"):
        export_onnx(model, (3,), tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()


def test_export_failure_is_a_checkpoint_error(tmp_path):
    class IgnoresInput(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ones(3)

    with pytest.raises(CheckpointError, match="export of IgnoresInput failed"):
        export_onnx(IgnoresInput(), (torch.randn(2),), tmp_path / "bad.onnx", input_names=["x"], exporter="legacy")
    assert list(tmp_path.iterdir()) == []  # nothing left behind, not even a temporary file


# ------------------------------------------------------------------------------------------------------ verify


def test_verify_raises_for_a_different_module(tmp_path):
    model = MLP().eval()
    path = export_onnx(model, (torch.randn(2, 5, 40),), tmp_path / "m.onnx", input_names=["x"],
                       dynamic_axes={"x": {1: "T"}}, exporter="legacy")
    other = MLP().eval()  # same architecture, other weights
    with pytest.raises(CheckpointError, match=r"disagrees with MLP.*output 'net_2|disagrees with MLP") as info:
        verify_onnx(other, path, [(torch.randn(2, t, 40),) for t in (3, 7)])
    assert isinstance(info.value, AudioForgeError)
    assert "max abs" in str(info.value)
    report = verify_onnx(other, path, [(torch.randn(2, 3, 40),)], raise_on_mismatch=False)
    assert not report.ok and report.max_abs_error > 1e-3


def test_verify_reports_output_count_mismatch(tmp_path):
    model = StreamingEncoder().eval()
    path = export_onnx(model, _streaming_inputs(8, 0), tmp_path / "e.onnx", exporter="legacy",
                       input_names=["chunk", "cache", "offset"])

    class FirstOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, *args):
            return self.m(*args)[0]

    with pytest.raises(CheckpointError, match="returns 1 tensors"):
        verify_onnx(FirstOnly(), path, [_streaming_inputs(8, 0)])
    with pytest.raises(InvalidParameterError, match="empty"):
        verify_onnx(model, path, [])


# ---------------------------------------------------------------------------------------------------- runtime


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rt") / "enc.onnx"
    return export_onnx(
        StreamingEncoder().eval(), _streaming_inputs(8, 0), path, input_names=["chunk", "cache", "offset"],
        output_names=["output", "new_cache"], dynamic_axes={"chunk": {1: "T"}, "output": {1: "T"}}, exporter="legacy",
    )


def _feed(t: int = 8) -> dict[str, np.ndarray]:
    return {
        "chunk": np.random.default_rng(t).standard_normal((1, t, 16), dtype=np.float32),
        "cache": np.zeros((1, 4, 16), np.float32),
        "offset": np.array(0, np.int64),
    }


def test_session_runs_dict_and_positional(encoder_path):
    sess = OrtSession(encoder_path, intra_op_num_threads=1, graph_optimization_level="basic")
    feed = _feed(11)
    a = sess.run(feed)
    b = sess.run([feed["chunk"], feed["cache"], feed["offset"]])
    c = sess.run(feed, output_names=["new_cache"])
    assert a["output"].shape == (1, 11, 16) and a["new_cache"].shape == (1, 4, 16)
    np.testing.assert_array_equal(a["output"], b["output"])
    assert list(c) == ["new_cache"]
    assert "chunk: float32 [1, 'T', 16]" in repr(sess)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda f: f.pop("offset"), r"missing 'offset: int64 \[\]'"),
        (lambda f: f.update(feats=f["chunk"]), r"unknown \['feats'\]"),
        (lambda f: f.update(chunk=f["chunk"].astype(np.float64)), "'chunk' has dtype float64.*expects float32"),
        (lambda f: f.update(offset=np.array(0, np.int32)), "'offset' has dtype int32.*expects int64"),
        (lambda f: f.update(offset=1.5), "'offset' expects int64"),
        (lambda f: f.update(chunk=f["chunk"][0]), r"'chunk' has rank 2 .*rank 3: chunk: float32 \[1, 'T', 16\]"),
        (lambda f: f.update(cache=np.zeros((1, 5, 16), np.float32)), "'cache' has size 5 on axis 1.*axis to 4"),
    ],
)
def test_session_input_validation(encoder_path, change, match):
    sess = OrtSession(encoder_path)
    feed = _feed()
    change(feed)
    with pytest.raises(InvalidParameterError, match=match):
        sess.run(feed)


def test_session_other_errors(encoder_path, tmp_path):
    sess = OrtSession(encoder_path)
    with pytest.raises(InvalidParameterError, match="takes 3 inputs"):
        sess.run([np.zeros((1, 8, 16), np.float32)])
    with pytest.raises(InvalidParameterError, match="unknown output names"):
        sess.run(_feed(), output_names=["logits"])
    with pytest.raises(CheckpointError, match="does not exist"):
        OrtSession(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="cannot load"):
        OrtSession(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_metadata(tmp_path / "missing.onnx")
    with pytest.raises(InvalidParameterError, match="graph_optimization_level"):
        OrtSession(encoder_path, graph_optimization_level="max")
    with pytest.raises(InvalidParameterError, match="intra_op_num_threads"):
        OrtSession(encoder_path, intra_op_num_threads=-1)
    with pytest.raises(InvalidParameterError, match="not available"):
        OrtSession(encoder_path, providers=("CUDAExecutionProvider",))


def test_session_accepts_torch_tensors(encoder_path):
    sess = OrtSession(encoder_path)
    chunk, cache, offset = _streaming_inputs(6, 2)
    out = sess.run({"chunk": chunk, "cache": cache, "offset": offset})
    assert out["output"].shape == (1, 6, 16)


def test_inference_does_not_import_torch(encoder_path):
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from audioforge.deploy import OrtSession
        sess = OrtSession({str(encoder_path)!r})
        out = sess.run({{"chunk": np.zeros((1, 5, 16), np.float32), "cache": np.zeros((1, 4, 16), np.float32),
                        "offset": 0}})
        assert out["output"].shape == (1, 5, 16)
        assert "torch" not in sys.modules, "torch was imported"
        assert "onnx" not in sys.modules, "onnx was imported"
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
