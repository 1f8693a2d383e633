"""DDSP decoders: (f0, loudness) frames -> raw synthesizer controls, offline and frame-by-frame.

Both decoders read ``f0_hz`` and ``loudness_db`` of shape ``(batch, n_frames)``, scale them to about [0, 1]
(``midi(f0) / 127``, 0 for unvoiced frames; ``loudness / 80 + 1``), and return raw outputs of shape
``(batch, n_frames, 1 + n_harmonics + n_noise_bands)``: amplitude, harmonic distribution, noise magnitudes (see
:meth:`RnnFcDecoder.split_outputs`); :class:`~audioforge.ddsp.model.DDSPAutoencoder` applies the scale functions.
Both are causal and carry an explicit state, so ``forward`` on a long sequence equals ``step`` (or ``forward`` on
blocks) frame by frame with the state passed along.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as nnf

from ..errors import InvalidParameterError
from .core import check_controls, hz_to_midi

__all__ = [
    "CONV_PRESETS",
    "RNN_PRESETS",
    "CausalConvDecoder",
    "ConvDecoderConfig",
    "RnnDecoderConfig",
    "RnnFcDecoder",
    "parameter_bytes",
    "scale_inputs",
]

LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu's default, used by DDSP


def scale_inputs(f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs: ``midi(f0) / 127`` (0 when unvoiced) and ``loudness_db / 80 + 1``."""
    return hz_to_midi(f0_hz) / 127.0, loudness_db / 80.0 + 1.0


def parameter_bytes(module: nn.Module, *, bytes_per_param: int = 4) -> int:
    """Size of ``module``'s parameters: ``count * bytes_per_param`` (4 = float32, 2 = float16)."""
    return sum(p.numel() for p in module.parameters()) * bytes_per_param


def _check_inputs(f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> None:
    check_controls("f0_hz", f0_hz, nonnegative=True)
    check_controls("loudness_db", loudness_db)
    if f0_hz.shape != loudness_db.shape:
        raise InvalidParameterError(
            f"f0_hz {tuple(f0_hz.shape)} and loudness_db {tuple(loudness_db.shape)} must both be (batch, n_frames)"
        )


class _Mlp(nn.Sequential):
    """``layers`` x (Linear, LayerNorm, leaky ReLU); the identity when ``layers == 0``."""

    def __init__(self, in_features: int, units: int, layers: int) -> None:
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Linear(in_features if i == 0 else units, units), nn.LayerNorm(units), nn.LeakyReLU(LEAKY_SLOPE)]
        super().__init__(*mods)


@dataclass(frozen=True)
class RnnDecoderConfig:
    """Sizes of an :class:`RnnFcDecoder`. ``mlp_layers = 0`` feeds the scaled inputs straight to the GRU."""

    mlp_units: int = 512
    mlp_layers: int = 3
    gru_units: int = 512
    n_harmonics: int = 60
    n_noise_bands: int = 65

    @property
    def n_outputs(self) -> int:
        """``1 + n_harmonics + n_noise_bands``."""
        return 1 + self.n_harmonics + self.n_noise_bands


#: The paper's and DDSP's configurations, plus ``tiny`` (< 300 KB of float32 parameters, for the browser).
RNN_PRESETS: dict[str, RnnDecoderConfig] = {
    "solo_instrument": RnnDecoderConfig(mlp_units=512, mlp_layers=3, gru_units=512),
    "vst": RnnDecoderConfig(mlp_units=256, mlp_layers=1, gru_units=512),
    "tiny_instrument": RnnDecoderConfig(mlp_units=0, mlp_layers=0, gru_units=256),
    "tiny": RnnDecoderConfig(mlp_units=64, mlp_layers=1, gru_units=64),
}


