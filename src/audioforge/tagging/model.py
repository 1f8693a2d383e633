"""PaSST (Koutini et al., "Efficient Training of Audio Transformers with Patchout", Interspeech 2022) in plain torch.

The module structure and parameter names follow the official implementation (kkoutini/PaSST, models/passt.py), so
the official ``.pt`` state_dicts load with ``strict=True``:

``patch_embed.proj``
    ``Conv2d(1, D, 16, stride=(fstride, tstride))`` over the ``(batch, 1, 128, frames)`` log-mel image.
``cls_token``, ``dist_token``, ``new_pos_embed``
    The classification and distillation tokens (DeiT) and their positional embedding ``[1, 2, D]``.
``freq_new_pos_embed`` ``[1, D, F, 1]``, ``time_new_pos_embed`` ``[1, D, 1, T]``
    Separate frequency and time embeddings; ``F, T = img_size // stride`` (stride 10 on 128 x 998: 12 x 99).
``blocks.N``
    Pre-norm transformer blocks (``norm1``, ``attn.qkv`` with bias, ``attn.proj``, ``norm2``, ``mlp.fc1``,
    ``mlp.fc2``), LayerNorm eps 1e-6, exact GELU.
``norm``, ``head`` = ``Sequential(LayerNorm(D, eps=1e-5), Linear(D, classes))``, ``head_dist``
    ``head_dist`` is part of the checkpoints but unused by ``forward``.

``forward`` returns ``(logits, features)`` with ``features = (cls + dist) / 2`` after the final norm. The time
embedding is sliced to the number of time patches of the input (``[:t]`` in evaluation, a random offset in
training); an input with more time patches than embeddings raises an error (split long audio into windows, as
:class:`audioforge.tagging.Tagger` does). Patchout (training only): structured (drop ``s_patchout_t`` random time
columns and ``s_patchout_f`` random frequency rows, the same for the whole batch) and unstructured (drop
``u_patchout`` random tokens). Evaluation always uses every patch.

:meth:`PaSST.forward_timeline` is an audioforge extension, not part of the paper: it applies the classification head
to every time column of patch tokens (averaged over frequency) to give frame-level logits every ``tstride`` frames.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import nn

from ..errors import InvalidParameterError

__all__ = ["PRESETS", "PaSST", "available_presets", "build_passt", "count_parameters", "preset_config"]

_COMMON: dict[str, Any] = {
    "img_size": [128, 998],
    "patch_size": 16,
    "in_chans": 1,
    "num_classes": 527,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
}

#: Named architectures. ``passt_s*`` and ``passt_l`` match the official AudioSet checkpoints (DeiT-B width);
#: ``passt_tiny`` and ``passt_mini`` are small CPU-friendly variants of our own (no official weights).
PRESETS: dict[str, dict[str, Any]] = {
    "passt_s": {**_COMMON, "embed_dim": 768, "depth": 12, "num_heads": 12, "stride": 10},
    "passt_s_s12": {**_COMMON, "embed_dim": 768, "depth": 12, "num_heads": 12, "stride": 12},
    "passt_s_s14": {**_COMMON, "embed_dim": 768, "depth": 12, "num_heads": 12, "stride": 14},
    "passt_s_s16": {**_COMMON, "embed_dim": 768, "depth": 12, "num_heads": 12, "stride": 16},
    "passt_l": {**_COMMON, "embed_dim": 768, "depth": 7, "num_heads": 12, "stride": 10},
    "passt_tiny": {**_COMMON, "embed_dim": 192, "depth": 4, "num_heads": 3, "stride": 10},
    "passt_mini": {**_COMMON, "embed_dim": 96, "depth": 2, "num_heads": 2, "stride": 10},
}


def available_presets() -> list[str]:
    """Names accepted by :func:`build_passt` and :func:`preset_config`."""
    return sorted(PRESETS)


def preset_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The hyper-parameters of preset ``name`` (a fresh dict) with ``overrides`` applied.

    Raises
    ------
    InvalidParameterError
        Unknown preset or override name.
    """
    if name not in PRESETS:
        raise InvalidParameterError(f"unknown PaSST preset {name!r}; use one of {available_presets()}")
    cfg = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in PRESETS[name].items()}
    allowed = set(_PARAMS)
    bad = sorted(set(overrides) - allowed)
    if bad:
        raise InvalidParameterError(f"unknown PaSST hyper-parameters {bad}; known: {sorted(allowed)}")
    cfg.update(overrides)
    return cfg


