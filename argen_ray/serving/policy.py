"""The served policy: where it comes from (a checkpoint path or an MLflow run), its state
encoder, and greedy decisions decoded into generation parameters.

`PolicyService` is plain Python (no Ray); the Serve deployment in `argen_ray.serving.app`
wraps it and batches requests.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from argen_ray.ard.policy import HEADS, POLICY_FILE, PolicyHandle, PolicyLoadError, load_policy
from argen_ray.config import Config
from argen_ray.serving.schemas import RequestError


@dataclass(frozen=True)
class PolicySource:
    path: Path                   # what `load_policy` reads
    origin: str                  # "checkpoint" (serve.checkpoint), "run_dir" or "mlflow"
    mlflow_run_id: str | None = None


# ---------------------------------------------------------------------------------------------
# 1. Where the policy comes from
# ---------------------------------------------------------------------------------------------
def _mlflow_client(cfg: Config):
    """(client, tracking URI), or (None, URI) when the run dir's SQLite store does not exist
    (opening it would create an empty database)."""
    from argen_ray.ard.training import tracking_uri

    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return None, uri
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri), uri


def _has_policy(client, run_id: str) -> bool:
    return any(f.path == POLICY_FILE for f in client.list_artifacts(run_id))


def latest_mlflow_run(cfg: Config) -> str | None:
    """The newest finished run of `tracking.experiment` that logged a policy.pt, or None."""
    client, _ = _mlflow_client(cfg)
    if client is None:
        return None
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=50)
    return next((run.info.run_id for run in runs if _has_policy(client, run.info.run_id)), None)


def download_mlflow_policy(cfg: Config, run_id: str) -> Path:
    """policy.pt of an MLflow run, copied under <run_dir>/serve/mlflow/<run_id>/."""
    from mlflow.artifacts import download_artifacts

    client, uri = _mlflow_client(cfg)
    if client is None:
        raise PolicyLoadError(f"serve.mlflow_run_id={run_id!r}: no MLflow store at {uri}")
    try:
        if not _has_policy(client, run_id):
            raise PolicyLoadError(f"MLflow run {run_id} at {uri} has no {POLICY_FILE} artifact")
        target = cfg.path("serve", "mlflow", run_id)
        target.mkdir(parents=True, exist_ok=True)
        return Path(download_artifacts(run_id=run_id, artifact_path=POLICY_FILE, dst_path=str(target),
                                       tracking_uri=uri))
    except PolicyLoadError:
        raise
    except Exception as exc:  # MlflowException for unknown runs, OSError for a lost artifact store
        raise PolicyLoadError(f"MLflow run {run_id!r} at {uri}: cannot fetch {POLICY_FILE} "
                              f"({type(exc).__name__}: {exc})") from None


def resolve_policy_source(cfg: Config) -> PolicySource:
    """serve.checkpoint, else serve.mlflow_run_id, else <run_dir>/policy/policy.pt, else the
    latest MLflow run with a policy."""
    s = cfg.serve
    if s.checkpoint is not None:
        if not Path(s.checkpoint).exists():
            raise PolicyLoadError(f"serve.checkpoint: {s.checkpoint} does not exist")
        return PolicySource(Path(s.checkpoint), "checkpoint")
    if s.mlflow_run_id:
        return PolicySource(download_mlflow_policy(cfg, s.mlflow_run_id), "mlflow", s.mlflow_run_id)
    local = cfg.path("policy", POLICY_FILE)
    if local.is_file():
        return PolicySource(local, "run_dir")
    run_id = latest_mlflow_run(cfg)
    if run_id is not None:
        return PolicySource(download_mlflow_policy(cfg, run_id), "mlflow", run_id)
    raise PolicyLoadError(f"no policy to serve: serve.checkpoint is unset, {local} does not exist and no "
                          f"finished MLflow run of experiment {cfg.tracking.experiment!r} logged a {POLICY_FILE} "
                          "(run `argen-ray train` first, or set serve.checkpoint)")


def check_override(params: dict, value_sets: dict[str, list]) -> None:
    """Caller-chosen values must be in the policy's action sets (a 422 on params.<name>)."""
    for name, values in value_sets.items():
        value = params.get(name)
        if value is not None and not any(np.isclose(value, v) for v in values):
            raise RequestError(f"params.{name}", f"{value} is not in the action set {values}")


