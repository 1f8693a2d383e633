"""Decoders: presets and sizes, streaming step == full forward, the autoencoder's shapes."""

from __future__ import annotations

import pytest
import torch

from audioforge.ddsp import (
    CONV_PRESETS,
    RNN_PRESETS,
    CausalConvDecoder,
    DDSPAutoencoder,
    RnnFcDecoder,
    parameter_bytes,
)
from audioforge.errors import AudioForgeError


def _inputs(batch: int = 2, n: int = 40):
    g = torch.Generator().manual_seed(0)
    f0 = torch.rand(batch, n, generator=g) * 600 + 80
    f0[:, 5:8] = 0.0  # unvoiced frames are allowed
    ld = -torch.rand(batch, n, generator=g) * 70
    return f0, ld


def test_preset_sizes():
    counts = {name: sum(p.numel() for p in RnnFcDecoder(name).parameters()) for name in RNN_PRESETS}
    assert 4.7e6 < counts["solo_instrument"] < 4.9e6
    assert 1.8e6 < counts["vst"] < 1.95e6
    assert 0.22e6 < counts["tiny_instrument"] < 0.24e6
    assert parameter_bytes(RnnFcDecoder("tiny")) <= 300 * 1024  # fp32
    assert parameter_bytes(CausalConvDecoder("conv_tiny")) <= 300 * 1024
    solo = DDSPAutoencoder.from_preset("solo_instrument")
    assert 4.8e6 < sum(p.numel() for p in solo.parameters()) < 4.9e6  # with the 48000-tap reverb


@pytest.mark.parametrize("name", ["tiny", "tiny_instrument", "conv_tiny"])
def test_step_equals_forward(name):
    dec = RnnFcDecoder(name) if name in RNN_PRESETS else CausalConvDecoder(name)
    f0, ld = _inputs()
    full, _ = dec(f0, ld)
    assert full.shape == (2, 40, 126)
    state, steps = None, []
    for i in range(40):
        y, state = dec.step(f0[:, i], ld[:, i], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    # blocks of 7 frames too
    state, blocks = None, []
    for i in range(0, 40, 7):
        y, state = dec(f0[:, i: i + 7], ld[:, i: i + 7], state)
        blocks.append(y)
    torch.testing.assert_close(torch.cat(blocks, 1), full, atol=1e-5, rtol=1e-5)


def test_conv_decoder_is_causal():
    dec = CausalConvDecoder("conv_tiny")
    f0, ld = _inputs(1, 30)
    a, _ = dec(f0, ld)
    f0b = f0.clone()
    f0b[:, 20:] = 1000.0
    b, _ = dec(f0b, ld)
    torch.testing.assert_close(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


def test_split_outputs_and_model_forward():
    model = DDSPAutoencoder.from_preset("tiny")
    f0, ld = _inputs(2, 20)
    audio, controls = model(f0, ld, generator=torch.Generator().manual_seed(1))
    assert audio.shape == (2, 20 * 64)
    assert controls["harmonic_distribution"].shape == (2, 20, 60)
    assert controls["noise_magnitudes"].shape == (2, 20, 65)
    torch.testing.assert_close(controls["harmonic_distribution"].sum(-1)[f0 > 0],
                               torch.ones_like(f0[f0 > 0]), atol=1e-5, rtol=0)
    assert torch.isfinite(audio).all()
    audio2, _ = model(f0, ld, generator=torch.Generator().manual_seed(1))
    assert torch.equal(audio, audio2)
    conv = DDSPAutoencoder.from_preset("conv_tiny")
    assert conv(f0, ld)[0].shape == (2, 1280)
    audio.sum().backward()  # differentiable end to end
    assert model.decoder.dense.weight.grad is not None


def test_decoder_bad_inputs():
    dec = RnnFcDecoder("tiny")
    with pytest.raises(AudioForgeError):
        RnnFcDecoder("nope")
    with pytest.raises(AudioForgeError):
        dec(torch.full((1, 3), float("nan")), torch.zeros(1, 3))
    with pytest.raises(AudioForgeError):
        dec(torch.full((1, 3), -220.0), torch.zeros(1, 3))
    with pytest.raises(AudioForgeError):
        dec(torch.zeros(1, 3), torch.zeros(1, 4))
    with pytest.raises(AudioForgeError):
        CausalConvDecoder("conv_tiny")(torch.zeros(1, 3), torch.zeros(1, 3), [torch.zeros(1, 48, 2)])
    assert set(CONV_PRESETS) == {"conv_tiny", "conv_base"}
