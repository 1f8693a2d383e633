"""The convolutional stem option of PaSST: same token grid as the official patch projection, export and errors."""

from __future__ import annotations

import pytest
import torch

from audioforge.bundle import Bundle
from audioforge.errors import InvalidParameterError
from audioforge.tagging import PasstFrontend, build_passt
from audioforge.tagging.model import PaSST, PatchEmbed

from .test_train import LABELS


@pytest.mark.parametrize("stride", [10, 12, 14, 16])
def test_grid_equals_the_linear_patch_projection(stride: int) -> None:
    torch.manual_seed(0)
    model = build_passt("passt_mini", num_classes=3, stride=stride, stem="conv", stem_channels=4).eval()
    linear = PatchEmbed((128, 998), 16, (stride, stride), 1, 8)  # the official projection as the reference
    for frames in (16, 17, 25, 26, 35, 36, 99, 100, 101, 500, 997, 998):
        x = torch.randn(1, 1, 128, frames)
        got = model.patch_embed(x).shape[-2:]
        assert got == linear(x).shape[-2:], (frames, got)
        assert got[-1] == model.num_time_patches(frames)
    assert model.grid_size == linear.grid_size


def test_conv_stem_trains_round_trips_and_timeline() -> None:
    torch.manual_seed(1)
    model = build_passt("passt_mini", num_classes=4, img_size=[128, 300], stem="conv", stem_channels=8,
                        s_patchout_t=5, s_patchout_f=3)
    assert {"patch_embed.stem.0.weight", "patch_embed.stem.1.running_mean", "patch_embed.proj.weight"} <= set(
        model.state_dict())
    again = PaSST(**model.config())
    assert again.stem == "conv" and again.stem_channels == 8
    x = torch.randn(3, 1, 128, 300)
    model.train()
    logits, _ = model(x)
    logits.sum().backward()
    assert model.patch_embed.stem[0].weight.grad is not None and model.kept_time_columns is not None
    assert model.patch_embed.stem[1].num_batches_tracked == 1  # training updated the batch-norm statistics
    again.load_state_dict(model.state_dict())
    model.eval()
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], again(x)[0])
        _, _, frames = model.forward_timeline(x)
    assert frames.shape == (3, model.num_time_patches(300), 4)


def test_conv_stem_errors() -> None:
    with pytest.raises(InvalidParameterError, match="stem"):
        build_passt("passt_mini", stem="resnet")
    with pytest.raises(InvalidParameterError, match="even"):
        build_passt("passt_mini", stem="conv", stride=[10, 11])
    with pytest.raises(InvalidParameterError, match="stem_channels"):
        build_passt("passt_mini", stem="conv", stem_channels=0)


@pytest.mark.slow
def test_conv_stem_exports_with_onnxruntime_parity(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from audioforge.tagging.export import export_tagger_onnx, verify_tagger_onnx

    torch.manual_seed(2)
    model = build_passt("passt_mini", num_classes=len(LABELS), img_size=[128, 300], stem="conv", stem_channels=8)
    with torch.no_grad():  # non-trivial batch-norm statistics, so that folding them is checked
        model.patch_embed.stem[1].running_mean.uniform_(-0.5, 0.5)
        model.patch_embed.stem[1].running_var.uniform_(0.5, 2.0)
    b = Bundle(task="tagging", architecture="passt_mini", hyperparameters=model.config(),
               state_dict={k: v.clone() for k, v in model.state_dict().items()}, frontend=PasstFrontend().config(),
               labels=list(LABELS), options={"multi_label": True})
    path = export_tagger_onnx(b, tmp_path / "stem.onnx", example_seconds=2.0)
    assert verify_tagger_onnx(b, path, seconds=(2.9, 1.0, 0.3)).ok
