"""Training a DDSP timbre model: LightningModule, checkpoint/resume, evaluation, and the bundle it ends in.

:func:`train_ddsp` takes a config (dict or JSON file; keys in :data:`DEFAULT_CONFIG`), trains a
:class:`~audioforge.ddsp.model.DDSPAutoencoder` on feature caches (:mod:`audioforge.ddsp.data`) with the multi-scale
spectral loss, Adam (lr decayed by ``lr_decay`` every ``lr_decay_steps``) and gradient clipping at 3, keeps
``last.ckpt`` in ``work_dir`` (a second call resumes from it), evaluates resynthesis on the validation cache
(:func:`evaluate_resynthesis`: loudness L1 and multi-scale spectral distance) and returns a
:class:`~audioforge.bundle.Bundle` with ``task="ddsp"`` whose ``options["statistics"]`` hold the dataset statistics
(quantile tables included) that timbre transfer needs. :func:`load_model` rebuilds the model from a bundle.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bundle import Bundle
from ..errors import CheckpointError, InvalidParameterError
from .data import HOP, SR, DDSPDataModule, _lightning, load_cache
from .losses import multiscale_spectral_loss
from .loudness import compute_loudness
from .model import DDSPAutoencoder

__all__ = ["DEFAULT_CONFIG", "DDSPLightning", "evaluate_resynthesis", "load_config", "load_model", "train_ddsp"]

pl = _lightning()

#: Every key a training config may set, with its default.
DEFAULT_CONFIG: dict[str, Any] = {
    "name": "ddsp",  # bundle name
    "instrument": None,  # recorded in the bundle
    "preset": "tiny",  # decoder preset (RNN_PRESETS or CONV_PRESETS)
    "train_cache": None,  # feature cache folder (build_cache)
    "val_cache": None,  # held-out cache folder (optional)
    "work_dir": "data/ddsp/runs/ddsp",  # checkpoints
    "bundle_dir": None,  # where to save the bundle (None: not saved)
    "batch_size": 8,
    "crop_frames": 250,  # training crop (1 s); validation uses whole examples
    "lr": 3e-4,
    "lr_decay": 0.98,
    "lr_decay_steps": 10000,
    "grad_clip": 3.0,
    "max_steps": 1000,
    "max_minutes": None,  # wall-clock limit of one call (None: none)
    "checkpoint_every": 100,
    "val_every": 0,  # validation interval in steps during training (0: only the final evaluation)
    "eval_examples": 30,  # held-out examples in the final evaluation
    "seed": 0,
    "threads": None,  # torch threads (None: leave as is)
}


def load_config(config: dict[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A full config: ``config`` (dict or JSON file) over :data:`DEFAULT_CONFIG`; unknown keys are errors."""
    if not isinstance(config, dict):
        path = Path(config)
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidParameterError(f"cannot read the training config {path}: {exc}") from exc
        if not isinstance(config, dict):
            raise InvalidParameterError(f"{path} must hold a JSON object")
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise InvalidParameterError(f"unknown config keys {unknown}; known: {sorted(DEFAULT_CONFIG)}")
    cfg = {**copy.deepcopy(DEFAULT_CONFIG), **config}
    if not cfg["train_cache"]:
        raise InvalidParameterError("the config needs 'train_cache' (a folder written by build_cache)")
    return cfg


class DDSPLightning(pl.LightningModule):
    """DDSPAutoencoder + multi-scale spectral loss, Adam with step decay.

    Parameters
    ----------
    preset
        Decoder preset.
    lr, lr_decay, lr_decay_steps
        Adam learning rate, multiplied by ``lr_decay`` every ``lr_decay_steps`` optimizer steps.
    """

    def __init__(self, preset: str = "tiny", *, lr: float = 3e-4, lr_decay: float = 0.98,
                 lr_decay_steps: int = 10000) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = DDSPAutoencoder.from_preset(preset)
        self._noise_gen = torch.Generator().manual_seed(1234)

    def forward(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> torch.Tensor:
        """Rendered audio."""
        return self.model(f0_hz, loudness_db)[0]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Multi-scale spectral loss of the resynthesis."""
        audio = self.model(batch["f0_hz"], batch["loudness_db"])[0]
        loss = multiscale_spectral_loss(audio, batch["audio"])
        self.log("train_loss", loss, prog_bar=True, batch_size=audio.shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Spectral distance on held-out examples (seeded noise)."""
        audio = self.model(batch["f0_hz"], batch["loudness_db"], generator=self._noise_gen.manual_seed(batch_idx))[0]
        self.log("val_loss", multiscale_spectral_loss(audio, batch["audio"]), prog_bar=True,
                 batch_size=audio.shape[0])

    def configure_optimizers(self) -> Any:
        """Adam + StepLR (per step)."""
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(self.hparams.lr_decay_steps),
                                                gamma=float(self.hparams.lr_decay))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class _WallClock(pl.Callback):
    """Stop after ``minutes`` of wall time in this call (a checkpoint is written on stop)."""

    def __init__(self, minutes: float | None) -> None:
        self.minutes = minutes
        self.start = time.time()

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if self.minutes is not None and time.time() - self.start > 60.0 * self.minutes:
            trainer.should_stop = True


