"""Layer-by-layer comparison of a float ONNX model with its int8 version.

Every float tensor produced by a node of the float graph that also exists in the int8 graph is made an extra graph
output of a copy of each model; both copies run on the same inputs, and per tensor we measure the cosine similarity
of the flattened tensors, the maximum absolute error and the relative L2 error, averaged over the inputs. The
layers with the lowest cosine similarity are the candidates to keep in float (``keep_float=`` of the quantizers).

How int8 tensors are matched with float ones:

* QDQ models keep the float tensor names; a tensor ``T`` that was quantized is read after its
  QuantizeLinear -> DequantizeLinear pair, i.e. as the consumers of ``T`` see it.
* QOperator models carry ``T_quantized`` with ``T_scale`` and ``T_zero_point``; a DequantizeLinear is added to read
  it back as float.
* Otherwise (dynamically quantized models, nodes left in float) the tensor with the same name is used.

Intermediate outputs can keep onnxruntime from fusing a few QDQ patterns, so per-layer figures are a close
estimate of the deployed numerics; the model outputs themselves are exact.
"""

from __future__ import annotations

import ast
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidParameterError
from .onnx_export import load_onnx, write_onnx
from .quantize import node_label
from .runtime import OrtSession

__all__ = ["LayerComparison", "LayerComparisons", "compare_layers", "node_scope", "tensor_metrics"]

logger = logging.getLogger(__name__)

# TensorProto element types holding real numbers: FLOAT, FLOAT16, DOUBLE, BFLOAT16.
_FLOAT_TYPES = {1, 10, 11, 16}
_SKIP_OPS = {"Constant", "ConstantOfShape", "Shape", "Size", "QuantizeLinear", "DequantizeLinear"}
_DQ_SUFFIX = "__audioforge_dequantized"


@dataclass(frozen=True)
class LayerComparison:
    """How far one int8 tensor is from its float counterpart.

    Attributes
    ----------
    index
        Position of the producing node in the float graph (graph order).
    node_name, op_type
        The float graph's node that produces the tensor (pass ``node_name`` to ``keep_float=``).
    tensor_name
        The float tensor's name.
    int8_tensor_name
        The int8 graph tensor it was compared with.
    scope
        The torch module path (``"encoder.layers.3.ff"``) when the exporter recorded it, else ``""``.
    cosine
        Cosine similarity of the flattened tensors, averaged over the inputs (1 = identical direction).
    cosine_min
        The lowest cosine similarity over the inputs.
    max_abs_error
        The largest absolute difference, averaged over the inputs.
    rel_l2_error
        ``||int8 - float|| / ||float||``, averaged over the inputs.
    n_inputs
        How many input sets were compared.
    """

    index: int
    node_name: str
    op_type: str
    tensor_name: str
    int8_tensor_name: str
    scope: str
    cosine: float
    cosine_min: float
    max_abs_error: float
    rel_l2_error: float
    n_inputs: int

    @property
    def label(self) -> str:
        """``node_name`` with the module scope when known: ``"node_MatMul_5 (encoder.ff)"``."""
        return f"{self.node_name} ({self.scope})" if self.scope else self.node_name


class LayerComparisons(list):
    """A list of :class:`LayerComparison` in graph order, with helpers to pick the layers int8 hurts most."""

    def worst(self, n: int = 10) -> list[LayerComparison]:
        """The ``n`` layers with the lowest cosine similarity (NaN counts as worst), worst first."""
        return sorted(self, key=lambda c: (-math.inf if math.isnan(c.cosine) else c.cosine, c.index))[: max(n, 0)]

    def below(self, threshold: float = 0.99) -> list[str]:
        """Node names (unique, graph order) with a tensor whose cosine similarity is below ``threshold``."""
        names: list[str] = []
        for c in self:
            if (math.isnan(c.cosine) or c.cosine < threshold) and c.node_name not in names:
                names.append(c.node_name)
        return names

    def by_tensor(self) -> dict[str, LayerComparison]:
        """``{float tensor name: comparison}``."""
        return {c.tensor_name: c for c in self}


