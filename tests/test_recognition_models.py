"""The four baselines and the frozen-MobileNetV2 ones: shapes, registry, and ImageNet backbone weights from a local torchvision file."""
from __future__ import annotations

import pytest
import torch

from argen_ray.recognition.models import (MODELS, BackboneWeightsError, RecognitionError, ResNet18, VGG13,
                                          build_model)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_baseline_maps_clips_to_seven_logits_and_learns_from_a_step(name):
    torch.manual_seed(0)
    model = build_model(name, num_segments=4, hidden=32)
    clips = torch.randn(2, 4, 3, 32, 32)
    logits = model(clips)
    assert logits.shape == (2, 7)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([4, 6]))
    loss.backward()
    first = model.backbone.state_dict(keep_vars=True)[next(iter(model.backbone.state_dict()))]
    if model.frozen_backbone:  # only the temporal head learns; the ImageNet trunk stays as loaded
        assert first.grad is None and not first.requires_grad
        assert model.temporal.state_dict(keep_vars=True)[next(iter(model.temporal.state_dict()))].grad is not None
    else:  # gradients reach the per-frame CNN through the temporal model
        assert first.grad.abs().sum() > 0


def test_torchvision_layout_state_dicts_load_onto_the_backbones(tmp_path):
    torch.manual_seed(1)
    imagenet = ResNet18().state_dict() | {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(imagenet, tmp_path / "resnet18.pth")
    model = build_model("Res18_Transformer", pretrained=tmp_path / "resnet18.pth")
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, imagenet[key])
    vgg = {f"{k}": v for k, v in VGG13().state_dict().items()} | {"classifier.6.bias": torch.zeros(1000)}
    torch.save(vgg, tmp_path / "vgg13_bn.pth")
    build_model("VGG13_LSTM", pretrained=tmp_path / "vgg13_bn.pth")


def test_wrong_weights_are_named(tmp_path):
    torch.save(VGG13().state_dict(), tmp_path / "vgg13_bn.pth")
    with pytest.raises(BackboneWeightsError, match=r"vgg13_bn.pth: not a torchvision resnet18 ImageNet state dict "
                                                   r"\(missing .*unexpected features"):
        build_model("Res18_LSTM", pretrained=tmp_path / "vgg13_bn.pth")
    with pytest.raises(BackboneWeightsError, match="nothing.pth does not exist"):
        build_model("Res18_LSTM", pretrained=tmp_path / "nothing.pth")
    with pytest.raises(RecognitionError, match="unknown recognition model 'Res50_GRU'"):
        build_model("Res50_GRU")