@torch.no_grad()
def evaluate_resynthesis(model: DDSPAutoencoder, cache_dir: str | os.PathLike[str], *, max_examples: int = 30,
                         seed: int = 0) -> dict[str, float]:
    """Resynthesis quality on a cache: render each example from its own f0 and loudness and compare.

    Returns
    -------
    dict
        ``loudness_l1_db`` (mean |loudness(output) - loudness(target)| over all frames), ``loudness_l1_note_db``
        (note frames only), ``spectral_distance`` (mean multi-scale spectral loss per example, DDSP's definition),
        ``n_examples``.
    """
    data = load_cache(cache_dir)
    n = min(int(max_examples), data["audio"].shape[0])
    if n < 1:
        raise InvalidParameterError("max_examples must be >= 1")
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    l1, l1n, msd = [], [], []
    for i in range(n):
        f0 = torch.from_numpy(np.array(data["f0_hz"][i:i + 1]))
        ld = torch.from_numpy(np.array(data["loudness_db"][i:i + 1]))
        target = torch.from_numpy(np.array(data["audio"][i:i + 1]))
        out = model(f0, ld, generator=gen)[0]
        msd.append(float(multiscale_spectral_loss(out, target)))
        lo = compute_loudness(out[0].numpy(), SR)[: f0.shape[1]]
        lt = compute_loudness(target[0].numpy(), SR)[: f0.shape[1]]
        note = np.asarray(data["note"][i])
        d = np.abs(lo - lt)
        l1.append(float(d.mean()))
        l1n.append(float(d[note].mean()) if note.any() else float("nan"))
    return {"loudness_l1_db": round(float(np.mean(l1)), 3), "loudness_l1_note_db": round(float(np.nanmean(l1n)), 3),
            "spectral_distance": round(float(np.mean(msd)), 4), "n_examples": n}


def load_model(bundle: Bundle | str | os.PathLike[str]) -> tuple[DDSPAutoencoder, Bundle]:
    """Rebuild the :class:`DDSPAutoencoder` of a DDSP bundle (a Bundle, a folder or a shipped name), in eval mode."""
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    if b.task != "ddsp":
        raise CheckpointError(f"bundle {b.path} is a {b.task!r} model, not a DDSP timbre model")
    hp = b.hyperparameters
    model = DDSPAutoencoder.from_preset(str(hp.get("preset", b.architecture)), sr=int(hp.get("sr", SR)),
                                        hop=int(hp.get("hop", HOP)), reverb_length=hp.get("reverb_length"))
    b.check_state_dict(model.state_dict())
    model.load_state_dict(b.state_dict)
    return model.eval(), b


