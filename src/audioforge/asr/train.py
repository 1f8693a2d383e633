"""Training of U2 / U2++ models with Lightning: :class:`U2LightningModule`, :class:`WarmupLR` and :func:`train_asr`.

:func:`train_asr` runs the whole flow from a configuration dict (see :data:`DEFAULT_TRAIN_CONFIG`):

1. the tokenizer is trained on the training transcripts (``char`` or sentencepiece ``bpe``) and the global CMVN is
   computed from training fbank frames; both are written to ``work_dir`` once and reused when training resumes;
2. Lightning trains the model with dynamic chunk training (the encoder's ``use_dynamic_chunk``), Adam with WeNet's
   WarmupLR schedule, gradient clipping and accumulation; validation (full-context loss and CTC greedy CER) runs
   every ``val_every_n_steps`` batches; the best ``save_top_k`` checkpoints (by validation loss) are kept and
   ``last.ckpt`` is written every ``checkpoint_every_n_steps`` steps; a new call resumes from ``last.ckpt``;
3. the weights of the best ``average_best`` checkpoints are averaged into the returned bundle (also saved to
   ``work_dir/bundle``).

Fine-tuning: ``init_from`` names an ASR bundle (folder or shipped name, e.g. ``"asr"``) whose weights, tokenizer and
CMVN start a fresh run (:func:`prepare_init_from`); the optimizer and the learning-rate schedule start anew, so give
a lower ``optim.lr`` and a short ``optim.warmup_steps``. A run that resumes from its own ``last.ckpt`` takes its
weights from the checkpoint.

``trainer.precision`` ``"bf16-mixed"`` trains under bfloat16 autocast (weights, optimizer state and the losses stay
float32); on this project's CPUs (AVX512-BF16) a step of the default model takes 2.4 s instead of 4.4 s.

Several processes (DDP, CPU with gloo) are used with ``trainer.devices > 1`` and ``trainer.strategy`` ``"ddp"`` or
``"ddp_spawn"``; each rank gets its own share of the duration-bucketed batches.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from ..bundle import Bundle, check_state_dict
from ..corpora.manifest import Manifest
from ..errors import CheckpointError, InvalidParameterError
from .cmvn import compute_cmvn_stats, load_cmvn, save_cmvn
from .data import AsrDataConfig, AsrDataModule, AsrDataset, load_manifest
from .frontend import FbankConfig
from .infer import Recognizer
from .model import U2Model, build_u2_model
from .streaming import DecodingConfig
from .tokenizer import BpeTokenizer, CharTokenizer, Tokenizer, load_tokenizer

__all__ = [
    "DEFAULT_TRAIN_CONFIG",
    "U2LightningModule",
    "WarmupLR",
    "average_checkpoints",
    "best_checkpoints",
    "build_tokenizer",
    "compute_training_cmvn",
    "plot_training",
    "prepare_init_from",
    "read_metrics",
    "train_asr",
]

_PRECISIONS = ("32", "32-true", "bf16-mixed")

DEFAULT_TRAIN_CONFIG: dict[str, Any] = {
    "work_dir": "runs/asr",
    "train_manifest": None,
    "train_split": "train",
    "extra_train_manifests": [],
    "valid_manifest": None,
    "valid_split": None,
    "valid_fraction": 0.02,
    "seed": 0,
    "tokenizer": {"type": "char"},
    "cmvn": {"max_utterances": 2000},
    "model": {
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": 144,
            "attention_heads": 4,
            "linear_units": 576,
            "num_blocks": 6,
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.0,
            "input_layer": "conv2d",
            "pos_enc_layer_type": "rel_pos",
            "normalize_before": True,
            "causal": True,
            "cnn_module_kernel": 15,
            "cnn_module_norm": "layer_norm",
            "use_dynamic_chunk": True,
            "use_dynamic_left_chunk": False,
        },
        "decoder": "bitransformer",
        "decoder_conf": {
            "attention_heads": 4,
            "linear_units": 576,
            "num_blocks": 1,
            "r_num_blocks": 1,
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
        },
        "model_conf": {"ctc_weight": 0.3, "reverse_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False},
    },
    "data": {},
    "optim": {"lr": 0.002, "warmup_steps": 2000, "weight_decay": 1e-6},
    "trainer": {
        "max_steps": 30000,
        "max_epochs": -1,
        "max_minutes": None,
        "accumulate_grad_batches": 1,
        "gradient_clip_val": 5.0,
        "val_every_n_steps": 500,
        "checkpoint_every_n_steps": 100,
        "save_top_k": 5,
        "average_best": 5,
        "devices": 1,
        "strategy": "auto",
        "num_threads": 1,
        "log_every_n_steps": 20,
        "precision": "32",
    },
    "decoding": {"chunk_size": 16, "num_left_chunks": -1},
    "init_from": None,
}

# model settings a fine-tuning run may change (regularisation and loss weights); every other model setting comes
# from the ``init_from`` bundle and must not be contradicted
_TRAINING_TIME_KEYS = {
    "encoder_conf": {"dropout_rate", "positional_dropout_rate", "attention_dropout_rate"},
    "decoder_conf": {"dropout_rate", "positional_dropout_rate", "self_attention_dropout_rate",
                     "src_attention_dropout_rate"},
    "model_conf": {"ctc_weight", "reverse_weight", "lsm_weight", "length_normalized_loss"},
}


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and k not in ("tokenizer",):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class WarmupLR(torch.optim.lr_scheduler.LRScheduler):
    """WeNet's schedule: ``lr * warmup**0.5 * min(step**-0.5, step * warmup**-1.5)`` (peak ``lr`` at ``warmup``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 25000, last_epoch: int = -1) -> None:
        if warmup_steps < 1:
            raise InvalidParameterError(f"warmup_steps must be >= 1, got {warmup_steps}")
        self.warmup_steps = int(warmup_steps)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        step = self.last_epoch + 1
        w = self.warmup_steps
        scale = w**0.5 * min(step**-0.5, step * w**-1.5)
        return [base * scale for base in self.base_lrs]


