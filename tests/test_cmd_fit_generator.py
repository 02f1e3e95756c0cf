"""`argen-ray fit-generator`: fits the miniature from the config's generator.fit section (flags
override it), saves the model folder with its recorded config, writes checkpoints and sample GIFs,
logs to MLflow, and rejects bad settings with a message naming them."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from argen_ray.ard.tiny_models import MINIATURE_MODEL_NAME

pytestmark = pytest.mark.slow  # starts Ray and trains or fits

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"size": 32, "window": 4, "clip_frames": 6, "num_identities": 2, "vae_identities": 2, "vae_steps": 6, "unet_steps": 6,
         "batch_size": 2, "channels": "[16,32]", "vae_channels": "[8,16,16]", "sample_every": 6, "log_every": 2, "threads": 1}


def _cli(tmp_path, *extra):
    sets = [x for k, v in SMALL.items() for x in ("--set", f"generator.fit.{k}={v}")]
    env = dict(os.environ, ARGEN_RAY_CACHE=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "argen_ray.cli", "fit-generator", "--no-progress", *sets,
                           "--set", f"run_dir={tmp_path / 'run'}", *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)


def test_fit_generator_writes_the_model_its_record_samples_and_an_mlflow_run(tmp_path):
    done = _cli(tmp_path, "--seed", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    model = tmp_path / "cache" / MINIATURE_MODEL_NAME
    assert (model / "model_index.json").is_file() and (model / "unet" / "config.json").is_file()
    record = json.loads((model / "fit.json").read_text())
    assert record["seed"] == 3 and record["config"]["size"] == 32 and record["steps"] == 12
    assert list((tmp_path / "cache" / f"{MINIATURE_MODEL_NAME}.work" / "samples").glob("step-*.gif"))
    with sqlite3.connect(tmp_path / "run" / "mlflow.db") as db:
        names = {r[0] for r in db.execute("select name from runs")}
        metrics = {r[0] for r in db.execute("select key from metrics")}
    assert "fit-generator" in names and {"vae_loss", "unet_loss", "fit_seconds"} <= metrics
    # A rerun finds the finished checkpoint and trains no further step.
    again = _cli(tmp_path, "--seed", "3")
    assert again.returncode == 0 and json.loads((model / "fit.json").read_text())["resumed"] is True


def test_bad_settings_name_the_field(tmp_path):
    done = _cli(tmp_path, "--set", "generator.fit.size=36")
    assert done.returncode != 0
    assert "generator.fit" in done.stderr and "size 36" in done.stderr and "Traceback" not in done.stderr
