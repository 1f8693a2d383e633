"""The quantization report: a markdown summary and a PNG of per-layer cosine similarity (matplotlib Agg).

The markdown has the model sizes and their ratio, task metrics before and after (e.g. CER fp32 vs int8; the
metric that decides whether the int8 model ships), the layers int8 hurts most, and the node names to keep in float
(those below a cosine threshold) in the form ``keep_float=`` takes. Both files are written atomically.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..audio import atomic_path
from ..errors import InvalidParameterError
from .compare import LayerComparison, LayerComparisons

__all__ = ["plot_layer_cosine", "write_quantization_report"]


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000.0
    return f"{n:.2f} GB"  # pragma: no cover - loop always returns


def _fmt(x: float) -> str:
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf"
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.3e}"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_PAIR = re.compile(r"^(?P<metric>.*?)[\s_-]*(?P<kind>fp32|float32|float|int8)$", re.IGNORECASE)


def _metric_rows(task_metrics: Mapping[str, float]) -> list[tuple[str, str, str, str]]:
    """Pair ``"CER fp32"`` with ``"CER int8"`` into one row (metric, fp32, int8, change); others get their own."""
    pairs: dict[str, dict[str, float]] = {}
    singles: list[tuple[str, float]] = []
    for key, value in task_metrics.items():
        m = _PAIR.match(key)
        if m and m.group("metric"):
            kind = "int8" if m.group("kind").lower() == "int8" else "fp32"
            pairs.setdefault(m.group("metric"), {})[kind] = float(value)
        else:
            singles.append((key, float(value)))
    rows = []
    for metric, v in pairs.items():
        a, b = v.get("fp32"), v.get("int8")
        change = ""
        if a is not None and b is not None:
            change = f"{b - a:+.4g}" + (f" ({(b - a) / abs(a) * 100:+.1f} %)" if a != 0 else "")
        rows.append((metric, _fmt(a) if a is not None else "", _fmt(b) if b is not None else "", change))
    rows += [(k, _fmt(v), "", "") for k, v in singles]
    return rows


def plot_layer_cosine(
    comparisons: Sequence[LayerComparison],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    threshold: float = 0.99,
    annotate: int = 5,
) -> Path:
    """Draw cosine similarity per layer in graph order with the threshold line and the worst layers labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = list(comparisons)
    if not comps:
        raise InvalidParameterError("no layer comparisons to plot")
    x = np.arange(len(comps))
    cos = np.array([c.cosine for c in comps], dtype=np.float64)
    width = min(max(8.0, len(comps) * 0.08), 24.0)
    fig, ax = plt.subplots(figsize=(width, 4.5), dpi=100)
    ax.plot(x, cos, marker="o", markersize=3, linewidth=1, color="tab:blue", label="cosine similarity (mean)")
    below = cos < threshold
    ax.scatter(x[below], cos[below], color="tab:red", s=18, zorder=3, label=f"below {threshold:g}")
    ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    worst = LayerComparisons(comps).worst(annotate)
    position = {id(c): i for i, c in enumerate(comps)}
    for c in worst:
        i = position[id(c)]
        if math.isnan(c.cosine):
            continue
        ax.annotate(
            f"{c.node_name}\n{c.op_type}",
            (i, c.cosine),
            textcoords="offset points",
            xytext=(6, -18),
            fontsize=7,
            color="tab:red",
            arrowprops={"arrowstyle": "-", "color": "tab:red", "lw": 0.5},
        )
    finite = cos[np.isfinite(cos)]
    low = min(float(finite.min()) if finite.size else threshold, threshold)
    ax.set_ylim(max(low - (1.0 - low) * 0.15 - 1e-4, -1.0), 1.0 + (1.0 - low) * 0.05 + 1e-4)
    ax.set_xlabel("layer (graph order)")
    ax.set_ylabel("cosine similarity, int8 vs fp32")
    ax.set_title(title or "per-layer cosine similarity")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    from ..plotting import save_figure

    return save_figure(fig, path)


