"""Which policy the Serve app loads: serve.checkpoint, an MLflow run (named or the latest), the
run dir's policy.pt — and clear errors when there is none or it does not fit the config."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from argen_ray.ard.policy import POLICY_FILE, PolicyLoadError, load_policy
from argen_ray.config import load_config
from argen_ray.serving.policy import PolicyService, resolve_policy_source
from serve_setup import WARP_ENCODER, astronaut_face, write_policy


def config(run_dir: Path, *overrides: str):
    return load_config(None, [f"run_dir={run_dir}", "tracking.experiment=serve-test", *overrides])


def log_policy_run(cfg, policy: Path, status: str = "FINISHED") -> str:
    """An MLflow run that logged policy.pt as training does (artifact at the run's root)."""
    import mlflow

    from argen_ray.ard.training import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_experiment(cfg.tracking.experiment)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(policy))
    if status != "FINISHED":
        mlflow.tracking.MlflowClient(tracking_uri(cfg)).set_terminated(run.info.run_id, status)
    return run.info.run_id


def weights(path: Path) -> dict:
    return load_policy(path).network.state_dict()


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_explicit_checkpoint_then_run_dir(tmp_path):
    cfg = config(tmp_path / "run")
    with pytest.raises(PolicyLoadError, match="no policy to serve.*argen-ray train"):
        resolve_policy_source(cfg)
    local = write_policy(cfg, cfg.path("policy", POLICY_FILE))
    assert resolve_policy_source(cfg).path == local and resolve_policy_source(cfg).origin == "run_dir"
    other = write_policy(cfg, tmp_path / "elsewhere" / POLICY_FILE, seed=1)
    source = resolve_policy_source(config(tmp_path / "run", f"serve.checkpoint={other.parent}"))
    assert source.origin == "checkpoint" and same_weights(source.path, other)
    with pytest.raises(PolicyLoadError, match="serve.checkpoint: .*missing.pt does not exist"):
        resolve_policy_source(config(tmp_path / "run", f"serve.checkpoint={tmp_path / 'missing.pt'}"))


def test_latest_finished_mlflow_run_and_a_named_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the cwd
    cfg = config(tmp_path / "run")
    first = write_policy(cfg, tmp_path / "a" / POLICY_FILE, seed=1)
    second = write_policy(cfg, tmp_path / "b" / POLICY_FILE, seed=2)
    first_id = log_policy_run(cfg, first)
    latest_id = log_policy_run(cfg, second)
    log_policy_run(cfg, first, status="FAILED")  # newer, but failed: never served
    source = resolve_policy_source(cfg)
    assert (source.origin, source.mlflow_run_id) == ("mlflow", latest_id) and same_weights(source.path, second)
    assert source.path.is_relative_to(cfg.path("serve", "mlflow"))
    named = resolve_policy_source(config(tmp_path / "run", f"serve.mlflow_run_id={first_id}"))
    assert named.mlflow_run_id == first_id and same_weights(named.path, first)
    with pytest.raises(PolicyLoadError, match="MLflow run 'f00d'"):
        resolve_policy_source(config(tmp_path / "run", "serve.mlflow_run_id=f00d"))


def test_no_mlflow_store_is_not_created_by_looking(tmp_path):
    cfg = config(tmp_path / "run")
    with pytest.raises(PolicyLoadError, match="no policy to serve"):
        resolve_policy_source(cfg)
    assert not cfg.path("mlflow.db").exists()


def test_policy_trained_on_other_states_is_refused(tmp_path):
    cfg = config(tmp_path / "run")
    path = write_policy(cfg, cfg.path("policy", POLICY_FILE))
    service = PolicyService(cfg)
    assert service.encoder.encoder_id == WARP_ENCODER
    assert service.info()["action_space"]["steps"] == cfg.generator.action_space.steps
    payload = torch.load(path, weights_only=True)
    payload["meta"]["encoder_id"] = "generator:ti2v:some/other-model"
    torch.save(payload, path)
    with pytest.raises(PolicyLoadError, match="trained on states of generator:ti2v:some/other-model"):
        PolicyService(cfg)


def test_the_policys_own_action_values_decode_its_heads(tmp_path):
    """A policy trained on other value sets decodes with its sets, not the config's."""
    cfg = config(tmp_path / "run", "generator.action_space.steps=[2,4,6,8,10]")
    write_policy(cfg, cfg.path("policy", POLICY_FILE))
    service = PolicyService(config(tmp_path / "run"))  # the default sets: 5..25
    assert service.value_sets()["steps"] == [2, 4, 6, 8, 10]
    decision = service.decide(["the brows rise"], [astronaut_face()])[0]
    assert decision["params"]["steps"] == [2, 4, 6, 8, 10][decision["action"]["steps"]]
    assert np.isclose(sum(decision["probabilities"]["steps"]["probs"]), 1.0)
