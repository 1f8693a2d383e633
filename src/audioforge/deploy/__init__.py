"""Deployment toolkit for any torch module: ONNX export and verification, int8 quantization, layer-wise
float-vs-int8 comparison with a report, and onnxruntime inference.

Typical flow::

    from audioforge import deploy

    path = deploy.export_onnx(model, (chunk, cache, offset), "encoder.onnx", input_names=[...],
                              output_names=[...], dynamic_axes={"chunk": {1: "T"}}, metadata={"chunk_size": 16})
    deploy.verify_onnx(model, path, [inputs_16, inputs_8, inputs_4])
    deploy.quantize_static_int8(path, "encoder.int8.onnx", calibration_sets, method="entropy")
    layers = deploy.compare_layers(path, "encoder.int8.onnx", calibration_sets)
    deploy.write_quantization_report(layers, "report/", title="encoder int8", model_sizes={...})
    outputs = deploy.OrtSession("encoder.int8.onnx").run({"chunk": ..., "offset": ...})

Names are loaded on first use, so ``from audioforge.deploy import OrtSession`` imports neither torch nor onnx.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "InputSpec": "runtime",
    "OrtSession": "runtime",
    "OutputError": "onnx_export",
    "VerifyReport": "onnx_export",
    "export_onnx": "onnx_export",
    "load_onnx": "onnx_export",
    "read_metadata": "onnx_export",
    "verify_onnx": "onnx_export",
    "write_onnx": "onnx_export",
    "model_size_bytes": "quantize",
    "quantize_dynamic_int8": "quantize",
    "quantize_static_int8": "quantize",
    "resolve_nodes": "quantize",
    "LayerComparison": "compare",
    "LayerComparisons": "compare",
    "compare_layers": "compare",
    "tensor_metrics": "compare",
    "plot_layer_cosine": "report",
    "write_quantization_report": "report",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
