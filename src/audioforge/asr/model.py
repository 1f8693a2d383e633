"""The U2 / U2++ model: shared encoder, CTC head and attention decoder, trained jointly; SpecAugment.

Loss: ``ctc_weight * ctc + (1 - ctc_weight) * ((1 - reverse_weight) * l2r + reverse_weight * r2l)`` with label
smoothing on the attention losses. ``<sos>`` and ``<eos>`` share the last id of the vocabulary, ``<blank>`` is 0.

:func:`build_u2_model` builds a model from a plain configuration dict (stored in bundles), e.g.::

    {"input_dim": 80, "vocab_size": 30, "encoder": "conformer",
     "encoder_conf": {"output_size": 64, "attention_heads": 4, "linear_units": 128, "num_blocks": 2,
                      "causal": True, "cnn_module_norm": "layer_norm", "cnn_module_kernel": 8,
                      "use_dynamic_chunk": True, "input_layer": "conv2d"},
     "decoder": "bitransformer", "decoder_conf": {"num_blocks": 1, "r_num_blocks": 1, "linear_units": 128},
     "model_conf": {"ctc_weight": 0.3, "reverse_weight": 0.3, "lsm_weight": 0.1},
     "cmvn": {"mean_stat": [...], "var_stat": [...], "frame_num": N}}
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, InvalidParameterError
from .cmvn import GlobalCMVN
from .ctc import CTC
from .decoder import BiTransformerDecoder, TransformerDecoder
from .encoder import BaseEncoder, ConformerEncoder, TransformerEncoder

__all__ = [
    "IGNORE_ID",
    "LabelSmoothingLoss",
    "SpecAugment",
    "U2Model",
    "add_sos_eos",
    "build_u2_model",
    "reverse_pad_list",
]

IGNORE_ID = -1
ENCODERS = {"conformer": ConformerEncoder, "transformer": TransformerEncoder}
DECODERS = {"transformer": TransformerDecoder, "bitransformer": BiTransformerDecoder}


class SpecAugment(nn.Module):
    """Time and frequency masking of ``(batch, T, F)`` features in training (zeros; masks drawn per example).

    Parameters
    ----------
    num_t_mask, max_t
        Number of time masks and their maximal width in frames (2, 50).
    num_f_mask, max_f
        Number of frequency masks and their maximal width in bins (2, 10).
    generator
        Random generator (None: torch's global one).
    """

    def __init__(
        self,
        num_t_mask: int = 2,
        max_t: int = 50,
        num_f_mask: int = 2,
        max_f: int = 10,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_t_mask, self.max_t, self.num_f_mask, self.max_f = num_t_mask, max_t, num_f_mask, max_f
        self.generator = generator

    def _draw(self, high: int) -> int:
        return int(torch.randint(0, max(high, 1), (1,), generator=self.generator).item())

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Masked copy of ``feats`` in training mode; ``feats`` unchanged in eval mode."""
        if not self.training:
            return feats
        out = feats.clone()
        batch, frames, bins = out.shape
        for b in range(batch):
            n = int(lengths[b]) if lengths is not None else frames
            for _ in range(self.num_t_mask):
                start = self._draw(n)
                width = self._draw(self.max_t) + 1
                out[b, start : min(start + width, n), :] = 0
            for _ in range(self.num_f_mask):
                start = self._draw(bins)
                width = self._draw(self.max_f) + 1
                out[b, :, start : min(start + width, bins)] = 0
        return out


class LabelSmoothingLoss(nn.Module):
    """KL divergence to a smoothed one-hot target (``1 - smoothing`` on the label, the rest spread uniformly).

    Positions with ``padding_idx`` targets are ignored; normalised by the token count
    (``normalize_length``) or the batch size.
    """

    def __init__(self, size: int, padding_idx: int = IGNORE_ID, smoothing: float = 0.0, normalize_length: bool = False):
        super().__init__()
        self.size, self.padding_idx, self.smoothing = size, padding_idx, smoothing
        self.confidence = 1.0 - smoothing
        self.normalize_length = normalize_length

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``x`` logits ``(batch, L, size)``, ``target`` ``(batch, L)``."""
        batch = x.size(0)
        x = x.reshape(-1, self.size)
        target = target.reshape(-1)
        ignore = target == self.padding_idx
        safe = target.masked_fill(ignore, 0)
        true_dist = torch.full_like(x, self.smoothing / max(self.size - 1, 1))
        true_dist.scatter_(1, safe.unsqueeze(1), self.confidence)
        logp = torch.log_softmax(x, dim=1)
        kl = torch.where(true_dist > 0, true_dist * (torch.log(true_dist.clamp_min(1e-30)) - logp), 0.0)
        kl = kl.masked_fill(ignore.unsqueeze(1), 0.0).sum()
        denom = (~ignore).sum().clamp_min(1) if self.normalize_length else batch
        return kl / denom


def add_sos_eos(ys_pad: torch.Tensor, sos: int, eos: int, ignore_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder input ``<sos> y`` (padded with ``eos``) and output ``y <eos>`` (padded with ``ignore_id``)."""
    ys = [y[y != ignore_id] for y in ys_pad]
    sos_t = ys_pad.new_tensor([sos])
    eos_t = ys_pad.new_tensor([eos])
    ys_in = nn.utils.rnn.pad_sequence([torch.cat([sos_t, y]) for y in ys], batch_first=True, padding_value=eos)
    ys_out = nn.utils.rnn.pad_sequence([torch.cat([y, eos_t]) for y in ys], batch_first=True, padding_value=ignore_id)
    return ys_in, ys_out


def reverse_pad_list(ys_pad: torch.Tensor, ys_lens: torch.Tensor, pad_value: float = -1.0) -> torch.Tensor:
    """Reverse each row's first ``ys_lens[b]`` entries; pad with ``pad_value``."""
    rows = [torch.flip(y[: int(n)], [0]) for y, n in zip(ys_pad, ys_lens, strict=True)]
    return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_value)


