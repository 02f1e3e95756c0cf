"""Generator section: TI2V diffusion or the CPU warp backend, action sets, guidance (DESIGN 2.2)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from argen_ray.config.base import Section


class ActionSpaceConfig(Section):
    # The policy's three heads choose one value of each set (DESIGN 2.2).
    steps: list[int] = Field(default_factory=lambda: [5, 10, 15, 20, 25])
    alpha: list[float] = Field(default_factory=lambda: [1.0, 1.5, 2.0, 3.0])
    beta: list[float] = Field(default_factory=lambda: [1.0, 1.5, 2.0, 3.0])

    @field_validator("steps")
    @classmethod
    def _positive_steps(cls, v: list[int]) -> list[int]:
        if not v or any(s < 1 for s in v) or len(set(v)) != len(v):
            raise ValueError(f"must be a non-empty list of distinct positive step counts, got {v}")
        return v

    @field_validator("alpha", "beta")
    @classmethod
    def _positive_shape(cls, v: list[float]) -> list[float]:
        if not v or any(x <= 0 for x in v) or len(set(v)) != len(v):
            raise ValueError(f"must be a non-empty list of distinct positive values, got {v}")
        return v


class WarpConfig(Section):
    """The CPU warp backend (argen_ray/ard/warp.py, docs/warp.md; owned by the warp backend)."""

    max_side: int = Field(512, ge=32)         # longer references are downscaled before warping
    # Request AU intensities times au_scale = OpenFace 0-5 (prompts.jsonl stores 0-1 fractions).
    au_scale: float = Field(5.0, gt=0)
    text_encoder: str = "all-MiniLM-L6-v2"    # state text embedding: packaged MiniLM or a local folder
    # Real clips' measured dynamics (argen_ray.data.dynamics): timing, head path and noise the seed
    # draws from. null: <run_dir>/data/dynamics.json (written by the run's data stage).
    dynamics: Path | None = None
    # Expression appearance learned from the real training clips (argen_ray.ard.warp_appearance:
    # ratio images of what the warp cannot move, e.g. wrinkles, mouth interior). null:
    # <run_dir>/data/appearance.npz (written by the run's data stage); a missing file adds none.
    appearance: Path | None = None


class FitConfig(Section):
    """`argen-ray fit-generator`: the miniature text-to-video model (argen_ray/ard/miniature.py,
    docs/generator.md "The miniature"). Defaults are the shipped model's recorded settings."""

    seed: int = 0
    out: str | None = None           # model folder; default $ARGEN_RAY_CACHE/miniature-t2v-v7
    # 64 px: Haar finds a face in 91 % of real demo frames at 64 px, 12 % at 32 px (docs/generator.md).
    size: int = Field(64, ge=32)     # pixels per side (the renderer draws >= 32)
    # 4-frame windows: a UNet call on 4 frames costs ~60 % of one on 8, and a clip is 15 windows x T calls.
    window: int = Field(4, ge=2)     # frames per training window (= generator.window at sampling)
    clip_frames: int = Field(16, ge=2)
    num_identities: int = Field(80, ge=2)   # rendered people of the UNet's clips, none of them the demo dataset's
    # The VAE's single frames: null = the UNet's clips (v3); N = 4-frame clips of N people (the first
    # num_identities the UNet's). 400 people at 1000 steps (v5 and v6): faces in 0.98 of the demo
    # people's round-tripped frames (v3's 40 people: 0.94), worse on another set (docs/generator.md).
    vae_identities: int | None = Field(400, ge=2)
    # UNet prompts: "emotion" = one knowledge-base record at its default intensities, whatever the clip
    # shows (v3, v5, v6 and the shipped v7); "clip" = ASI's two-record composition adapted to the clip's AU vector,
    # so the text says how strongly the clip shows each AU (what guidance can amplify).
    prompts: Literal["emotion", "clip"] = "emotion"
    # The text encoder: a frozen random function (`false`, v6 and the shipped v7) whose token embeddings are
    # drawn with std `text_token_std` (null: CLIP's 0.02), or trained with the UNet (v5). v5's trained
    # encoder collapsed every prompt to nearly the same states and its UNet ignored the text; std 1
    # keeps the emotion words far apart (docs/generator.md).
    train_text_encoder: bool = False
    text_token_std: float | None = Field(1.0, gt=0)
    clips_per_emotion: int = Field(1, ge=1)  # per identity and emotion
    # The training clips' head sway, as a share of the demo renderer's (0: still heads at each clip's
    # pose). The sway is most of a clip's latent motion, which the prompt cannot predict; still heads
    # did not make the UNet read the prompt better than the demo's sway (docs/generator.md).
    head_sway: float = Field(1.0, ge=0)
    identity_seed: int = 7919        # identities drawn from this seed (the demo dataset's are seed-0 ones)
    # 1,000 VAE steps (v5, v6): the recognizer reads 9 of 29 surprise test clips after the VAE's round
    # trip (27 of 29 before); 5,000 (v7): 25 of 29, since it reads detail a blurry decode loses
    # (docs/generator.md, "v7 (shipped)").
    vae_steps: int = Field(5000, ge=0)
    # 2,500 UNet steps: generated faces 0.73 of frames, lost along the clip; 8,000: 0.955, the VAE's
    # ceiling (v5). With the frozen encoder the prompt is read later: a prompt swap moves a clip 1.9 px
    # at 8,000 steps, 4.5 px at 10,500 (v6; docs/generator.md, "v6 (shipped until v7)").
    unet_steps: int = Field(10500, ge=0)
    batch_size: int = Field(8, ge=1)
    vae_lr: float = Field(1e-3, gt=0)
    lr: float = Field(1e-3, gt=0)
    # What the UNet predicts (the saved scheduler's prediction_type): "v_prediction" or "epsilon".
    prediction: Literal["epsilon", "v_prediction"] = "v_prediction"
    text_dropout: float = Field(0.15, ge=0, le=1)  # classifier-free guidance: prompt -> "" this often
    static_prefix: float = Field(0.5, ge=0, le=1)  # windows opening on a held frame, as TI2V's queue starts
    # Rendered frames between a training window's frames: one generated frame then stands for
    # `frame_stride` rendered ones, so each autoregressive hop carries that much more motion.
    frame_stride: int = Field(1, ge=1)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    # One level (no downsampling of the 8x8 latents): half the modules of two levels, so a UNet call
    # costs ~30 ms on one thread (docs/generator.md); attention at 8x8 already sees the whole face.
    channels: list[int] = Field(default_factory=lambda: [32])  # UNet block widths
    # Cross-attention to the prompt in the deepest level's up block too (CrossAttnUpBlock3D), where
    # the skip connection joins: with one level, v5's only text path is the mid block, which
    # the skip connection routes around. Costs ~1.4x a UNet call at sampling, ~2x per training step;
    # measured without gain by UNet step 2,500 (docs/generator.md, "More training reads the emotion").
    up_cross_attention: bool = False
    vae_channels: list[int] = Field(default_factory=lambda: [16, 32, 32, 32])  # 4 levels: spatial factor 8
    latent_channels: int = Field(8, ge=1)   # VAE latent channels (= the UNet's in/out channels)
    vae_edge_weight: float = Field(0.5, ge=0)  # weight of the edge (image-gradient L1) term of the VAE loss
    # Phase 3: the decoder alone (frozen encoder) on more people, so unseen faces decode sharply.
    decoder_steps: int = Field(0, ge=0)
    decoder_identities: int = Field(160, ge=2)
    checkpoint_every: int = Field(100, ge=1)
    sample_every: int = Field(500, ge=1)
    log_every: int = Field(25, ge=1)
    threads: int = Field(1, ge=1)   # 2 threads spin under a shared load (docs/generator.md)

    @model_validator(mode="after")
    def _shape(self) -> "FitConfig":
        factor = 2 ** (len(self.vae_channels) - 1)
        if self.size % (factor * 2 ** (len(self.channels) - 1)):
            raise ValueError(f"size {self.size} must be a multiple of the VAE factor {factor} times the UNet's "
                             f"downsampling {2 ** (len(self.channels) - 1)}")
        if (self.window - 1) * self.frame_stride >= self.clip_frames:
            raise ValueError(f"window ({self.window}) frames {self.frame_stride} apart must fit in clip_frames "
                             f"({self.clip_frames})")
        return self


