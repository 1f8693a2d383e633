from __future__ import annotations

import pytest
import torch

from audioforge.asr.mask import (
    add_optional_chunk_mask,
    make_non_pad_mask,
    make_pad_mask,
    subsequent_chunk_mask,
    subsequent_mask,
)
from audioforge.errors import InvalidParameterError


def brute_chunk_mask(size: int, chunk: int, left: int) -> torch.Tensor:
    out = torch.zeros(size, size, dtype=torch.bool)
    for i in range(size):
        start = 0 if left < 0 else max((i // chunk - left) * chunk, 0)
        end = min((i // chunk + 1) * chunk, size)
        for j in range(start, end):
            out[i, j] = True
    return out


@pytest.mark.parametrize("size", [1, 7, 16, 33])
@pytest.mark.parametrize("chunk", [1, 3, 4, 16, 40])
@pytest.mark.parametrize("left", [-1, 0, 1, 2])
def test_subsequent_chunk_mask_matches_formula(size: int, chunk: int, left: int) -> None:
    assert torch.equal(subsequent_chunk_mask(size, chunk, left), brute_chunk_mask(size, chunk, left))


def test_pad_masks_and_subsequent() -> None:
    lens = torch.tensor([3, 1, 5])
    pad = make_pad_mask(lens)
    assert pad.shape == (3, 5)
    assert pad.tolist()[0] == [False, False, False, True, True]
    assert torch.equal(make_non_pad_mask(lens, 6), ~make_pad_mask(lens, 6))
    assert torch.equal(subsequent_mask(4), torch.tril(torch.ones(4, 4, dtype=torch.bool)))
    with pytest.raises(InvalidParameterError):
        subsequent_chunk_mask(4, 0)


def test_add_optional_chunk_mask_modes() -> None:
    xs = torch.zeros(2, 20, 4)
    masks = (~make_pad_mask(torch.tensor([20, 12]), 20)).unsqueeze(1)
    # decoding with a chunk: the chunk mask ANDed with padding
    out = add_optional_chunk_mask(xs, masks, True, False, 4, 0, 1)
    assert torch.equal(out, masks & brute_chunk_mask(20, 4, 1).unsqueeze(0))
    # full context
    full = add_optional_chunk_mask(xs, masks, True, False, -1, 0, -1)
    assert torch.equal(full, masks.expand(2, 20, 20))
    # static chunk
    static = add_optional_chunk_mask(xs, masks, False, False, 0, 5, -1)
    assert torch.equal(static, masks & brute_chunk_mask(20, 5, -1).unsqueeze(0))
    # neither: the padding mask unchanged
    assert add_optional_chunk_mask(xs, masks, False, False, 0, 0, -1) is masks
    # dynamic training draws: every row of a valid frame is one of the chunk masks of some (chunk, left)
    gen = torch.Generator().manual_seed(0)
    candidates = torch.stack([subsequent_chunk_mask(20, c, left) for c in range(1, 21) for left in range(-1, 20)])
    seen = set()
    for _ in range(30):
        m = add_optional_chunk_mask(xs, masks, True, True, 0, 0, -1, generator=gen)[0]
        seen.add(int(m[19].sum()))
        assert (candidates == m).flatten(1).all(1).any()
    assert len(seen) > 1
