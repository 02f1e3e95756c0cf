"""The Ray Serve application: a FastAPI ingress over a batched policy deployment and a
generator deployment (DESIGN 1, "Serve").

Routes: `GET /healthz`, `GET /v1/info`, `POST /v1/policy`, `POST /v1/generate`, and FastAPI's
`/docs` and `/openapi.json`. Every error, FastAPI's own included (404, 405, bad JSON), is
{"error": {"field", "message", "status"}}: a bad request a 4xx, a body that does not arrive
within `serve.body_timeout_s` a 408, a deployment that does not answer within
`serve.request_timeout_s` a 504, a full queue a 503, and anything unforeseen a 500 in the same
shape. One bad state never fails the other requests of its policy batch.

Deployments (replicas, autoscaling, CPUs/GPUs from the `serve` config section):
- `PolicyDeployment` — `PolicyService`; /v1/policy states are batched with `serve.batch`.
- `GeneratorDeployment` — `GenerationService`; holds `serve.generator_num_gpus` GPUs.
- `Ingress` — image checks and the ASI prompt path (`PromptService`; its VLM runs in process or
  on the shared VLMActor).
`build_app(cfg)` resolves the policy (checkpoint or MLflow) before anything starts, so a
missing policy is a clear error, not a crash-looping replica.
"""

import asyncio
import base64
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from argen_ray.config import Config
from argen_ray.errors import ArgenError, root_message
from argen_ray.serving.schemas import (ErrorResponse, GenerateRequest, GenerateResponse, PolicyDecision, PolicyRequest,
                                       RequestError)

API_VERSION = "v1"
ERROR_RESPONSES = {code: {"model": ErrorResponse} for code in (408, 413, 422, 503, 504)}

app = FastAPI(title="argen-ray", version=API_VERSION,
              description="ARGen online: the trained step/guidance policy and AU-grounded expression video "
                          "generation for one face image.")


# ---------------------------------------------------------------------------------------------
# Errors -> JSON naming the field
# ---------------------------------------------------------------------------------------------
@app.exception_handler(RequestError)
async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    field = "body" if err.get("type") == "json_invalid" else ".".join(loc) or "body"
    message = {"missing": "is required", "extra_forbidden": "is not a field of this request (requests never "
                                                            "name server-side paths or settings)",
               "json_invalid": "is not valid JSON"}.get(err.get("type"), err.get("msg", "is invalid"))
    return JSONResponse(RequestError(field, message).body(), status_code=422)