def _edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


class U2LightningModule(pl.LightningModule):
    """A :class:`~audioforge.asr.model.U2Model` trained with Adam + :class:`WarmupLR`.

    Parameters
    ----------
    model_config
        The :func:`~audioforge.asr.model.build_u2_model` configuration (with ``cmvn``).
    optim
        ``lr``, ``warmup_steps``, ``weight_decay``.
    num_threads
        torch CPU threads per process (0: leave as is).
    """

    def __init__(self, model_config: dict[str, Any], optim: dict[str, Any] | None = None, num_threads: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model: U2Model = build_u2_model(model_config)
        self.optim = {"lr": 0.002, "warmup_steps": 2000, "weight_decay": 0.0, **(optim or {})}
        self.num_threads = int(num_threads)

    def setup(self, stage: str) -> None:
        if self.num_threads > 0:
            torch.set_num_threads(self.num_threads)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.model(batch["feats"], batch["feats_lens"], batch["tokens"], batch["tokens_lens"])
        size = len(batch["keys"])
        self.log("train_loss", out["loss"], batch_size=size, prog_bar=True)
        for name in ("loss_ctc", "loss_att"):
            if out[name] is not None:
                self.log(f"train_{name}", out[name], batch_size=size)
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=size)
        return out["loss"]

    def full_context_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, encoder CTC log-probs)`` with full-context attention (no dynamic chunk draw)."""
        m = self.model
        enc, mask = m.encoder(batch["feats"], batch["feats_lens"], -1, -1)
        lens = mask.squeeze(1).sum(1)
        tokens, tokens_lens = batch["tokens"], batch["tokens_lens"]
        loss_ctc = m.ctc(enc, lens, tokens, tokens_lens) if m.ctc_weight > 0 else None
        loss_att = m._att_loss(enc, mask, tokens, tokens_lens) if m.ctc_weight < 1 else None
        if loss_ctc is None:
            loss = loss_att
        elif loss_att is None:
            loss = loss_ctc
        else:
            loss = m.ctc_weight * loss_ctc + (1 - m.ctc_weight) * loss_att
        return loss, m.ctc_log_softmax(enc), lens

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, logp, lens = self.full_context_loss(batch)
        best = logp.argmax(-1)
        errors = 0
        total = 0
        for b in range(best.size(0)):
            path = best[b, : int(lens[b])].tolist()
            hyp = [t for k, t in enumerate(path) if t != 0 and (k == 0 or t != path[k - 1])]
            ref = batch["tokens"][b, : int(batch["tokens_lens"][b])].tolist()
            errors += _edit_distance(ref, hyp)
            total += len(ref)
        size = len(batch["keys"])
        self.log("val_loss", loss, batch_size=size, sync_dist=True, prog_bar=True)
        self.log("val_token_error_rate", errors / max(total, 1), batch_size=size, sync_dist=True)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(
            self.model.parameters(), lr=float(self.optim["lr"]), weight_decay=float(self.optim["weight_decay"])
        )
        sched = WarmupLR(opt, int(self.optim["warmup_steps"]))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ----------------------------------------------------------------------------------------------- preparation


def build_tokenizer(lines: Sequence[str], config: Mapping[str, Any]) -> Tokenizer:
    """A tokenizer trained on transcripts: ``{"type": "char"}`` or ``{"type": "bpe", "vocab_size": N}``.

    Raises
    ------
    InvalidParameterError
        Unknown type or no text.
    """
    kind = config.get("type", "char")
    if not any(line.strip() for line in lines):
        raise InvalidParameterError("no transcripts to build a tokenizer from")
    if kind == "char":
        return CharTokenizer.build(lines)
    if kind == "bpe":
        return BpeTokenizer.train(lines, int(config.get("vocab_size", 256)), model_type=config.get("model_type", "bpe"))
    raise InvalidParameterError(f"unknown tokenizer type {kind!r}; use 'char' or 'bpe'")


def compute_training_cmvn(
    manifest: Manifest, *, frontend: FbankConfig | None = None, max_utterances: int | None = 2000, seed: int = 0
) -> dict[str, Any]:
    """WeNet's global CMVN statistics from the fbank of (a seeded sample of) training utterances, no augmentation."""
    import random

    idx = list(range(len(manifest)))
    if max_utterances is not None and len(idx) > max_utterances:
        idx = sorted(random.Random(seed).sample(idx, int(max_utterances)))
    ds = AsrDataset(Manifest([manifest[i] for i in idx], root=manifest.root), CharTokenizer.build(["a"]),
                    frontend=frontend, config=AsrDataConfig(speeds=[1.0], dither=0.0, specaug=None), train=False)
    return compute_cmvn_stats(ds[i]["feats"] for i in range(len(ds)))


