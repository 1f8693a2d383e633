"""Each recipe end to end at smoke size (corpus, training, evaluation, export), as CI's stand-in for the full runs.

The recipes' own ``smoke.json`` configurations, with every output path moved under ``tmp_path``; each run takes
~20 s on the project's 2-core machine. The full recipes (hours) never run in CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(*args: str | Path) -> str:
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_asr_recipe_smoke(tmp_path: Path) -> None:
    work = tmp_path / "asr"
    out = _run(REPO / "recipes/asr/run.py", "--config", REPO / "recipes/asr/smoke.json", "--work-dir", work)
    assert "nothing shipped" in out  # the smoke configuration never replaces the shipped model
    assert (work / "train" / "bundle" / "model.safetensors").is_file()
    extra = [json.loads(line) for line in (work / "corpus_extra" / "manifest.jsonl").open()]
    assert extra and {e["split"] for e in extra} == {"train"} and {e["engine"] for e in extra} <= {"piper", "kokoro"}
    blend = [json.loads(line) for line in (work / "corpus_blend" / "manifest.jsonl").open()]
    assert blend and {e["engine"] for e in blend} == {"kokoro-blend"} and {e["split"] for e in blend} == {"train"}
    trained = json.loads((work / "train" / "train_config.json").read_text())
    assert trained["extra_train_manifests"] == [str(work / d / "manifest.jsonl")
                                                for d in ("corpus_extra", "corpus_blend")]
    assert trained["data"]["vtlp"] == [0.9, 1.1]  # the production run's augmentation is exercised
    systems = json.loads((work / "eval.json").read_text())
    assert any(k.startswith("u2 streaming") for k in systems) and any(k.startswith("u2 full") for k in systems)
    summary = json.loads((work / "export" / "export_summary.json").read_text())
    assert summary["sizes"]["int8"] < summary["sizes"]["fp32"]
    assert {"CER fp32", "CER int8"} <= set(summary["metrics"])
    for name in ("encoder.onnx", "ctc.onnx", "decoder.onnx"):
        assert (work / "export" / name).is_file()
    # a run in progress can be scored from its checkpoints
    _run(REPO / "recipes/asr/run.py", "--config", REPO / "recipes/asr/smoke.json", "--work-dir", work,
         "--stages", "snapshot,evaluate", "--max-utterances", "2", "--no-pocketsphinx")
    systems = json.loads((work / "eval.json").read_text())
    assert all(v["utterances"] == 2 for v in systems.values())
    # a continuation (continue.json's form): a fresh run in its own folder from the first run's bundle
    cont = json.loads((REPO / "recipes/asr/smoke.json").read_text())
    cont["train_dir"] = "train_ft"
    cont["train"] = {**cont["train"], "init_from": str(work / "train" / "bundle"),
                     "optim": {"lr": 0.0005, "warmup_steps": 2},
                     "trainer": {**cont["train"]["trainer"], "max_steps": 6}}
    (tmp_path / "cont.json").write_text(json.dumps(cont))
    _run(REPO / "recipes/asr/run.py", "--config", tmp_path / "cont.json", "--work-dir", work, "--stages", "train")
    tuned = json.loads((work / "train_ft" / "bundle" / "config.json").read_text())["metrics"]
    assert tuned["init_from"]["train_steps"] == 12 and tuned["train_steps"] == 6
    assert (work / "train" / "checkpoints" / "last.ckpt").is_file()  # the first run's folder is left as it was


@pytest.mark.parametrize("name", ["corpus", "a/b", "", ".hidden", "corpus_blend"])
def test_asr_recipe_rejects_a_bad_train_dir(tmp_path: Path, name: str) -> None:
    stderr = _refused_asr_corpus_stage(tmp_path, {"train_dir": name})
    assert "train_dir" in stderr, stderr[-2000:]


def _refused_asr_corpus_stage(tmp_path: Path, change: dict) -> str:
    """Run the ASR recipe's corpus stage with smoke.json changed by ``change``; assert it fails before generating
    anything and return its stderr."""
    cfg = {**json.loads((REPO / "recipes/asr/smoke.json").read_text()), **change}
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    cmd = [sys.executable, str(REPO / "recipes/asr/run.py"), "--config", str(tmp_path / "bad.json"),
           "--work-dir", str(tmp_path / "w"), "--stages", "corpus"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert not (tmp_path / "w" / "corpus").exists()  # refused before any generation
    return proc.stderr


def test_ddsp_recipe_smoke(tmp_path: Path) -> None:
    cfg = json.loads((REPO / "recipes/ddsp/smoke.json").read_text())
    cfg["corpus"]["out"] = str(tmp_path / "corpus")
    for key in ("cache_dir", "work_dir", "bundles_dir"):
        cfg[key] = str(tmp_path / key)
    (tmp_path / "smoke.json").write_text(json.dumps(cfg))
    _run(REPO / "recipes/ddsp/run.py", "--config", tmp_path / "smoke.json")
    bundle = tmp_path / "bundles_dir" / "ddsp-sax"
    for name in ("model.safetensors", "config.json", "controls.json", "decoder.fp16.onnx", "decoder.int8.onnx"):
        assert (bundle / name).is_file(), name
    assert (bundle / "decoder.fp16.onnx").stat().st_size <= 300_000  # the browser form's size floor
    metrics = json.loads((bundle / "config.json").read_text())["metrics"]
    assert 0.0 <= metrics["transfer_rpa"] <= 1.0 and metrics["transfer_clips"] == 1
    assert metrics["export"]["parity_max_abs"] < 1e-4


@pytest.mark.parametrize("extra", [[{"hours": 1, "engines": ["piper"]}, {"hours": 1, "engines": ["kokoro"]}],
                                   [{"dir": "corpus", "hours": 1, "engines": ["piper"]}],
                                   [{"hours": 1, "engines": ["piper"]}, {"dir": "corpus_extra", "hours": 1}]])
def test_asr_recipe_rejects_ambiguous_supplements(tmp_path: Path, extra: list) -> None:
    stderr = _refused_asr_corpus_stage(tmp_path, {"corpus_extra": extra})
    assert "corpus_extra" in stderr and '"dir"' in stderr, stderr[-2000:]


def test_tagging_recipe_smoke(tmp_path: Path) -> None:
    cfg = json.loads((REPO / "recipes/tagging/smoke.json").read_text())
    cfg["manifest"] = str(tmp_path / "events" / "manifest.jsonl")
    cfg["out_dir"] = str(tmp_path / "run")
    (tmp_path / "smoke.json").write_text(json.dumps(cfg))
    _run(REPO / "recipes/tagging/run.py", "--config", tmp_path / "smoke.json", "--clips", "60",
         "--stages", "corpus,train,evaluate,export")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["corpus"]["clips"] == {"train": 48, "test": 12}
    assert set(report["test"]) == {"torch_fp32", "onnx_fp32", "onnx_int8_dynamic", "onnx_int8_static"}
    assert abs(report["test"]["onnx_fp32"]["mAP"] - report["test"]["torch_fp32"]["mAP"]) < 1e-3
    assert (tmp_path / "run" / "bundle" / "model.safetensors").is_file()
    # the second step: fine-tune that bundle on a larger, prefix-stable corpus, also scored on the first corpus's test
    ft = {**cfg, "manifest": str(tmp_path / "events80" / "manifest.jsonl"), "out_dir": str(tmp_path / "ft"),
          "init_from": str(tmp_path / "run" / "bundle"), "max_epochs": 1, "warmup_epochs": 0, "decay_start": 0,
          "decay_end": 1, "swa": False}
    (tmp_path / "ft.json").write_text(json.dumps(ft))
    _run(REPO / "recipes/tagging/run.py", "--config", tmp_path / "ft.json", "--clips", "80",
         "--stages", "corpus,train,evaluate", "--also-test", f"first={cfg['manifest']}")
    report = json.loads((tmp_path / "ft" / "report.json").read_text())
    assert report["corpus"]["clips"] == {"train": 64, "test": 16}
    assert report["train"]["init_from"]
    assert set(report["test"]) == set(report["test_first"]) == {"torch_fp32"}
    assert 0.0 <= report["test_first"]["torch_fp32"]["mAP"] <= 1.0


@pytest.mark.parametrize("bad", ["no-equals-sign", "=x.jsonl", "name=/nowhere/manifest.jsonl"])
def test_tagging_recipe_rejects_bad_also_test(bad: str) -> None:
    cmd = [sys.executable, str(REPO / "recipes/tagging/run.py"), "--also-test", bad, "--stages", "ship"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--also-test" in proc.stderr, proc.stderr[-2000:]
