"""Within-class diversity: a perceptual distance on a backbone with real ImageNet weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from argen_ray.metrics.diversity import (MobileNetV2, PerceptualDistance, PerceptualWeightsError, _alexnet_features,
                                         build_trunk, mean_pairwise_distance, mobilenet_v2_weights_path,
                                         within_class_diversity)
from argen_ray.metrics.fvd import MetricInputError


@pytest.fixture(scope="module")
def metric() -> PerceptualDistance:
    return PerceptualDistance(num_frames=2, image_size=96)


def _clip(image: np.ndarray, frames: int = 3) -> np.ndarray:
    return np.repeat(image[None], frames, axis=0)


def test_mobilenet_weights_ship_in_a_package_and_recognise_a_cat():
    path = mobilenet_v2_weights_path()
    net = MobileNetV2()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    with torch.inference_mode():
        top = int(net.eval()((img - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)).argmax())
    assert 281 <= top <= 285  # ImageNet's domestic cats (chelsea is a tabby)


def test_distance_is_zero_for_identical_clips_symmetric_and_named(metric):
    face, cat = _clip(data.astronaut()), _clip(data.chelsea())
    d = metric.pairwise([face, face.copy(), cat], progress=False)
    assert d[0, 1] == pytest.approx(0.0, abs=1e-6)
    assert d[0, 2] > 0.5 and d[0, 2] == pytest.approx(d[2, 0])
    assert metric.name == "mobilenet_v2_feature_distance"  # not called LPIPS: no learned heads


def test_varied_faces_are_more_diverse_than_near_copies(metric):
    faces = data.lfw_subset()[:4]  # 25x25 gray faces of different people, float in [0, 1]
    varied = [_clip(np.repeat((f * 255).astype(np.uint8)[..., None], 3, axis=-1)) for f in faces]
    base = varied[0]
    copies = [np.clip(base.astype(int) + k, 0, 255).astype(np.uint8) for k in range(4)]
    assert mean_pairwise_distance(varied, metric) > 3 * mean_pairwise_distance(copies, metric)


def test_within_class_diversity_reports_per_class_and_skips_singletons(metric):
    a, b, c = _clip(data.astronaut()), _clip(data.chelsea()), _clip(data.coffee())
    res = within_class_diversity([a, b, a, c], ["fear", "fear", "disgust", "surprise"], metric)
    assert set(res["per_class"]) == {"fear"}
    assert res["sizes"] == {"disgust": 1, "fear": 2, "surprise": 1}
    assert "only 1 clip" in res["skipped"]["surprise"]
    assert res["mean"] == pytest.approx(res["per_class"]["fear"])
    assert res["metric"] == "mobilenet_v2_feature_distance"
    with pytest.raises(MetricInputError, match="at least 2 clips"):
        mean_pairwise_distance([a], metric)
    with pytest.raises(MetricInputError, match="uint8"):
        metric.pairwise([a.astype(np.float32), a], progress=False)


def test_wrong_weights_files_are_named(tmp_path):
    with pytest.raises(PerceptualWeightsError, match="missing.pth does not exist"):
        build_trunk("mobilenet_v2", weights=tmp_path / "missing.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"features.0.0.weight": torch.zeros(1)}, foreign)
    with pytest.raises(PerceptualWeightsError, match="foreign.pth: weights do not fit MobileNetV2"):
        build_trunk("mobilenet_v2", weights=foreign)
    with pytest.raises(PerceptualWeightsError, match="unknown perceptual trunk"):
        build_trunk("lpips_squeeze")


def test_lpips_path_loads_torchvision_backbones_and_lpips_heads(tmp_path):
    """Real LPIPS needs ImageNet AlexNet weights that no package ships here: the loading path is
    checked on a random AlexNet saved in torchvision's layout and heads in LPIPS' layout."""
    torch.manual_seed(0)
    backbone = {f"features.{k}": v for k, v in _alexnet_features().state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(4096, 9216)  # torchvision's classifier: ignored
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(backbone, tmp_path / "alexnet.pth")
    torch.save(heads, tmp_path / "alex.pth")
    trunk = build_trunk("lpips_alex", backbone_weights=tmp_path / "alexnet.pth", linear_weights=tmp_path / "alex.pth")
    lpips = PerceptualDistance(trunk, num_frames=1, image_size=64)
    face, cat = _clip(data.astronaut(), 1), _clip(data.chelsea(), 1)
    assert lpips.name == "lpips_alex"
    assert lpips.distance(face, face) == pytest.approx(0.0, abs=1e-6)
    assert lpips.distance(face, cat) > 0
    heads["lin2.model.1.weight"] = torch.rand(1, 10, 1, 1)
    torch.save(heads, tmp_path / "bad_heads.pth")
    with pytest.raises(PerceptualWeightsError, match=r"bad_heads.pth: lin2.model.1.weight should be \(1, 384, 1, 1\)"):
        build_trunk("lpips_alex", backbone_weights=tmp_path / "alexnet.pth", linear_weights=tmp_path / "bad_heads.pth")