_CKPT_RE = re.compile(r"step(\d+)-val_loss([0-9.]+|nan|inf)\.ckpt$")


def best_checkpoints(folder: str | os.PathLike[str], n: int) -> list[Path]:
    """The ``n`` checkpoints of ``folder`` with the lowest validation loss (from their names), best first."""
    scored = []
    for p in Path(folder).glob("step*-val_loss*.ckpt"):
        m = _CKPT_RE.search(p.name)
        if m:
            loss = float(m.group(2).rstrip("."))
            if math.isfinite(loss):
                scored.append((loss, -int(m.group(1)), p))
    scored.sort()
    return [p for _, _, p in scored[: max(n, 0)]]


def average_checkpoints(paths: Sequence[str | os.PathLike[str]], *, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights in Lightning checkpoints (keys without ``prefix``).

    Integer tensors (counters) are taken from the first checkpoint.

    Raises
    ------
    CheckpointError
        No path, unreadable files, or checkpoints with different keys.
    """
    if not paths:
        raise CheckpointError("no checkpoint to average")
    total: dict[str, torch.Tensor] = {}
    for i, path in enumerate(paths):
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            sd = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        except (OSError, KeyError, RuntimeError, EOFError) as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
        if i and set(sd) != set(total):
            raise CheckpointError(f"{path} has other weights than {paths[0]}")
        for k, v in sd.items():
            if not v.is_floating_point():
                total.setdefault(k, v.clone())
            elif i == 0:
                total[k] = v.detach().clone().double()
            else:
                total[k] += v.double()
    n = len(paths)
    return {k: (v / n).float() if v.is_floating_point() else v for k, v in total.items()}


def read_metrics(work_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Every row logged by :func:`train_asr` runs in ``work_dir`` (all ``logs/version_*/metrics.csv``), by step."""
    import csv

    rows: list[dict[str, float]] = []
    for path in sorted(Path(work_dir).glob("logs/version_*/metrics.csv")):
        with path.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    rows.sort(key=lambda r: r.get("step", 0.0))
    return rows


def plot_training(work_dir: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Path:
    """Draw the training curves of ``work_dir`` (:func:`read_metrics`) to ``path`` (default
    ``<work_dir>/training.png``): training loss (smoothed) and validation loss, and the validation token error rate,
    against the optimizer step."""
    from ..plotting import ema, plot_curves

    rows = read_metrics(work_dir)
    train = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
    val = [r for r in rows if "val_loss" in r]
    loss = {"train (moving average)": ([s for s, _ in train], ema([v for _, v in train]))}
    loss["validation"] = ([r["step"] for r in val], [r["val_loss"] for r in val])
    ter = {"validation": ([r["step"] for r in val if "val_token_error_rate" in r],
                          [100.0 * r["val_token_error_rate"] for r in val if "val_token_error_rate" in r])}
    out = Path(path) if path is not None else Path(work_dir) / "training.png"
    return plot_curves([("loss", loss), ("token error rate (%)", ter)], out, xlabel="optimizer step",
                       title=f"ASR training ({int(rows[-1]['step']) if rows else 0} steps logged)")


def _with_extra(train: Manifest, valid: Manifest, paths: Sequence[str | os.PathLike[str]],
                split: str | None) -> Manifest:
    """``train`` plus the entries of further manifests (training supplements), after the validation split was drawn
    from ``train`` alone, so validation stays what it was; entries whose transcript is a validation transcript are
    left out (the validation utterances also tune the language model fusion, which must not have seen them)."""
    if not paths:
        return train
    held = {e["txt"] for e in valid}
    entries = list(train)
    for path in paths:
        m = load_manifest(path, split=split)
        entries += [{**e, "wav": str(m.audio_path(e))} for e in m if e["txt"] not in held]
    return Manifest(entries, root=train.root)


def _model_overrides(bundle_model: Mapping[str, Any], wanted: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """The bundle's model configuration with the training-time settings of ``wanted`` applied; any other setting of
    ``wanted`` that differs from the bundle's is an error (the weights would not fit or would mean something else)."""
    out = copy.deepcopy(dict(bundle_model))
    conflicts = []
    for key, value in (wanted or {}).items():
        if key in _TRAINING_TIME_KEYS and isinstance(value, Mapping):
            section = dict(out.get(key) or {})
            for k, v in value.items():
                if k in _TRAINING_TIME_KEYS[key]:
                    section[k] = v
                elif section.get(k) != v:
                    conflicts.append(f"{key}.{k}: bundle {section.get(k)!r}, config {v!r}")
            out[key] = section
        elif isinstance(value, Mapping):
            have = out.get(key) if isinstance(out.get(key), Mapping) else {}
            conflicts += [f"{key}.{k}: bundle {have.get(k)!r}, config {v!r}"
                          for k, v in value.items() if have.get(k) != v]
        elif out.get(key) != value:
            conflicts.append(f"{key}: bundle {out.get(key)!r}, config {value!r}")
    if conflicts:
        raise InvalidParameterError(
            f"init_from {name}: the configured model differs from the bundle's ({'; '.join(conflicts[:6])}); the "
            "architecture comes from the bundle, so drop 'model' from the configuration or keep only dropout rates "
            "and model_conf loss weights in it")
    return out


def prepare_init_from(
    bundle: Bundle | str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    train: Sequence[Mapping[str, Any]] = (),
    model: Mapping[str, Any] | None = None,
) -> tuple[Tokenizer, dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """What a fine-tuning run takes from an ASR bundle: ``(tokenizer, model_config, state_dict, info)``.

    The tokenizer and the global CMVN (part of ``model_config``) are the bundle's, so the weights see inputs
    normalised as in their training; both are written to ``work_dir`` (``tokenizer.json``, ``global_cmvn.json``) so a
    resumed run keeps them, and ``init_from.json`` records where the weights came from.

    Parameters
    ----------
    bundle
        An ASR bundle (object, folder or shipped name).
    work_dir
        The training folder.
    train
        Manifest entries (``txt``) of the training data: every transcript must be spelled with the bundle's symbols.
    model
        The run's ``model`` settings, if it gives any: only dropout rates and ``model_conf`` loss weights may differ
        from the bundle's.

    Raises
    ------
    CheckpointError
        Not an ASR bundle, or its weights do not fit its own configuration, or ``work_dir`` already holds another
        tokenizer.
    InvalidParameterError
        Transcripts with symbols the bundle's tokenizer lacks, or model settings contradicting the bundle's.
    """
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    name = str(b.path) if b.path is not None else "<in-memory bundle>"
    if b.task != "asr":
        raise CheckpointError(f"init_from {name}: a {b.task!r} bundle, not an ASR one; give a speech recogniser's "
                              "bundle")
    if "tokenizer" not in b.options or "cmvn" not in b.hyperparameters:
        raise CheckpointError(f"init_from {name}: the bundle lacks its tokenizer or CMVN (not made by audioforge.asr)")
    tokenizer = load_tokenizer(b.options["tokenizer"])
    unknown: dict[str, int] = {}
    for e in train:
        if tokenizer.unk_id in tokenizer.encode(e["txt"]):
            unknown[e["txt"]] = unknown.get(e["txt"], 0) + 1
    if unknown:
        examples = "; ".join(repr(t[:60]) for t in list(unknown)[:3])
        raise InvalidParameterError(
            f"init_from {name}: {sum(unknown.values())} training transcripts hold symbols the bundle's tokenizer "
            f"lacks (e.g. {examples}); normalise them to its symbols {tokenizer.symbols[2:-1]} or train a new model")
    model_config = _model_overrides(b.hyperparameters, model, name)
    expected = build_u2_model(model_config).state_dict()
    check_state_dict(b.state_dict, expected, what=f"init_from {name}: the bundle's weights")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    tok_path = work / "tokenizer.json"
    if tok_path.is_file() and load_tokenizer(tok_path.read_text(encoding="utf-8")).symbols != tokenizer.symbols:
        raise CheckpointError(f"{tok_path} holds another tokenizer than init_from {name}; fine-tune in a new work_dir")
    if not tok_path.is_file():
        tok_path.write_text(tokenizer.to_json() + "\n", encoding="utf-8")
    cmvn_path = work / "global_cmvn.json"
    if cmvn_path.is_file():  # a resumed run keeps the statistics it started with, even if the bundle was replaced
        model_config["cmvn"] = load_cmvn(cmvn_path)
    else:
        save_cmvn(model_config["cmvn"], cmvn_path)
    info = {"bundle": name, "train_steps": b.metrics.get("train_steps"),
            "best_val_loss": b.metrics.get("best_val_loss")}
    info_path = work / "init_from.json"
    if not info_path.is_file():  # the first start records the origin; a resume keeps it
        info_path.write_text(json.dumps(info) + "\n", encoding="utf-8")
    state = {k: v.detach().clone() for k, v in b.state_dict.items()}
    return tokenizer, model_config, state, info


def _prepare(
    cfg: dict[str, Any], work: Path, model: Mapping[str, Any] | None = None
) -> tuple[Manifest, Manifest, Tokenizer, dict[str, Any], dict[str, torch.Tensor] | None]:
    if not cfg.get("train_manifest"):
        raise InvalidParameterError("the training configuration needs 'train_manifest' (a JSONL manifest path)")
    train = load_manifest(cfg["train_manifest"], split=cfg.get("train_split"))
    if cfg.get("valid_manifest"):
        valid = load_manifest(cfg["valid_manifest"], split=cfg.get("valid_split"))
    else:
        train, valid = AsrDataModule.split_valid(train, float(cfg.get("valid_fraction", 0.02)))
    train = _with_extra(train, valid, cfg.get("extra_train_manifests") or [], cfg.get("train_split"))
    if cfg.get("init_from"):
        tokenizer, model_config, state, _ = prepare_init_from(cfg["init_from"], work, list(train) + list(valid), model)
        return train, valid, tokenizer, model_config, state
    tok_path = work / "tokenizer.json"
    if tok_path.is_file():
        tokenizer = load_tokenizer(tok_path.read_text(encoding="utf-8"))
    else:
        tokenizer = build_tokenizer([e["txt"] for e in train], cfg["tokenizer"])
        tok_path.write_text(tokenizer.to_json() + "\n", encoding="utf-8")
    cmvn_path = work / "global_cmvn.json"
    if cmvn_path.is_file():
        cmvn = load_cmvn(cmvn_path)
    else:
        cmvn = compute_training_cmvn(train, max_utterances=cfg["cmvn"].get("max_utterances"), seed=int(cfg["seed"]))
        save_cmvn(cmvn, cmvn_path)
    model_config = {**copy.deepcopy(cfg["model"]), "input_dim": 80, "vocab_size": tokenizer.vocab_size, "cmvn": cmvn}
    return train, valid, tokenizer, model_config, None


def train_asr(config: Mapping[str, Any], *, progress: bool = False) -> Bundle:
    """Train (or resume) a U2 model and return the bundle of its averaged best checkpoints.

    Parameters
    ----------
    config
        Merged over :data:`DEFAULT_TRAIN_CONFIG`: ``work_dir``, ``train_manifest`` (+ ``train_split``),
        ``extra_train_manifests`` (training supplements, added after the validation split), ``valid_manifest``
        (+ ``valid_split``; default: ``valid_fraction`` of the training set), ``tokenizer``,
        ``cmvn``, ``model`` (without ``input_dim``/``vocab_size``/``cmvn``, filled in), ``data``
        (:class:`~audioforge.asr.data.AsrDataConfig`), ``optim``, ``trainer``, ``decoding``, ``seed``.
    progress
        Show Lightning's progress bar.

    Returns
    -------
    Bundle
        Also written to ``work_dir/bundle``; ``metrics`` holds the best validation loss and token error rate, the
        step count and the averaged checkpoints.

    Raises
    ------
    InvalidParameterError
        Bad settings (unknown keys in ``data``, a missing manifest path, ...).
    ManifestError, CheckpointError
        Unusable data or checkpoints.
    """
    unknown = sorted(set(config) - set(DEFAULT_TRAIN_CONFIG) - {"_comment"})
    if unknown:
        raise InvalidParameterError(f"unknown training settings {unknown}; known: {sorted(DEFAULT_TRAIN_CONFIG)}")
    cfg = _merge(DEFAULT_TRAIN_CONFIG, config)
    tr = cfg["trainer"]
    unknown = sorted(set(tr) - set(DEFAULT_TRAIN_CONFIG["trainer"]))
    if unknown:
        raise InvalidParameterError(f"unknown trainer settings {unknown}")
    if tr["precision"] not in _PRECISIONS:
        raise InvalidParameterError(f"trainer.precision={tr['precision']!r}; use one of {list(_PRECISIONS)} "
                                    "(bf16-mixed: bfloat16 autocast, ~1.8x faster steps on CPUs with AVX512-BF16)")
    data_cfg = AsrDataConfig.from_dict({"seed": int(cfg["seed"]), **cfg["data"]})
    decoding = DecodingConfig.from_dict(cfg["decoding"])
    work = Path(cfg["work_dir"]).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    if int(tr["num_threads"]) > 0:
        torch.set_num_threads(int(tr["num_threads"]))
    pl.seed_everything(int(cfg["seed"]), workers=True, verbose=False)
    train, valid, tokenizer, model_config, init_state = _prepare(cfg, work, config.get("model"))
    (work / "model_config.json").write_text(json.dumps(model_config) + "\n", encoding="utf-8")
    (work / "train_config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    frontend = FbankConfig()
    dm = AsrDataModule(train, valid, tokenizer, frontend=frontend, config=data_cfg)
    module = U2LightningModule(model_config, cfg["optim"], int(tr["num_threads"]))
    ckpt_dir = work / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if init_state is not None and not last.is_file():  # a resumed run takes its weights from its checkpoint
        module.model.load_state_dict(init_state)
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    # no version counter: a resume from a copied last.ckpt must overwrite it, not write last-v1.ckpt beside it
    last_cb = ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True, enable_version_counter=False,
                              every_n_train_steps=int(tr["checkpoint_every_n_steps"]))
    best_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="step{step:08d}-val_loss{val_loss:.5f}",
                              auto_insert_metric_name=False, monitor="val_loss", mode="min",
                              save_top_k=int(tr["save_top_k"]), save_on_train_epoch_end=False)
    devices = int(tr["devices"])
    strategy = tr["strategy"]
    if devices > 1 and strategy == "auto":
        strategy = "ddp"
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_steps=int(tr["max_steps"]),
        max_epochs=int(tr["max_epochs"]),
        precision=tr["precision"],
        max_time={"minutes": float(tr["max_minutes"])} if tr.get("max_minutes") else None,
        accumulate_grad_batches=int(tr["accumulate_grad_batches"]),
        gradient_clip_val=float(tr["gradient_clip_val"]) or None,
        val_check_interval=int(tr["val_every_n_steps"]),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=int(tr["log_every_n_steps"]),
        callbacks=[last_cb, best_cb, dm.epoch_callback()],
        logger=CSVLogger(str(work), name="logs"),  # a new version_N per (resumed) run: nothing is overwritten
        default_root_dir=str(work),
        enable_progress_bar=progress,
        enable_model_summary=False,
        use_distributed_sampler=False,
        deterministic=False,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if last.is_file() else None)
    if not trainer.is_global_zero:
        return Bundle(task="asr", architecture="u2", hyperparameters=model_config, state_dict={})
    plot_training(work)
    return bundle_from_checkpoints(work, int(tr["average_best"]), tokenizer, model_config, decoding)


def bundle_from_checkpoints(
    work_dir: str | os.PathLike[str],
    average_best: int,
    tokenizer: Tokenizer,
    model_config: dict[str, Any],
    decoding: DecodingConfig | None = None,
) -> Bundle:
    """Average the best checkpoints of ``work_dir/checkpoints`` (``last.ckpt`` when none has a validation loss)."""
    work = Path(work_dir)
    ckpt_dir = work / "checkpoints"
    best = best_checkpoints(ckpt_dir, average_best)
    paths = best or ([ckpt_dir / "last.ckpt"] if (ckpt_dir / "last.ckpt").is_file() else [])
    if not paths:
        raise CheckpointError(f"no checkpoint in {ckpt_dir}: train longer than one validation interval")
    state = average_checkpoints(paths)
    model = build_u2_model(model_config)
    model.load_state_dict(state)
    step = 0
    try:
        step = int(torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)["global_step"])
    except (OSError, KeyError, RuntimeError):
        pass
    metrics: dict[str, Any] = {"train_steps": step, "averaged_checkpoints": [p.name for p in paths]}
    if (work / "init_from.json").is_file():  # fine-tuned: where the first weights came from (steps before these)
        metrics["init_from"] = json.loads((work / "init_from.json").read_text(encoding="utf-8"))
    if best:
        metrics["best_val_loss"] = float(_CKPT_RE.search(best[0].name).group(2).rstrip("."))  # type: ignore[union-attr]
    rec = Recognizer(model, tokenizer, config=decoding or DecodingConfig(reverse_weight=model.reverse_weight),
                     model_config=model_config)
    if rec.config.reverse_weight == 0.0 and model.reverse_weight > 0:
        rec.config.reverse_weight = model.reverse_weight
    bundle = rec.to_bundle(metrics=metrics)
    bundle.options["source"] = "audioforge.asr.train"
    bundle.save(work / "bundle", overwrite=True)
    return bundle
