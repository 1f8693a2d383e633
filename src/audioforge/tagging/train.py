"""Training and fine-tuning PaSST taggers with Lightning: :class:`TaggingModule` and :func:`train_tagger`.

The recipe follows PaSST (Koutini et al. 2022) scaled to a CPU: weighted sampling, gain/roll augmentation, mixup
(alpha 0.3, ``lam = max(l, 1 - l)``), SpecAugment, Patchout, AdamW, an exponential warm-up, a flat phase and a
linear decay to ``last_lr_factor`` of the peak (:func:`lr_factor`, applied per optimizer step with ``LambdaLR``),
and stochastic weight averaging: from epoch ``swa_start`` every ``swa_every`` epochs the weights are added to a
running average kept in the module (and in every checkpoint); the averaged weights are what the bundle ships
(``swa=True``).

Everything else is Lightning's: ``precision`` (``"32"``, ``"bf16-mixed"`` on CPU), ``accumulate_grad_batches``,
``ModelCheckpoint`` (:func:`epoch_checkpoint`) writing ``<out>/checkpoints/last.ckpt`` after every epoch (a rerun
resumes from it, the step count continuing), and ``strategy``/``devices``/``num_nodes`` for DDP
(``strategy="ddp", devices=2`` on a CPU runs two processes; launch it as a script, ``python -m
audioforge.tagging.train CONFIG`` or ``audioforge tagging train CONFIG``, because Lightning re-runs the command
for the other ranks).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from ..bundle import Bundle, format_report, state_dict_report
from ..errors import AudioForgeError, CheckpointError, InvalidParameterError, MissingToolError
from .checkpoint import HEAD_KEYS
from .data import (
    TaggingDataModule,
    mel_filter_augment,
    mel_gain,
    mixup,
    mixup_draw,
    multi_hot,
    sample_weights,
    spec_augment,
    spec_augment_masks,
)
from .frontend import PasstFrontend
from .metrics import accuracy, multilabel_metrics
from .model import PaSST, preset_config

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - lightning is the optional "train" dependency
    pl = None  # type: ignore[assignment]

__all__ = ["TaggingModule", "TrainConfig", "check_restarts", "epoch_checkpoint", "init_from_bundle",
           "load_config", "lr_factor", "plot_training", "prior_bias", "train_tagger"]

_LightningModule = pl.LightningModule if pl is not None else torch.nn.Module
_Callback = pl.Callback if pl is not None else object


def prior_bias(targets: np.ndarray, weights: np.ndarray | None = None, *, multi_label: bool = True,
               floor: float = 1e-4) -> np.ndarray:
    """Head bias whose untrained output is the label prior: ``logit(p)`` (multi-label) or ``log(p)`` per class.

    ``p`` is each class's share of the training clips ``targets`` (``(clips, classes)`` multi-hot), weighted by the
    sampler's ``weights`` when given (the distribution the model is actually trained on), clipped to
    ``[floor, 1 - floor]``. A zero-initialised head starts at 0.5 for every class, and a small transformer then
    spends its first epochs only learning the priors.
    """
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] == 0:
        raise InvalidParameterError(f"targets must be (clips, classes) with at least one clip, got {t.shape}")
    w = np.ones(t.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (t.shape[0],) or not np.all(w >= 0) or w.sum() <= 0:
        raise InvalidParameterError("weights must be one non-negative number per clip, not all zero")
    p = np.clip((w[:, None] * t).sum(0) / w.sum(), floor, 1.0 - floor)
    return np.log(p / (1.0 - p)) if multi_label else np.log(p / p.sum())


def lr_factor(epoch: float, *, warmup_epochs: float, decay_start: float, decay_end: float,
              last_lr_factor: float = 0.01, restarts: Sequence[Mapping[str, float]] = ()) -> float:
    """Learning-rate multiplier at (fractional) ``epoch``: PaSST's ``exp_warmup_linear_down``, with warm restarts.

    ``exp(-5 (1 - e / warmup)^2)`` during the warm-up, 1 until ``decay_start``, then linear down to
    ``last_lr_factor`` at ``decay_end`` and constant after.

    Each restart (a mapping with ``epoch``, ``lr_factor``, ``decay_start``, ``decay_end`` and optionally
    ``warmup_epochs``, default 1) takes over from its ``epoch`` on: the multiplier ramps linearly from
    ``last_lr_factor`` to the restart's ``lr_factor`` over its warm-up, stays there until its ``decay_start``, then
    falls linearly to ``last_lr_factor`` at its ``decay_end``. Restarts continue a converged run with a second,
    gentler cycle instead of training again from scratch. Validate them with :func:`check_restarts`.
    """
    active = [r for r in restarts if epoch >= float(r["epoch"])]
    if active:
        r = max(active, key=lambda item: float(item["epoch"]))
        start, peak = float(r["epoch"]), float(r["lr_factor"])
        warm = float(r.get("warmup_epochs", 1.0))
        if warm > 0 and epoch < start + warm:
            return float(last_lr_factor + (peak - last_lr_factor) * (epoch - start) / warm)
        d0, d1 = float(r["decay_start"]), float(r["decay_end"])
        if epoch < d0:
            return peak
        if epoch >= d1:
            return float(last_lr_factor)
        return float(peak - (epoch - d0) / (d1 - d0) * (peak - last_lr_factor))
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return float(math.exp(-5.0 * (1.0 - epoch / warmup_epochs) ** 2))
    if epoch < decay_start:
        return 1.0
    if epoch >= decay_end or decay_end <= decay_start:
        return float(last_lr_factor)
    frac = (epoch - decay_start) / (decay_end - decay_start)
    return float(1.0 - frac * (1.0 - last_lr_factor))


def check_restarts(restarts: Any, *, decay_end: float) -> list[dict[str, float]]:
    """Validate warm restarts for :func:`lr_factor` and return them as plain dicts sorted by ``epoch``.

    Raises
    ------
    InvalidParameterError
        Not a list of mappings, unknown or missing keys, non-numeric values, a restart before the end of the
        previous cycle's decay, a non-positive factor, or ``decay_start`` < ``epoch + warmup_epochs`` or
        ``decay_end`` <= ``decay_start``.
    """
    if restarts is None:
        return []
    if not isinstance(restarts, (list, tuple)):
        raise InvalidParameterError(f"restarts must be a list of {{epoch, lr_factor, decay_start, decay_end}} "
                                    f"objects, got {type(restarts).__name__}")
    need, allowed = {"epoch", "lr_factor", "decay_start", "decay_end"}, {"warmup_epochs"}
    out: list[dict[str, float]] = []
    for i, r in enumerate(restarts):
        if not isinstance(r, Mapping):
            raise InvalidParameterError(f"restarts[{i}] must be an object, got {r!r}")
        missing, unknown = sorted(need - set(r)), sorted(set(r) - need - allowed)
        if missing or unknown:
            raise InvalidParameterError(f"restarts[{i}]: missing keys {missing}, unknown keys {unknown}; each "
                                        f"restart needs {sorted(need)} (optional: warmup_epochs)")
        vals = {}
        for k, v in r.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidParameterError(f"restarts[{i}].{k} must be a finite number, got {v!r}")
            vals[k] = float(v)
        vals.setdefault("warmup_epochs", 1.0)
        out.append(vals)
    out.sort(key=lambda item: item["epoch"])
    previous_end = decay_end
    for r in out:
        if r["epoch"] < previous_end:
            raise InvalidParameterError(f"restart at epoch {r['epoch']:g} begins before the previous cycle's decay "
                                        f"ends (epoch {previous_end:g}); restart at or after it")
        if r["lr_factor"] <= 0 or r["warmup_epochs"] < 0:
            raise InvalidParameterError(f"restart at epoch {r['epoch']:g}: lr_factor must be > 0 and "
                                        f"warmup_epochs >= 0")
        if not r["epoch"] + r["warmup_epochs"] <= r["decay_start"] < r["decay_end"]:
            raise InvalidParameterError(f"restart at epoch {r['epoch']:g}: need epoch + warmup_epochs <= "
                                        f"decay_start < decay_end, got decay_start {r['decay_start']:g}, "
                                        f"decay_end {r['decay_end']:g}")
        previous_end = r["decay_end"]
    return out


@dataclass
class TrainConfig:
    """Everything :func:`train_tagger` needs (a recipe's ``config.json`` holds these keys).

    Attributes
    ----------
    manifest
        Manifest path (``labels.json`` next to it unless ``labels`` is given); relative paths resolve against the
        config file's folder when loaded with :func:`load_config`.
    out_dir
        Output folder: ``checkpoints/last.ckpt``, ``bundle/``, ``train_log.jsonl``.
    preset, model
        PaSST preset and hyper-parameter overrides (``num_classes`` is set from the labels).
    frontend
        :class:`PasstFrontend` settings (SpecAugment widths ``freqm``/``timem`` are also used in ``"mel"`` mode).
    features
        ``"mel"`` (cached log-mels, augmentation in the mel domain) or ``"wave"`` (front end on the fly).
    multi_label
        BCE-with-logits on multi-hot targets (True) or cross-entropy on single labels (False).
    lr, weight_decay, warmup_epochs, decay_start, decay_end, last_lr_factor, restarts
        AdamW and :func:`lr_factor` (epochs; fractional epochs are used per step). ``restarts`` lists warm
        restarts after the first cycle (see :func:`lr_factor`); a run can be extended by adding one and raising
        ``max_epochs``, and resumes from its last checkpoint.
    val_every
        Validate every this many epochs (the validation split is scored with the evaluation front end).
    swa, swa_start, swa_every
        Weight averaging from epoch ``swa_start`` (0-based, counted at epoch ends) every ``swa_every`` epochs.
    strong_labels, frame_loss_weight
        Train also on the frame activity of the manifest's strong labels (``"mel"`` features only), with this
        weight for the frame-level loss (see :class:`TaggingModule`).
    head_bias
        ``None``: the classifier's bias starts at zero (the official initialisation); ``"prior"``: at the label prior
        of the training draw (:func:`prior_bias`). Applies to a fresh run, not to a resumed one.
    init_from
        Fine-tuning: a tagging bundle (folder or shipped name, e.g. one made by
        :func:`~audioforge.tagging.load_official_checkpoint` or an earlier run) whose weights start a fresh run
        (:func:`init_from_bundle`); the optimizer and schedule start anew. Relative folders resolve against the
        config file's folder. Ignored when the run resumes from its own checkpoint.
    precision, accumulate_grad_batches, strategy, devices, num_nodes, accelerator
        Passed to ``lightning.Trainer``.
    """

    manifest: str
    out_dir: str
    labels: list[str] | None = None
    preset: str = "passt_mini"
    model: dict[str, Any] = field(default_factory=lambda: {"s_patchout_t": 40, "s_patchout_f": 4})
    frontend: dict[str, Any] = field(default_factory=dict)
    features: str = "mel"
    multi_label: bool = True
    train_split: str = "train"
    val_split: str | None = "test"
    max_train_clips: int | None = None
    clip_seconds: float = 10.0
    batch_size: int = 32
    num_workers: int = 0
    weighted_sampler: bool = True
    mixup_alpha: float = 0.3
    gain_db: float = 7.0
    filter_db: float = 0.0
    roll: bool = True
    max_epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 3.0
    decay_start: float = 15.0
    decay_end: float = 30.0
    last_lr_factor: float = 0.01
    restarts: list[dict[str, float]] = field(default_factory=list)
    swa: bool = True
    swa_start: int = 20
    swa_every: int = 2
    head_bias: str | None = None
    init_from: str | None = None
    strong_labels: bool = False
    frame_loss_weight: float = 0.0
    precision: str = "32"
    accumulate_grad_batches: int = 1
    accelerator: str = "cpu"
    strategy: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    threads: int | None = None
    seed: int = 0
    resume: bool = True
    progress: bool = True
    limit_train_batches: int | float | None = None
    val_every: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(config: TrainConfig | dict[str, Any] | str | os.PathLike[str]) -> TrainConfig:
    """A :class:`TrainConfig` from itself, a dict, or a JSON file (its relative paths resolved against its folder).

    Raises
    ------
    InvalidParameterError
        Missing file, invalid JSON, unknown or missing keys.
    """
    if isinstance(config, TrainConfig):
        return config
    base: Path | None = None
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        if not path.is_file():
            raise InvalidParameterError(f"training config not found: {path}")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"{path} is not valid JSON: {exc}") from exc
        base = path.resolve().parent
    if not isinstance(config, dict):
        raise InvalidParameterError("a training config must be a JSON object / dict")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}  # "_comment" keys are allowed
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise InvalidParameterError(f"unknown training config keys {unknown}; known: {sorted(known)}")
    missing = [k for k in ("manifest", "out_dir") if k not in cfg]
    if missing:
        raise InvalidParameterError(f"the training config needs {missing}")
    if base is not None:
        for key in ("manifest", "out_dir"):
            p = Path(cfg[key])
            if not p.is_absolute():
                cfg[key] = str(base / p)
        init = cfg.get("init_from")
        if isinstance(init, str) and not Path(init).is_absolute() and (base / init).exists():
            cfg["init_from"] = str(base / init)  # else a shipped bundle name, resolved by Bundle.load
    out = TrainConfig(**cfg)
    if out.features not in ("mel", "wave"):
        raise InvalidParameterError(f"features={out.features!r}; use 'mel' or 'wave'")
    if out.head_bias not in (None, "prior"):
        raise InvalidParameterError(f"head_bias={out.head_bias!r}; use null (zeros) or \"prior\"")
    if out.frame_loss_weight < 0 or (out.frame_loss_weight > 0 and not out.strong_labels):
        raise InvalidParameterError(f"frame_loss_weight={out.frame_loss_weight!r}: use 0, or a positive weight "
                                    "together with strong_labels: true")
    if out.strong_labels and out.features != "mel":
        raise InvalidParameterError("strong_labels needs features: \"mel\" (cached log-mels)")
    if out.frame_loss_weight > 0 and int(out.model.get("u_patchout", 0) or 0) > 0:
        raise InvalidParameterError("frame_loss_weight > 0 needs the token grid: set model.u_patchout to 0 "
                                    "(structured Patchout keeps it)")
    if not (isinstance(out.filter_db, (int, float)) and 0 <= out.filter_db <= 20):
        raise InvalidParameterError(f"filter_db={out.filter_db!r}: use 0 (off) to 20 dB (random equaliser range)")
    out.restarts = check_restarts(out.restarts, decay_end=out.decay_end)
    if out.precision not in ("32", "32-true", "bf16-mixed", "bf16-true", "16-mixed"):
        raise InvalidParameterError(f"precision={out.precision!r}; use '32' or 'bf16-mixed' (CPU)")
    return out


class TaggingModule(_LightningModule):  # type: ignore[misc,valid-type]
    """PaSST plus its front end, trained with BCE-with-logits (multi-label) or cross-entropy.

    Parameters
    ----------
    model_config
        Keyword arguments of :class:`PaSST` (from :func:`~audioforge.tagging.preset_config`).
    frontend_config
        Keyword arguments of :class:`PasstFrontend`.
    features
        ``"wave"``: batches hold waveforms; ``"mel"``: batches hold normalised log-mels ``(batch, mels, frames)``.
    labels
        Class names (for the metrics).
    frame_loss_weight
        Weight of the frame-level loss on batches that carry frame activity (strong labels): BCE of the timeline
        logits (:meth:`PaSST.forward_timeline`) of every time column Patchout kept against the column's activity
        (max over its 16 frames, after roll, mixup and time masking), added to the clip loss. 0 trains on clip
        labels only.
    """

    def __init__(self, model_config: dict[str, Any], frontend_config: dict[str, Any] | None = None, *,
                 features: str = "mel", labels: list[str] | None = None, multi_label: bool = True,
                 lr: float = 1e-3, weight_decay: float = 1e-4, warmup_epochs: float = 3.0,
                 decay_start: float = 15.0, decay_end: float = 30.0, last_lr_factor: float = 0.01,
                 restarts: Sequence[Mapping[str, float]] = (),
                 mixup_alpha: float = 0.3, gain_db: float = 7.0, swa: bool = True, swa_start: int = 20,
                 swa_every: int = 2, frame_loss_weight: float = 0.0, filter_db: float = 0.0) -> None:
        if pl is None:  # pragma: no cover
            raise MissingToolError("training needs lightning: pip install 'audioforge[train]'")
        super().__init__()
        restarts = check_restarts(list(restarts), decay_end=decay_end)
        self.save_hyperparameters()
        self.model = PaSST(**model_config)
        # head_dist is kept for checkpoint compatibility but unused by forward: freeze it so that DDP does not wait
        # for its gradients (and AdamW's weight decay does not shrink it)
        self.model.head_dist.requires_grad_(False)
        self.frontend = PasstFrontend(**(frontend_config or {}))
        self.features = features
        self.labels = list(labels) if labels else [str(i) for i in range(self.model.num_classes)]
        self.multi_label = bool(multi_label)
        self.swa_state: dict[str, torch.Tensor] | None = None
        self.swa_count = 0
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.init_report: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []

    # -- steps -------------------------------------------------------------------------------------------------------
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.features == "mel":
            return x.unsqueeze(1) if x.dim() == 3 else x
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.frontend(x.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch (waveforms or mels, per ``features``)."""
        return self.model(self._features(x))[0]

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits.float(), y)
        return F.cross_entropy(logits.float(), y)  # soft (mixed) one-hot targets

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        activity = batch[2] if len(batch) > 2 and self.hparams.frame_loss_weight > 0 else None
        hp = self.hparams
        if self.features == "mel":
            x = mel_filter_augment(mel_gain(x, hp.gain_db), hp.get("filter_db", 0.0))
            draw = mixup_draw(x.shape[0], alpha=hp.mixup_alpha, device=x.device) if hp.mixup_alpha > 0 else None
            x, y = mixup(x, y, alpha=hp.mixup_alpha, domain="mel", draw=draw)
            masks = spec_augment_masks(x.shape[0], x.shape[-2], x.shape[-1], freqm=self.frontend.freqm,
                                       timem=self.frontend.timem, device=x.device)
            x = spec_augment(x, masks=masks).unsqueeze(1)
            if activity is not None:
                if draw is not None and x.shape[0] > 1:  # mixed like the targets
                    lam = draw[0].reshape(-1, 1, 1).to(activity.dtype)
                    activity = lam * activity + (1 - lam) * activity[draw[1]]
                if masks[1] is not None:
                    activity = activity.masked_fill(masks[1][:, None, :], 0.0)
        else:
            x, y = mixup(x, y, alpha=hp.mixup_alpha, domain="wave")
            x = mel_filter_augment(self._features(x), hp.get("filter_db", 0.0))
        if activity is None:
            logits = self.model(x)[0]
            loss = self._loss(logits, y)
        else:
            logits, _, frame_logits = self.model.forward_timeline(x)
            loss = self._loss(logits, y)
            frame_loss = F.binary_cross_entropy_with_logits(frame_logits.float(), self._column_targets(activity))
            self.log("frame_loss", frame_loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
            loss = loss + hp.frame_loss_weight * frame_loss
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        self.log("lr", self.optimizers().param_groups[0]["lr"], prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def _column_targets(self, activity: torch.Tensor) -> torch.Tensor:
        """``(batch, kept columns, classes)`` targets: the max of ``activity (batch, classes, frames)`` over each kept
        time patch's frames."""
        ts, p = self.model.stride[1], self.model.patch_size
        cols = F.max_pool1d(activity.float(), kernel_size=p, stride=ts)  # (batch, classes, time patches)
        kept = self.model.kept_time_columns
        if kept is not None:
            cols = cols[..., kept.to(cols.device)]
        return cols.transpose(1, 2)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", self._loss(logits, y), on_epoch=True, batch_size=len(y), sync_dist=True)
        self._val.append((logits.detach().float().cpu(), y.detach().cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        logits = torch.cat([v[0] for v in self._val])
        targets = torch.cat([v[1] for v in self._val])
        self._val.clear()
        if self.trainer is not None and self.trainer.world_size > 1:
            logits = self.all_gather(logits).reshape(-1, logits.shape[-1]).cpu()
            targets = self.all_gather(targets).reshape(-1, targets.shape[-1]).cpu()
        if self.multi_label:
            m = multilabel_metrics(logits, targets, self.labels)
            values = {"val_mAP": m.mAP, "val_d_prime": m.d_prime}
        else:
            values = {"val_accuracy": accuracy(logits, targets.argmax(-1).numpy())}
        for k, v in values.items():
            if not math.isnan(v):
                self.log(k, v, prog_bar=True, sync_dist=False)
        if not self.trainer.sanity_checking:
            self.history.append({"epoch": int(self.current_epoch), "step": int(self.global_step),
                                 **{k: round(float(v), 5) for k, v in values.items()}})

    # -- optimisation ------------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        no_decay = self.model.no_weight_decay()
        decay, plain = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            short = name.split(".", 1)[1] if name.startswith("model.") else name
            (plain if short in no_decay or p.dim() == 1 else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                 {"params": plain, "weight_decay": 0.0}], lr=hp.lr)
        steps_per_epoch = max(1, int(self.trainer.estimated_stepping_batches) // max(1, self.trainer.max_epochs))

        def factor(step: int) -> float:
            return lr_factor(step / steps_per_epoch, warmup_epochs=hp.warmup_epochs, decay_start=hp.decay_start,
                             decay_end=hp.decay_end, last_lr_factor=hp.last_lr_factor, restarts=hp.restarts)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- weight averaging --------------------------------------------------------------------------------------------
    def on_train_epoch_end(self) -> None:
        hp = self.hparams
        epoch = int(self.current_epoch)
        if hp.swa and epoch >= hp.swa_start and (epoch - hp.swa_start) % max(1, hp.swa_every) == 0:
            state = {k: v.detach().float().clone() for k, v in self.model.state_dict().items()}
            if self.swa_state is None:
                self.swa_state, self.swa_count = state, 1
            else:
                self.swa_count += 1
                for k, v in state.items():
                    self.swa_state[k] += (v - self.swa_state[k]) / self.swa_count

    def averaged_state_dict(self) -> dict[str, torch.Tensor]:
        """The SWA weights if any epoch was averaged, else the current weights (float32 CPU copies)."""
        if self.swa_state is not None:
            return {k: v.clone() for k, v in self.swa_state.items()}
        return {k: v.detach().float().cpu().clone() for k, v in self.model.state_dict().items()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["audioforge_swa"] = {"state": self.swa_state, "count": self.swa_count}
        checkpoint["audioforge_history"] = list(self.history)
        checkpoint["audioforge_init_report"] = dict(self.init_report)  # a resumed fine-tune still says where it began

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        swa = checkpoint.get("audioforge_swa") or {}
        self.swa_state = swa.get("state")
        self.swa_count = int(swa.get("count", 0))
        self.history = list(checkpoint.get("audioforge_history", []))
        self.init_report = dict(checkpoint.get("audioforge_init_report") or self.init_report)


class _EpochLog(_Callback):  # type: ignore[misc,valid-type]
    """Append one JSON line per epoch to ``train_log.jsonl`` (rank 0): epoch, step, losses, val metrics, seconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
        if not trainer.is_global_zero:
            return
        row = {"epoch": int(trainer.current_epoch), "step": int(trainer.global_step),
               "seconds": round(time.perf_counter() - self.t0, 1)}
        for k, v in trainer.callback_metrics.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                row[k] = round(float(v), 5)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


def init_from_bundle(module: TaggingModule, bundle: Bundle | str | os.PathLike[str]) -> dict[str, Any]:
    """Load a tagging bundle's weights into ``module`` to fine-tune it.

    Every weight but the classifier must match the module's architecture in name and shape. The classifier
    (``head.1``, ``head_dist``) is kept when the bundle's labels are the module's, in the same order; otherwise it
    keeps the module's fresh initialisation (another label set, e.g. an AudioSet checkpoint fine-tuned on your
    classes). The outcome is stored as ``module.init_report`` and returned: ``{"bundle", "head": "kept" |
    "re-initialised", "labels_in_bundle"}``.

    Raises
    ------
    CheckpointError
        The bundle is missing or not a tagging bundle, or its weights do not fit the architecture (the message
        lists missing, unexpected and mis-shaped keys).
    """
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    name = str(b.path) if b.path is not None else "<in-memory bundle>"
    if b.task != "tagging":
        raise CheckpointError(f"init_from {name}: a {b.task!r} bundle, not a tagging one; give a tagger's bundle")
    keep_head = list(b.labels) == list(module.labels)
    state = {k: v for k, v in b.state_dict.items() if keep_head or k not in HEAD_KEYS}
    expected = {k: tuple(v.shape) for k, v in module.model.state_dict().items()
                if keep_head or k not in HEAD_KEYS}
    text = format_report(state_dict_report(state, expected))
    if text:
        raise CheckpointError(f"init_from {name} ({b.architecture}) does not fit the model being trained:\n{text}\n"
                              "Use the bundle's preset and model settings (Patchout settings may differ).")
    module.model.load_state_dict(state, strict=keep_head)
    module.init_report = {"bundle": name, "head": "kept" if keep_head else "re-initialised",
                          "labels_in_bundle": len(b.labels)}
    return module.init_report


def _build(cfg: TrainConfig, *, resuming: bool = False) -> tuple[TaggingDataModule, TaggingModule]:
    fe_cfg = PasstFrontend(**cfg.frontend).config()
    dm = TaggingDataModule(cfg.manifest, labels=cfg.labels, train_split=cfg.train_split, val_split=cfg.val_split,
                           features=cfg.features, frontend=fe_cfg,
                           cache_dir=Path(cfg.out_dir) / "mel_cache" if cfg.features == "mel" else None,
                           batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                           weighted_sampler=cfg.weighted_sampler, clip_seconds=cfg.clip_seconds,
                           gain_db=cfg.gain_db, roll=cfg.roll, seed=cfg.seed, max_train_clips=cfg.max_train_clips,
                           strong_labels=cfg.strong_labels and cfg.frame_loss_weight > 0)  # else unused
    model_cfg = preset_config(cfg.preset, **{**cfg.model, "num_classes": len(dm.labels)})
    module = TaggingModule(model_cfg, fe_cfg, features=cfg.features, labels=dm.labels, multi_label=cfg.multi_label,
                           lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs,
                           decay_start=cfg.decay_start, decay_end=cfg.decay_end, last_lr_factor=cfg.last_lr_factor,
                           restarts=cfg.restarts,
                           mixup_alpha=cfg.mixup_alpha, gain_db=cfg.gain_db, swa=cfg.swa, swa_start=cfg.swa_start,
                           swa_every=cfg.swa_every, frame_loss_weight=cfg.frame_loss_weight, filter_db=cfg.filter_db)
    if cfg.init_from is not None and not resuming:  # a resumed run takes its weights from its checkpoint
        init_from_bundle(module, cfg.init_from)
    if cfg.head_bias == "prior" and not (cfg.init_from is not None and module.init_report.get("head") == "kept"):
        entries = list(dm.train_manifest)
        targets = np.stack([multi_hot(e["labels"], dm.labels) for e in entries])
        weights = sample_weights(dm.train_manifest, dm.labels) if cfg.weighted_sampler else None
        bias = prior_bias(targets, weights, multi_label=cfg.multi_label)
        with torch.no_grad():
            module.model.head[-1].bias.copy_(torch.from_numpy(bias).to(module.model.head[-1].bias.dtype))
    return dm, module


def make_bundle(module: TaggingModule, *, preset: str, metrics: dict[str, Any] | None = None,
                options: dict[str, Any] | None = None, averaged: bool = True) -> Bundle:
    """A tagging :class:`Bundle` of a trained module (SWA weights when ``averaged`` and available)."""
    state = module.averaged_state_dict() if averaged else {
        k: v.detach().float().cpu().clone() for k, v in module.model.state_dict().items()}
    return Bundle(task="tagging", architecture=preset, hyperparameters=module.model.config(), state_dict=state,
                  frontend=module.frontend.config(), labels=list(module.labels), metrics=dict(metrics or {}),
                  options={"multi_label": module.multi_label, **(options or {})})


def plot_training(out_dir: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Path:
    """Draw ``<out_dir>/train_log.jsonl`` (one row per epoch) to ``path`` (default ``<out_dir>/training.png``):
    training, frame and validation losses, and the validation mAP (or accuracy), against the epoch."""
    from ..plotting import plot_curves

    log_path = Path(out_dir) / "train_log.jsonl"
    if not log_path.is_file():
        raise InvalidParameterError(f"{log_path} does not exist; train first (train_tagger writes it)")
    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    latest: dict[int, dict[str, Any]] = {}
    for r in rows:  # a resumed run may log an epoch again: keep the last
        latest[int(r["epoch"])] = r
    epochs = sorted(latest)

    def series(key: str, scale: float = 1.0) -> tuple[list[int], list[float]]:
        got = [(e + 1, scale * latest[e][key]) for e in epochs if key in latest[e]]
        if key.startswith("val_"):  # validation runs every val_every epochs; the other rows repeat the last value
            got = [g for i, g in enumerate(got) if i == 0 or g[1] != got[i - 1][1]]
        return [e for e, _ in got], [v for _, v in got]

    loss = {"train": series("train_loss"), "frame (strong labels)": series("frame_loss"),
            "validation": series("val_loss")}
    score = {"validation mAP": series("val_mAP"), "validation accuracy": series("val_accuracy")}
    out = Path(path) if path is not None else Path(out_dir) / "training.png"
    return plot_curves([("loss", loss), ("score", score)], out, xlabel="epoch",
                       title=f"tagger training ({len(epochs)} epochs logged)")


def epoch_checkpoint(ckpt_dir: str | Path) -> Any:
    """The ``ModelCheckpoint`` of :func:`train_tagger`: ``last.ckpt`` (and ``epoch=E-step=S.ckpt``) after every epoch.

    Lightning writes ``last.ckpt`` at an epoch's end only when a regular checkpoint was written at that step, so a
    callback with ``save_top_k=0`` leaves nothing to resume from until training ends. Keeping the newest regular
    checkpoint (``save_top_k=1``, no monitored metric) makes every epoch resumable. The version counter is off:
    a run resumed from a ``last.ckpt`` copied from another folder (to extend a finished run) would otherwise write
    ``last-v1.ckpt`` beside it, and the next resume would go back to the stale copy.
    """
    if pl is None:  # pragma: no cover
        raise MissingToolError("training needs lightning: pip install 'audioforge[train]'")
    return pl.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True, save_top_k=1, monitor=None,
                                        every_n_epochs=1, save_on_train_epoch_end=True,
                                        enable_version_counter=False)


def train_tagger(config: TrainConfig | dict[str, Any] | str | os.PathLike[str]) -> Bundle:
    """Train (or resume training of) a PaSST tagger and write ``<out_dir>/bundle``.

    Resumes from ``<out_dir>/checkpoints/last.ckpt`` when it exists (``resume=True``). After training, the
    shipped weights (SWA average if enabled, else the last) are evaluated on the validation split; the bundle's
    ``metrics`` hold ``mAP`` and ``d_prime`` (multi-label) or ``accuracy``, plus training facts.

    Returns
    -------
    Bundle
        The trained bundle (saved on rank 0; other DDP ranks return it unsaved).

    Raises
    ------
    InvalidParameterError, ManifestError, AudioFileError
        Bad config, manifest or audio.
    MissingToolError
        Lightning is not installed.
    """
    if pl is None:  # pragma: no cover
        raise MissingToolError("training needs lightning: pip install 'audioforge[train]'")
    cfg = load_config(config)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    dm, module = _build(cfg, resuming=cfg.resume and last.is_file())
    ckpt_cb = epoch_checkpoint(ckpt_dir)
    trainer_kw: dict[str, Any] = {}
    if cfg.limit_train_batches is not None:
        trainer_kw["limit_train_batches"] = cfg.limit_train_batches
    if dm.val_manifest is None:
        trainer_kw["limit_val_batches"] = 0
    trainer = pl.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes, strategy=cfg.strategy,
        precision=cfg.precision, accumulate_grad_batches=cfg.accumulate_grad_batches, max_epochs=cfg.max_epochs,
        callbacks=[ckpt_cb, _EpochLog(out / "train_log.jsonl")], default_root_dir=str(out), logger=False,
        enable_progress_bar=cfg.progress, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=10, deterministic=False, check_val_every_n_epoch=max(1, int(cfg.val_every)), **trainer_kw,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if cfg.resume and last.is_file() else None)
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {"train_seconds_this_run": round(seconds, 1), "epochs": int(trainer.current_epoch),
                               "steps": int(trainer.global_step), "train_clips": len(dm.train_manifest)}
    if module.init_report:
        metrics["init_from"] = module.init_report
    options = {"source": "audioforge.tagging.train", "training": {
        k: v for k, v in cfg.to_dict().items() if k not in ("manifest", "out_dir", "progress")}}
    bundle = make_bundle(module, preset=cfg.preset, metrics=metrics, options=options, averaged=cfg.swa)
    if dm.val_manifest is not None and trainer.is_global_zero:
        from .export import evaluate_tagger

        result = evaluate_tagger(bundle, dm.val_manifest, labels=dm.labels, split=None)
        key = "mAP" if cfg.multi_label else "accuracy"
        metrics.update({f"{cfg.val_split}_{k}": v for k, v in result.items() if k in (key, "d_prime", "auc")})
        metrics["eval_split"] = cfg.val_split
        metrics["eval_clips"] = len(dm.val_manifest)
        metrics["swa_epochs_averaged"] = module.swa_count if cfg.swa else 0
    bundle.metrics = metrics
    if trainer.is_global_zero:
        bundle.save(out / "bundle", overwrite=True)
        if (out / "train_log.jsonl").is_file():
            plot_training(out)
        if module.history:
            (out / "history.json").write_text(json.dumps(module.history, indent=1) + "\n", encoding="utf-8")
    return bundle


def main(argv: list[str] | None = None) -> int:
    """``python -m audioforge.tagging.train CONFIG``: train from a JSON config (the DDP-safe entry point)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m audioforge.tagging.train CONFIG.json", file=sys.stderr)
        return 0 if args in (["-h"], ["--help"]) else 2
    try:
        bundle = train_tagger(args[0])
    except AudioForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(bundle.metrics, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