class GeneratorConfig(Section):
    # `fit` is read by fit-generator alone; the model it made is `model`
    PLACEMENT = frozenset({"max_batch", "num_actors", "num_gpus", "num_cpus", "use_ray", "device", "fit"})
    # Registered backend name: "ti2v" (diffusion) or "warp" (CPU landmark warping).
    backend: str = "warp"
    # Local folder or hub id of a ModelScope-layout text-to-video model; "tiny" builds and
    # caches a tiny random model under $ARGEN_RAY_CACHE (local preset and tests); "miniature"
    # is the model `argen-ray fit-generator` fits (or ships), resolved to its folder here.
    model: str = "tiny"
    variant: str | None = None    # weights variant of the folder, e.g. "fp16" for the hub model
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = "auto"          # "auto": cuda when the process sees a GPU, else cpu
    num_frames: int = Field(16, ge=2)   # F of the output video, the reference included; N = F - 1
    window: int = Field(16, ge=2)       # frames per UNet window
    # K condition frames per window: null = window - 1 (TI2V-Zero, DESIGN 2.2: one new frame per
    # window). Fewer = more new frames per window, fewer autoregressive hops: on the miniature's
    # 4-frame windows K = 2 keeps faces the sliding queue loses along the clip (docs/generator.md).
    condition_frames: int | None = Field(None, ge=1)
    height: int = Field(64, ge=8)
    width: int = Field(64, ge=8)
    resample: int = Field(0, ge=0)      # r resample passes per DDIM step
    negative_prompt: str = ""           # the unconditional half of classifier-free guidance
    w_min: float = Field(6.0, ge=0)
    w_max: float = Field(12.0, ge=0)
    action_space: ActionSpaceConfig = Field(default_factory=ActionSpaceConfig)
    max_batch: int = Field(4, ge=1)     # requests sharing UNet calls (one group of G candidates)
    num_actors: int = Field(1, ge=1)
    num_gpus: float = Field(0.0, ge=0)  # per GeneratorActor; fractional allowed
    num_cpus: float = Field(1.0, gt=0)  # per GeneratorActor (its torch threads on a CPU node)
    use_ray: bool = False               # `argen-ray generate` through the GeneratorActor pool
    fps: int = Field(8, ge=1)
    # Generated mp4s bit-exact (libx264rgb, qp 0), so the recognizer trains on the frames the generator
    # made: libx264 crf 10 in yuv420p smoothed their fresh per-frame noise and added its own (measured
    # on the demo's real clips: noise estimate 0.97 -> 1.16). false: the smaller, browser-playable files.
    mp4_lossless: bool = True
    warp: WarpConfig = Field(default_factory=WarpConfig)  # the "warp" backend's own knobs
    fit: FitConfig = Field(default_factory=FitConfig)     # `argen-ray fit-generator` (the miniature)

    @field_validator("model")
    @classmethod
    def _fitted_model_folder(cls, v: str) -> str:
        from argen_ray.ard.tiny_models import FITTED_T2V_MODELS  # stdlib-only module: cheap

        return str(FITTED_T2V_MODELS[v]()) if v in FITTED_T2V_MODELS else v

    @model_validator(mode="after")
    def _consistent(self) -> "GeneratorConfig":
        if self.w_min > self.w_max:
            raise ValueError(f"w_min ({self.w_min}) must not exceed w_max ({self.w_max})")
        if self.height % 8 or self.width % 8:
            raise ValueError(f"height and width must be multiples of 8 (the VAE), got {self.height}x{self.width}")
        if self.condition_frames is not None and self.condition_frames >= self.window:
            raise ValueError(f"condition_frames ({self.condition_frames}) must be below window ({self.window}): "
                             f"each window needs a new frame")
        return self
