"""The entry points: `argen-ray serve` fails fast without a policy; serve/config.yaml is a valid
Serve config whose builder args load the named argen-ray config."""
from __future__ import annotations

import subprocess
import sys

from serve_setup import ROOT


def test_serve_without_a_policy_names_what_is_missing(tmp_path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "argen_ray.cli", "serve", "--set", f"run_dir={run}",
                           "--set", "tracking.experiment=nothing-here"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "argen-ray serve: error: no policy to serve" in done.stderr
    assert str(run / "policy" / "policy.pt") in done.stderr and "Traceback" not in done.stderr
    assert not (run / "mlflow.db").exists()


def test_serve_config_yaml_is_a_valid_serve_config_for_the_builder(monkeypatch):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from argen_ray.config import load_config

    monkeypatch.syspath_prepend(str(ROOT))  # `serve run` imports from its app dir, the repository root
    from serve.app import AppArgs

    schema = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "serve" / "config.yaml").read_text()))
    app = schema.applications[0]
    assert app.import_path == "serve.app:app_builder" and schema.http_options.host == "127.0.0.1"
    args = AppArgs.model_validate(app.args)
    cfg = load_config(ROOT / args.config, args.overrides)
    assert cfg.generator.backend == "warp" and cfg.serve.max_frames >= cfg.generator.num_frames
