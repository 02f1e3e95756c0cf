"""Online generation for one uploaded face: the ASI prompt path and the generator call.

- `PromptService` runs ASI (DESIGN 2.1) for a single identity frame, the upload itself: AU
  readings of the face, retrieval of the emotion's knowledge-base records, VLM fusion (in
  process, or on the shared VLMActor when `asi.vlm.use_ray`), hallucination filter. The record
  is the one `argen-ray prompts` writes (`PromptStage.record`).
- `GenerationService` generates the clip with the configured backend, scores it when asked,
  and encodes it as mp4.

Both are plain Python; the Serve ingress and generator deployment wrap them.
"""
from __future__ import annotations

import time

import numpy as np

from argen_ray.config import Config
from argen_ray.errors import ArgenError
from argen_ray.serving.schemas import RequestError

UPLOAD_ID = "upload"


class PromptService:
    """ASI for one uploaded face and one emotion."""

    def __init__(self, cfg: Config):
        from argen_ray.asi.au import get_au_estimator
        from argen_ray.asi.knowledge import load_knowledge_base
        from argen_ray.asi.pipeline import PromptStage
        from argen_ray.asi.retrieval import AURetriever, load_embedder

        self.cfg = cfg
        self.kb = load_knowledge_base(cfg.asi.knowledge_base)
        retriever = AURetriever(self.kb, load_embedder(cfg.asi.embedder), cfg.asi.top_k, cfg.asi.retrieval_temperature)
        self.stage = PromptStage(cfg, self.kb, retriever, progress=False)
        self.au_estimator = get_au_estimator(cfg.serve.au_backend)
        self._generate_text = None

    @property
    def emotions(self) -> list[str]:
        """Emotions with expression records to retrieve (the neutral class has none)."""
        return [name for name, entry in self.kb.emotions.items() if entry.records]

    def emotion(self, value: str) -> str:
        """The canonical emotion name of a request value (aliases allowed), else a 422."""
        from argen_ray.data.labels import LabelError, label_name

        try:
            name = label_name(value)
        except LabelError:
            name = None
        if name not in self.emotions:
            raise RequestError("emotion", f"unknown emotion {value!r}; known: {', '.join(self.emotions)}")
        return name

    def generate_text(self, requests):
        """The VLM call: the shared VLMActor on Ray (GPU clusters) or the backend in process."""
        if self._generate_text is None:
            vlm = self.cfg.asi.vlm
            if vlm.use_ray:
                from argen_ray.actors.vlm import actor_generate, start_vlm_actor

                self._generate_text = actor_generate(start_vlm_actor(self.cfg))
            else:
                from argen_ray.asi.vlm import build_vlm

                self._generate_text = build_vlm(vlm, seed=self.cfg.seed).generate
        return self._generate_text(requests)

    def compose(self, image: np.ndarray, emotion: str, seed: int) -> dict:
        """The prompt record for this face: prompt, target AUs and the ASI provenance."""
        from argen_ray.asi.identity import IdentityFrame
        from argen_ray.asi.pipeline import PendingPrompt
        from argen_ray.asi.vlm import VLMRequest

        reading = self.au_estimator.estimate(image[None])
        if not reading.face_found[0]:
            raise RequestError("image", f"no face found for the AU reading ({self.cfg.serve.au_backend} backend)")
        identity_aus = {k: round(float(v), 4) for k, v in reading.frame(0).items()}
        identity = IdentityFrame(identity_id=UPLOAD_ID, clip_id=UPLOAD_ID, subject=None, frame_index=0, image=image,
                                 mean_au=float(np.mean(list(identity_aus.values()))),
                                 clip_median_mean_au=float(np.mean(list(identity_aus.values()))), aus=identity_aus)
        candidates = self.stage.retriever.retrieve(emotion, np.random.default_rng(seed))
        request = VLMRequest(request_id=f"{UPLOAD_ID}__{emotion}", image=image, emotion=emotion,
                             emotion_noun=self.kb.emotion(emotion).noun, descriptions=[c.text for c in candidates],
                             seed=seed)
        texts = self.generate_text([request])
        record, _ = self.stage.record(PendingPrompt(identity, emotion, candidates, request), texts[0], UPLOAD_ID)
        record["identity_aus"] = identity_aus
        return record

    def info(self) -> dict:
        vlm = self.cfg.asi.vlm
        return {"emotions": self.emotions, "vlm": {"backend": vlm.backend,
                                                   "model": None if vlm.backend == "template" else vlm.model,
                                                   "on_ray": vlm.use_ray},
                "embedder": self.cfg.asi.embedder, "au_backend": self.cfg.serve.au_backend,
                "knowledge_base": self.kb.path.name}


class GenerationService:
    """The generator backend (loaded once), the reward scorer (on first use) and mp4 encoding."""

    def __init__(self, cfg: Config):
        from argen_ray.ard.generator import build_generator

        self.cfg = cfg
        self.generator = build_generator(cfg.generator)
        self._scorer = None

    @property
    def scorer(self):
        if self._scorer is None:
            from argen_ray.ard.rewards import RewardScorer

            self._scorer = RewardScorer(self.cfg.reward, max(self.cfg.generator.action_space.steps))
        return self._scorer

    def generate(self, image: np.ndarray, prompt: str, *, steps: int, alpha: float, beta: float, seed: int,
                 num_frames: int, emotion: str | None = None, aus: dict | None = None, score: bool = False) -> dict:
        """One clip: mp4 bytes, its guidance curve, NFE, model id, rewards (when `score`), timings."""
        from argen_ray.ard.generator import GenerationRequest
        from argen_ray.ard.guidance import guidance_curve
        from argen_ray.data.video import encode_mp4_bytes

        g = self.cfg.generator
        guidance = guidance_curve(num_frames - 1, alpha, beta, g.w_min, g.w_max)
        request = GenerationRequest(image=image, prompt=prompt, steps=steps, guidance=guidance, seed=seed,
                                    emotion=emotion, aus=dict(aus or {}), num_frames=num_frames,
                                    request_id=f"{UPLOAD_ID}#{seed}")
        t0 = time.perf_counter()
        try:
            result = self.generator.generate([request])[0]
        except RequestError:
            raise
        except ArgenError as exc:  # the backend cannot make this request (e.g. no target for warp)
            raise RequestError("request", f"generator {g.backend!r} cannot make this clip: {exc}") from None
        t1 = time.perf_counter()
        rewards = None
        if score:
            rewards = self.scorer.score(result.frames, image, steps, request.aus)
            rewards.pop("per_frame", None)
        t2 = time.perf_counter()
        mp4 = encode_mp4_bytes(result.frames, fps=g.fps)
        t3 = time.perf_counter()
        frames = result.frames
        return {"mp4": mp4, "num_frames": int(len(frames)), "height": int(frames.shape[1]),
                "width": int(frames.shape[2]), "fps": g.fps, "guidance": [float(w) for w in guidance],
                "nfe": int(result.nfe), "model_id": result.model_id, "rewards": rewards,
                "timings": {**{f"generator_{k}": float(v) for k, v in result.timings.items()},
                            "generate_s": t1 - t0, "score_s": t2 - t1, "encode_s": t3 - t2}}

    def info(self) -> dict:
        g = self.cfg.generator
        return {"backend": g.backend, "model_id": self.generator.model_id, "fps": g.fps,
                "default_num_frames": g.num_frames, "height": g.height, "width": g.width}
