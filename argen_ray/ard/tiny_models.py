"""A tiny random text-to-video model in the ModelScope folder layout, built in code and cached.

The local preset (`generator.model: tiny`) and the tests run the real TI2V pipeline on it: the
same diffusers classes as `damo-vilab/text-to-video-ms-1.7b` (UNet3DConditionModel,
AutoencoderKL with 8x spatial compression, CLIP text encoder and tokenizer, DDIM scheduler with
that model's schedule), only with a few channels and random weights, so a 16-frame 64x64 video
takes seconds on a CPU. The folder (`unet/ vae/ text_encoder/ tokenizer/ scheduler/
model_index.json`) is built once under `$ARGEN_RAY_CACHE` (default `~/.cache/argen-ray`),
atomically (temporary folder + rename), and reused afterwards.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

# Bump when the architecture or the weights' seed change: a new folder is built beside the old.
TINY_VERSION = "v1"
TINY_MODEL_NAME = f"tiny-t2v-{TINY_VERSION}"
TINY_SEED = 0
# The fitted miniature (argen_ray/ard/miniature.py); bump when its architecture changes.
MINIATURE_MODEL_NAME = "miniature-t2v-v7"
# Written into a cached copy of the shipped weights: their signature, so changed weights are copied anew.
SHIPPED_MARKER = ".shipped-weights"

# Whole-word tokens for the tiny CLIP tokenizer, so ASI prompts fit into 77 tokens; any other
# word falls back to single characters, which are always in the vocabulary.
_WORDS = """a an the of and with to in on at by from is are her his their face person man woman
neutral happy sad angry surprise surprised disgust disgusted fear fearful expression facial
inner outer brow brows eye eyes lid lids upper lower cheek cheeks nose lip lips corner corners
mouth jaw chin teeth open opens raise raises rise rises raised lower lowers lowered pull pulls
pulled stretch stretches stretched tighten tightens wrinkle wrinkles drop drops part parts
wide widen widens slightly moderately strongly together up down apart while as""".split()

# DDIM settings of damo-vilab/text-to-video-ms-1.7b's scheduler, so the tiny model's timesteps
# and noise levels are the real model's.
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


def cache_root() -> Path:
    return Path(os.environ.get("ARGEN_RAY_CACHE") or Path.home() / ".cache" / "argen-ray")


def _materialize(target: Path, write) -> Path:
    """`target`, filled by `write(folder)` in a temporary folder renamed into place (safe when
    several processes race: the first complete folder wins)."""
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first: its folder is complete (rename is atomic); use it.
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_t2v_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The tiny model's folder, built on first use."""
    return _materialize(Path(cache_dir or cache_root()) / TINY_MODEL_NAME,
                        lambda folder: build_tiny_t2v().save_pretrained(folder))


def miniature_t2v_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The miniature model's folder (`argen-ray fit-generator` writes it). When it has not been
    fitted here, weights shipped in `argen_ray/assets/miniature/` (fitted by the same command,
    recorded config and seed in their `fit.json`) are copied in; else the path is returned as
    is, and loading it fails naming the folder."""
    target = Path(cache_dir or cache_root()) / MINIATURE_MODEL_NAME
    shipped = Path(__file__).resolve().parent.parent / "assets" / "miniature"
    if not (shipped / "model_index.json").is_file():
        return target
    signature = _folder_signature(shipped)
    marker = target / SHIPPED_MARKER
    if marker.is_file() and marker.read_text() != signature:
        # A copy of other shipped weights under this name (weights replaced without a new name):
        # moved aside and copied again, so a run never loads stale weights. A local fit (no marker)
        # is never touched.
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        try:
            os.rename(target, stale)
        except FileNotFoundError:
            pass  # another process moved it first; any other failure must not leave the stale copy in use
        shutil.rmtree(stale, ignore_errors=True)

    def copy(folder: Path) -> None:
        shutil.copytree(shipped, folder, dirs_exist_ok=True)
        (folder / SHIPPED_MARKER).write_text(signature)

    return _materialize(target, copy)


def _folder_signature(folder: Path) -> str:
    """sha256 over every file's relative path and bytes (the shipped weights: 2.9 MB). Hashed once
    per process for each state of the files (names, sizes, mtimes): the config resolves the model
    path at every load, and the installed package does not change under a running process."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    stats = tuple((p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns) for p in files for st in [p.stat()])
    return _hash_files(folder, stats)


@lru_cache(maxsize=4)
def _hash_files(folder: Path, stats: tuple) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stats:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()


# Named text-to-video models (`generator.model: <name>`), each a function returning its local
# folder. "tiny" is built in code when first loaded (the ti2v backend resolves it); fitted models
# are only looked up, so the generator config resolves them to their folder at load time and
# every backend then reads a plain ModelScope-layout folder through `from_pretrained`.
FITTED_T2V_MODELS = {"miniature": miniature_t2v_path}
T2V_MODELS = {"tiny": tiny_t2v_path, **FITTED_T2V_MODELS}


def _tiny_tokenizer(extra_words: list[str] = ()):
    """A CLIP BPE tokenizer built in code: characters, plus merge chains that spell _WORDS (and
    `extra_words`, e.g. every word of the knowledge base for the miniature model)."""
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)]
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(_WORDS + [w for w in extra_words if w.isascii() and w.isalpha()]):
        if len(word) < 2:
            continue
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            merged = left + right
            if merged not in tokens:
                tokens.append(merged)
                merges.append((left, right))
            left = merged
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_tiny_t2v():
    """The tiny model as diffusers' own TextToVideoSDPipeline (so its model_index.json is the
    ModelScope one), with seeded random weights."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from diffusers.pipelines.deprecated.text_to_video_synthesis import TextToVideoSDPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tiny_tokenizer()
    torch.manual_seed(TINY_SEED)
    unet = UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8, sample_size=64)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    return TextToVideoSDPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                 scheduler=scheduler)