@app.exception_handler(ArgenError)
async def _argen_error(request: Request, exc: ArgenError) -> JSONResponse:
    return JSONResponse(RequestError(None, str(exc)).body(), status_code=422)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own errors (404, 405, a body it cannot parse: invalid UTF-8, JSON nested too
    deep) in the documented shape instead of {"detail": ...}."""
    field = "body" if exc.status_code == 400 else None
    return JSONResponse(RequestError(field, str(exc.detail), status=exc.status_code).body(),
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


@app.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    error = RequestError(None, f"internal error ({type(exc).__name__}); the server log has the details", status=500)
    return JSONResponse(error.body(), status_code=500)


class BodyGuard:
    """ASGI middleware that reads the whole body before any route sees it: over
    `max_body_bytes` (declared in Content-Length or as it streams in) is a 413, not all there
    within `body_timeout_s` a 408; the route then reads the body from memory."""

    def __init__(self, asgi_app):
        self.app = asgi_app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope["app"].state  # the app Serve runs (a copy of this module's `app`)
        limit = getattr(state, "max_body_bytes", None)
        timeout = getattr(state, "body_timeout_s", None)
        length = dict(scope.get("headers") or []).get(b"content-length", b"").decode("latin-1")
        if limit and length.isdigit() and int(length) > limit:
            return await self._refuse(scope, receive, send, self._too_large(length, limit))
        chunks, size = [], 0

        async def read_body() -> dict | None:
            nonlocal size
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message  # the client went away: hand that on
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if limit and size > limit:
                    raise self._too_large(f"over {size}", limit)
                if not message.get("more_body"):
                    return None

        try:
            early = await asyncio.wait_for(read_body(), timeout)
        except asyncio.TimeoutError:
            error = RequestError("body", f"only {size} bytes of the body arrived within {timeout:g} s "
                                         "(serve.body_timeout_s)", status=408)
            return await self._refuse(scope, receive, send, error)
        except RequestError as error:
            return await self._refuse(scope, receive, send, error)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if early is not None:
                return early
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    @staticmethod
    def _too_large(length: str, limit: int) -> RequestError:
        return RequestError("image", f"request body is {length} bytes; the limit is {limit} "
                                     "(serve.max_image_bytes as base64 plus the other fields)", status=413)

    @staticmethod
    async def _refuse(scope, receive, send, error: RequestError) -> None:
        await JSONResponse(error.body(), status_code=error.status, headers={"connection": "close"})(scope, receive, send)


app.add_middleware(BodyGuard)


def _config(config: dict) -> Config:
    return Config.model_validate(config)


# ---------------------------------------------------------------------------------------------
# Deployments
# ---------------------------------------------------------------------------------------------
@serve.deployment(name="policy")
class PolicyDeployment:
    def __init__(self, config: dict, source: dict):
        from argen_ray.serving.policy import PolicyService, PolicySource

        cfg = _config(config)
        self.service = PolicyService(cfg, PolicySource(**source))
        self.decide_batch.set_max_batch_size(cfg.serve.max_batch_size)
        self.decide_batch.set_batch_wait_timeout_s(cfg.serve.batch_wait_timeout_s)
        self.requests = self.batches = self.largest_batch = 0  # reported by /v1/info

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def decide_batch(self, states: list[tuple]) -> list:
        prompts, images = [s[0] for s in states], [s[1] for s in states]
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(states))
        try:
            return await asyncio.to_thread(self.service.decide, prompts, images)
        except Exception:  # noqa: BLE001
            # One bad state must not fail the batch, whatever it raises: retry one by one,
            # errors as values (each request gets its own answer).
            return [await asyncio.to_thread(self._decide_one, p, i) for p, i in zip(prompts, images)]

    def _decide_one(self, prompt, image):
        try:
            return self.service.decide([prompt], [image])[0]
        except Exception as exc:  # noqa: BLE001 - this state's own failure, answered as its 422
            what = str(exc) if isinstance(exc, ArgenError) else f"{type(exc).__name__}: {exc}"
            return RequestError(None, f"state encoder {self.service.encoder.encoder_id} cannot encode this "
                                      f"request: {what}")

    async def decide(self, prompt: str, image) -> dict:
        self.requests += 1
        result = await self.decide_batch((prompt, image))
        if isinstance(result, Exception):
            raise result
        return result

    def info(self) -> dict:
        return {**self.service.info(), "served": {"requests": self.requests, "batches": self.batches,
                                                  "largest_batch": self.largest_batch}}


@serve.deployment(name="generator")
class GeneratorDeployment:
    def __init__(self, config: dict):
        from argen_ray.serving.generation import GenerationService

        self.service = GenerationService(_config(config))

    async def generate(self, image, prompt: str, **options) -> dict:
        return await asyncio.to_thread(self.service.generate, image, prompt, **options)

    def info(self) -> dict:
        return self.service.info()


@serve.deployment(name="ingress")
@serve.ingress(app)
class Ingress:
    def __init__(self, config: dict, policy, generator):
        from argen_ray.serving.generation import PromptService

        self.cfg = _config(config)
        self.policy, self.generator = policy, generator
        self.prompts = PromptService(self.cfg)
        # base64 grows 4/3; the other fields of a request are small.
        app.state.max_body_bytes = self.cfg.serve.max_image_bytes * 4 // 3 + 64_000
        app.state.body_timeout_s = self.cfg.serve.body_timeout_s
        self._action_space: dict | None = None

    # -- helpers ------------------------------------------------------------------------------
    async def _await(self, response, what: str):
        """A deployment's answer, bounded in time; a full queue or a timeout is a clean 503/504."""
        from ray.serve.exceptions import BackPressureError

        timeout = self.cfg.serve.request_timeout_s
        try:
            return await asyncio.wait_for(response, timeout)
        except asyncio.TimeoutError:
            response.cancel()
            raise RequestError(None, f"{what} did not answer within {timeout} s (serve.request_timeout_s)",
                               status=504) from None
        except BackPressureError:
            raise RequestError(None, f"{what} is at capacity (serve.max_queued_requests); retry later",
                               status=503) from None

    def _check_prompt(self, prompt: str) -> str:
        limit = self.cfg.serve.max_prompt_chars
        if not prompt.strip():
            raise RequestError("prompt", "is empty")
        if len(prompt) > limit:
            raise RequestError("prompt", f"has {len(prompt)} characters; the limit is {limit} (serve.max_prompt_chars)")
        return prompt.strip()

    def _face_image(self, data: str):
        from argen_ray.serving.images import decode_image, require_face

        image = decode_image(data, self.cfg.serve)
        try:
            require_face(image)
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - the detector choking on this upload is its 422
            raise RequestError("image", f"the face detector cannot read this image ({type(exc).__name__}: "
                                        f"{exc})") from None
        return image

    # -- routes -------------------------------------------------------------------------------
    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get(f"/{API_VERSION}/info")
    async def info(self) -> dict:
        """Model ids, the served checkpoint, the action space, the request limits and batching."""
        policy, generator = await asyncio.gather(self._await(self.policy.info.remote(), "policy"),
                                                 self._await(self.generator.info.remote(), "generator"))
        self._action_space = policy["action_space"]
        s = self.cfg.serve
        return {"api": API_VERSION, "policy": policy, "generator": generator, "asi": self.prompts.info(),
                "limits": {"max_image_bytes": s.max_image_bytes, "max_image_pixels": s.max_image_pixels,
                           "min_image_side": s.min_image_side, "max_frames": s.max_frames,
                           "max_prompt_chars": s.max_prompt_chars, "image_formats": ["PNG", "JPEG"]},
                "batching": {"max_batch_size": s.max_batch_size, "batch_wait_timeout_s": s.batch_wait_timeout_s}}

    @app.post(f"/{API_VERSION}/policy", response_model=PolicyDecision, responses=ERROR_RESPONSES)
    async def decide(self, body: PolicyRequest) -> dict:
        """The policy's greedy action for (face, prompt): head indices, decoded T, alpha, beta,
        the guidance curve, and each head's probabilities."""
        prompt = self._check_prompt(body.prompt)
        image = await asyncio.to_thread(self._face_image, body.image)
        return await self._await(self.policy.decide.remote(prompt, image), "policy")

    @app.post(f"/{API_VERSION}/generate", response_model=GenerateResponse, responses=ERROR_RESPONSES)
    async def generate(self, body: GenerateRequest) -> dict:
        """ASI prompt (for an emotion) + policy + generator -> an mp4 clip with its provenance."""
        from argen_ray.serving.policy import check_override

        # 1. cheap field checks first
        if not body.emotion and body.prompt is None:
            raise RequestError("emotion", "give an emotion (runs the ASI prompt path) or a prompt")
        emotion = self.prompts.emotion(body.emotion) if body.emotion else None
        prompt = self._check_prompt(body.prompt) if body.prompt is not None else None
        num_frames = body.num_frames or self.cfg.generator.num_frames
        if num_frames > self.cfg.serve.max_frames:
            raise RequestError("num_frames", f"{num_frames} frames requested; the limit is {self.cfg.serve.max_frames} "
                                             "(serve.max_frames)")
        override = body.params.model_dump(exclude_none=True) if body.params else {}
        if self._action_space is None:
            self._action_space = (await self._await(self.policy.info.remote(), "policy"))["action_space"]
        space = self._action_space
        check_override(override, {k: space[k] for k in ("steps", "alpha", "beta")})
        seed = body.seed if body.seed is not None else secrets.randbelow(2 ** 31)
        # 2. the image, then the prompt
        image = await asyncio.to_thread(self._face_image, body.image)
        record = None
        if prompt is None:
            record = await asyncio.to_thread(self.prompts.compose, image, emotion, seed)
            prompt, aus = record["prompt"], record["aus"]
        else:
            aus = self.prompts.kb.prototype_aus(emotion) if emotion else {}
        # 3. the policy (unless the caller fixed all three parameters), then the generator
        decision = None
        if len(override) < 3:
            decision = await self._await(self.policy.decide.remote(prompt, image), "policy")
        chosen = {**({k: decision["params"][k] for k in ("steps", "alpha", "beta")} if decision else {}), **override}
        clip = await self._await(self.generator.generate.remote(
            image, prompt, steps=int(chosen["steps"]), alpha=float(chosen["alpha"]), beta=float(chosen["beta"]),
            seed=seed, num_frames=num_frames, emotion=emotion, aus=aus, score=body.score), "generator")
        source = "request" if not decision else ("policy+request" if override else "policy")
        asi = None
        if record is not None:
            asi = {k: record[k] for k in ("descriptions", "raw_text", "kept_aus", "dropped_aus", "hallucination_rate",
                                          "fell_back", "backend", "model", "identity_aus")}
        return {"video_mp4": base64.b64encode(clip["mp4"]).decode("ascii"), "num_frames": clip["num_frames"],
                "fps": clip["fps"], "width": clip["width"], "height": clip["height"], "prompt": prompt,
                "emotion": emotion, "aus": aus, "asi": asi, "action": decision["action"] if decision else None,
                "params": {"steps": int(chosen["steps"]), "alpha": float(chosen["alpha"]),
                           "beta": float(chosen["beta"]), "guidance": clip["guidance"]},
                "params_source": source, "policy": decision, "seed": seed, "nfe": clip["nfe"],
                "model_id": clip["model_id"], "rewards": clip["rewards"], "timings": clip["timings"]}