class _Decoder(nn.Module):
    """What every DDSP decoder shares: the output layout and the one-frame streaming step built on ``forward``."""

    config: Any

    @property
    def n_outputs(self) -> int:
        """Width of the output: ``1 + n_harmonics + n_noise_bands``."""
        return self.config.n_outputs

    def step(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """One frame: ``(batch,)`` inputs -> ``((batch, n_outputs), state)``, equal to ``forward`` frame by frame."""
        out, new_state = self.forward(f0_hz.reshape(-1, 1), loudness_db.reshape(-1, 1), state)
        return out[:, 0], new_state

    def split_outputs(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw ``amplitude`` (batch, T), ``harmonic_distribution`` (batch, T, H), ``noise_magnitudes`` (batch, T, B)."""
        h = self.config.n_harmonics
        return {
            "amplitude": outputs[..., 0],
            "harmonic_distribution": outputs[..., 1: 1 + h],
            "noise_magnitudes": outputs[..., 1 + h:],
        }


class RnnFcDecoder(_Decoder):
    """DDSP's RnnFcDecoder: per-input MLPs -> GRU -> concat(GRU, MLP features) -> MLP -> dense outputs.

    Parameters
    ----------
    config
        A :class:`RnnDecoderConfig` or the name of one in :data:`RNN_PRESETS`; keyword overrides replace fields.

    Examples
    --------
    >>> dec = RnnFcDecoder("tiny")
    >>> out, state = dec(torch.full((1, 10), 220.0), torch.full((1, 10), -30.0))
    >>> out.shape
    torch.Size([1, 10, 126])
    """

    def __init__(self, config: RnnDecoderConfig | str = "solo_instrument", **overrides: Any) -> None:
        super().__init__()
        if isinstance(config, str):
            if config not in RNN_PRESETS:
                raise InvalidParameterError(f"unknown decoder preset {config!r}; use one of {sorted(RNN_PRESETS)}")
            config = RNN_PRESETS[config]
        cfg = replace(config, **overrides)
        for name, value in asdict(cfg).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidParameterError(f"{name} must be a non-negative integer, got {value!r}")
        if cfg.gru_units < 1 or (cfg.mlp_layers > 0 and cfg.mlp_units < 1):
            raise InvalidParameterError("gru_units must be >= 1 and mlp_units >= 1 when mlp_layers > 0")
        self.config = cfg
        feat = cfg.mlp_units if cfg.mlp_layers else 1
        self.f0_mlp = _Mlp(1, cfg.mlp_units, cfg.mlp_layers)
        self.loudness_mlp = _Mlp(1, cfg.mlp_units, cfg.mlp_layers)
        self.gru = nn.GRU(2 * feat, cfg.gru_units, batch_first=True)
        self.out_mlp = _Mlp(cfg.gru_units + 2 * feat, cfg.mlp_units, cfg.mlp_layers)
        self.dense = nn.Linear(cfg.mlp_units if cfg.mlp_layers else cfg.gru_units + 2 * feat, cfg.n_outputs)

    def initial_state(self, batch: int, *, device: torch.device | None = None) -> torch.Tensor:
        """The zero GRU state, shape ``(1, batch, gru_units)``."""
        return torch.zeros(1, batch, self.config.gru_units, device=device)

    def forward(
        self, f0_hz: torch.Tensor, loudness_db: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, n_frames)`` f0 and loudness -> ``(outputs, state)``; ``state`` is the GRU hidden state."""
        _check_inputs(f0_hz, loudness_db)
        f0_in, ld_in = scale_inputs(f0_hz, loudness_db)
        f = self.f0_mlp(f0_in.unsqueeze(-1))
        ld = self.loudness_mlp(ld_in.unsqueeze(-1))
        x = torch.cat([f, ld], dim=-1)
        h, new_state = self.gru(x, state)
        y = self.out_mlp(torch.cat([h, f, ld], dim=-1))
        return self.dense(y), new_state


@dataclass(frozen=True)
class ConvDecoderConfig:
    """Sizes of a :class:`CausalConvDecoder`: ``channels`` wide, one residual layer per dilation."""

    channels: int = 64
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    n_harmonics: int = 60
    n_noise_bands: int = 65

    @property
    def n_outputs(self) -> int:
        """``1 + n_harmonics + n_noise_bands``."""
        return 1 + self.n_harmonics + self.n_noise_bands

    @property
    def receptive_field(self) -> int:
        """Frames of history an output sees (including its own)."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)


CONV_PRESETS: dict[str, ConvDecoderConfig] = {
    "conv_tiny": ConvDecoderConfig(channels=48),
    "conv_base": ConvDecoderConfig(channels=256, dilations=(1, 2, 4, 8, 16, 32, 1, 2, 4, 8, 16, 32)),
}


class CausalConvDecoder(_Decoder):
    """A stack of dilated causal 1-D convolutions over frames (the convnet style of the Sounds of India demo).

    ``x = Conv1x1([f0_in, ld_in])``; per dilation ``d``: ``x = x + leaky_relu(LayerNorm(CausalConv_d(x)))``; outputs
    ``Conv1x1(x)``. Causal padding is explicit: the state is, per layer, the last ``(kernel_size - 1) * d`` frames of
    that layer's input, zeros at the start, so a block (or a single frame, :meth:`step`) continues exactly where the
    previous one stopped.
    """

    def __init__(self, config: ConvDecoderConfig | str = "conv_tiny", **overrides: Any) -> None:
        super().__init__()
        if isinstance(config, str):
            if config not in CONV_PRESETS:
                raise InvalidParameterError(f"unknown decoder preset {config!r}; use one of {sorted(CONV_PRESETS)}")
            config = CONV_PRESETS[config]
        cfg = replace(config, **overrides)
        if cfg.channels < 1 or cfg.kernel_size < 1 or not cfg.dilations or min(cfg.dilations) < 1:
            raise InvalidParameterError(f"invalid conv decoder config {cfg}")
        self.config = cfg
        self.inp = nn.Conv1d(2, cfg.channels, 1)
        self.convs = nn.ModuleList(
            nn.Conv1d(cfg.channels, cfg.channels, cfg.kernel_size, dilation=d) for d in cfg.dilations
        )
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.channels) for _ in cfg.dilations)
        self.out = nn.Conv1d(cfg.channels, cfg.n_outputs, 1)

    def initial_state(self, batch: int, *, device: torch.device | None = None) -> list[torch.Tensor]:
        """Zero history buffers, one ``(batch, channels, (kernel_size - 1) * d)`` per layer."""
        k = self.config.kernel_size - 1
        return [torch.zeros(batch, self.config.channels, k * d, device=device) for d in self.config.dilations]

    def forward(
        self, f0_hz: torch.Tensor, loudness_db: torch.Tensor, state: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(batch, n_frames)`` inputs -> ``((batch, n_frames, n_outputs), state)``."""
        _check_inputs(f0_hz, loudness_db)
        f0_in, ld_in = scale_inputs(f0_hz, loudness_db)
        x = self.inp(torch.stack([f0_in, ld_in], dim=1))  # (B, C, T)
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device)
        if len(state) != len(self.convs):
            raise InvalidParameterError(f"state has {len(state)} buffers, this decoder has {len(self.convs)} layers")
        new_state = []
        for conv, norm, buf in zip(self.convs, self.norms, state, strict=True):
            ext = torch.cat([buf.to(x.dtype), x], dim=-1)
            keep = buf.shape[-1]
            new_state.append(ext[..., ext.shape[-1] - keep:].detach() if keep else buf)
            y = norm(conv(ext).transpose(1, 2)).transpose(1, 2)
            x = x + nnf.leaky_relu(y, LEAKY_SLOPE)
        return self.out(x).transpose(1, 2), new_state