def train_ddsp(config: dict[str, Any] | str | os.PathLike[str], *, progress: bool = False) -> Bundle:
    """Train (or resume) a DDSP model and return its bundle (also saved to ``bundle_dir`` when set).

    Parameters
    ----------
    config
        A dict or JSON file; see :data:`DEFAULT_CONFIG`.
    progress
        Show Lightning's progress bar.

    Returns
    -------
    Bundle
        ``task="ddsp"``, ``architecture`` the preset, ``metrics`` from :func:`evaluate_resynthesis` on the
        validation cache (plus training figures), ``options`` with ``instrument``, ``statistics`` and ``training``.
    """
    cfg = load_config(config)
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    pl.seed_everything(int(cfg["seed"]), workers=True, verbose=False)
    work = Path(cfg["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    dm = DDSPDataModule(cfg["train_cache"], cfg["val_cache"] if cfg["val_every"] else None,
                        batch_size=int(cfg["batch_size"]), crop_frames=cfg["crop_frames"], seed=int(cfg["seed"]))
    module = DDSPLightning(cfg["preset"], lr=float(cfg["lr"]), lr_decay=float(cfg["lr_decay"]),
                           lr_decay_steps=int(cfg["lr_decay_steps"]))
    ckpt_cb = pl.callbacks.ModelCheckpoint(dirpath=str(work), filename="step{step}", save_last=True, save_top_k=0,
                                           enable_version_counter=False,  # resume always finds the newest last.ckpt
                                           every_n_train_steps=int(cfg["checkpoint_every"]))
    trainer = pl.Trainer(
        max_steps=int(cfg["max_steps"]), accelerator="cpu", devices=1, gradient_clip_val=float(cfg["grad_clip"]),
        callbacks=[ckpt_cb, _WallClock(cfg["max_minutes"])], logger=pl.loggers.CSVLogger(str(work), name="logs"),
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=10,
        val_check_interval=int(cfg["val_every"]) if cfg["val_every"] else None,
        limit_val_batches=1.0 if cfg["val_every"] else 0, num_sanity_val_steps=0, deterministic=False,
        check_val_every_n_epoch=None,
    )
    last = work / "last.ckpt"
    resumed_from = None
    previous_seconds = 0.0
    meta_path = work / "train_meta.json"
    if meta_path.is_file():
        previous_seconds = float(json.loads(meta_path.read_text(encoding="utf-8")).get("train_seconds", 0.0))
    t0 = time.time()
    if last.is_file():
        resumed_from = str(last)
    trainer.fit(module, datamodule=dm, ckpt_path=resumed_from)
    if trainer.global_step > 0:
        trainer.save_checkpoint(str(last))
    train_seconds = previous_seconds + (time.time() - t0)
    meta_path.write_text(json.dumps({"train_seconds": train_seconds, "global_step": trainer.global_step}) + "\n",
                         encoding="utf-8")
    model = module.model.eval()
    metrics: dict[str, Any] = {}
    if cfg["val_cache"]:
        metrics.update(evaluate_resynthesis(model, cfg["val_cache"], max_examples=int(cfg["eval_examples"])))
    losses = _logged_losses(work)
    metrics.update({"steps": int(trainer.global_step), "train_minutes": round(train_seconds / 60.0, 2)})
    if losses:
        metrics["final_train_loss"] = round(float(np.mean(losses[-10:])), 4)
    train_meta = load_cache(cfg["train_cache"])["meta"]
    bundle = Bundle(
        task="ddsp",
        architecture=str(cfg["preset"]),
        hyperparameters={"preset": cfg["preset"], "sr": SR, "hop": HOP,
                         "reverb_length": model.reverb.ir_length if model.reverb is not None else None},
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        frontend={"sr": SR, "hop": HOP, "frame_rate": SR // HOP, "loudness": "compute_loudness(n_fft=512)",
                  "f0": "hold_f0(crepe/yin), score f0 in training"},
        metrics=metrics,
        options={"instrument": cfg["instrument"], "statistics": train_meta["statistics"],
                 "training": {k: cfg[k] for k in ("batch_size", "crop_frames", "lr", "lr_decay", "lr_decay_steps",
                                                  "grad_clip", "max_steps", "seed")}
                 | {"train_seconds_audio": train_meta["seconds"], "resumed": resumed_from is not None}},
    )
    if cfg["bundle_dir"]:
        bundle.save(cfg["bundle_dir"], overwrite=True)
    return bundle


def _logged_losses(work: Path) -> list[float]:
    """Training losses from the CSV logs of every run (in order)."""
    out: list[float] = []
    for f in sorted((work / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        lines = f.read_text(encoding="utf-8").splitlines()
        if not lines:
            continue
        head = lines[0].split(",")
        if "train_loss" not in head:
            continue
        j = head.index("train_loss")
        for line in lines[1:]:
            cells = line.split(",")
            if j < len(cells) and cells[j]:
                v = float(cells[j])
                if math.isfinite(v):
                    out.append(v)
    return out
