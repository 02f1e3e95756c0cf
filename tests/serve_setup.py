"""Shared by the Serve tests: a policy checkpoint for the local preset's warp states, and a face."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from argen_ray.serving.policy import export_untrained_policy

ROOT = Path(__file__).resolve().parents[1]
WARP_ENCODER = "generator:warp:argen-ray/warp-dlib68-facs"
WARP_DIMS = (384, 142)      # MiniLM prompt embedding, landmark + colour reference embedding
# The shared test app's limits (conftest.py): small byte limit, short body timeout, fast batching.
MAX_IMAGE_BYTES = 200_000
BODY_TIMEOUT_S = 2
SHARED_APP_SETTINGS = (f"serve.max_image_bytes={MAX_IMAGE_BYTES}", f"serve.body_timeout_s={BODY_TIMEOUT_S}",
                       "serve.batch_wait_timeout_s=0.05", "serve.max_frames=24")


def write_policy(cfg, target: Path, seed: int = 0) -> Path:
    """A fresh network saved through training's export path, with training's metadata."""
    return export_untrained_policy(cfg, target, WARP_ENCODER, *WARP_DIMS, seed=seed)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(run_dir: Path, *overrides: str) -> dict:
    """The local preset's Serve app over 127.0.0.1 on a free port, serving `write_policy`'s
    policy from `run_dir`; stop it with `stop_app()`."""
    from argen_ray.config import load_config
    from argen_ray.serving.app import start

    cfg = load_config(ROOT / "configs" / "local.yaml",
                      [f"run_dir={run_dir}", f"serve.port={free_port()}", "ray.num_cpus=4", *overrides])
    policy_path = write_policy(cfg, cfg.path("policy", "policy.pt"))
    return {"url": start(cfg), "cfg": cfg, "policy_path": policy_path}


def stop_app() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def image_bytes(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    if isinstance(image, Image.Image):  # any PIL mode (16-bit gray, CMYK, ...)
        buf = io.BytesIO()
        image.save(buf, format=fmt)
        return buf.getvalue()

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def assert_error(response, status: int, field: str | None, *words: str):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["status"] == status, error
    for word in words:
        assert word in error["message"], error


def astronaut_face() -> np.ndarray:
    """A real face, 256x256 RGB (scikit-image's astronaut, cropped to the head)."""
    from skimage import data

    return data.astronaut()[0:256, 96:352].copy()
