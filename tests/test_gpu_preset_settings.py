"""The GPU preset carries the paper's recognition settings: 224 px, ImageNet-initialised
backbones whose weights are required (a clear error naming where to put them), and LPIPS
diversity selected from the config wherever its weights are given."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from argen_ray.config import ConfigError, load_config
from argen_ray.metrics.diversity import _alexnet_features, distance_from_config
from argen_ray.recognition.models import BackboneWeightsError, build_model

ROOT = Path(__file__).resolve().parents[1]
GPU_PRESET = ROOT / "configs" / "gpu-cluster.yaml"


def test_preset_uses_the_papers_recognition_settings():
    rc = load_config(GPU_PRESET).recognition
    assert rc.image_size == 224 and rc.num_segments == 16
    assert rc.require_pretrained
    assert set(rc.pretrained) == {"resnet18", "vgg13"}
    assert rc.pretrained["resnet18"].name == "resnet18-f37072fd.pth"
    assert rc.pretrained["vgg13"].name == "vgg13_bn-abd245e5.pth"
    assert rc.diversity_metric == "lpips_alex" and set(rc.diversity_weights) == {"backbone_weights", "linear_weights"}


def test_a_missing_imagenet_file_says_where_to_put_it_and_where_it_comes_from(tmp_path):
    target = tmp_path / "models" / "resnet18-f37072fd.pth"
    with pytest.raises(BackboneWeightsError) as err:
        build_model("Res18_LSTM", pretrained=target)
    text = str(err.value)
    assert str(target) in text and "recognition.pretrained.resnet18" in text
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in text


def _lpips_files(tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    features = _alexnet_features()
    backbone = tmp_path / "alexnet.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()} |
               {"classifier.1.weight": torch.zeros(4096, 9216)}, backbone)
    linear = tmp_path / "alex.pth"
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))},
               linear)
    return backbone, linear


def test_lpips_is_selected_from_the_config_with_its_weights(tmp_path):
    backbone, linear = _lpips_files(tmp_path)
    cfg = load_config(ROOT / "configs" / "local.yaml",
                      ["recognition.diversity_metric=lpips_alex",
                       f"recognition.diversity_weights.backbone_weights={backbone}",
                       f"recognition.diversity_weights.linear_weights={linear}",
                       "recognition.diversity_image_size=64", "recognition.diversity_frames=2"])
    metric = distance_from_config(cfg.recognition)
    assert metric.name == "lpips_alex" and metric.image_size == 64 and metric.num_frames == 2
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8) for _ in range(2))
    assert metric.distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert metric.distance(a, b) > 0
    # the default stays the packaged MobileNetV2 distance
    assert distance_from_config(load_config(ROOT / "configs" / "local.yaml").recognition).name.startswith("mobilenet_v2")


def test_lpips_without_its_weights_is_a_config_error():
    with pytest.raises(ConfigError, match="diversity_weights"):
        load_config(ROOT / "configs" / "local.yaml", ["recognition.diversity_metric=lpips_vgg"])
