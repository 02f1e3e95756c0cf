"""Compute accounting (argen_ray/ard/compute.py): NFE as DESIGN 2.2 counts it, FLOPs and peak
activation memory measured on `meta` tensors, parameter bytes by dtype."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from argen_ray.ard.compute import PeakLiveTensors, kv_cache_bytes_per_token, measure_forward, model_size


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_peak_live_tensors_follows_allocation_and_release(device):
    x = torch.ones(1000, device=device)  # exists before: not counted
    n = 1000 * 4

    def work():
        a = x * 2          # +n
        b = a + 1          # +n  (peak 2n)
        del a              # -n
        c = b * 3          # +n  (2n again)
        c.add_(1)          # in place: nothing new
        v = c.view(10, 100)  # a view: nothing new
        return v.sum()

    peak = PeakLiveTensors()
    with peak:
        work()
    assert peak.peak == 2 * n + 4    # b and c alive while the 4-byte sum is made
    assert peak.live == 0


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_view_keeps_its_base_storage_counted(device):
    x = torch.ones(1000, device=device)
    n = 1000 * 4
    peak = PeakLiveTensors()
    with peak:
        a = x * 2                   # +n
        v = a.detach().view(10, 100)  # shares a's storage but holds no reference to a (as
        del a                         # the attention's _unsafe_view does): the storage lives on
        assert peak.live == n
        b = v * 3                   # +n: a's storage and b at once
        assert peak.peak == 2 * n
        del v                       # the last tensor on a's storage: -n
        assert peak.live == n
        del b
    assert peak.live == 0


def test_flops_and_saved_activations_of_a_known_network():
    h = 32 * 128 * 4  # bytes of one hidden activation
    model = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 128),
                          nn.Tanh(), nn.Linear(128, 10)).to("meta")
    x = torch.empty(32, 64, device="meta")
    inference = measure_forward(lambda: model(x))
    assert inference.flops == 2 * 32 * (64 * 128 + 2 * 128 * 128 + 128 * 10)
    assert inference.activation_bytes == 2 * h          # a layer's input and output at once
    training = measure_forward(lambda: model(x), grad=True)
    # autograd keeps every Tanh output for backward: tanh1, tanh2, then linear3's and tanh3's outputs
    assert training.activation_bytes >= 4 * h
    assert training.flops == inference.flops


def test_model_size_by_dtype():
    model = nn.Sequential(nn.Linear(10, 10), nn.BatchNorm1d(10)).to("meta")
    model[0].to(torch.float16)
    size = model_size(model)
    assert size.params == 110 + 20
    assert size.bytes_by_dtype["float16"] == 110 * 2
    assert size.bytes_by_dtype["float32"] == 20 * 4 + 20 * 4   # BN weight/bias + running mean/var
    assert size.bytes_by_dtype["int64"] == 8                    # num_batches_tracked


def test_kv_cache_per_token_from_the_config():
    # Qwen2.5-VL-7B: 28 layers x 4 KV heads x 128 dims x (K and V) x 2 bytes = 57,344 bytes per token.
    config = {"text_config": {"hidden_size": 3584, "num_attention_heads": 28, "num_hidden_layers": 28,
                              "num_key_value_heads": 4}}
    assert kv_cache_bytes_per_token(config) == 57344
