from __future__ import annotations

import pytest
import torch

from audioforge.asr.convolution import ConvolutionModule
from audioforge.asr.encoder import ConformerEncoder, TransformerEncoder
from audioforge.asr.subsampling import SUBSAMPLING


def make_encoder(kind: str, pos: str, layer: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    common = {
        "attention_heads": 4,
        "linear_units": 64,
        "num_blocks": 2,
        "input_layer": layer,
        "pos_enc_layer_type": pos,
        "dropout_rate": 0.0,
        "positional_dropout_rate": 0.0,
    }
    if kind == "conformer":
        return ConformerEncoder(20, 32, causal=True, cnn_module_norm="layer_norm", cnn_module_kernel=5, **common).eval()
    return TransformerEncoder(20, 32, **common).eval()


@pytest.mark.parametrize("kind", ["conformer", "transformer"])
@pytest.mark.parametrize("pos", ["rel_pos", "abs_pos"])
@pytest.mark.parametrize("layer", ["conv2d", "conv2d6", "conv2d8"])
def test_chunk_by_chunk_equals_masked_full_forward(kind: str, pos: str, layer: str) -> None:
    enc = make_encoder(kind, pos, layer)
    torch.manual_seed(1)
    x = torch.randn(1, 131, 20)
    with torch.no_grad():
        for chunk, left in [(1, -1), (4, -1), (4, 2), (3, 0), (5, 1)]:
            full, _ = enc(x, torch.tensor([131]), chunk, left)
            cbc, _ = enc.forward_chunk_by_chunk(x, chunk, left)
            assert full.shape == cbc.shape
            torch.testing.assert_close(cbc, full, rtol=0, atol=1e-4)


def test_subsampling_geometry() -> None:
    for name, (rate, context) in {"conv2d": (4, 6), "conv2d6": (6, 10), "conv2d8": (8, 14)}.items():
        sub = SUBSAMPLING[name](20, 8, torch.nn.Identity())
        assert (sub.subsampling_rate, sub.right_context) == (rate, context)


def test_required_cache_size_semantics() -> None:
    enc = make_encoder("conformer", "rel_pos", "conv2d")
    x = torch.randn(1, (4 - 1) * 4 + 7, 20)
    with torch.no_grad():
        _, att, cnn = enc.forward_chunk(x, 0, -1)
        assert att.shape == (2, 4, 4, 16) and cnn.shape == (2, 1, 32, 4)
        _, att2, _ = enc.forward_chunk(x, 4, -1, att, cnn)
        assert att2.shape[2] == 8  # all history
        _, att3, _ = enc.forward_chunk(x, 8, 0, att2, cnn)
        assert att3.shape[2] == 0  # none
        _, att4, _ = enc.forward_chunk(x, 8, 6, att2, cnn)
        assert att4.shape[2] == 6  # the last 6 frames
        _, full_new, _ = enc.forward_chunk(x, 8, -1, att2, cnn)
        torch.testing.assert_close(att4, full_new[:, :, -6:])
        # tensor-valued arguments (the exported graph's path) give the same caches
        _, att5, _ = enc.forward_chunk(x, torch.tensor(8), torch.tensor(6), att2, cnn)
        torch.testing.assert_close(att5, att4)
        _, att6, _ = enc.forward_chunk(x, torch.tensor(8), torch.tensor(0), att2, cnn)
        assert att6.shape[2] == 0


def test_fixed_cache_with_mask_equals_growing_cache() -> None:
    """A zero-filled cache of constant size with an att_mask (the exported layout) gives the same outputs."""
    enc = make_encoder("conformer", "rel_pos", "conv2d")
    chunk, left = 2, 2
    x = torch.randn(1, 60, 20)
    ref, _ = enc.forward_chunk_by_chunk(x, chunk, left)
    required = chunk * left
    att = torch.zeros(2, 4, required, 16)
    cnn = torch.zeros(2, 1, 32, 4)
    outs, offset = [], 0
    window, stride = (chunk - 1) * 4 + 7, chunk * 4
    with torch.no_grad():
        for cur in range(0, 60 - 7 + 1, stride):
            xs = x[:, cur : cur + window]
            if xs.size(1) < window:
                break
            mask = torch.ones(1, 1, required + chunk, dtype=torch.bool)
            mask[:, :, : max(required - offset, 0)] = False
            y, att, cnn = enc.forward_chunk(xs, offset, required, att, cnn, mask)
            outs.append(y)
            offset += y.size(1)
    got = torch.cat(outs, 1)
    torch.testing.assert_close(got, ref[:, : got.size(1)], rtol=0, atol=1e-4)


def test_causal_conv_cache() -> None:
    torch.manual_seed(0)
    conv = ConvolutionModule(8, 5, norm="layer_norm", causal=True).eval()
    x = torch.randn(1, 23, 8)
    with torch.no_grad():
        full, _ = conv(x)
        cache = None
        parts = []
        for lo, hi in [(0, 3), (3, 4), (4, 12), (12, 23)]:
            y, cache = conv(x[:, lo:hi], None, cache)
            assert cache.shape == (1, 8, 4)
            parts.append(y)
        torch.testing.assert_close(torch.cat(parts, 1), full, rtol=0, atol=1e-5)
        # causality: changing the future does not change the past
        x2 = x.clone()
        x2[:, 15:] = 0
        torch.testing.assert_close(conv(x2)[0][:, :15], full[:, :15])