def export_untrained_policy(cfg: Config, target, encoder_id: str, text_dim: int, image_dim: int,
                            seed: int = 0) -> Path:
    """A freshly initialised policy for `cfg`'s action sets and a state encoder's dimensions,
    written through training's export path with training's metadata (tests, benchmarks, and a
    smoke run of the app before any training)."""
    import torch

    from argen_ray.ard.policy import PolicyNetwork, export_policy

    a, t = cfg.generator.action_space, cfg.train
    torch.manual_seed(seed)
    network = PolicyNetwork(text_dim, image_dim, [len(a.steps), len(a.alpha), len(a.beta)], t.embed_dim, t.num_heads)
    meta = {"action_values": {"steps": list(a.steps), "alpha": list(a.alpha), "beta": list(a.beta)},
            "state_encoder": t.state_encoder, "encoder_id": encoder_id, "generator_backend": cfg.generator.backend,
            "generator_model": cfg.generator.model, "iteration": 0}
    return export_policy(network, target, meta)


# ---------------------------------------------------------------------------------------------
# 2. The service
# ---------------------------------------------------------------------------------------------
class PolicyService:
    """Loads the policy and its state encoder once; `decide` maps (prompt, image) pairs to
    greedy decisions with decoded parameters and per-head probabilities."""

    def __init__(self, cfg: Config, source: PolicySource | None = None):
        from argen_ray.ard.guidance import ActionSpace

        self.cfg = cfg
        self.source = source or resolve_policy_source(cfg)
        self.policy: PolicyHandle = load_policy(self.source.path)
        # The policy's own value sets win over the config's: its heads index into them.
        self.action_space = ActionSpace.from_config(cfg.generator, self.policy.action_values or None)
        self.encoder = self._build_encoder()

    def _build_encoder(self):
        """The state encoder the policy was trained with (its meta names it)."""
        from argen_ray.ard.generator import build_generator
        from argen_ray.ard.states import build_state_encoder

        cfg, meta = self.cfg, self.policy.meta
        name = meta.get("state_encoder", cfg.train.state_encoder)
        enc_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"state_encoder": name})})
        encoder = build_state_encoder(enc_cfg, build_generator(cfg.generator) if name == "generator" else None)
        expected = meta.get("encoder_id")
        if expected and expected != encoder.encoder_id:
            raise PolicyLoadError(f"policy {self.source.path} was trained on states of {expected}, but this config "
                                  f"encodes states with {encoder.encoder_id}; serve it with the training config "
                                  "(generator.*, train.state_encoder)")
        return encoder

    def decide(self, prompts: list[str], images: list[np.ndarray]) -> list[dict]:
        """One decision per state, as JSON-ready dicts (`PolicyDecision`)."""
        text, image = self.encoder.encode(list(prompts), list(images))
        actions, probs = self.policy.act(text, image)
        out = []
        for i, action in enumerate(actions):
            params = self.action_space.decode(action)
            out.append({
                "action": {head: int(a) for head, a in zip(HEADS, action)},
                "params": {"steps": params.steps, "alpha": params.alpha, "beta": params.beta,
                           "guidance": [float(w) for w in params.guidance]},
                "probabilities": {head: {"values": list(values), "probs": [float(p) for p in probs[h][i]]}
                                  for h, (head, values) in enumerate(self.value_sets().items())},
            })
        return out

    def value_sets(self) -> dict[str, list]:
        a = self.action_space
        return {"steps": a.steps, "alpha": a.alpha, "beta": a.beta}

    def info(self) -> dict:
        meta = self.policy.meta
        return {"checkpoint": str(self.source.path), "origin": self.source.origin,
                "mlflow_run_id": self.source.mlflow_run_id, "iteration": meta.get("iteration"),
                "state_encoder": self.encoder.encoder_id,
                "action_space": {**self.value_sets(), "num_frames": self.action_space.num_frames + 1,
                                 "w_min": self.action_space.w_min, "w_max": self.action_space.w_max}}
