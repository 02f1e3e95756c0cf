"""Qwen2.5-VL helpers of the `transformers` VLM backend: an image-only processor, and a tiny
random Qwen2.5-VL built fully in code (its offline stand-in, `asi.vlm.model: tiny`).

Same architecture, processor and chat-template path as Qwen2.5-VL-7B-Instruct, with random
weights and a byte-level tokenizer built in code (the 256 byte symbols + Qwen's special
tokens), so `asi.vlm.model: tiny` exercises the real loading and generation code on a CPU
machine without a download. Its text is noise; the hallucination filter then falls back to the
template composition, exactly as it would for a real model that asserted nothing usable.
Built once and cached under $ARGEN_RAY_CACHE (default ~/.cache/argen-ray).
"""
from __future__ import annotations

import os
from pathlib import Path

from transformers import Qwen2_5_VLProcessor

from argen_ray.io import atomic_write_text

TINY_NAME = "tiny"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]

# Qwen2.5-VL's message layout (role blocks, image placeholder between vision start/end).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ImageOnlyQwenVLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without the video processor.

    The stock processor cannot be built without torchvision (its video processor mapping is a
    placeholder); images need none of it. With torchvision present, AutoProcessor is used.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)


def load_qwen_vl_processor(path: str):
    """The checkpoint's processor: AutoProcessor where it builds fully, else the image-only one."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(path)
        if getattr(processor, "image_processor", None) is not None:
            return processor
    except (AttributeError, ImportError, ValueError, TypeError):
        pass  # no torchvision: the video processor cannot be built
    return ImageOnlyQwenVLProcessor.from_pretrained(path)


def tiny_vlm_dir() -> Path:
    root = Path(os.environ.get("ARGEN_RAY_CACHE", Path.home() / ".cache" / "argen-ray"))
    return root / "tiny-qwen2_5-vl"


def build_tiny_tokenizer():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {symbol: i for i, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    # Specials must be registered as special, else the BPE splits them into bytes.
    return Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|im_end|>",
                          pad_token="<|endoftext|>", additional_special_tokens=SPECIAL_TOKENS)


def build_tiny_qwen25_vl(seed: int = 0):
    """(model, processor) of a ~0.1 M-parameter random Qwen2.5-VL."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = build_tiny_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    hidden, heads = 32, 2
    # The image processor's patching must match the vision tower's.
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16},
                                               patch_size=14, temporal_patch_size=2, merge_size=2)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=heads, num_key_value_heads=1,
                         max_position_embeddings=2048,
                         # mrope sections must sum to head_dim / 2, or forward fails late.
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                         bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                           fullatt_block_indexes=[1], window_size=112),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    processor = ImageOnlyQwenVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                         chat_template=CHAT_TEMPLATE)
    return model, processor


def ensure_tiny_vlm(path: str | os.PathLike | None = None) -> Path:
    """Build and save the tiny Qwen2.5-VL once; return its folder (a normal local checkpoint)."""
    import shutil
    import tempfile

    target = Path(path) if path is not None else tiny_vlm_dir()
    if (target / "BUILT").is_file():
        return target
    model, processor = build_tiny_qwen25_vl()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Save into a temporary folder and rename it into place: a killed build leaves no half model.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        atomic_write_text(tmp / "BUILT", "tiny random Qwen2.5-VL built by argen_ray.asi.tiny_vlm\n")
        shutil.rmtree(target, ignore_errors=True)  # an unfinished folder without BUILT
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "BUILT").is_file():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
