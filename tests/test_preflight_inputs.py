"""Preflight (argen_ray/preflight.py): before any actor starts, every model, hub id, dataset root
and weight file the stages need is checked, and ONE error lists all that is missing with the
command that fetches each."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from argen_ray.config import load_config
from argen_ray.preflight import PreflightError, check_inputs, hub_snapshot, require_inputs

ROOT = Path(__file__).resolve().parents[1]
GPU_PRESET = ROOT / "configs" / "gpu-cluster.yaml"
T2V = "damo-vilab/text-to-video-ms-1.7b"


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _snapshot(cache: Path, repo_id: str, files: list[str]) -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / "0123abcd"
    for name in files:
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_bytes(b"x")
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text("0123abcd")
    return snap


T2V_FILES = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
             "tokenizer/vocab.json", "scheduler/scheduler_config.json",
             "unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
             "text_encoder/model.fp16.safetensors"]


def test_gpu_preset_lists_everything_missing_at_once(empty_hub):
    cfg = load_config(GPU_PRESET)
    missing = check_inputs(cfg)
    fields = [m.field for m in missing]
    assert fields == ["data.root", "asi.vlm.model", "generator.model", "recognition.pretrained.resnet18",
                      "recognition.pretrained.vgg13", "recognition.diversity_weights.backbone_weights",
                      "recognition.diversity_weights.linear_weights"]
    by_field = {m.field: m for m in missing}
    assert "hf download damo-vilab/text-to-video-ms-1.7b" in by_field["generator.model"].fetch
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct" in by_field["asi.vlm.model"].fetch
    assert "resnet18-f37072fd.pth" in by_field["recognition.pretrained.resnet18"].fetch
    assert "/mnt/datasets/DFEW" in by_field["data.root"].what
    with pytest.raises(PreflightError) as err:
        require_inputs(cfg, what="argen-ray run")
    text = str(err.value)
    assert text.startswith("7 input(s) that argen-ray run needs are missing")
    assert text.count("fetch: ") == 7


def test_stages_check_only_what_they_load(empty_hub):
    cfg = load_config(GPU_PRESET)
    assert [m.field for m in check_inputs(cfg, ["train"])] == ["generator.model"]
    assert [m.field for m in check_inputs(cfg, ["prompts"])] == ["data.root", "asi.vlm.model"]
    assert check_inputs(cfg, ["report"]) == []


def test_the_local_preset_needs_nothing_from_outside(empty_hub):
    assert check_inputs(load_config(ROOT / "configs" / "local.yaml")) == []


def test_a_cached_hub_snapshot_with_the_variant_passes(empty_hub):
    cfg = load_config(GPU_PRESET)
    snap = _snapshot(empty_hub, T2V, T2V_FILES)
    assert hub_snapshot(T2V) == snap
    assert check_inputs(cfg, ["generate"]) == []
    (snap / "unet/diffusion_pytorch_model.fp16.safetensors").unlink()
    [missing] = check_inputs(cfg, ["generate"])
    assert "unet/diffusion_pytorch_model.fp16" in missing.what and "'fp16'" in missing.what


def test_present_weight_files_and_a_local_model_folder_pass(empty_hub, tmp_path):
    weights = {n: tmp_path / n for n in ("r18.pth", "vgg.pth", "alex.pth", "lin.pth")}
    for p in weights.values():
        p.write_bytes(b"x")
    model = tmp_path / "t2v"
    for name in T2V_FILES:
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_bytes(b"x")
    cfg = load_config(GPU_PRESET, [f"recognition.pretrained.resnet18={weights['r18.pth']}",
                                   f"recognition.pretrained.vgg13={weights['vgg.pth']}",
                                   f"recognition.diversity_weights.backbone_weights={weights['alex.pth']}",
                                   f"recognition.diversity_weights.linear_weights={weights['lin.pth']}",
                                   f"generator.model={model}", f"data.root={tmp_path}"])
    assert [m.field for m in check_inputs(cfg)] == ["asi.vlm.model"]


def test_required_imagenet_weights_that_are_not_configured_are_named(empty_hub):
    cfg = load_config(GPU_PRESET, ["recognition.pretrained={}"])
    missing = {m.field: m for m in check_inputs(cfg, ["recognition"])}
    assert "recognition.pretrained.vgg13" in missing
    assert "require_pretrained is true" in missing["recognition.pretrained.vgg13"].what


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.slow
def test_run_on_the_gpu_preset_fails_fast_with_one_message(tmp_path):
    env = {k: v for k, v in os.environ.items()} | {"HF_HUB_CACHE": str(tmp_path / "hub")}
    run_dir = tmp_path / "run"
    start, cpu_before = time.perf_counter(), _children_cpu()
    proc = subprocess.run([sys.executable, "-m", "argen_ray.cli", "run", "--config", str(GPU_PRESET),
                           "--set", f"run_dir={run_dir}"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu_before
    assert proc.returncode == 2, proc.stderr[-2000:]
    # CPU seconds, so that a loaded shared machine does not decide; the wall time is printed
    assert cpu < 30, f"preflight used {cpu:.1f} CPU-s ({seconds:.1f} s wall)"
    print(f"preflight: {cpu:.1f} CPU-s, {seconds:.1f} s wall")
    assert "argen-ray run: error: 7 input(s) that argen-ray run needs are missing (nothing was started)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists(), "nothing may be written before the inputs are there"