# ---------------------------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------------------------
def _scaling(replicas: int, autoscaling) -> dict:
    if autoscaling is None:
        return {"num_replicas": replicas}
    return {"autoscaling_config": autoscaling.model_dump()}


def build_app(cfg: Config):
    """The bound Serve application for `cfg` (run it with `serve.run` or `serve/config.yaml`).

    Relative paths become absolute here, where they were meant, so replicas started elsewhere
    read the same files; the policy is resolved (checkpoint or MLflow) before anything starts.
    """
    from pathlib import Path

    from argen_ray.serving.policy import resolve_policy_source

    cfg = cfg.model_copy(deep=True)
    cfg.run_dir = Path(cfg.run_dir).resolve()
    source = resolve_policy_source(cfg)
    source_dict = {"path": str(Path(source.path).resolve()), "origin": source.origin,
                   "mlflow_run_id": source.mlflow_run_id}
    s, config = cfg.serve, cfg.model_dump(mode="json")

    def actor_options(num_cpus: float, num_gpus: float, group: str) -> dict:
        options = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        resources = cfg.ray.node_group_resources(group)
        return {**options, "resources": resources} if resources else options

    policy = PolicyDeployment.options(
        **_scaling(s.policy_replicas, s.policy_autoscaling), max_ongoing_requests=2 * s.max_batch_size,
        max_queued_requests=s.max_queued_requests,
        ray_actor_options=actor_options(s.policy_num_cpus, s.policy_num_gpus, "gpu" if s.policy_num_gpus else "cpu"),
    ).bind(config, source_dict)
    generator = GeneratorDeployment.options(
        **_scaling(s.generator_replicas, s.generator_autoscaling), max_ongoing_requests=s.generator_max_ongoing,
        max_queued_requests=s.max_queued_requests,
        ray_actor_options=actor_options(s.generator_num_cpus, s.generator_num_gpus, "gpu"),
    ).bind(config)
    return Ingress.options(num_replicas=s.ingress_replicas, max_ongoing_requests=s.ingress_max_ongoing,
                           ray_actor_options=actor_options(s.ingress_num_cpus, 0.0, "cpu"),
                           ).bind(config, policy, generator)


def start(cfg: Config, blocking: bool = False):
    """Start (or join) Ray, start Serve on serve.host:serve.port, and deploy the app; returns the
    base URL."""
    from argen_ray.runtime import init_ray

    s = cfg.serve
    application = build_app(cfg)  # fails fast on a missing policy, before Ray starts
    init_ray(cfg)
    serve.start(http_options={"host": s.host, "port": s.port})
    try:
        serve.run(application, name=s.app_name, route_prefix=s.route_prefix, blocking=blocking)
    except RuntimeError as exc:  # a replica's constructor failed: its message is the last line
        raise ArgenError(f"the Serve app {s.app_name!r} failed to start: {root_message(exc)}") from None
    return f"http://{s.host}:{s.port}{s.route_prefix.rstrip('/')}"