def write_quantization_report(
    comparisons: Sequence[LayerComparison],
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    model_sizes: Mapping[str, int] | None = None,
    task_metrics: Mapping[str, float] | None = None,
    worst_n: int = 10,
    threshold: float = 0.99,
    stem: str = "quantization_report",
) -> Path:
    """Write ``<stem>.md`` and ``<stem>.png`` into ``out_dir`` and return the markdown path.

    Parameters
    ----------
    comparisons
        The result of :func:`~audioforge.deploy.compare_layers` (graph order).
    out_dir
        Folder for the two files (created if needed).
    title
        The report's heading, e.g. ``"U2++ encoder, static int8 (entropy, 50 utterances)"``.
    model_sizes
        ``{"fp32": bytes, "int8": bytes}`` (see :func:`~audioforge.deploy.model_size_bytes`); other keys are
        listed too.
    task_metrics
        e.g. ``{"CER fp32": 5.19, "CER int8": 5.31}``: keys ending in fp32/float/int8 are paired into one row with
        the change.
    worst_n
        How many of the worst layers to tabulate.
    threshold
        Layers with a cosine similarity below it are suggested for ``keep_float``.
    stem
        File name without extension.

    Raises
    ------
    InvalidParameterError
        For an empty comparison list or a non-positive ``worst_n``.
    """
    comps = LayerComparisons(comparisons)
    if not comps:
        raise InvalidParameterError("comparisons is empty: nothing to report")
    if worst_n < 1:
        raise InvalidParameterError(f"worst_n must be >= 1, got {worst_n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_layer_cosine(comps, out / f"{stem}.png", title=title, threshold=threshold, annotate=min(worst_n, 5))

    lines = [f"# {title}", ""]
    lines += ["## Summary", "", "| quantity | value |", "|---|---|"]
    sizes = dict(model_sizes or {})
    for key, value in sizes.items():
        lines.append(f"| size {_md_cell(key)} | {_fmt_bytes(float(value))} ({int(value)} bytes) |")
    fp32_size, int8_size = sizes.get("fp32"), sizes.get("int8")
    if fp32_size and int8_size is not None:
        lines.append(f"| size ratio int8 / fp32 | {int8_size / fp32_size:.3f} |")
    cos = np.array([c.cosine for c in comps], dtype=np.float64)
    worst_layer = comps.worst(1)[0]
    lines.append(f"| layers compared | {len(comps)} (on {worst_layer.n_inputs} input sets) |")
    lines.append(f"| mean cosine similarity | {np.nanmean(cos):.5f} |")
    lines.append(f"| lowest cosine similarity | {worst_layer.cosine:.5f} (`{_md_cell(worst_layer.node_name)}`) |")
    lines.append(f"| layers below {threshold:g} | {int(np.sum(~(cos >= threshold)))} |")
    lines.append("")

    if task_metrics:
        lines += ["## Task metrics", "", "| metric | fp32 | int8 | change |", "|---|---|---|---|"]
        lines += [f"| {_md_cell(m)} | {a} | {b} | {d} |" for m, a, b, d in _metric_rows(task_metrics)]
        lines.append("")

    lines += [
        f"## Worst {min(worst_n, len(comps))} layers by cosine similarity",
        "",
        "| rank | node | op type | module | tensor | cosine (mean) | cosine (min) | rel. L2 error | max abs error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, c in enumerate(comps.worst(worst_n), start=1):
        lines.append(
            f"| {rank} | `{_md_cell(c.node_name)}` | {c.op_type} | {_md_cell(c.scope) or '-'} | "
            f"`{_md_cell(c.tensor_name)}` | {c.cosine:.5f} | {c.cosine_min:.5f} | {_fmt(c.rel_l2_error)} | "
            f"{_fmt(c.max_abs_error)} |"
        )
    lines.append("")

    keep = comps.below(threshold)
    lines += ["## Suggestion", ""]
    if keep:
        lines.append(
            f"Keep in float (cosine < {threshold:g}): "
            + ", ".join(f"`{n}`" for n in keep)
            + f" -> `keep_float={keep!r}`"
        )
    else:
        lines.append(f"Keep in float: none (every layer has cosine >= {threshold:g}).")
    lines += [
        "",
        "Errors accumulate along the graph: the first layer that drops below the threshold is the one to keep in "
        "float first; re-run the comparison after each change and confirm on the task metric.",
        "",
        "## Plot",
        "",
        f"![cosine similarity per layer]({png.name})",
        "",
    ]
    md = out / f"{stem}.md"
    with atomic_path(md) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return md
