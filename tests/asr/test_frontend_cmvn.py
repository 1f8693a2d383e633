from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audioforge.asr.cmvn import GlobalCMVN, cmvn_from_stats, compute_cmvn_stats, load_cmvn, save_cmvn
from audioforge.asr.frontend import FbankConfig, StreamingFbank, compute_fbank
from audioforge.errors import CheckpointError, InvalidAudioError, InvalidParameterError, NonFiniteAudioError


def test_cmvn_roundtrip_matches_numpy(tmp_path) -> None:
    rng = np.random.default_rng(0)
    mats = [rng.normal(3.0, 2.0, size=(n, 6)) for n in (5, 17, 9)]
    mats.append(np.full((4, 6), 1.0))
    mats[-1][:, 5] = 7.0
    stats = compute_cmvn_stats(mats)
    path = save_cmvn(stats, tmp_path / "global_cmvn")
    doc = json.loads(path.read_text())
    assert set(doc) == {"mean_stat", "var_stat", "frame_num"} and doc["frame_num"] == 35
    loaded = load_cmvn(path)
    mean, istd = cmvn_from_stats(loaded)
    allx = np.concatenate(mats)
    np.testing.assert_allclose(mean, allx.mean(0), rtol=1e-12)
    np.testing.assert_allclose(istd, 1 / np.sqrt(np.maximum(allx.var(0), 1e-20)), rtol=1e-9)
    cmvn = GlobalCMVN.from_stats(loaded)
    x = torch.from_numpy(allx).float()
    np.testing.assert_allclose(cmvn(x).numpy(), (allx - allx.mean(0)) * istd, rtol=1e-4, atol=1e-4)
    # constant column: variance floored, no inf/nan
    const = compute_cmvn_stats([np.ones((3, 2))])
    assert np.isfinite(cmvn_from_stats(const)[1]).all()


def test_cmvn_errors(tmp_path) -> None:
    with pytest.raises(InvalidParameterError):
        compute_cmvn_stats([])
    with pytest.raises(CheckpointError):
        cmvn_from_stats({"mean_stat": [1.0], "var_stat": [1.0, 2.0], "frame_num": 3})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CheckpointError):
        load_cmvn(bad)


def test_fbank_shape_and_streaming_equals_batch() -> None:
    rng = np.random.default_rng(1)
    wave = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    feats = compute_fbank(wave)
    assert feats.shape == (98, 80) and feats.dtype == torch.float32
    stream = StreamingFbank()
    parts, pos = [], 0
    for size in [1, 399, 401, 160, 3000, 7, 12032]:
        parts.append(stream.accept_waveform(wave[pos : pos + size]))
        pos += size
    torch.testing.assert_close(torch.cat(parts), feats, rtol=0, atol=1e-4)
    assert stream.num_frames_ready == 98


def test_fbank_bad_input() -> None:
    with pytest.raises(NonFiniteAudioError):
        compute_fbank(np.array([0.0, np.nan] * 400, dtype=np.float32))
    with pytest.raises(InvalidAudioError):
        compute_fbank(np.zeros(0, dtype=np.float32))
    with pytest.raises(InvalidAudioError):
        compute_fbank(np.zeros(1000, dtype=np.int16))
    x = np.zeros(1600, dtype=np.float32)
    for warp, match in ((float("nan"), "finite"), (0.0, "> 0"), (-1.0, "> 0"), (5.0, "no FFT bin")):
        with pytest.raises(InvalidParameterError, match=match):
            compute_fbank(x, vtln_warp=warp)  # named errors from the VTLN checks, not a torch traceback
    with pytest.raises(InvalidParameterError):
        FbankConfig.from_dict({"num_mel_bins": 80, "bogus": 1})
    assert FbankConfig.from_dict(FbankConfig().to_dict()) == FbankConfig()
