"""ARD's adaptive policy (DESIGN 2.3): state embeddings -> (steps T, alpha, beta), factorised.

`PolicyNetwork` is the plain torch network: the text and image embeddings are projected to d,
become two tokens (plus a type embedding each), go through one self-attention block, are
mean-pooled, and three MLP heads give the logits of the three factors,
pi(a|s) = pi_T(a_T|s) * pi_alpha(a_alpha|s) * pi_beta(a_beta|s).

`PolicyRLModule` hosts that network inside RLlib (new API stack); RLlib's factorised
`TorchMultiCategorical` samples during training and takes the per-head argmax at inference.

`export_policy` writes a small self-contained torch file (weights + shapes + the action value
sets) that `load_policy` turns into a `PolicyHandle`, so the `generate` command and the Serve
app act greedily without RLlib's checkpoint machinery.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchMultiCategorical
from ray.rllib.core.rl_module.torch import TorchRLModule

from argen_ray.errors import ArgenError

HEADS = ("steps", "alpha", "beta")
POLICY_FILE = "policy.pt"


class PolicyLoadError(ArgenError):
    """A policy file or checkpoint is missing or does not hold an ARGen policy."""


def split_logits(logits: torch.Tensor, nvec) -> list[torch.Tensor]:
    """The concatenated logits of the three heads, split per head."""
    return list(torch.split(logits, [int(n) for n in nvec], dim=-1))


class PolicyNetwork(nn.Module):
    """Projection of both embeddings, self-attention over the two tokens, pooling, three heads."""

    def __init__(self, text_dim: int, image_dim: int, nvec, embed_dim: int = 64, num_heads: int = 4):
        super().__init__()
        self.text_dim, self.image_dim = int(text_dim), int(image_dim)
        self.nvec = [int(n) for n in nvec]
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        d = self.embed_dim
        self.text_proj = nn.Sequential(nn.LayerNorm(self.text_dim), nn.Linear(self.text_dim, d))
        self.image_proj = nn.Sequential(nn.LayerNorm(self.image_dim), nn.Linear(self.image_dim, d))
        # Which token is text and which is image: without it attention is order-blind.
        self.token_type = nn.Parameter(torch.zeros(2, d))
        self.attention = nn.TransformerEncoderLayer(d, self.num_heads, dim_feedforward=2 * d, dropout=0.0,
                                                    batch_first=True, norm_first=True)
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, n)) for n in self.nvec)

    def forward(self, text_emb: torch.Tensor, image_emb: torch.Tensor) -> torch.Tensor:
        """(B, Dt), (B, Di) -> concatenated logits (B, sum(nvec))."""
        tokens = torch.stack([self.text_proj(text_emb), self.image_proj(image_emb)], dim=1) + self.token_type
        pooled = self.attention(tokens).mean(dim=1)
        return torch.cat([head(pooled) for head in self.heads], dim=-1)

    def shapes(self) -> dict:
        return {"text_dim": self.text_dim, "image_dim": self.image_dim, "nvec": self.nvec,
                "embed_dim": self.embed_dim, "num_heads": self.num_heads}


class PolicyRLModule(TorchRLModule):
    """RLlib module around `PolicyNetwork`; reads the Dict observation {text_emb, image_emb}.

    model_config: `embed_dim`, `num_heads`.
    """

    def setup(self):
        obs, act = self.observation_space, self.action_space
        if not isinstance(obs, gym.spaces.Dict) or set(obs.spaces) != {"text_emb", "image_emb"}:
            raise ValueError(f"PolicyRLModule needs a Dict observation {{text_emb, image_emb}}, got {obs}")
        if not isinstance(act, gym.spaces.MultiDiscrete) or len(act.nvec) != len(HEADS):
            raise ValueError(f"PolicyRLModule needs a MultiDiscrete action with {len(HEADS)} heads, got {act}")
        self.net = PolicyNetwork(obs["text_emb"].shape[0], obs["image_emb"].shape[0], act.nvec,
                                 embed_dim=self.model_config.get("embed_dim", 64),
                                 num_heads=self.model_config.get("num_heads", 4))
        self.action_dist_cls = TorchMultiCategorical.get_partial_dist_cls(
            space=act, input_lens=[int(n) for n in act.nvec])

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        return {Columns.ACTION_DIST_INPUTS: self.net(obs["text_emb"], obs["image_emb"])}


# ---------------------------------------------------------------------------------------------
# The exported policy file and the greedy handle
# ---------------------------------------------------------------------------------------------
def export_policy(network: PolicyNetwork, target: str | os.PathLike, meta: dict) -> Path:
    """Write weights, shapes and `meta` (action values, state encoder, iteration) atomically."""
    from argen_ray.io import atomic_path

    payload = {"format": "argen-policy/1", "shapes": network.shapes(),
               "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
               "meta": dict(meta)}
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return Path(target)


@dataclass
class PolicyHandle:
    """A trained policy, ready to act greedily (argmax per head) on state embeddings."""

    network: PolicyNetwork
    meta: dict = field(default_factory=dict)
    source: str = ""

    @property
    def action_values(self) -> dict[str, list]:
        """The value set of each head, e.g. {"steps": [5, 10, ...], "alpha": [...], "beta": [...]}."""
        return self.meta.get("action_values", {})

    def act(self, text_emb, image_emb) -> tuple[np.ndarray, list[np.ndarray]]:
        """Greedy actions (B, 3) as head indices, and each head's probabilities [(B, n_i)] * 3."""
        text = self._batch(text_emb, self.network.text_dim, "text_emb")
        image = self._batch(image_emb, self.network.image_dim, "image_emb")
        with torch.no_grad():
            logits = self.network(text, image)
        probs = [torch.softmax(part, dim=-1).numpy() for part in split_logits(logits, self.network.nvec)]
        actions = np.stack([p.argmax(axis=-1) for p in probs], axis=-1).astype(np.int64)
        return actions, probs

    @staticmethod
    def _batch(values, dim: int, name: str) -> torch.Tensor:
        arr = np.asarray(values, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise ArgenError(f"{name}: expected shape (B, {dim}) (the policy's state encoder), got {arr.shape}")
        return torch.from_numpy(arr)


def _load_exported(path: Path) -> PolicyHandle:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: name it
        raise PolicyLoadError(f"{path}: not a readable policy file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != "argen-policy/1":
        raise PolicyLoadError(f"{path}: not an ARGen policy file (no 'argen-policy/1' format tag)")
    network = PolicyNetwork(**payload["shapes"])
    network.load_state_dict(payload["state_dict"])
    network.eval()
    return PolicyHandle(network, payload.get("meta", {}), str(path))


def _load_rllib_checkpoint(path: Path) -> PolicyHandle:
    from ray.rllib.core.rl_module.rl_module import RLModule

    module_dir = path / "learner_group" / "learner" / "rl_module" / "default_policy"
    module = RLModule.from_checkpoint(module_dir)
    module.net.eval()
    return PolicyHandle(module.net, {}, str(path))


def load_policy(checkpoint: str | os.PathLike) -> PolicyHandle:
    """Load a policy from an exported `policy.pt`, a folder holding one (a run's `policy/`
    folder or a training checkpoint), or a bare RLlib algorithm checkpoint."""
    path = Path(checkpoint)
    if path.is_file():
        return _load_exported(path)
    if path.is_dir():
        if (path / POLICY_FILE).is_file():
            return _load_exported(path / POLICY_FILE)
        if (path / "learner_group").is_dir():
            return _load_rllib_checkpoint(path)
        raise PolicyLoadError(f"{path}: holds neither {POLICY_FILE} nor an RLlib checkpoint "
                              f"(run `argen-ray train` first)")
    raise PolicyLoadError(f"policy checkpoint {path} does not exist (run `argen-ray train` first)")