class U2Model(nn.Module):
    """Encoder + CTC + attention decoder (U2; U2++ with a :class:`BiTransformerDecoder` and ``reverse_weight > 0``).

    Parameters
    ----------
    vocab_size
        Tokens including ``<blank>`` (0) and ``<sos/eos>`` (last).
    encoder, decoder, ctc
        The sub-modules.
    ctc_weight
        Weight of the CTC loss (1.0: CTC only, the decoder is not trained).
    ignore_id
        Padding value of the targets.
    reverse_weight
        Weight of the right-to-left decoder loss (needs a bidirectional decoder).
    lsm_weight
        Label smoothing.
    length_normalized_loss
        Normalise the attention loss by tokens instead of utterances.
    specaug
        Applied to the features in training mode (None: no augmentation).
    """

    def __init__(
        self,
        vocab_size: int,
        encoder: BaseEncoder,
        decoder: TransformerDecoder | BiTransformerDecoder,
        ctc: CTC,
        ctc_weight: float = 0.5,
        ignore_id: int = IGNORE_ID,
        reverse_weight: float = 0.0,
        lsm_weight: float = 0.0,
        length_normalized_loss: bool = False,
        specaug: SpecAugment | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= ctc_weight <= 1.0:
            raise InvalidParameterError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
        if not 0.0 <= reverse_weight <= 1.0:
            raise InvalidParameterError(f"reverse_weight must be in [0, 1], got {reverse_weight}")
        if reverse_weight > 0 and not isinstance(decoder, BiTransformerDecoder):
            raise InvalidParameterError("reverse_weight > 0 needs a BiTransformerDecoder")
        self.vocab_size = vocab_size
        self.sos = vocab_size - 1
        self.eos = vocab_size - 1
        self.blank_id = 0
        self.ignore_id = ignore_id
        self.ctc_weight = ctc_weight
        self.reverse_weight = reverse_weight
        self.encoder = encoder
        self.decoder = decoder
        self.ctc = ctc
        self.specaug = specaug
        self.model_config: dict[str, Any] | None = None  # set by build_u2_model (needed to save a bundle)
        self.criterion_att = LabelSmoothingLoss(vocab_size, ignore_id, lsm_weight, length_normalized_loss)

    @property
    def is_bidirectional(self) -> bool:
        """True with a right-to-left decoder."""
        return isinstance(self.decoder, BiTransformerDecoder)

    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor, text_lengths: torch.Tensor
    ) -> dict[str, torch.Tensor | None]:
        """Training losses for features ``(batch, T, 80)`` and padded targets ``(batch, L)`` (padding ``ignore_id``).

        Returns
        -------
        dict
            ``loss``, ``loss_ctc`` (None when ``ctc_weight`` is 0) and ``loss_att`` (None when it is 1).
        """
        if self.specaug is not None and self.training:
            speech = self.specaug(speech, speech_lengths)
        encoder_out, encoder_mask = self.encoder(speech, speech_lengths)
        encoder_lens = encoder_mask.squeeze(1).sum(1)
        loss_ctc = loss_att = None
        if self.ctc_weight > 0.0:
            loss_ctc = self.ctc(encoder_out, encoder_lens, text, text_lengths)
        if self.ctc_weight < 1.0:
            loss_att = self._att_loss(encoder_out, encoder_mask, text, text_lengths)
        if loss_ctc is None:
            loss = loss_att
        elif loss_att is None:
            loss = loss_ctc
        else:
            loss = self.ctc_weight * loss_ctc + (1.0 - self.ctc_weight) * loss_att
        return {"loss": loss, "loss_ctc": loss_ctc, "loss_att": loss_att}

    def _att_loss(
        self, encoder_out: torch.Tensor, encoder_mask: torch.Tensor, ys_pad: torch.Tensor, ys_lens: torch.Tensor
    ) -> torch.Tensor:
        ys_in, ys_out = add_sos_eos(ys_pad, self.sos, self.eos, self.ignore_id)
        ys_in_lens = ys_lens + 1
        r_ys_pad = reverse_pad_list(ys_pad, ys_lens, float(self.ignore_id))
        r_ys_in, r_ys_out = add_sos_eos(r_ys_pad, self.sos, self.eos, self.ignore_id)
        l_x, r_x, _ = self.decoder(encoder_out, encoder_mask, ys_in, ys_in_lens, r_ys_in, self.reverse_weight)
        loss = self.criterion_att(l_x, ys_out)
        if self.reverse_weight > 0.0 and r_x.numel():
            loss = (1.0 - self.reverse_weight) * loss + self.reverse_weight * self.criterion_att(r_x, r_ys_out)
        return loss

    # ------------------------------------------------------------------------------------------------ inference

    def encode(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        decoding_chunk_size: int = -1,
        num_decoding_left_chunks: int = -1,
        simulate_streaming: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(batch, T', d)`` and mask; ``simulate_streaming`` runs chunk by chunk (batch 1)."""
        if simulate_streaming and decoding_chunk_size > 0:
            return self.encoder.forward_chunk_by_chunk(speech, decoding_chunk_size, num_decoding_left_chunks)
        return self.encoder(speech, speech_lengths, decoding_chunk_size, num_decoding_left_chunks)

    def ctc_log_softmax(self, encoder_out: torch.Tensor) -> torch.Tensor:
        """CTC log-posteriors ``(batch, T', vocab)``."""
        return self.ctc.log_softmax(encoder_out)

    def score_hyps(
        self,
        hyps: torch.Tensor,
        hyps_lens: torch.Tensor,
        encoder_out: torch.Tensor,
        reverse_weight: float | torch.Tensor = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder log-probabilities of whole hypotheses (tokens then ``<eos>``), both directions.

        Parameters
        ----------
        hyps
            ``(N, L)`` token ids with ``<sos>`` first (padding any valid id).
        hyps_lens
            ``(N,)`` lengths including the ``<sos>``.
        encoder_out
            ``(1, T, d)`` encoder output of the utterance.
        reverse_weight
            When ``> 0`` (and the decoder is bidirectional) the right-to-left score is computed, else it is 0.

        Returns
        -------
        tuple
            ``(score (N,), r_score (N,))``: sums of token log-probabilities including ``<eos>``.
        """
        n, width = hyps.shape
        memory = encoder_out.expand(n, -1, -1)
        memory_mask = torch.ones((n, 1, memory.size(1)), dtype=torch.bool, device=hyps.device)
        lens = hyps_lens - 1  # tokens without <sos>
        pos = torch.arange(width, device=hyps.device).unsqueeze(0)
        shifted = torch.cat([hyps[:, 1:], hyps[:, :1]], dim=1)
        targets = torch.where(pos < lens.unsqueeze(1), shifted, torch.full_like(hyps, self.eos))
        valid = pos <= lens.unsqueeze(1)
        # right to left: tokens reversed within their length, <sos> first
        src = (lens.unsqueeze(1) + 1 - pos).clamp(min=1, max=width - 1)  # r_hyps[pos] = hyps[lens + 1 - pos]
        r_body = torch.gather(hyps, 1, src)
        r_hyps = torch.where((pos >= 1) & (pos <= lens.unsqueeze(1)), r_body, torch.full_like(hyps, self.sos))
        r_hyps = torch.where(pos == 0, torch.full_like(hyps, self.sos), r_hyps)
        r_src = (lens.unsqueeze(1) - pos).clamp(min=1, max=width - 1)
        r_targets = torch.where(pos < lens.unsqueeze(1), torch.gather(hyps, 1, r_src), torch.full_like(hyps, self.eos))
        if isinstance(self.decoder, BiTransformerDecoder):
            l_x, _, _ = self.decoder.left_decoder(memory, memory_mask, hyps, hyps_lens)
            r_x, _, _ = self.decoder.right_decoder(memory, memory_mask, r_hyps, hyps_lens)
        else:
            l_x, _, _ = self.decoder(memory, memory_mask, hyps, hyps_lens)
            r_x = l_x
        l_logp = torch.log_softmax(l_x, dim=-1).gather(2, targets.unsqueeze(2)).squeeze(2)
        score = (l_logp * valid).sum(1)
        r_logp = torch.log_softmax(r_x, dim=-1).gather(2, r_targets.unsqueeze(2)).squeeze(2)
        r_score = (r_logp * valid).sum(1)
        if isinstance(reverse_weight, torch.Tensor):
            rw = reverse_weight.to(score.dtype)
        else:
            rw = torch.tensor(float(reverse_weight), dtype=score.dtype, device=score.device)
        use_r = (rw > 0).to(score.dtype) * float(self.is_bidirectional)
        return score, r_score * use_r


def build_u2_model(config: Mapping[str, Any]) -> U2Model:
    """A :class:`U2Model` from a configuration dict (see the module docstring).

    Raises
    ------
    CheckpointError
        Unknown encoder/decoder names, missing sizes or unknown options.
    """
    cfg = copy.deepcopy(dict(config))
    try:
        input_dim = int(cfg["input_dim"])
        vocab_size = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the model configuration needs integer input_dim and vocab_size: {exc}") from exc
    enc_name = cfg.get("encoder", "conformer")
    dec_name = cfg.get("decoder", "bitransformer")
    if enc_name not in ENCODERS:
        raise CheckpointError(f"unknown encoder {enc_name!r}; use one of {sorted(ENCODERS)}")
    if dec_name not in DECODERS:
        raise CheckpointError(f"unknown decoder {dec_name!r}; use one of {sorted(DECODERS)}")
    enc_conf = dict(cfg.get("encoder_conf") or {})
    dec_conf = dict(cfg.get("decoder_conf") or {})
    model_conf = dict(cfg.get("model_conf") or {})
    cmvn = GlobalCMVN.from_stats(cfg["cmvn"]) if cfg.get("cmvn") else None
    try:
        encoder = ENCODERS[enc_name](input_dim, global_cmvn=cmvn, **enc_conf)
        decoder = DECODERS[dec_name](vocab_size, encoder.output_size(), **dec_conf)
        specaug = SpecAugment(**cfg["specaug_conf"]) if cfg.get("specaug_conf") else None
        ctc = CTC(vocab_size, encoder.output_size(), float(model_conf.pop("ctc_dropout_rate", 0.0)))
        model = U2Model(vocab_size, encoder, decoder, ctc, specaug=specaug, **model_conf)
    except TypeError as exc:
        raise CheckpointError(f"invalid model configuration: {exc}") from exc
    model.model_config = copy.deepcopy(dict(config))
    return model
