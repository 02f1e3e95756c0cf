"""VLM backends behind one interface: template, transformers (tiny random Qwen2.5-VL built in
code), vllm (request construction against a stand-in, since vLLM cannot be installed here)."""
from __future__ import annotations

import base64
import io
import sys
import types

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from argen_ray.asi.filter import FilterStats, HallucinationFilter
from argen_ray.asi.knowledge import load_knowledge_base
from argen_ray.asi.vlm import VLM_BACKENDS, VLMError, VLMRequest, build_vlm, instruction, template_text
from argen_ray.config.asi import VLMConfig

FEAR = ["the inner corners of the eyebrows rise moderately and the eyebrows lower and draw together moderately",
        "the upper eyelids lift and the eyes widen strongly, the lips stretch sideways moderately"]


def request(i: int = 0, emotion: str = "fear", size: int = 56) -> VLMRequest:
    rng = np.random.default_rng(i)
    return VLMRequest(request_id=f"id{i}__{emotion}", image=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
                      emotion=emotion, emotion_noun=emotion, descriptions=list(FEAR), seed=i)


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARGEN_RAY_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield build_vlm(VLMConfig(backend="transformers", model="tiny", max_new_tokens=6, batch_size=2))


def test_registry_and_unknown_backend():
    assert set(VLM_BACKENDS) == {"template", "transformers", "vllm"}
    with pytest.raises(VLMError, match="unknown VLM backend 'gpt'.*template"):
        build_vlm(VLMConfig(backend="gpt"))


def test_template_is_deterministic_composition():
    backend = build_vlm(VLMConfig(backend="template"))
    texts = backend.generate([request(0), request(1)])
    assert texts[0] == texts[1] == f"The person's face shows fear: {FEAR[0]}; {FEAR[1]}."
    assert template_text(request(3)) == texts[0]


def test_instruction_asks_for_the_persons_appearance():
    text = instruction(request(0))
    assert "appearance" in text and "age" in text and "fear" in text and FEAR[0] in text


def test_bad_requests_are_named():
    with pytest.raises(VLMError, match="request x: image must be \\(H, W, 3\\) uint8"):
        VLMRequest("x", np.zeros((4, 4), np.uint8), "fear", "fear", ["d"])
    with pytest.raises(VLMError, match="request x: no retrieved descriptions"):
        VLMRequest("x", np.zeros((4, 4, 3), np.uint8), "fear", "fear", [])


def test_transformers_backend_runs_a_real_qwen25_vl_batch(tiny_backend):
    assert isinstance(tiny_backend.model, Qwen2_5_VLForConditionalGeneration)
    reqs = [request(i, size=40 + 8 * i) for i in range(3)]  # different image sizes in one batch
    texts = tiny_backend.generate(reqs)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert tiny_backend.generate(reqs[:2]) == texts[:2]  # seeded: a rerun of the same batch repeats


def test_missing_local_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(VLMError, match="transformers VLM .*nope.*cannot load"):
        build_vlm(VLMConfig(backend="transformers", model=str(tmp_path / "nope")))


class FixedTextQwen(Qwen2_5_VLForConditionalGeneration):
    """The tiny model with its decoding replaced: always answers `FIXED_TEXT`."""

    FIXED_TEXT = "Her eyebrows shoot up and her eyes widen in alarm, and she smiles broadly."
    tokenizer = None

    def generate(self, input_ids=None, **kwargs):
        ids = self.tokenizer(self.FIXED_TEXT, add_special_tokens=False, return_tensors="pt").input_ids
        return torch.cat([input_ids, ids.repeat(input_ids.shape[0], 1)], dim=1)


def test_injected_smile_in_a_fear_prompt_is_dropped_and_counted(tiny_backend, monkeypatch):
    monkeypatch.setattr(tiny_backend.model, "__class__", FixedTextQwen)
    monkeypatch.setattr(FixedTextQwen, "tokenizer", tiny_backend.processor.tokenizer)
    texts = tiny_backend.generate([request(0), request(1)])   # real processor, chat template, decoding
    assert texts == [FixedTextQwen.FIXED_TEXT] * 2
    filt, stats = HallucinationFilter(load_knowledge_base()), FilterStats()
    for text in texts:
        result = filt.apply(text, "fear", fallback=template_text(request(0)))
        stats.add(result)
        assert result.dropped == ["AU12"] and "smile" not in result.prompt
        assert result.prompt == "Her eyebrows shoot up and her eyes widen in alarm."
    assert stats.dropped == 2 and stats.asserted == 8 and stats.hallucination_rate == 0.25


def test_vllm_backend_builds_multimodal_chat_requests(monkeypatch):
    calls = {}

    class StandInLLM:  # records what the backend hands to vllm.LLM / LLM.chat
        def __init__(self, **kwargs):
            calls["init"] = kwargs

        def chat(self, messages, sampling_params=None, use_tqdm=True):
            calls["chat"] = (messages, sampling_params)
            out = types.SimpleNamespace(text=" The brows rise. ")
            return [types.SimpleNamespace(outputs=[out]) for _ in messages]

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=StandInLLM, SamplingParams=SamplingParams))
    backend = build_vlm(VLMConfig(backend="vllm", num_gpus=2), seed=5)
    assert calls["init"]["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert calls["init"]["tensor_parallel_size"] == 2 and calls["init"]["limit_mm_per_prompt"] == {"image": 1}
    reqs = [request(0), request(1)]
    assert backend.generate(reqs) == ["The brows rise."] * 2
    messages, params = calls["chat"]
    assert len(messages) == 2 and [p.kwargs["seed"] for p in params] == [0, 1]
    assert params[0].kwargs == {"max_tokens": 256, "temperature": 0.8, "top_p": 0.9, "seed": 0}
    image_part, text_part = messages[0][0]["content"]
    assert messages[0][0]["role"] == "user" and text_part == {"type": "text", "text": instruction(reqs[0])}
    from PIL import Image

    url = image_part["image_url"]["url"]
    assert image_part["type"] == "image_url" and url.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    np.testing.assert_array_equal(decoded, reqs[0].image)


def test_vllm_absent_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import fails as when it is not installed
    with pytest.raises(VLMError, match="vllm is not importable.*cluster/runtime_envs/vllm.yaml"):
        build_vlm(VLMConfig(backend="vllm"))
