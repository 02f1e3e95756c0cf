"""ARGen in miniature: a small text-to-video diffusion model fitted on CPU to demo-renderer clips.

The model has the ModelScope layout that the `ti2v` backend loads (`damo-vilab/text-to-video-ms-
1.7b`: AutoencoderKL, UNet3DConditionModel, CLIP text encoder + tokenizer, DDIM scheduler with
that model's noise schedule) and is saved with `save_pretrained`, so TI2V-Zero runs on it through
its ordinary `from_pretrained` path. Only the sizes differ: 64x64 pixels, a VAE with spatial
factor 8 (as the real model's; 8x8x8 latents), a one-level UNet, a 2-layer CLIP encoder
over a tokenizer that spells every knowledge-base word as one token.

Fitting (`MiniatureFit.run`) renders clips with the demo renderer for identities drawn from
`fit.identity_seed` (never the demo dataset's), every emotion, and pairs each clip with prompts
composed as ASI composes them (`miniature_data.py`; `fit.prompts`: the emotion's knowledge-base
records at their default intensities, or, "clip", two records adapted to the clip's own AU vector
so the adverbs say how strongly this clip shows each AU). Phases:
1. the VAE, on single frames (L2 reconstruction + an edge term + a small KL term) of the UNet's
   clips or, with `fit.vae_identities`, of 4-frame clips of that many people (the first
   `num_identities` the UNet's). Its latents' scale is then set so that scaled latents have unit
   variance (`scaling_factor`, as Stable Diffusion's);
2. the UNet and the text encoder, on `fit.window`-frame windows of the `num_identities` people's
   clips: v- (or epsilon) prediction
   on the DDPM schedule (`fit.prediction`, recorded in the saved scheduler's config), the prompt replaced by "" with probability `text_dropout` (so classifier-free
   guidance has an unconditional model), and a share of windows that open on a held frame
   (`static_prefix`), the way TI2V-Zero's queue starts as copies of the reference latent.
The EMA of the UNet and text encoder is what gets saved.
3. (`decoder_steps` > 0) the VAE decoder alone, on single frames of `decoder_identities` people:
   the encoder is frozen, so the latents the UNet learned keep their meaning (measured mixed on
   v3, default off; docs/generator.md).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from argen_ray.ard.miniature_data import ClipPool, frame_pool_settings, prompt_words, training_window
from argen_ray.ard.tiny_models import MINIATURE_MODEL_NAME, SCHEDULER_CONFIG, _tiny_tokenizer, cache_root
from argen_ray.errors import ArgenError
from argen_ray.io import atomic_path, atomic_write_json

CHECKPOINT = "checkpoint.pt"
FIT_RECORD = "fit.json"     # in the model folder: the fit's config, seed, steps, losses, time
SAMPLE_EMOTIONS = ("happy", "surprise", "disgust")
# Settings a resumed fit may change: more UNet steps continue the same fit exactly.
RESUMABLE_CHANGES = {"unet_steps", "decoder_steps", "checkpoint_every", "sample_every", "log_every", "out", "threads"}


class MiniatureFitError(ArgenError):
    """The miniature cannot be fitted (bad settings, a broken checkpoint)."""


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
def build_miniature(fit):
    """The untrained miniature as a TextToVideoSDPipeline (its model_index.json is ModelScope's),
    seeded by `fit.seed`."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from diffusers.pipelines.deprecated.text_to_video_synthesis import TextToVideoSDPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tiny_tokenizer(prompt_words())
    torch.manual_seed(fit.seed)
    factor = 2 ** (len(fit.vae_channels) - 1)
    latent = fit.size // factor
    width = fit.channels[0]
    levels = len(fit.channels)
    text_levels = levels if fit.up_cross_attention else levels - 1  # up blocks reading the text
    unet = UNet3DConditionModel(
        sample_size=latent, in_channels=fit.latent_channels, out_channels=fit.latent_channels, layers_per_block=1, block_out_channels=tuple(fit.channels),
        down_block_types=("CrossAttnDownBlock3D",) * (levels - 1) + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) * (levels - text_levels) + ("CrossAttnUpBlock3D",) * text_levels,
        cross_attention_dim=width, attention_head_dim=8, norm_num_groups=8)
    n = len(fit.vae_channels)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=fit.latent_channels, layers_per_block=1, block_out_channels=tuple(fit.vae_channels),
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        norm_num_groups=8, sample_size=fit.size)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=width, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    if fit.text_token_std is not None:  # own generator: the VAE's and UNet's initialisation stay as they were
        with torch.no_grad():
            text_encoder.get_input_embeddings().weight.normal_(
                0.0, fit.text_token_std, generator=torch.Generator().manual_seed(fit.seed))
    text_encoder.requires_grad_(fit.train_text_encoder)
    return TextToVideoSDPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                 scheduler=DDIMScheduler(**scheduler_config(fit)))


