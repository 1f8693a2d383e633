"""PaSST: official layout and size, patchout token counts, time-embedding slicing, input limits, gradients."""

from __future__ import annotations

import pytest
import torch

from audioforge.errors import InvalidParameterError
from audioforge.tagging import PaSST, available_presets, build_passt, count_parameters, preset_config

from .conftest import official_shapes


def _mel(batch: int = 2, frames: int = 1000, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, 128, frames, generator=torch.Generator().manual_seed(seed))


def _token_count(model: PaSST, x: torch.Tensor) -> int:
    seen = []
    handle = model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize(("arch", "stride"), [("passt_s", 10), ("passt_s_s12", 12), ("passt_s_s14", 14),
                                              ("passt_s_s16", 16)])
def test_state_dict_matches_official_layout(arch, stride):
    with torch.device("meta"):
        model = build_passt(arch)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == official_shapes(stride=stride)


def test_passt_s_parameter_count():
    with torch.device("meta"):
        model = build_passt("passt_s")
    n = count_parameters(model)
    assert n == 86_153_758
    assert round(n / 1e6, 2) == 86.15  # the research note: ~86.15M


def test_positional_grids_use_img_size_over_stride():
    with torch.device("meta"):
        grids = {a: build_passt(a).grid_size for a in ("passt_s", "passt_s_s12", "passt_s_s16")}
    assert grids == {"passt_s": (12, 99), "passt_s_s12": (10, 83), "passt_s_s16": (8, 62)}


def test_forward_shapes_and_eval_uses_all_patches():
    model = build_passt("passt_mini").eval()
    x = _mel(frames=1000)
    logits, feats = model(x)
    assert logits.shape == (2, 527) and feats.shape == (2, 96)
    assert _token_count(model, x) == 2 + 12 * 99
    # patchout settings have no effect in evaluation
    patched = build_passt("passt_mini", s_patchout_t=40, s_patchout_f=4, u_patchout=50).eval()
    assert _token_count(patched, x) == 2 + 12 * 99


def test_patchout_token_counts_in_training():
    torch.manual_seed(0)
    x = _mel(frames=1000)
    structured = build_passt("passt_mini", s_patchout_t=40, s_patchout_f=4).train()
    assert _token_count(structured, x) == 474  # 2 + (12 - 4) * (99 - 40), as in the paper's count
    unstructured = build_passt("passt_mini", u_patchout=100).train()
    assert _token_count(unstructured, x) == 2 + 12 * 99 - 100
    both = build_passt("passt_mini", s_patchout_t=40, s_patchout_f=4, u_patchout=10).train()
    assert _token_count(both, x) == 474 - 10
    # short input with more time patchout than columns: at least one column stays
    assert _token_count(structured, _mel(frames=100)) == 2 + 8 * 1


def test_structured_patchout_keeps_a_sorted_subset_shared_by_the_batch():
    torch.manual_seed(3)
    model = build_passt("passt_mini", s_patchout_t=5, s_patchout_f=2).train()
    x = _mel(batch=3, frames=200)
    conv = model.patch_embed(x) + model.time_new_pos_embed[..., :19] + model.freq_new_pos_embed
    model.random_time_offset = False
    tokens, grid = model._patch_tokens(x)
    assert grid == (10, 14)
    full = conv.flatten(2).transpose(1, 2)  # (batch, 12 * 19, D)
    # every kept token is one of the full grid's tokens, in increasing grid order, same positions for the batch
    idx = [int((full[0] - t).abs().sum(-1).argmin()) for t in tokens[0]]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    torch.testing.assert_close(tokens, full[:, idx])


def test_time_embedding_sliced_in_eval_and_offset_in_training():
    model = build_passt("passt_mini").eval()
    x = _mel(batch=1, frames=100)  # 9 time patches
    conv = model.patch_embed(x)
    tokens, grid = model._patch_tokens(x)
    assert grid == (12, 9)
    expected = (conv + model.time_new_pos_embed[..., :9] + model.freq_new_pos_embed).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens, expected)

    model.train()
    offsets = set()
    for seed in range(6):
        torch.manual_seed(seed)
        tokens, _ = model._patch_tokens(x)
        got = tokens.transpose(1, 2).reshape(conv.shape) - conv - model.freq_new_pos_embed
        matches = [o for o in range(99 - 9 + 1)
                   if torch.allclose(got, model.time_new_pos_embed[..., o : o + 9].expand_as(got), atol=1e-5)]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 1


def test_input_length_limits():
    model = build_passt("passt_mini").eval()
    assert model.max_frames == 1005 and model.min_frames == 16
    model(_mel(batch=1, frames=16))
    model(_mel(batch=1, frames=1005))
    with pytest.raises(InvalidParameterError, match="windows"):
        model(_mel(batch=1, frames=1006))
    with pytest.raises(InvalidParameterError, match="time embeddings"):
        model(_mel(batch=1, frames=20550))  # PaSST#19: 2055 time patches vs 99
    with pytest.raises(InvalidParameterError, match="at least 16"):
        model(_mel(batch=1, frames=15))
    with pytest.raises(InvalidParameterError, match="frequency bins"):
        model(torch.zeros(1, 1, 64, 200))
    with pytest.raises(InvalidParameterError):
        model(torch.zeros(1, 128, 200))


def test_eval_is_batch_independent_and_deterministic():
    model = build_passt("passt_mini").eval()
    x = _mel(batch=3, frames=300)
    a, fa = model(x)
    b, fb = model(x[1:2])
    torch.testing.assert_close(a[1:2], b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fa[1:2], fb, atol=1e-5, rtol=1e-5)


def test_gradients_flow_with_patchout():
    torch.manual_seed(0)
    model = build_passt("passt_mini", s_patchout_t=10, s_patchout_f=2, u_patchout=5, drop_path_rate=0.1).train()
    logits, _ = model(_mel(batch=2, frames=400))
    logits.sigmoid().mean().backward()
    for name, p in model.named_parameters():
        if name.startswith("head_dist"):
            assert p.grad is None  # present for checkpoint compatibility, unused by forward
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_forward_timeline():
    model = build_passt("passt_mini").eval()
    x = _mel(batch=2, frames=300)
    logits, feats, frames = model.forward_timeline(x)
    ref_logits, ref_feats = model(x)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(feats, ref_feats)
    assert frames.shape == (2, model.num_time_patches(300), 527) == (2, 29, 527)
    tokens, _ = model.forward_tokens(x)
    col3 = tokens[:, 2:].reshape(2, 12, 29, -1)[:, :, 3].mean(1)
    torch.testing.assert_close(frames[:, 3], model.head(col3))
    with pytest.raises(InvalidParameterError):
        build_passt("passt_mini", u_patchout=3).train().forward_timeline(x)


def test_presets_and_config_round_trip():
    assert {"passt_s", "passt_s_s12", "passt_s_s14", "passt_s_s16", "passt_tiny", "passt_mini"} <= set(
        available_presets()
    )
    model = build_passt("passt_tiny", num_classes=10)
    again = PaSST(**model.config())
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert preset_config("passt_tiny")["embed_dim"] == 192
    with pytest.raises(InvalidParameterError):
        preset_config("passt_xl")
    with pytest.raises(InvalidParameterError):
        preset_config("passt_mini", depthh=3)
    with pytest.raises(InvalidParameterError):
        build_passt("passt_mini", embed_dim=97)
