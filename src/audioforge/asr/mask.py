"""Attention masks of the U2 models (``True`` = attend / valid), WeNet's conventions.

- :func:`make_pad_mask` is ``True`` on padding frames; :func:`make_non_pad_mask` its negation;
- :func:`subsequent_mask`: the causal (lower-triangular) mask of the decoder;
- :func:`subsequent_chunk_mask`: row ``i`` attends to ``[max((i // c - L) * c, 0), min((i // c + 1) * c, size))``
  (``L < 0``: all history);
- :func:`add_optional_chunk_mask`: the chunk mask of training (dynamic chunk size and left chunks) or decoding,
  ANDed with the padding mask.
"""

from __future__ import annotations

import torch

from ..errors import InvalidParameterError

__all__ = [
    "add_optional_chunk_mask",
    "make_non_pad_mask",
    "make_pad_mask",
    "subsequent_chunk_mask",
    "subsequent_mask",
]


def make_pad_mask(lengths: torch.Tensor, max_len: int = 0) -> torch.Tensor:
    """``(batch, max_len)`` bool mask, ``True`` where the frame index is ``>= lengths[b]`` (padding).

    ``max_len <= 0`` uses ``lengths.max()``.
    """
    batch = lengths.size(0)
    max_len = max_len if max_len > 0 else int(lengths.max().item()) if batch else 0
    seq = torch.arange(max_len, dtype=torch.int64, device=lengths.device)
    return seq.unsqueeze(0).expand(batch, max_len) >= lengths.unsqueeze(-1)


def make_non_pad_mask(lengths: torch.Tensor, max_len: int = 0) -> torch.Tensor:
    """``~make_pad_mask(lengths, max_len)``: ``True`` on valid frames."""
    return ~make_pad_mask(lengths, max_len)


def subsequent_mask(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(size, size)`` lower-triangular bool mask: row ``i`` attends to ``0 .. i``."""
    idx = torch.arange(size, device=device)
    return idx.unsqueeze(0) <= idx.unsqueeze(1)


def subsequent_chunk_mask(
    size: int, chunk_size: int, num_left_chunks: int = -1, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``(size, size)`` bool mask of chunk-wise attention.

    Row ``i`` (in chunk ``i // chunk_size``) attends to columns ``[max((i // c - L) * c, 0), min((i // c + 1) * c,
    size))`` with ``c = chunk_size`` and ``L = num_left_chunks``; ``L < 0`` gives a start of 0 (all history).
    """
    if chunk_size <= 0:
        raise InvalidParameterError(f"chunk_size must be > 0, got {chunk_size}")
    idx = torch.arange(size, device=device)
    chunk = torch.div(idx, chunk_size, rounding_mode="floor")
    end = torch.clamp((chunk + 1) * chunk_size, max=size)
    start = torch.zeros_like(idx) if num_left_chunks < 0 else torch.clamp((chunk - num_left_chunks) * chunk_size, min=0)
    col = idx.unsqueeze(0)
    return (col >= start.unsqueeze(1)) & (col < end.unsqueeze(1))


def add_optional_chunk_mask(
    xs: torch.Tensor,
    masks: torch.Tensor,
    use_dynamic_chunk: bool,
    use_dynamic_left_chunk: bool,
    decoding_chunk_size: int,
    static_chunk_size: int,
    num_decoding_left_chunks: int,
    max_dynamic_chunk: int = 25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The encoder's self-attention mask ``(batch, T, T)`` (or the padding mask ``(batch, 1, T)`` unchanged).

    Parameters
    ----------
    xs
        ``(batch, T, d)`` encoder input (only its length and device are used).
    masks
        ``(batch, 1, T)`` padding mask, ``True`` on valid frames.
    use_dynamic_chunk
        Chunk size chosen per batch: decoding with ``decoding_chunk_size < 0`` uses full context, ``> 0`` that
        chunk; in training (``decoding_chunk_size == 0``) a draw ``c`` in ``[1, T)`` gives full context when
        ``c > T // 2``, else ``c % max_dynamic_chunk + 1``.
    use_dynamic_left_chunk
        In training, draw the number of left chunks uniformly in ``[0, (T - 1) // chunk]`` (else all history).
    decoding_chunk_size, num_decoding_left_chunks
        Decoding settings (``num_decoding_left_chunks < 0``: all history).
    static_chunk_size
        A fixed chunk size when not dynamic (``<= 0``: full context).
    max_dynamic_chunk
        25 in WeNet (<= 1 s at 4x subsampling).
    generator
        Random generator for the dynamic draws.
    """
    max_len = xs.size(1)
    if use_dynamic_chunk:
        num_left = -1
        if decoding_chunk_size < 0:
            chunk = max_len
        elif decoding_chunk_size > 0:
            chunk = decoding_chunk_size
            num_left = num_decoding_left_chunks
        else:
            draw = int(torch.randint(1, max(max_len, 2), (1,), generator=generator).item())
            if draw > max_len // 2:
                chunk = max_len
            else:
                chunk = draw % max_dynamic_chunk + 1
                if use_dynamic_left_chunk:
                    max_left = (max_len - 1) // chunk
                    num_left = int(torch.randint(0, max_left + 1, (1,), generator=generator).item())
        chunk_masks = subsequent_chunk_mask(max_len, max(chunk, 1), num_left, xs.device).unsqueeze(0)
        return masks & chunk_masks
    if static_chunk_size > 0:
        chunk_masks = subsequent_chunk_mask(max_len, static_chunk_size, num_decoding_left_chunks, xs.device)
        return masks & chunk_masks.unsqueeze(0)
    return masks