def scheduler_config(fit) -> dict:
    """text-to-video-ms-1.7b's DDIM schedule with the fit's prediction type."""
    return {**SCHEDULER_CONFIG, "prediction_type": fit.prediction}


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1)
    return x.movedim(-1, -3)


def decoder_parameters(vae) -> list:
    """What the decoder phase trains: everything after the latent (post-quant conv + decoder)."""
    return list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())


def edge_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of horizontal and vertical pixel differences. MSE alone lets the
    decoder blur eyes and mouth (a small share of the pixels), which is what the Haar face check
    reads; this term penalises the lost edges directly."""
    dx = (recon[..., :, 1:] - recon[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    dy = (recon[..., 1:, :] - recon[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


# ---------------------------------------------------------------------------------------------
# The fit
# ---------------------------------------------------------------------------------------------
class MiniatureFit:
    """Fits the miniature in `work_dir` (checkpoints, sample GIFs) and saves it to `out_dir`."""

    def __init__(self, fit, out_dir: str | os.PathLike | None = None, work_dir: str | os.PathLike | None = None,
                 tracking=None, progress: bool = True):
        self.fit = fit
        # where `generator.model: miniature` looks (not resolved through it: that would copy the
        # shipped weights there first, only for the fit to replace them)
        self.out_dir = Path(out_dir or fit.out or cache_root() / MINIATURE_MODEL_NAME)
        self.work_dir = Path(work_dir or self.out_dir.with_name(self.out_dir.name + ".work"))
        self.tracking = tracking        # the root Config when MLflow logging is wanted, else None
        self.progress = progress
        self.pipe = build_miniature(fit)
        self.ema_unet = copy.deepcopy(self.pipe.unet).requires_grad_(False)
        self.ema_text = copy.deepcopy(self.pipe.text_encoder).requires_grad_(False)
        self.vae_opt = torch.optim.AdamW(self.pipe.vae.parameters(), lr=fit.vae_lr)
        # (EMA copy, live module) of what the UNet phase trains: the text encoder only when not frozen
        self.ema_pairs = [(self.ema_unet, self.pipe.unet)] + (
            [(self.ema_text, self.pipe.text_encoder)] if fit.train_text_encoder else [])
        self.trained_parameters = [p for _, live in self.ema_pairs for p in live.parameters()]
        self.opt = torch.optim.AdamW(self.trained_parameters, lr=fit.lr, weight_decay=0.0)
        self.decoder_opt = torch.optim.AdamW(decoder_parameters(self.pipe.vae), lr=fit.vae_lr)
        self.step = 0                   # over all phases: vae_steps + unet_steps + decoder_steps
        self.losses: dict[str, list[float]] = {"vae": [], "unet": [], "decoder": []}
        self.mlflow_run_id: str | None = None
        self.seconds = 0.0
        self.rng = np.random.default_rng([fit.seed, 1])
        self.generator = torch.Generator().manual_seed(fit.seed)

    # -- checkpoints --------------------------------------------------------------------------
    def _state(self) -> dict:
        p = self.pipe
        return {"step": self.step, "vae": p.vae.state_dict(), "unet": p.unet.state_dict(),
                "text": p.text_encoder.state_dict(), "ema_unet": self.ema_unet.state_dict(),
                "ema_text": self.ema_text.state_dict(), "vae_opt": self.vae_opt.state_dict(),
                "opt": self.opt.state_dict(), "decoder_opt": self.decoder_opt.state_dict(), "scaling_factor": p.vae.config.scaling_factor,
                "losses": self.losses, "mlflow_run_id": self.mlflow_run_id, "seconds": self.seconds,
                "rng": self.rng.bit_generator.state, "generator": self.generator.get_state(),
                "config": self.fit.model_dump()}

    def save_checkpoint(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.work_dir / CHECKPOINT, suffix=".pt") as tmp:
            torch.save(self._state(), tmp)
        return self.work_dir / CHECKPOINT

    def load_checkpoint(self) -> bool:
        path = self.work_dir / CHECKPOINT
        if not path.is_file():
            return False
        try:
            state = torch.load(path, weights_only=False)
        except Exception as exc:
            raise MiniatureFitError(f"{path}: unreadable checkpoint ({type(exc).__name__}); delete it to start over") from None
        now = self.fit.model_dump()
        # A setting added after the checkpoint was written counts as its default there.
        written = {**type(self.fit)().model_dump(), **state["config"]}
        changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and written[k] != now[k])
        # More VAE steps continue the same fit while the UNet phase has not begun (a VAE checked first).
        if changed == ["vae_steps"] and not state["losses"]["unet"] and state["step"] <= now["vae_steps"]:
            changed = []
        if state["losses"].get("decoder") and written["unet_steps"] != now["unet_steps"]:
            changed.append("unet_steps (the decoder phase has begun)")
        if changed:
            raise MiniatureFitError(f"{path}: written with other generator.fit settings ({', '.join(changed)}); "
                                    f"delete {self.work_dir} to start over or restore them to resume")
        p = self.pipe
        p.vae.load_state_dict(state["vae"])
        p.unet.load_state_dict(state["unet"])
        p.text_encoder.load_state_dict(state["text"])
        self.ema_unet.load_state_dict(state["ema_unet"])
        self.ema_text.load_state_dict(state["ema_text"])
        self.vae_opt.load_state_dict(state["vae_opt"])
        self.opt.load_state_dict(state["opt"])
        if "decoder_opt" in state:
            self.decoder_opt.load_state_dict(state["decoder_opt"])
        p.vae.register_to_config(scaling_factor=state["scaling_factor"])
        self.step, self.losses = state["step"], {"decoder": [], **state["losses"]}
        self.mlflow_run_id, self.seconds = state["mlflow_run_id"], state["seconds"]
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        return True

    # -- phase 1: the VAE ---------------------------------------------------------------------
    def vae_step(self, pool: ClipPool, optimizer=None) -> float:
        """One step on single pool frames; with the decoder optimizer (phase 3) the encoder is
        frozen and only the decoder learns."""
        fit, vae = self.fit, self.pipe.vae
        train_encoder = optimizer is None
        clips = self.rng.integers(0, len(pool.frames), fit.batch_size * 2)
        frames = self.rng.integers(0, pool.frames.shape[1], len(clips))
        x = to_pixels(pool.frames[clips, frames])
        with torch.set_grad_enabled(train_encoder):
            posterior = vae.encode(x).latent_dist
            latents = posterior.sample(generator=self.generator)
        recon = vae.decode(latents).sample
        loss = F.mse_loss(recon, x) + fit.vae_edge_weight * edge_loss(recon, x)
        if train_encoder:
            loss = loss + 1e-6 * posterior.kl().mean()
        optimizer = optimizer or self.vae_opt
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def encode_pool(self, pool: ClipPool) -> torch.Tensor:
        """(N, C, F, h, w) VAE latent means of every pool frame, unscaled."""
        vae = self.pipe.vae.eval()
        n, f = pool.frames.shape[:2]
        flat = pool.frames.reshape(n * f, *pool.frames.shape[2:])
        latents = torch.cat([vae.encode(to_pixels(flat[i:i + 256])).latent_dist.mode() for i in range(0, len(flat), 256)])
        return latents.view(n, f, *latents.shape[1:]).transpose(1, 2).contiguous()

    # -- phase 2: UNet + text encoder ---------------------------------------------------------
    def unet_step(self, pool: ClipPool, latents: torch.Tensor, scheduler) -> float:
        fit, pipe = self.fit, self.pipe
        clips = self.rng.integers(0, len(pool.frames), fit.batch_size)
        windows = np.stack([training_window(self.rng, fit.clip_frames, fit.window, fit.static_prefix, fit.frame_stride) for _ in clips])
        x0 = latents[clips[:, None], :, windows].permute(0, 2, 1, 3, 4) * pipe.vae.config.scaling_factor
        per_clip = fit.prompts == "clip"
        prompts = ["" if self.rng.random() < fit.text_dropout else pool.prompt(int(c), self.rng, per_clip) for c in clips]
        ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        text = pipe.text_encoder(ids).last_hidden_state
        noise = torch.randn(x0.shape, generator=self.generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(clips),), generator=self.generator)
        pred = pipe.unet(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=text).sample
        target = noise if fit.prediction == "epsilon" else scheduler.get_velocity(x0, noise, t)
        loss = F.mse_loss(pred, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trained_parameters, 1.0)
        self.opt.step()
        # EMA with warm-up, so a short fit's average is not mostly its random initialisation.
        k = len(self.losses["unet"])
        decay = min(fit.ema_decay, (1 + k) / (10 + k))
        with torch.no_grad():
            for ema, live in self.ema_pairs:
                torch._foreach_lerp_(list(ema.parameters()), list(live.parameters()), 1 - decay)
        return float(loss.detach())

    def fitted_pipeline(self):
        """The fitted model (EMA weights) as a TextToVideoSDPipeline."""
        from diffusers import DDIMScheduler
        from diffusers.pipelines.deprecated.text_to_video_synthesis import TextToVideoSDPipeline

        return TextToVideoSDPipeline(vae=self.pipe.vae.eval(), text_encoder=self.ema_text.eval(),
                                     tokenizer=self.pipe.tokenizer, unet=self.ema_unet.eval(),
                                     scheduler=DDIMScheduler(**scheduler_config(self.fit)))

    @torch.no_grad()
    def write_samples(self, pool: ClipPool, path: Path) -> Path:
        """A GIF: per sample emotion, TI2V-Zero (T=10, w=9) from a pool clip's first frame, beside
        the real clip."""
        from argen_ray.ard.ti2v import TI2VZeroPipeline
        from argen_ray.data.video import write_gif

        p = self.fitted_pipeline()
        ti2v = TI2VZeroPipeline(vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer, unet=p.unet,
                                scheduler=p.scheduler)
        ti2v.set_progress_bar_config(disable=True)
        rows = []
        for k, emotion in enumerate(SAMPLE_EMOTIONS):
            c = pool.emotions.index(emotion)
            out = ti2v(pool.prompt(c, np.random.default_rng(k), self.fit.prompts == "clip"), image=pool.frames[c, 0],
                       num_frames=self.fit.clip_frames, num_inference_steps=10, guidance_scale=9.0, window_size=self.fit.window, height=self.fit.size,
                       width=self.fit.size, generator=torch.Generator().manual_seed(k), output_type="uint8")
            rows.append(np.concatenate([pool.frames[c], out.frames[0]], axis=2))
        self.pipe.unet.train()
        return write_gif(path, np.concatenate(rows, axis=1), fps=8)

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> dict:
        """Fit (resuming from the work folder's checkpoint) and save the model; returns the record."""
        from diffusers import DDPMScheduler
        from tqdm.auto import tqdm

        fit = self.fit
        torch.set_num_threads(fit.threads)
        resumed = self.load_checkpoint()
        pool = ClipPool.load_or_render(fit, self.work_dir / "clips.npz", self.progress)
        mlflow = self._start_mlflow()
        total = fit.vae_steps + fit.unet_steps + fit.decoder_steps
        scheduler = DDPMScheduler(**{k: v for k, v in scheduler_config(fit).items() if k != "set_alpha_to_one"})
        latents = vae_pool = decoder_pool = None
        bar = tqdm(total=total, initial=self.step, desc="fit miniature", disable=not self.progress)
        clock = time.perf_counter()
        try:
            while self.step < total:
                phase = "vae" if self.step < fit.vae_steps else "unet" if self.step < fit.vae_steps + fit.unet_steps \
                    else "decoder"
                if phase == "vae" and vae_pool is None:
                    vae_pool = pool if fit.vae_identities is None else self.frame_pool(fit.vae_identities)
                if phase == "unet" and latents is None:
                    latents = self._prepare_latents(pool)
                if phase == "decoder" and decoder_pool is None:
                    decoder_pool = self.frame_pool(fit.decoder_identities)
                loss = (self.vae_step(vae_pool) if phase == "vae" else self.unet_step(pool, latents, scheduler)
                        if phase == "unet" else self.vae_step(decoder_pool, self.decoder_opt))
                self.losses[phase].append(loss)
                self.step += 1
                bar.update(1)
                if self.step % fit.log_every == 0:
                    recent = float(np.mean(self.losses[phase][-fit.log_every:]))
                    bar.set_postfix(phase=phase, loss=f"{recent:.4f}")
                    if mlflow:
                        mlflow.log_metric(f"{phase}_loss", recent, step=self.step)
                if self.step % fit.checkpoint_every == 0 or self.step == total:
                    self.seconds += time.perf_counter() - clock
                    clock = time.perf_counter()
                    self.save_checkpoint()
                if phase != "vae" and (self.step % fit.sample_every == 0 or self.step == total):
                    gif = self.write_samples(pool, self.work_dir / "samples" / f"step-{self.step:06d}.gif")
                    if mlflow:
                        mlflow.log_artifact(str(gif), "samples")
        except KeyboardInterrupt:  # keep every finished step: the rerun resumes here
            self.seconds += time.perf_counter() - clock
            self.save_checkpoint()
            raise
        finally:
            bar.close()
        record = self._save_model(resumed)
        if mlflow:
            mlflow.log_metrics({"fit_seconds": record["seconds"], "final_unet_loss": record["final_unet_loss"] or 0.0})
            mlflow.log_dict(record, FIT_RECORD)
            mlflow.end_run()
        return record

    def frame_pool(self, identities: int) -> ClipPool:
        """The single-frame pool of `identities` people, cached in the work folder."""
        return ClipPool.load_or_render(frame_pool_settings(self.fit, identities),
                                       self.work_dir / f"frames-{identities}.npz", self.progress)

    def _prepare_latents(self, pool: ClipPool) -> torch.Tensor:
        latents = self.encode_pool(pool)
        if not self.losses["unet"]:  # first entry into phase 2: fix the latent scale once
            self.pipe.vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
        return latents

    def _save_model(self, resumed: bool) -> dict:
        fit = self.fit
        tail = self.losses["unet"][-200:]
        record = {"config": fit.model_dump(), "seed": fit.seed, "steps": self.step, "seconds": round(self.seconds, 1),
                  "threads": fit.threads, "resumed": resumed,
                  "final_vae_loss": float(np.mean(self.losses["vae"][-200:])) if self.losses["vae"] else None,
                  "final_unet_loss": float(np.mean(tail)) if tail else None,
                  "final_decoder_loss": float(np.mean(self.losses["decoder"][-200:])) if self.losses["decoder"] else None,
                  "scaling_factor": self.pipe.vae.config.scaling_factor,
                  "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in
                                 (("unet", self.ema_unet), ("vae", self.pipe.vae), ("text_encoder", self.ema_text))},
                  "command": "argen-ray fit-generator (generator.fit as in config)"}
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir.with_name(f".{self.out_dir.name}.saving")
        shutil.rmtree(tmp, ignore_errors=True)
        self.fitted_pipeline().save_pretrained(tmp)
        atomic_write_json(tmp / FIT_RECORD, record)
        old = self.out_dir.with_name(f".{self.out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.out_dir.exists():
            os.rename(self.out_dir, old)
        os.rename(tmp, self.out_dir)
        shutil.rmtree(old, ignore_errors=True)
        return record

    def _start_mlflow(self):
        if self.tracking is None or not self.tracking.tracking.enabled:
            return None
        import mlflow

        from argen_ray.ard.training import ensure_experiment

        mlflow.set_experiment(experiment_id=ensure_experiment(self.tracking))
        nested = mlflow.active_run() is not None
        if self.mlflow_run_id:
            mlflow.start_run(run_id=self.mlflow_run_id, nested=nested)
        else:
            self.mlflow_run_id = mlflow.start_run(run_name="fit-generator", nested=nested).info.run_id
            mlflow.log_params({f"generator.fit.{k}": json.dumps(v) if isinstance(v, list) else v
                               for k, v in self.fit.model_dump().items()})
        return mlflow
