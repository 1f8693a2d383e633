"""Official checkpoint conversion: exact layout, wrappers and prefixes, strict reports, head re-initialisation, bundles.

Checkpoints are built from the research note's key/shape list (conftest.official_shapes) with expanded tensors
(tiny files), saved with torch.save; nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch

from audioforge.bundle import Bundle
from audioforge.errors import CheckpointError, InvalidParameterError
from audioforge.tagging import Tagger, build_passt, describe_state_dict, load_official_checkpoint, read_labels

from .conftest import cheap_state_dict, official_shapes


def _save(tmp_path, obj, name="passt.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_layout_of_our_model_is_the_official_one():
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in build_passt("passt_s").state_dict().items()}
    assert list(ours) == list(official_shapes())  # same keys, same order
    assert ours == official_shapes()


def test_load_official_state_dict(tmp_path):
    sd = cheap_state_dict(official_shapes())
    sd["head.1.bias"] = torch.randn(527)
    sd["cls_token"] = torch.randn(1, 1, 768)
    bundle = load_official_checkpoint(_save(tmp_path, sd))
    assert bundle.task == "tagging" and bundle.architecture == "passt_s"
    assert bundle.hyperparameters["stride"] == 10 and bundle.hyperparameters["num_classes"] == 527
    assert bundle.labels[:2] == ["class_000", "class_001"] and len(bundle.labels) == 527
    assert bundle.frontend["fmax"] == 15000.0 and bundle.options["multi_label"] is True
    assert bundle.options["source"]["head_reinitialised"] is False
    torch.testing.assert_close(bundle.state_dict["head.1.bias"], sd["head.1.bias"])
    torch.testing.assert_close(bundle.state_dict["cls_token"], sd["cls_token"])
    # strict load into the real architecture and a forward pass on 1 s of audio
    tagger = Tagger.load(bundle)
    assert tagger.model.state_dict()["head.1.bias"].equal(sd["head.1.bias"])
    out = tagger(torch.randn(32000) * 0.1, 32000)
    assert out.probs.shape == (527,) and out.embeddings.shape == (768,)


@pytest.mark.parametrize("wrap", ["state_dict", "model", "lightning", "swa"])
def test_wrappers_and_prefixes(tmp_path, wrap):
    sd = cheap_state_dict(official_shapes())
    if wrap == "state_dict":
        obj = {"state_dict": sd, "epoch": 3}
    elif wrap == "model":
        obj = {"model": sd}
    elif wrap == "lightning":
        obj = {"state_dict": {f"net.{k}": v for k, v in sd.items()}, "global_step": 10}
    else:
        obj = {**{f"module.{k}": v for k, v in sd.items()}, "n_averaged": torch.tensor(5)}
    bundle = load_official_checkpoint(_save(tmp_path, obj))
    assert set(bundle.state_dict) == set(sd)


def test_stride_mismatch_is_reported_with_a_suggestion(tmp_path):
    path = _save(tmp_path, cheap_state_dict(official_shapes(stride=16)))
    with pytest.raises(CheckpointError) as info:
        load_official_checkpoint(path, arch="passt_s")
    msg = str(info.value)
    assert "freq_new_pos_embed [1, 768, 8, 1] (expected [1, 768, 12, 1])" in msg
    assert "time_new_pos_embed [1, 768, 1, 62] (expected [1, 768, 1, 99])" in msg
    assert "this looks like stride 16: use arch='passt_s_s16'" in msg
    bundle = load_official_checkpoint(path, arch="passt_s_s16")
    assert bundle.hyperparameters["stride"] == 16


def test_missing_and_unexpected_keys_are_named(tmp_path):
    sd = cheap_state_dict(official_shapes())
    del sd["blocks.3.mlp.fc1.weight"]
    del sd["norm.bias"]
    sd["pos_embed"] = torch.zeros(1, 10, 768)
    with pytest.raises(CheckpointError) as info:
        load_official_checkpoint(_save(tmp_path, sd))
    msg = str(info.value)
    assert "missing keys (2): blocks.3.mlp.fc1.weight, norm.bias" in msg
    assert "unexpected keys (1): pos_embed" in msg


def test_depth_mismatch_suggests_passt_l(tmp_path):
    path = _save(tmp_path, cheap_state_dict(official_shapes(depth=7)))
    with pytest.raises(CheckpointError, match="use arch='passt_l'"):
        load_official_checkpoint(path)
    assert load_official_checkpoint(path, arch="passt_l").hyperparameters["depth"] == 7


def test_other_class_counts(tmp_path):
    path = _save(tmp_path, cheap_state_dict(official_shapes(classes=200)))  # FSD50K-like head
    assert load_official_checkpoint(path).hyperparameters["num_classes"] == 200
    audioset = _save(tmp_path, cheap_state_dict(official_shapes()), "as.pt")
    bundle = load_official_checkpoint(audioset, num_classes=10, labels=[f"c{i}" for i in range(10)])
    assert bundle.options["source"]["head_reinitialised"] is True
    assert bundle.state_dict["head.1.weight"].shape == (10, 768)
    assert bundle.state_dict["head_dist.bias"].shape == (10,)
    assert bundle.state_dict["head.1.bias"].abs().max() == 0
    assert bundle.labels[0] == "c0"
    with pytest.raises(InvalidParameterError):
        load_official_checkpoint(audioset, num_classes=10, labels=["a", "b"])


def test_labels_file(tmp_path):
    csv_path = tmp_path / "class_labels_indices.csv"
    rows = ["index,mid,display_name"] + [f'{i},/m/{i:04d},"Label {i}, with comma"' for i in range(527)]
    csv_path.write_text("\n".join(rows) + "\n")
    assert read_labels(csv_path)[5] == "Label 5, with comma"
    txt = tmp_path / "labels.txt"
    txt.write_text("\n".join(f"l{i}" for i in range(527)))
    bundle = load_official_checkpoint(_save(tmp_path, cheap_state_dict(official_shapes())), labels=txt)
    assert bundle.labels[-1] == "l526"


def test_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_official_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_official_checkpoint(junk)
    with pytest.raises(CheckpointError, match="not a tensor"):
        load_official_checkpoint(_save(tmp_path, {"cls_token": [1, 2, 3]}, "list.pt"))
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_official_checkpoint(_save(tmp_path, [torch.zeros(1)], "seq.pt"))
    with pytest.raises(InvalidParameterError):
        load_official_checkpoint(junk, arch="resnet")


def test_describe_state_dict():
    info = describe_state_dict(cheap_state_dict(official_shapes(stride=12)))
    assert info == {"embed_dim": 768, "depth": 12, "grid": (10, 83), "stride": 12, "num_classes": 527}


def test_bundle_round_trip_through_safetensors(tmp_path):
    """A converted bundle (small preset here, to keep the file small) saves, reloads and runs identically."""
    model = build_passt("passt_mini")
    path = _save(tmp_path, model.state_dict())
    with pytest.raises(CheckpointError, match="width 96, 2 blocks, stride 10: use arch='passt_mini'"):
        load_official_checkpoint(path)
    bundle = load_official_checkpoint(path, arch="passt_mini")
    folder = bundle.save(tmp_path / "bundle")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "passt_mini" and config["format_version"] == 1
    again = Bundle.load(folder)
    assert again.labels == bundle.labels and again.hyperparameters == bundle.hyperparameters
    x = torch.randn(2, 40000) * 0.1
    a = Tagger.load(bundle)(x, 32000)
    b = Tagger.load(folder)(x, 32000)
    torch.testing.assert_close(torch.from_numpy(a.probs), torch.from_numpy(b.probs))