def tensor_metrics(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float, float]:
    """Cosine similarity, max abs error and relative L2 error of ``candidate`` against ``reference``.

    Two all-zero tensors have cosine 1; one all-zero tensor against a non-zero one has cosine 0. Positions where
    both tensors hold the same non-finite value (masked attention scores filled with -inf) are equal by
    construction and left out; a non-finite value in only one of them makes the tensors incomparable (cosine 0,
    infinite errors).
    """
    a = np.asarray(reference, dtype=np.float64).ravel()
    b = np.asarray(candidate, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InvalidParameterError(f"cannot compare tensors of {a.size} and {b.size} elements")
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not (fa.all() and fb.all()):
        same = (~fa) & (~fb) & ((a == b) | (np.isnan(a) & np.isnan(b)))
        if np.any((~fa | ~fb) & ~same):
            return 0.0, math.inf, math.inf
        a, b = a[~same], b[~same]
    if a.size == 0:
        return 1.0, 0.0, 0.0
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    diff = a - b
    nd = float(np.linalg.norm(diff))
    if na == 0.0 and nb == 0.0:
        cos = 1.0
    elif na == 0.0 or nb == 0.0:
        cos = 0.0
    else:
        cos = float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))
    rel = nd / na if na > 0 else (0.0 if nd == 0 else math.inf)
    return cos, float(np.max(np.abs(diff))), rel


def node_scope(node: Any) -> str:
    """The torch module path of an exported node: from the dynamo exporter's ``pkg.torch.onnx.name_scopes``
    metadata, or from a TorchScript-exporter name such as ``/encoder/layers.0/ff/MatMul``."""
    for prop in getattr(node, "metadata_props", []):
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                break
            if isinstance(scopes, list) and len(scopes) >= 2:
                return ".".join(str(s) for s in scopes[1:-1] if s)
    name = node.name or ""
    if name.startswith("/") and name.count("/") >= 2:
        return ".".join(p for p in name.split("/")[1:-1] if p)
    return ""