def build_passt(name: str = "passt_s", **overrides: Any) -> PaSST:
    """Build preset ``name`` (randomly initialised), with hyper-parameter ``overrides`` (e.g. ``num_classes=10``).

    Build on the meta device (``with torch.device("meta"): build_passt(...)``) to inspect shapes without memory.
    """
    return PaSST(**preset_config(name, **overrides))


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise InvalidParameterError(f"{name} must be an int or a pair, got {value!r}")
        a, b = value
    else:
        a = b = value
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidParameterError(f"{name} must hold positive integers, got {value!r}")
    return int(a), int(b)


class PatchEmbed(nn.Module):
    """Overlapping 16 x 16 patches of the spectrogram by a strided convolution; output ``(batch, D, f, t)``.

    ``grid_size`` (the size of the positional grids) is ``img_size // stride``, as in the official code, which is
    not always the number of patches the convolution gives for ``img_size`` (stride 12 on 998 frames: 83 vs 82).
    """

    def __init__(self, img_size: tuple[int, int], patch_size: int, stride: tuple[int, int], in_chans: int, dim: int):
        super().__init__()
        self.img_size = img_size
        self.patch_size = (patch_size, patch_size)
        self.stride = stride
        self.grid_size = (img_size[0] // stride[0], img_size[1] // stride[1])
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (names as in timm/PaSST)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(y))


