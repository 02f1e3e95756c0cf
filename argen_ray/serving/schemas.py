"""Request and response bodies of the HTTP API, and the one error every bad request becomes.

Requests forbid unknown fields, so no request can smuggle in a server-side path (a
`checkpoint` or `image_path` field is a 422 naming that field); images travel as base64 bytes.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from argen_ray.errors import ArgenError


class RequestError(ArgenError, ValueError):
    """A bad request: answered with `status` and {"error": {"field", "message"}}.

    Picklable with its field and status, so it crosses from a Serve replica to the ingress.
    """

    def __init__(self, field: str | None, message: str, status: int = 422):
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.message, self.status = field, message, status

    def __reduce__(self):
        return type(self), (self.field, self.message, self.status)

    def body(self) -> dict:
        """The JSON body; text a client sent (a field name with a lone surrogate) is escaped so
        the answer can always be encoded."""
        def text(value):
            return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value

        return {"error": {"field": text(self.field), "message": text(self.message), "status": self.status}}


class _Request(BaseModel):
    # NaN and infinity (JSON's NaN, 1e400) are never a valid parameter.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _utf8_text(cls, value):
        """A JSON escape can smuggle a lone surrogate (\\ud800) into a str that no encoder,
        tokenizer or log can write: refused here, as the field's 422."""
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"holds a character that is not valid Unicode (a lone surrogate at position "
                                 f"{exc.start})") from None
        return value


IMAGE_DOC = "the face image: base64 of PNG or JPEG bytes (a data:image/...;base64, prefix is accepted)"


class PolicyRequest(_Request):
    image: str = Field(description=IMAGE_DOC)
    prompt: str = Field(description="the expression prompt the policy conditions on")


class ParamsOverride(_Request):
    """Generation parameters chosen by the caller; each given value must be in its action set,
    the missing ones come from the policy."""

    steps: int | None = Field(None, ge=1, le=10_000)
    alpha: float | None = Field(None, ge=-1e6, le=1e6)
    beta: float | None = Field(None, ge=-1e6, le=1e6)


class GenerateRequest(_Request):
    image: str = Field(description=IMAGE_DOC)
    emotion: str | None = Field(None, description="target emotion: runs the ASI prompt path (AU retrieval, VLM, "
                                                  "filter) for this face; e.g. surprise, fear, disgust")
    prompt: str | None = Field(None, description="the prompt itself (wins over the ASI prompt when both are given)")
    seed: int | None = Field(None, ge=0, lt=2 ** 31, description="generation seed (random when absent)")
    params: ParamsOverride | None = None
    num_frames: int | None = Field(None, ge=2, le=100_000, description="frames of the clip including the reference")
    score: bool = Field(False, description="also compute the rewards of the generated clip")


class HeadProbabilities(BaseModel):
    values: list[int | float]
    probs: list[float]


class GenerationParamsOut(BaseModel):
    steps: int
    alpha: float
    beta: float
    guidance: list[float] = Field(description="w_n per generated frame (the guidance curve)")


class PolicyDecision(BaseModel):
    action: dict[str, int] = Field(description="the chosen index of each head (steps, alpha, beta)")
    params: GenerationParamsOut
    probabilities: dict[str, HeadProbabilities]


class ASIProvenance(BaseModel):
    descriptions: list[str]
    raw_text: str
    kept_aus: list[str]
    dropped_aus: list[str]
    hallucination_rate: float
    fell_back: bool
    backend: str
    model: str | None
    identity_aus: dict[str, float] = Field(description="AU readings (0-5) of the uploaded face")


class GenerateResponse(BaseModel):
    video_mp4: str = Field(description="base64 of the mp4 clip; its first frame is the uploaded face")
    num_frames: int
    fps: int
    width: int
    height: int
    prompt: str
    emotion: str | None
    aus: dict[str, float] = Field(description="target AU intensities (0-1)")
    asi: ASIProvenance | None = Field(description="the ASI prompt path's record (None when the prompt was given)")
    action: dict[str, int] | None = Field(description="the policy's head indices (None when params set all three)")
    params: GenerationParamsOut
    params_source: str = Field(description="policy, request, or policy+request")
    policy: PolicyDecision | None
    seed: int
    nfe: int
    model_id: str
    rewards: dict | None
    timings: dict[str, float]


class ErrorBody(BaseModel):
    field: str | None
    message: str
    status: int


class ErrorResponse(BaseModel):
    error: ErrorBody
