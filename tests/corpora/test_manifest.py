"""Manifest reading/validation/filtering and the resumable job runner."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from audioforge import audio
from audioforge.corpora import Manifest, run_jobs
from audioforge.corpora.runner import PROGRESS_NAME
from audioforge.errors import ManifestError


def _write_tone(job: dict, out) -> dict:
    rng = np.random.default_rng(job["seed"])
    y = (0.1 * rng.standard_normal(int(job["sr"] * job["seconds"]))).astype(np.float32)
    rel = f"wav/{job['key']}.wav"
    audio.save(out / rel, y, job["sr"])
    return {"key": job["key"], "wav": rel, "txt": job["txt"], "duration": job["seconds"], "split": job["split"]}


def _jobs(n: int) -> list[dict]:
    return [{"key": f"utt{i:03d}", "seed": i, "sr": 8000, "seconds": 0.1 + 0.05 * i, "txt": f"word {i}",
             "split": "test" if i % 4 == 0 else "train"} for i in range(n)]


def test_runner_writes_manifest_and_is_deterministic_across_workers(tmp_path):
    m1 = run_jobs(_jobs(6), _write_tone, tmp_path / "a", workers=1, progress=False)
    m2 = run_jobs(_jobs(6), _write_tone, tmp_path / "b", workers=2, progress=False)
    assert [e["key"] for e in m1] == [f"utt{i:03d}" for i in range(6)]
    for e1, e2 in zip(m1, m2, strict=True):
        assert (m1.audio_path(e1)).read_bytes() == (m2.audio_path(e2)).read_bytes()
    loaded = Manifest.load(tmp_path / "a" / "manifest.jsonl")
    assert len(loaded) == 6 and loaded.validate(sample_rate=8000, require=["txt"]) is loaded
    assert loaded.total_duration == pytest.approx(sum(0.1 + 0.05 * i for i in range(6)))


def test_runner_resumes_without_redoing_work(tmp_path):
    out = tmp_path / "c"
    run_jobs(_jobs(3), _write_tone, out, workers=1, progress=False)
    first = {p.name: p.stat().st_mtime_ns for p in (out / "wav").iterdir()}
    # an interrupted run leaves a cut line in the progress log: it must be ignored, not crash
    with (out / PROGRESS_NAME).open("a") as fh:
        fh.write('{"key": "utt00')
    m = run_jobs(_jobs(5), _write_tone, out, workers=1, progress=False)
    assert len(m) == 5
    for name, mtime in first.items():
        assert (out / "wav" / name).stat().st_mtime_ns == mtime
    # a job whose audio vanished is redone
    os.remove(out / "wav" / "utt001.wav")
    m = run_jobs(_jobs(5), _write_tone, out, workers=1, progress=False)
    assert (out / "wav" / "utt001.wav").is_file() and len(m) == 5


def test_filter_and_validation_errors(tmp_path):
    m = run_jobs(_jobs(8), _write_tone, tmp_path, workers=1, progress=False)
    assert {e["split"] for e in m.filter(split="test")} == {"test"}
    assert all(e["duration"] <= 0.2 for e in m.filter(max_duration=0.2))
    assert len(m.filter(min_duration=0.3, where=lambda e: e["split"] == "train")) == 3
    with pytest.raises(ManifestError, match="expected 16000 Hz"):
        m.validate(sample_rate=16000)
    (tmp_path / "wav" / "utt002.wav").unlink()
    with pytest.raises(ManifestError, match="missing"):
        m.validate()
    bad = Manifest([{"key": "a", "wav": "x.wav", "txt": "  "}], root=tmp_path)
    with pytest.raises(ManifestError, match="empty or missing 'txt'"):
        bad.validate(check_files=False, require=["txt"])


def test_malformed_manifests(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"key": "a", "wav": "a.wav"}\nnot json\n')
    with pytest.raises(ManifestError, match=":2:"):
        Manifest.load(p)
    p.write_text('{"key": "a", "wav": "a.wav"}\n{"key": "a", "wav": "b.wav"}\n')
    with pytest.raises(ManifestError, match="duplicate"):
        Manifest.load(p)
    p.write_text('{"wav": "a.wav"}\n')
    with pytest.raises(ManifestError, match="'key'"):
        Manifest.load(p)
    with pytest.raises(ManifestError, match="not found"):
        Manifest.load(tmp_path / "none.jsonl")


def test_wenet_data_list_loads_as_is(tmp_path):
    audio.save(tmp_path / "u.wav", np.zeros(1600, dtype=np.float32), 16000)
    (tmp_path / "data.list").write_text(json.dumps({"key": "u1", "wav": str(tmp_path / "u.wav"), "txt": "hi"}) + "\n")
    m = Manifest.load(tmp_path / "data.list").validate(sample_rate=16000, require=["txt"])
    assert m[0]["txt"] == "hi"