def _types(model: Any) -> dict[str, int]:
    """``{tensor name: element type}`` from graph inputs/outputs, value_info and ONNX shape inference."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # inference fails on some custom-domain graphs; fall back to what is declared
        logger.debug("shape inference failed (%s); using declared types only", exc)
        inferred = model
    types: dict[str, int] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for t in inferred.graph.initializer:
        types[t.name] = t.data_type
    return types


def _match_int8_tensors(float_names: Sequence[str], int8: Any, int8_types: Mapping[str, int]) -> dict[str, str]:
    """``{float tensor: int8 tensor}``; adds DequantizeLinear nodes to ``int8`` for QOperator tensors."""
    from onnx import helper

    producer = {o: n for n in int8.graph.node for o in n.output if o}
    known = set(producer) | {i.name for i in int8.graph.input} | {t.name for t in int8.graph.initializer}
    wanted = set(float_names)
    mapping: dict[str, str] = {}
    # Direct names (dynamic quantization, nodes kept in float, graph outputs renamed onto DequantizeLinear).
    for name in float_names:
        if name in producer and int8_types.get(name) in _FLOAT_TYPES:
            mapping[name] = name
    # QOperator: T_quantized + T_scale + T_zero_point -> add a DequantizeLinear.
    for name in float_names:
        q_name, s_name, z_name = f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"
        if name not in mapping and q_name in producer and s_name in known and z_name in known:
            out = f"{name}{_DQ_SUFFIX}"
            int8.graph.node.append(
                helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [out], name=f"{name}_audioforge_dq")
            )
            mapping[name] = out
    # QDQ: DequantizeLinear(QuantizeLinear(T)) is what the consumers of T see.
    for node in list(int8.graph.node):
        if node.op_type != "DequantizeLinear":
            continue
        q = producer.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in wanted:
            mapping[q.input[0]] = node.output[0]
    return mapping


def _add_outputs(model: Any, names: Iterable[str], types: Mapping[str, int]) -> None:
    from onnx import helper

    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(helper.make_tensor_value_info(name, types.get(name, 1), None))
            existing.add(name)


def compare_layers(
    fp32_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    inputs: Iterable[Mapping[str, Any] | Sequence[Any]] | Callable[[], Iterable[Any]],
    *,
    max_inputs: int | None = None,
    op_types: Sequence[str] | None = None,
    intra_op_num_threads: int = 1,
) -> LayerComparisons:
    """Compare every intermediate tensor of a float model with its int8 counterpart.

    Parameters
    ----------
    fp32_path, int8_path
        The float model and a quantized version of it (QDQ, QOperator or dynamic).
    inputs
        Input sets (dicts or sequences in input order, as for calibration) or a callable returning them. Use
        realistic data: int8 errors depend on the activation ranges.
    max_inputs
        Use at most this many input sets.
    op_types
        Only compare tensors produced by these op types (all float-producing ops by default).
    intra_op_num_threads
        onnxruntime threads per session.

    Returns
    -------
    LayerComparisons
        One :class:`LayerComparison` per matched tensor, in graph order; ``.worst(n)`` ranks them.

    Raises
    ------
    CheckpointError
        If a model is missing or unreadable.
    InvalidParameterError
        If the inputs do not fit the models, no input set is given, or no tensor could be matched.
    """
    fp32 = load_onnx(fp32_path)
    int8 = load_onnx(int8_path)
    if max_inputs is not None and (isinstance(max_inputs, bool) or int(max_inputs) < 1):
        raise InvalidParameterError(f"max_inputs must be a positive integer or None, got {max_inputs!r}")
    fp32_types = _types(fp32)
    int8_types = _types(int8)
    ops = set(op_types) if op_types is not None else None
    candidates: list[tuple[int, str, str, str, str]] = []  # (index, node name, op, tensor, scope)
    for index, node in enumerate(fp32.graph.node):
        if node.op_type in _SKIP_OPS or (ops is not None and node.op_type not in ops):
            continue
        for out in node.output:
            if out and fp32_types.get(out) in _FLOAT_TYPES:
                candidates.append((index, node_label(node, index), node.op_type, out, node_scope(node)))
    mapping = _match_int8_tensors([c[3] for c in candidates], int8, int8_types)
    # QOperator folds Relu/Clip into the producer's output range: T_quantized then holds relu(T). Compare it with
    # the float activation's output instead of with T.
    for node in fp32.graph.node:
        if node.op_type in ("Relu", "Clip") and node.input and node.output:
            src, dst = node.input[0], node.output[0]
            if dst not in mapping and mapping.get(src, "").endswith(_DQ_SUFFIX):
                mapping[dst] = mapping.pop(src)
    candidates = [c for c in candidates if c[3] in mapping]
    if not candidates:
        raise InvalidParameterError(
            f"no float tensor of {Path(fp32_path).name!r} could be matched in {Path(int8_path).name!r}; is the int8 "
            "model quantized from this float model?"
        )
    _add_outputs(fp32, [c[3] for c in candidates], fp32_types)
    _add_outputs(
        int8,
        [mapping[c[3]] for c in candidates],
        {**int8_types, **{mapping[c[3]]: fp32_types.get(c[3], 1) for c in candidates}},
    )

    data = inputs() if callable(inputs) else inputs
    if data is None or isinstance(data, (str, bytes, Mapping)):
        raise InvalidParameterError("inputs must be an iterable of input sets (wrap a single dict in a list)")
    sums: dict[str, list[float]] = {c[3]: [0.0, 0.0, 0.0] for c in candidates}
    mins: dict[str, float] = {c[3]: math.inf for c in candidates}
    count = 0
    with tempfile.TemporaryDirectory(prefix=".af-compare-") as d:
        f_path = write_onnx(fp32, Path(d) / "fp32_outputs.onnx", check=False)
        q_path = write_onnx(int8, Path(d) / "int8_outputs.onnx", check=False)
        f_sess = OrtSession(f_path, intra_op_num_threads=intra_op_num_threads)
        q_sess = OrtSession(q_path, intra_op_num_threads=intra_op_num_threads)
        f_names = [c[3] for c in candidates]
        q_names = [mapping[c[3]] for c in candidates]
        for sample in islice(data, None if max_inputs is None else int(max_inputs)):
            feed = f_sess.prepare(sample)
            ref = f_sess.run(feed, output_names=f_names)
            got = q_sess.run(feed, output_names=q_names)
            for name, qname in zip(f_names, q_names, strict=True):
                if ref[name].shape != got[qname].shape:
                    raise InvalidParameterError(
                        f"tensor {name!r} has shape {list(ref[name].shape)} in the float model but "
                        f"{list(got[qname].shape)} as {qname!r} in the int8 model"
                    )
                cos, mx, rel = tensor_metrics(ref[name], got[qname])
                acc = sums[name]
                acc[0] += cos
                acc[1] += mx
                acc[2] += rel
                mins[name] = min(mins[name], cos)
            count += 1
    if count == 0:
        raise InvalidParameterError("inputs produced no input set; give at least one")
    result = LayerComparisons(
        LayerComparison(
            index=index,
            node_name=node_name,
            op_type=op,
            tensor_name=tensor,
            int8_tensor_name=mapping[tensor],
            scope=scope,
            cosine=sums[tensor][0] / count,
            cosine_min=mins[tensor],
            max_abs_error=sums[tensor][1] / count,
            rel_l2_error=sums[tensor][2] / count,
            n_inputs=count,
        )
        for index, node_name, op, tensor, scope in candidates
    )
    worst = result.worst(1)[0]
    logger.info(
        "compared %d tensors on %d input sets; worst: %s %s cosine %.4f",
        len(result),
        count,
        worst.label,
        worst.tensor_name,
        worst.cosine,
    )
    return result
