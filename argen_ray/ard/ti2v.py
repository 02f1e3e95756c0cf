"""TI2V-Zero on a ModelScope text-to-video UNet (DESIGN 2.2), as a diffusers pipeline and the
"ti2v" generator backend.

The video grows one window at a time. A queue Q holds the K latest clean latent frames (at the
start, K copies of the reference image's latent). Each window of F frames is sampled from
`q_sample(Q[-1], T)`; at every DDIM timestep t its first K frames are replaced by
`q_sample(Q, t)`, so the UNet's temporal layers see the past frames at the current noise level;
the last F - K frames are new. After the window's last step the new clean latents are pushed
into Q and as many are popped from its front (K = F - 1: one new frame per window).

Resampling (TI2V-Zero): after the DDIM step t -> t' of every step but the last, the window is
re-noised t' -> t and denoised again, r times; the condition frames keep the noise drawn for
that step (one q_sample(Q, t) per step, shared by its passes), as in TI2V-Zero. The last step
has nothing to harmonise afterwards, so it runs once.

Cost is counted in UNet sample-evaluations (NFE). With CFG, the conditional and unconditional
inputs of a frame are two samples of ONE batched UNet call, so per video

    NFE = windows * (T_a + r * (T_a - 1)) * 2,   windows = ceil(N / (F - K))   (N new frames)

Several requests (e.g. a group's 4 candidates with different T_a and guidance curves) run
together: at each tick the requests whose next evaluation is at the same timestep share one UNet
call. Requests in an earlier window go first, and within a window the highest timestep, so
schedules that share timesteps (T=5 and T=10 share every other one) stay in phase.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet3DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from argen_ray.ard.generator import GenerationRequest, GenerationResult, register_generator
from argen_ray.errors import ArgenError

# Side of the pooled reference latent in the policy's image state: C * STATE_POOL**2 values.
STATE_POOL = 8


class TI2VInputError(ArgenError, ValueError):
    """A generation input is malformed (names the request and the field)."""

    def __init__(self, message: str, request: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.request, self.detail = request, detail or message


class TI2VModelError(ArgenError, RuntimeError):
    """The text-to-video model cannot be loaded from `generator.model`."""


@dataclass
class TI2VPipelineOutput(BaseOutput):
    """frames: one video per request, (F, H, W, 3) floats in [0, 1] ("np"), uint8 ("uint8"), or
    the (1, C, F, h, w) latents ("latent"); nfe: UNet sample-evaluations per request;
    unet_calls: UNet forward calls for the whole batch; timings: seconds per phase (whole batch)."""

    frames: list
    nfe: list[int]
    unet_calls: int
    timings: dict[str, float]


def evaluations_per_window(steps: int, resample: int) -> int:
    """UNet evaluations of one window: T_a steps, r resample passes at every step but the last."""
    return steps + resample * (steps - 1)


def ti2v_nfe(new_frames: int, steps: int, resample: int, window: int = 16, condition_frames: int | None = None,
             guided: bool = True) -> int:
    """NFE of one video: windows * (T + r (T - 1)) * (2 with CFG, else 1); K = F - 1 by default."""
    k = window - 1 if condition_frames is None else condition_frames
    return math.ceil(new_frames / (window - k)) * evaluations_per_window(steps, resample) * (2 if guided else 1)


class _Job:
    """One request's denoising state: its queue, schedule, position and noise source."""

    def __init__(self, index, scheduler, steps, guidance, cond, uncond, queue, new_frames, window, resample,
                 generator, noise_source=None):
        self.index = index
        self.scheduler = scheduler
        scheduler.set_timesteps(steps, device=cond.device)
        self.timesteps = [int(t) for t in scheduler.timesteps]
        self.guidance = guidance                    # (N,) per new frame
        self.cond, self.uncond = cond, uncond       # (1, L, D); uncond None without CFG
        self.queue = queue                          # (1, C, K, h, w) or None
        self.num_cond = 0 if queue is None else queue.shape[2]
        self.window = window
        self.per_window = window - self.num_cond
        self.num_windows = math.ceil(new_frames / self.per_window)
        self.new_frames = new_frames
        self.resample = resample                    # r: extra passes per step
        self.generator = generator
        self.noise_source = noise_source            # None: draw from `generator`
        self.queue_noise: torch.Tensor | None = None  # this step's condition-frame noise
        self.outputs: list[torch.Tensor] = []       # clean new latents per window
        self.nfe = 0
        self.window_index, self.step_index, self.pass_index = 0, 0, 0
        self.latents: torch.Tensor | None = None
        self.done = False

    @property
    def timestep(self) -> int:
        return self.timesteps[self.step_index]

    @property
    def samples(self) -> int:
        return 1 if self.uncond is None else 2

    def noise(self, kind: str, shape: tuple, like: torch.Tensor) -> torch.Tensor:
        """A standard normal draw for `kind` ("init", "queue" or "renoise") at the current
        window, step and pass: from the request's generator, or from `noise_source`."""
        if self.noise_source is None:
            return randn_tensor(shape, generator=self.generator, device=like.device, dtype=like.dtype)
        drawn = self.noise_source(self.index, kind, self.window_index, self.step_index, self.pass_index, shape)
        return drawn.to(like.device, like.dtype)

    def q_sample(self, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(x0, noise, torch.tensor([t], device=x0.device))

    def start_window(self, shape: tuple) -> None:
        """x_T = q_sample(Q[-1], T) for all F frames; pure noise when there is no queue."""
        noise = self.noise("init", shape, self.cond)
        if self.queue is None:
            self.latents = noise * self.scheduler.init_noise_sigma
        else:
            last = self.queue[:, :, -1:].expand(-1, -1, shape[2], -1, -1)
            self.latents = self.q_sample(last, self.timesteps[0], noise)

    def model_input(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x_t with its first K frames replaced by q_sample(Q, t); returns (x_t, the noise used)."""
        if self.queue is None:
            return self.latents, None
        if self.pass_index == 0:  # one draw per step; its resample passes reuse it
            self.queue_noise = self.noise("queue", self.queue.shape, self.queue)
        self.latents = self.latents.clone()
        self.latents[:, :, :self.num_cond] = self.q_sample(self.queue, self.timestep, self.queue_noise)
        return self.latents, self.queue_noise

    def window_guidance(self) -> torch.Tensor:
        """w per window frame, (1, 1, F, 1, 1): new frames get their own w_n; condition frames
        (overwritten at every step anyway) the first new frame's."""
        first = self.window_index * self.per_window
        w = self.guidance[first:first + self.per_window]
        w = torch.cat([w, w[-1:].expand(self.per_window - len(w))])  # last window may overhang N
        w = torch.cat([w[:1].expand(self.num_cond), w])
        return w.view(1, 1, -1, 1, 1)

    def advance(self, eps_uncond: torch.Tensor | None, eps_cond: torch.Tensor) -> None:
        """CFG, DDIM step to t', then either re-noise t' -> t (a resample pass; never at the last
        step) or move on."""
        self.nfe += self.samples
        eps = eps_cond if eps_uncond is None else eps_uncond + self.window_guidance() * (eps_cond - eps_uncond)
        t = self.timestep
        x_prev = self.scheduler.step(eps, t, self.latents, eta=0.0).prev_sample
        if self.pass_index < self.resample and self.step_index < len(self.timesteps) - 1:
            ratio = self._alpha_bar(t) / self._alpha_bar(t - self.scheduler.config.num_train_timesteps
                                                          // self.scheduler.num_inference_steps)
            noise = self.noise("renoise", x_prev.shape, x_prev)
            self.latents = ratio.sqrt() * x_prev + (1 - ratio).sqrt() * noise
            self.pass_index += 1
            return
        self.latents, self.pass_index = x_prev, 0
        self.step_index += 1
        if self.step_index == len(self.timesteps):
            self._finish_window()

    def _alpha_bar(self, t: int) -> torch.Tensor:
        s = self.scheduler
        value = s.alphas_cumprod[t] if t >= 0 else s.final_alpha_cumprod
        return value.to(self.latents.device, torch.float32)

    def _finish_window(self) -> None:
        new = self.latents[:, :, self.num_cond:]
        self.outputs.append(new)
        if self.queue is not None:  # slide: push the new frames, pop as many from the front
            self.queue = torch.cat([self.queue, new], dim=2)[:, :, -self.num_cond:]
        self.window_index += 1
        self.step_index = 0
        if self.window_index == self.num_windows:
            self.done = True
        else:
            self.start_window(self.latents.shape)

    def new_latents(self) -> torch.Tensor:
        return torch.cat(self.outputs, dim=2)[:, :, :self.new_frames]


class TI2VZeroPipeline(DiffusionPipeline):
    """TI2V-Zero: image-conditioned video from a text-to-video UNet, with no training.

    Loads any ModelScope-layout folder or hub id with `from_pretrained` (the scheduler is
    DDIM whatever the folder names). Deterministic given the generators.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                 unet: UNet3DConditionModel, scheduler: DDIMScheduler):
        super().__init__()
        if not isinstance(scheduler, DDIMScheduler):
            scheduler = DDIMScheduler.from_config(scheduler.config)
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    # -- encoders -----------------------------------------------------------------------------
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP hidden states (B, L, D) for the UNet's cross-attention and the pooled (B, D)."""
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self._execution_device)
        out = self.text_encoder(ids)
        return out.last_hidden_state.to(self.unet.dtype), out.pooler_output

    def encode_image(self, images: Sequence[np.ndarray], height: int, width: int) -> torch.Tensor:
        """Reference frames (uint8 RGB) -> scaled VAE latents (B, C, h, w), centre-cropped to size."""
        from PIL import Image

        pixels = self.image_processor.preprocess([Image.fromarray(np.asarray(im)) for im in images],
                                                 height=height, width=width, resize_mode="crop")
        pixels = pixels.to(self._execution_device, self.vae.dtype)
        return self.vae.encode(pixels).latent_dist.mode() * self.vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, C, F, h, w) latents -> (F, H, W, 3) floats in [0, 1]."""
        frames = latents[0].permute(1, 0, 2, 3) / self.vae.config.scaling_factor
        image = self.vae.decode(frames.to(self.vae.dtype)).sample
        return (image.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)

    # -- inputs -------------------------------------------------------------------------------
    def check_inputs(self, prompts, images, num_frames, steps, guidance, resample_steps, window_size,
                     num_condition_frames, height, width):
        batch = len(prompts)
        for name, values in (("image", images), ("num_frames", num_frames), ("num_inference_steps", steps),
                             ("guidance_scale", guidance)):
            if len(values) != batch:
                raise TI2VInputError(f"{name}: {len(values)} values for {batch} prompts")
        if height % self.vae_scale_factor or width % self.vae_scale_factor:
            raise TI2VInputError(f"height and width must be multiples of {self.vae_scale_factor}, got {height}x{width}")
        if len(resample_steps) != batch:
            raise TI2VInputError(f"resample_steps: {len(resample_steps)} values for {batch} prompts")
        for r in resample_steps:
            if isinstance(r, bool) or not isinstance(r, int) or r < 0:
                raise TI2VInputError(f"resample_steps must be an integer >= 0 (or one per prompt), got {r!r}")
        conditioned = images[0] is not None
        if any((im is not None) != conditioned for im in images):
            raise TI2VInputError("image: give a reference for every request or for none")
        if not 0 <= num_condition_frames < window_size or (num_condition_frames > 0) != conditioned:
            raise TI2VInputError(f"num_condition_frames={num_condition_frames} must be in [1, window_size-1="
                                 f"{window_size - 1}] with a reference image and 0 without one")
        for i, (prompt, image, frames, t, w) in enumerate(zip(prompts, images, num_frames, steps, guidance)):
            problem = self._request_problem(prompt, image, frames, t, w, conditioned)
            if problem:
                raise TI2VInputError(f"request {i}: {problem}", request=i, detail=problem)

    @staticmethod
    def _request_problem(prompt, image, frames, steps, guidance, conditioned: bool) -> str | None:
        if not isinstance(prompt, str) or not prompt.strip():
            return f"prompt must be a non-empty string, got {prompt!r}"
        if image is not None:
            arr = np.asarray(image)
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or min(arr.shape[:2]) < 8:
                return f"image must be an (H, W, 3) uint8 RGB array of at least 8x8, got {arr.dtype} {arr.shape}"
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames - conditioned < 1:
            return f"num_frames must leave at least one new frame, got {frames!r}"
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= 1000:
            return f"num_inference_steps must be an integer in [1, 1000], got {steps!r}"
        try:
            w = np.asarray(guidance, dtype=np.float64)
        except (TypeError, ValueError):
            return f"guidance_scale must be a number or per-frame numbers, got {guidance!r}"
        new = frames - conditioned
        if w.ndim > 1 or (w.ndim == 1 and len(w) != new) or not np.isfinite(w).all():
            return f"guidance_scale must be a finite number or {new} per-frame values (one per new frame), " \
                   f"got shape {w.shape}"
        return None

    @staticmethod
    def _per_request(value, batch: int, per_request: bool) -> list:
        return list(value) if per_request and isinstance(value, (list, tuple)) else [value] * batch

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, prompt: str | list[str], image: np.ndarray | list | None = None,
                 num_frames: int | list[int] = 16, num_inference_steps: int | list[int] = 10,
                 guidance_scale: float | np.ndarray | list = 9.0, resample_steps: int | list[int] = 0,
                 window_size: int = 16,
                 num_condition_frames: int | None = None, height: int | None = None, width: int | None = None,
                 negative_prompt: str = "", generator: torch.Generator | list | None = None,
                 output_type: str = "np", split_cfg: bool = False,
                 callback_on_step: Callable[[dict], None] | None = None,
                 noise_source: Callable[..., torch.Tensor] | None = None) -> TI2VPipelineOutput:
        """Generate one video per prompt.

        With a list of prompts, every other per-request argument may be a list of the same
        length (a per-frame guidance curve shared by all is a 1-D np.ndarray). `num_frames` counts
        the reference frame; the output's frame 0 is the decoded reference. Without an image,
        K = 0 and the pipeline is plain text-to-video. `split_cfg` runs the unconditional and
        conditional halves as two UNet calls (the original TI2V-Zero's cost; benchmarks only).
        `callback_on_step` receives, before each UNet evaluation of each request: request,
        window, step, pass, timestep, latents (x_t after replacement), queue, queue_noise.
        `noise_source(request, kind, window, step, pass, shape)` replaces every noise draw
        (kind "init": x_T of a window; "queue": a step's condition-frame noise; "renoise": a
        resample pass), e.g. to replay known noise; None draws from `generator`.
        """
        start = time.perf_counter()
        batched = isinstance(prompt, list)
        prompts = list(prompt) if batched else [prompt]
        batch = len(prompts)
        images = self._per_request(image, batch, batched)
        frames = self._per_request(num_frames, batch, batched)
        steps = self._per_request(num_inference_steps, batch, batched)
        guidance = self._per_request(guidance_scale, batch, batched)
        resample = self._per_request(resample_steps, batch, batched)
        generators = self._per_request(generator, batch, batched)
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        if num_condition_frames is None:
            num_condition_frames = window_size - 1 if images[0] is not None else 0
        self.check_inputs(prompts, images, frames, steps, guidance, resample, window_size,
                          num_condition_frames, height, width)
        if output_type not in ("np", "uint8", "latent"):
            raise TI2VInputError(f"output_type must be 'np', 'uint8' or 'latent', got {output_type!r}")
        device = self._execution_device

        cond, _ = self.encode_prompt(prompts)
        uncond, _ = self.encode_prompt([negative_prompt])
        references = None
        if images[0] is not None:
            references = self.encode_image(images, height, width).to(self.unet.dtype)
        latent_shape = (1, self.unet.config.in_channels, window_size, height // self.vae_scale_factor,
                        width // self.vae_scale_factor)
        jobs = []
        for i in range(batch):
            w = torch.tensor(np.broadcast_to(np.asarray(guidance[i], np.float32), (frames[i] - (references is not None),)),
                                device=device).to(self.unet.dtype)
            queue = None
            if references is not None:
                queue = references[i:i + 1, :, None].expand(-1, -1, num_condition_frames, -1, -1).contiguous()
            job = _Job(i, DDIMScheduler.from_config(self.scheduler.config), int(steps[i]), w, cond[i:i + 1],
                       uncond if bool((w > 1).any()) else None, queue, len(w), window_size, int(resample[i]),
                       generators[i] if generators[i] is not None else torch.Generator("cpu").manual_seed(0),
                       noise_source)
            job.start_window(latent_shape)
            jobs.append(job)
        encoded = time.perf_counter()

        unet_calls = 0
        with self.progress_bar(total=sum(j.num_windows * evaluations_per_window(len(j.timesteps), j.resample)
                                         for j in jobs)) as bar:
            while active := [j for j in jobs if not j.done]:
                lead = min(active, key=lambda j: (j.window_index, -j.timestep))
                group = [j for j in active if j.timestep == lead.timestep]
                unet_calls += self._denoise_group(group, lead.timestep, split_cfg, callback_on_step)
                bar.update(len(group))
        denoised = time.perf_counter()

        outputs = []
        for job in jobs:
            latents = job.new_latents()
            if references is not None:
                latents = torch.cat([references[job.index:job.index + 1, :, None], latents], dim=2)
            if output_type == "latent":
                outputs.append(latents)
                continue
            video = self.decode_latents(latents).cpu().numpy()
            outputs.append(np.round(video * 255).astype(np.uint8) if output_type == "uint8" else video)
        done = time.perf_counter()
        self.maybe_free_model_hooks()
        return TI2VPipelineOutput(frames=outputs, nfe=[j.nfe for j in jobs], unet_calls=unet_calls,
                                  timings={"encode_s": encoded - start, "denoise_s": denoised - encoded,
                                           "decode_s": done - denoised, "total_s": done - start})

    def _denoise_group(self, group: list[_Job], t: int, split_cfg: bool, callback) -> int:
        """One tick: every job in `group` is at timestep t; returns the UNet calls made."""
        inputs = []
        for job in group:
            latents, noise = job.model_input()
            inputs.append(latents)
            if callback is not None:
                callback({"request": job.index, "window": job.window_index, "step": job.step_index,
                          "pass": job.pass_index, "timestep": t, "latents": latents, "queue": job.queue,
                          "queue_noise": noise})
        guided = [job for job in group if job.uncond is not None]
        # CFG halves: [uncond of guided jobs] + [cond of every job], split or in one call.
        halves = [(torch.cat([inputs[group.index(j)] for j in guided]) if guided else None,
                   torch.cat([j.uncond for j in guided]) if guided else None),
                  (torch.cat(inputs), torch.cat([j.cond for j in group]))]
        halves = [h for h in halves if h[0] is not None]
        timestep = torch.tensor(t, device=inputs[0].device)
        if split_cfg:
            preds = [self.unet(x, timestep, encoder_hidden_states=e, return_dict=False)[0] for x, e in halves]
        else:
            x = torch.cat([h[0] for h in halves])
            pred = self.unet(x, timestep, encoder_hidden_states=torch.cat([h[1] for h in halves]), return_dict=False)[0]
            preds = list(pred.split([len(h[0]) for h in halves]))
        eps_uncond = dict(zip(map(id, guided), preds[0].split(1))) if guided else {}
        eps_cond = preds[-1].split(1)
        for job, eps in zip(group, eps_cond):
            job.advance(eps_uncond.get(id(job)), eps)
        return len(halves) if split_cfg else 1


# ---------------------------------------------------------------------------------------------
# The "ti2v" generator backend
# ---------------------------------------------------------------------------------------------
@register_generator("ti2v")
class TI2VGenerator:
    """`GeneratorBackend` on `TI2VZeroPipeline`: requests in, uint8 videos + NFE out.

    Requests are run `cfg.max_batch` at a time, sharing UNet calls; each is seeded by its own
    `seed`, so a video does not depend on what it was batched with.
    """

    def __init__(self, cfg):
        from argen_ray.ard.tiny_models import TINY_MODEL_NAME, tiny_t2v_path

        self.cfg = cfg
        tiny = cfg.model == "tiny"
        self.model_id = TINY_MODEL_NAME if tiny else cfg.model
        source = str(tiny_t2v_path()) if tiny else cfg.model
        if not tiny and cfg.model.startswith((".", "/", "~")) and not Path(cfg.model).expanduser().is_dir():
            raise TI2VModelError(f"generator.model: folder {cfg.model} does not exist")
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cpu":
            # torch sizes its thread pool by the machine, not by this generator's CPU share:
            # oversubscribed OpenMP threads spin-wait and run many times slower.
            torch.set_num_threads(max(1, int(cfg.num_cpus)))
        try:
            pipeline = TI2VZeroPipeline.from_pretrained(source, dtype=getattr(torch, cfg.dtype),
                                                        variant=cfg.variant)
        except Exception as exc:  # hub, folder and weight errors come in many types: name the model
            raise TI2VModelError(f"generator.model={cfg.model!r}: cannot load a ModelScope text-to-video model "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        self.pipeline = pipeline.to(device)
        self.pipeline.set_progress_bar_config(disable=True)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult] = []
        for start in range(0, len(requests), self.cfg.max_batch):
            results.extend(self._generate_batch(requests[start:start + self.cfg.max_batch], start))
        return results

    def _generate_batch(self, chunk: list[GenerationRequest], offset: int) -> list[GenerationResult]:
        cfg = self.cfg
        for i, request in enumerate(chunk):
            if not isinstance(request, GenerationRequest):
                raise TI2VInputError(f"generation request {offset + i}: expected a GenerationRequest, "
                                     f"got {type(request).__name__}")
        try:
            out = self.pipeline(
                [r.prompt for r in chunk], image=[r.image for r in chunk],
                num_frames=[r.num_frames or cfg.num_frames for r in chunk],
                num_inference_steps=[r.steps for r in chunk], guidance_scale=[r.guidance for r in chunk],
                generator=[torch.Generator("cpu").manual_seed(int(r.seed)) for r in chunk],
                resample_steps=[cfg.resample if r.resample is None else r.resample for r in chunk],
                window_size=cfg.window, num_condition_frames=cfg.condition_frames,
                height=cfg.height, width=cfg.width,
                negative_prompt=cfg.negative_prompt, output_type="uint8")
        except TI2VInputError as exc:
            if exc.request is None:
                raise
            bad = chunk[exc.request]
            raise TI2VInputError(f"generation request {bad.request_id or offset + exc.request}: {exc.detail}",
                                 offset + exc.request, exc.detail) from None
        timings = dict(out.timings, batch_requests=float(len(chunk)), unet_calls=float(out.unet_calls))
        return [GenerationResult(frames=frames, nfe=nfe, timings=dict(timings), model_id=self.model_id,
                                 request_id=r.request_id)
                for r, frames, nfe in zip(chunk, out.frames, out.nfe)]

    @torch.no_grad()
    def encode_state(self, prompts: list[str], images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """E_t: the CLIP text encoder's pooled output; E_r: the reference's VAE latent average-
        pooled to STATE_POOL x STATE_POOL and flattened (C * STATE_POOL**2 values)."""
        if len(prompts) != len(images) or not prompts:
            raise TI2VInputError(f"encode_state needs one image per prompt, got {len(prompts)} prompts and "
                                 f"{len(images)} images")
        for i, (prompt, image) in enumerate(zip(prompts, images)):
            problem = self.pipeline._request_problem(prompt, image, 2, 1, 1.0, True)
            if problem:
                raise TI2VInputError(f"state {i}: {problem}", i, problem)
        _, pooled = self.pipeline.encode_prompt(list(prompts))
        latents = self.pipeline.encode_image(images, self.cfg.height, self.cfg.width)
        pooled_latents = torch.nn.functional.adaptive_avg_pool2d(latents.float(), STATE_POOL).flatten(1)
        return pooled.float().cpu().numpy(), pooled_latents.cpu().numpy()