class Mlp(nn.Module):
    """``fc1`` -> exact GELU -> ``fc2`` (with dropout after each in training)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per example with probability ``p`` (training only)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


_PARAMS = (
    "img_size",
    "patch_size",
    "stride",
    "in_chans",
    "num_classes",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
    "u_patchout",
    "s_patchout_t",
    "s_patchout_f",
    "drop_rate",
    "attn_drop_rate",
    "drop_path_rate",
    "random_time_offset",
)


class PaSST(nn.Module):
    """The Patchout faSt Spectrogram Transformer (distilled DeiT layout, as in every official checkpoint).

    Parameters
    ----------
    img_size
        ``(mel bins, frames)`` the positional grids are sized for: ``(128, 998)`` (10 s) for the official models.
    patch_size
        Square patch size (16).
    stride
        Patch stride, an int or ``(fstride, tstride)``: 10 for PaSST-S, 12 / 14 / 16 for the faster variants.
    in_chans
        Input channels (1).
    num_classes
        Output classes (527 for AudioSet).
    embed_dim, depth, num_heads, mlp_ratio, qkv_bias
        Transformer width, blocks, heads, MLP expansion, bias of the qkv projection.
    u_patchout
        Unstructured Patchout: tokens dropped at random in training.
    s_patchout_t, s_patchout_f
        Structured Patchout: time columns and frequency rows dropped at random in training (at least one of each
        is always kept, so short inputs do not fail).
    drop_rate, attn_drop_rate, drop_path_rate
        Dropout after projections, attention dropout, stochastic-depth rate (linearly increasing over blocks);
        all 0 in the official checkpoints.
    random_time_offset
        In training, add the time embeddings from a random offset when the input has fewer time patches than
        embeddings (evaluation always uses the first ones).
    """

    def __init__(
        self,
        *,
        img_size: tuple[int, int] | list[int] = (128, 998),
        patch_size: int = 16,
        stride: int | tuple[int, int] | list[int] = 10,
        in_chans: int = 1,
        num_classes: int = 527,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        u_patchout: int = 0,
        s_patchout_t: int = 0,
        s_patchout_f: int = 0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        random_time_offset: bool = True,
    ) -> None:
        super().__init__()
        img = _pair(img_size, "img_size")
        strides = _pair(stride, "stride")
        for name, value in (("patch_size", patch_size), ("in_chans", in_chans), ("num_classes", num_classes),
                            ("embed_dim", embed_dim), ("depth", depth), ("num_heads", num_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
        if embed_dim % num_heads:
            raise InvalidParameterError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        if img[0] < patch_size or img[1] < patch_size:
            raise InvalidParameterError(f"img_size={list(img)} is smaller than patch_size={patch_size}")
        for name, value in (("u_patchout", u_patchout), ("s_patchout_t", s_patchout_t),
                            ("s_patchout_f", s_patchout_f)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidParameterError(f"{name} must be an integer >= 0, got {value!r}")
        for name, value in (("drop_rate", drop_rate), ("attn_drop_rate", attn_drop_rate),
                            ("drop_path_rate", drop_path_rate)):
            if not 0.0 <= float(value) < 1.0:
                raise InvalidParameterError(f"{name} must be in [0, 1), got {value!r}")
        self.img_size = img
        self.patch_size = int(patch_size)
        self.stride = strides
        self.in_chans = int(in_chans)
        self.num_classes = int(num_classes)
        self.embed_dim = self.num_features = int(embed_dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.u_patchout = int(u_patchout)
        self.s_patchout_t = int(s_patchout_t)
        self.s_patchout_f = int(s_patchout_f)
        self.drop_rate = float(drop_rate)
        self.attn_drop_rate = float(attn_drop_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.random_time_offset = bool(random_time_offset)
        #: Time-patch indices kept by structured Patchout in the last forward pass (None: all were kept); a
        #: frame-level training loss uses it to pick the matching targets.
        self.kept_time_columns: torch.Tensor | None = None

        d = self.embed_dim
        self.patch_embed = PatchEmbed(img, self.patch_size, strides, self.in_chans, d)
        gf, gt = self.patch_embed.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, d))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, d, gf, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, d, 1, gt))
        self.pos_drop = nn.Dropout(self.drop_rate)
        rates = [self.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(
            *[
                Block(d, num_heads, self.mlp_ratio, self.qkv_bias, self.drop_rate, self.attn_drop_rate, rates[i])
                for i in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, num_classes))
        self.head_dist = nn.Linear(d, num_classes)
        self.reset_parameters()

    # ------------------------------------------------------------------------------------------------------------

    def reset_parameters(self) -> None:
        """ViT/DeiT initialisation: truncated normal (std 0.02) for embeddings, tokens and linear weights."""
        for p in (self.new_pos_embed, self.freq_new_pos_embed, self.time_new_pos_embed, self.cls_token,
                  self.dist_token):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model (JSON values)."""
        out = {name: getattr(self, name) for name in _PARAMS}
        out["img_size"] = list(self.img_size)
        out["stride"] = list(self.stride)
        return out

    @property
    def grid_size(self) -> tuple[int, int]:
        """``(F, T)``: frequency rows and time columns of the positional embeddings."""
        return self.patch_embed.grid_size

    @property
    def max_frames(self) -> int:
        """The most spectrogram frames one forward accepts (every time patch needs an embedding)."""
        return (self.grid_size[1] - 1) * self.stride[1] + self.patch_size + self.stride[1] - 1

    @property
    def min_frames(self) -> int:
        """The fewest spectrogram frames one forward accepts (one patch: ``patch_size``)."""
        return self.patch_size

    def num_time_patches(self, frames: int) -> int:
        """Time patches for ``frames`` spectrogram frames: ``(frames - patch) // tstride + 1``."""
        return (int(frames) - self.patch_size) // self.stride[1] + 1

    def no_weight_decay(self) -> set[str]:
        """Parameters usually excluded from weight decay (embeddings and tokens)."""
        return {"new_pos_embed", "freq_new_pos_embed", "time_new_pos_embed", "cls_token", "dist_token"}

    # ------------------------------------------------------------------------------------------------------------

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise InvalidParameterError(
                f"PaSST expects a spectrogram of shape (batch, {self.in_chans}, bins, frames), got {tuple(x.shape)}"
            )
        bins, frames = x.shape[-2], x.shape[-1]
        if bins < self.patch_size or (bins - self.patch_size) // self.stride[0] + 1 != self.grid_size[0]:
            raise InvalidParameterError(
                f"input has {bins} frequency bins but the model was built for {self.img_size[0]} "
                f"({self.grid_size[0]} frequency patches); use the matching front end"
            )
        if frames < self.min_frames:
            raise InvalidParameterError(
                f"input has {frames} frames; PaSST needs at least {self.min_frames} (one patch). Pad short audio "
                "(audioforge.tagging.Tagger pads clips shorter than that with zeros)"
            )
        if frames > self.max_frames:
            t = self.num_time_patches(frames)
            raise InvalidParameterError(
                f"input has {frames} frames ({t} time patches) but the model has only {self.grid_size[1]} time "
                f"embeddings (at most {self.max_frames} frames, about 10 s of audio for the official models); "
                "split long audio into windows: audioforge.tagging.Tagger does this with sliding windows"
            )

    def _patch_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int] | None]:
        """Patch embedding, positional embeddings and patchout: tokens ``(batch, n, D)`` and their grid or None."""
        self._check_input(x)
        x = self.patch_embed(x)  # (batch, D, f, t)
        _, _, f, t = x.shape
        total = self.time_new_pos_embed.shape[-1]
        offset = 0
        if self.training and self.random_time_offset and t < total:
            offset = int(torch.randint(total - t + 1, (1,)))
        x = x + self.time_new_pos_embed[..., offset : offset + t]
        x = x + self.freq_new_pos_embed
        self.kept_time_columns = None
        if self.training and self.s_patchout_t:
            keep = max(1, t - self.s_patchout_t)
            idx = torch.randperm(t)[:keep].sort().values.to(x.device)
            x = x[..., idx]
            self.kept_time_columns = idx
        if self.training and self.s_patchout_f:
            keep = max(1, f - self.s_patchout_f)
            idx = torch.randperm(f)[:keep].sort().values.to(x.device)
            x = x[:, :, idx, :]
        grid: tuple[int, int] | None = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # (batch, f * t, D), frequency-major
        if self.training and self.u_patchout:
            n = x.shape[1]
            idx = torch.randperm(n)[: max(1, n - self.u_patchout)].sort().values.to(x.device)
            x = x[:, idx, :]
            grid = None
        return x, grid

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int] | None]:
        """Every output token after the final norm.

        Returns
        -------
        tokens
            ``(batch, 2 + n, D)``: the classification token, the distillation token, then the patch tokens
            (frequency-major: ``f * t + time``).
        grid
            ``(f, t)`` of the patch tokens, or None after unstructured Patchout (the tokens no longer form a grid).
        """
        tokens, grid = self._patch_tokens(x)
        b = tokens.shape[0]
        cls = self.cls_token.expand(b, -1, -1) + self.new_pos_embed[:, :1, :]
        dist = self.dist_token.expand(b, -1, -1) + self.new_pos_embed[:, 1:, :]
        x = torch.cat((cls, dist, tokens), dim=1)
        x = self.pos_drop(x)
        x = self.blocks(x)
        return self.norm(x), grid

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip-level ``(logits (batch, classes), features (batch, D))`` of spectrograms ``(batch, 1, bins, frames)``.

        Raises
        ------
        InvalidParameterError
            Wrong rank, channel count or frequency bins; fewer frames than one patch; more time patches than the
            model has time embeddings.
        """
        tokens, _ = self.forward_tokens(x)
        features = (tokens[:, 0] + tokens[:, 1]) / 2
        return self.head(features), features

    def forward_timeline(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clip-level and frame-level outputs from one pass (an audioforge extension, not in the paper).

        The frame-level logits of time column ``j`` are ``head(mean over frequency of the patch tokens of column
        j)``: the head was trained on the pooled class/distillation features only, so treat them as a localisation
        cue, not calibrated per-frame probabilities. Column ``j`` covers frames ``[j * tstride, j * tstride + 16)``.

        Returns
        -------
        (logits, features, frame_logits)
            ``(batch, classes)``, ``(batch, D)`` and ``(batch, t, classes)``.

        Raises
        ------
        InvalidParameterError
            As :meth:`forward`, or called in training mode with unstructured Patchout (no time grid).
        """
        tokens, grid = self.forward_tokens(x)
        if grid is None:
            raise InvalidParameterError("forward_timeline needs a token grid; disable u_patchout or use eval mode")
        features = (tokens[:, 0] + tokens[:, 1]) / 2
        f, t = grid
        patches = tokens[:, 2:].reshape(tokens.shape[0], f, t, -1).mean(dim=1)  # (batch, t, D)
        return self.head(features), features, self.head(patches)

    def extra_repr(self) -> str:
        return (
            f"dim={self.embed_dim}, depth={self.depth}, heads={self.num_heads}, stride={list(self.stride)}, "
            f"grid={list(self.grid_size)}, classes={self.num_classes}, patchout=(s_t={self.s_patchout_t}, "
            f"s_f={self.s_patchout_f}, u={self.u_patchout})"
        )


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works for modules on the meta device)."""
    return sum(math.prod(p.shape) for p in module.parameters())


