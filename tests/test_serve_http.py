"""The Serve app over real HTTP on 127.0.0.1 with the local preset: every route, every bad input.

One app for the whole module (Serve start takes tens of seconds on 2 cores); its policy is
`serve_setup.write_policy`'s (a fresh network saved through training's export path).
"""
from __future__ import annotations

import base64
import io
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from serve_setup import ROOT, WARP_ENCODER, astronaut_face, write_policy

from argen_ray.config import load_config
from argen_ray.serving.images import encode_image

pytestmark = pytest.mark.slow

MAX_IMAGE_BYTES = 200_000
MAX_PIXELS = 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return astronaut_face()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import ray
    from ray import serve

    from argen_ray.serving.app import start

    run = tmp_path_factory.mktemp("serve-run")
    cfg = load_config(ROOT / "configs" / "local.yaml",
                      [f"run_dir={run}", f"serve.port={free_port()}", "ray.num_cpus=4",
                       f"serve.max_image_bytes={MAX_IMAGE_BYTES}", f"serve.max_image_pixels={MAX_PIXELS}",
                       "serve.batch_wait_timeout_s=0.05", "serve.max_frames=24"])
    policy_path = write_policy(cfg, cfg.path("policy", "policy.pt"))
    url = start(cfg)
    yield {"url": url, "cfg": cfg, "policy_path": policy_path}
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def client(server):
    import httpx

    with httpx.Client(base_url=server["url"], timeout=300) as c:
        yield c


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def image_bytes(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def assert_error(response, status: int, field: str | None, *words: str):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["status"] == status, error
    for word in words:
        assert word in error["message"], error


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------
def test_health_docs_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/v1/info", "/v1/policy", "/v1/generate"} <= set(paths)


def test_info_names_models_checkpoint_action_space_and_limits(client, server):
    info = client.get("/v1/info").json()
    policy = info["policy"]
    assert policy["checkpoint"] == str(server["policy_path"].resolve()) and policy["origin"] == "run_dir"
    assert policy["state_encoder"] == WARP_ENCODER
    space = server["cfg"].generator.action_space
    assert policy["action_space"]["steps"] == space.steps and policy["action_space"]["alpha"] == space.alpha
    assert info["generator"]["backend"] == "warp" and info["generator"]["model_id"] == "argen-ray/warp-dlib68-facs"
    assert info["asi"]["vlm"]["backend"] == "template" and "surprise" in info["asi"]["emotions"]
    assert info["limits"]["max_image_bytes"] == MAX_IMAGE_BYTES and info["limits"]["max_frames"] == 24


def test_policy_returns_the_policys_own_greedy_decision(client, server, face):
    """The served answer is what the checkpoint decides on the warp backend's state embedding."""
    from argen_ray.ard.generator import build_generator
    from argen_ray.ard.guidance import ActionSpace
    from argen_ray.ard.policy import load_policy

    prompt = "the brows rise and the jaw drops"
    got = client.post("/v1/policy", json={"image": encode_image(face), "prompt": prompt})
    assert got.status_code == 200, got.text
    body = got.json()
    cfg = server["cfg"]
    text, image = build_generator(cfg.generator).encode_state([prompt], [face])
    actions, probs = load_policy(server["policy_path"]).act(text, image)
    assert body["action"] == {"steps": int(actions[0, 0]), "alpha": int(actions[0, 1]), "beta": int(actions[0, 2])}
    want = ActionSpace.from_config(cfg.generator).decode(actions[0])
    assert body["params"]["steps"] == want.steps and body["params"]["alpha"] == want.alpha
    np.testing.assert_allclose(body["params"]["guidance"], want.guidance, rtol=1e-6)
    assert len(body["params"]["guidance"]) == cfg.generator.num_frames - 1
    for h, head in enumerate(("steps", "alpha", "beta")):
        np.testing.assert_allclose(body["probabilities"][head]["probs"], probs[h][0], rtol=1e-4, atol=1e-6)
        assert int(np.argmax(body["probabilities"][head]["probs"])) == body["action"][head]
    assert body["probabilities"]["steps"]["values"] == cfg.generator.action_space.steps


def test_concurrent_policy_requests_are_batched(client, face):
    jpeg = "data:image/jpeg;base64," + b64(image_bytes(face, "JPEG"))  # JPEG as a data URL works too
    prompts = [f"prompt {i}: the eyes widen" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda p: client.post("/v1/policy", json={"image": jpeg, "prompt": p}), prompts))
    assert [a.status_code for a in answers] == [200] * 8
    served = client.get("/v1/info").json()["policy"]["served"]
    assert served["largest_batch"] > 1 and served["batches"] < served["requests"]


def read_mp4(text: str, tmp_path: Path) -> np.ndarray:
    from argen_ray.data.video import read_video

    path = tmp_path / "clip.mp4"
    path.write_bytes(base64.b64decode(text))
    return read_video(path)


def test_generate_from_an_emotion_runs_asi_policy_and_generator(client, face, tmp_path):
    from argen_ray.asi.knowledge import allowed_aus

    r = client.post("/v1/generate", json={"image": encode_image(face), "emotion": "Surprised", "seed": 7,
                                          "score": True})
    assert r.status_code == 200, r.text
    body = r.json()
    frames = read_mp4(body["video_mp4"], tmp_path)
    assert frames.shape == (body["num_frames"], body["height"], body["width"], 3) and body["num_frames"] == 16
    assert np.abs(frames[0].astype(int) - face.astype(int)).mean() < 12  # the clip starts at the upload
    assert body["emotion"] == "surprise" and body["seed"] == 7 and body["params_source"] == "policy"
    assert body["asi"]["kept_aus"] and set(body["aus"]) <= allowed_aus("surprise")
    assert body["prompt"] and body["asi"]["identity_aus"]
    assert body["action"] == body["policy"]["action"] and body["params"]["steps"] == body["policy"]["params"]["steps"]
    assert body["nfe"] >= 1 and body["model_id"] == "argen-ray/warp-dlib68-facs"
    assert body["rewards"]["r_t"] == pytest.approx(1 - body["params"]["steps"] / 25)
    assert 0 <= body["rewards"]["score"] <= 1


def test_generate_with_a_prompt_and_fixed_params_skips_the_policy(client, face, tmp_path):
    params = {"steps": 5, "alpha": 3.0, "beta": 1.0}
    r = client.post("/v1/generate", json={"image": encode_image(face), "emotion": "fear", "prompt": "eyes widen in fear",
                                          "params": params, "num_frames": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["params_source"] == "request" and body["policy"] is None and body["action"] is None
    assert {k: body["params"][k] for k in params} == params and body["asi"] is None
    assert body["prompt"] == "eyes widen in fear" and body["rewards"] is None
    assert len(body["params"]["guidance"]) == 5 and body["params"]["guidance"][-1] == pytest.approx(12.0)
    assert read_mp4(body["video_mp4"], tmp_path).shape[0] == 6


# ---------------------------------------------------------------------------------------------
# Bad input: 4xx with a JSON error naming the field, never a 500 or a hang
# ---------------------------------------------------------------------------------------------
def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_missing_extra_and_malformed_fields(client, face):
    img = encode_image(face)
    assert_error(client.post("/v1/policy", json={"prompt": "x"}), 422, "image", "required")
    assert_error(client.post("/v1/policy", json={"image": img}), 422, "prompt", "required")
    assert_error(client.post("/v1/policy", json={"image": img, "prompt": "  "}), 422, "prompt", "empty")
    assert_error(client.post("/v1/policy", json={"image": img, "prompt": "x" * 2001}), 422, "prompt", "2000")
    assert_error(client.post("/v1/policy", content=b"{not json", headers={"content-type": "application/json"}),
                 422, "body")
    assert_error(client.post("/v1/generate", json={"image": img}), 422, "emotion", "emotion", "prompt")
    assert_error(client.post("/v1/generate", json={"image": img, "emotion": "fear", "seed": -1}), 422, "seed")


def test_no_request_can_name_a_server_side_path(client, face):
    img = encode_image(face)
    for field in ("checkpoint", "image_path", "run_dir"):
        assert_error(client.post("/v1/policy", json={"image": img, "prompt": "x", field: "/etc/passwd"}),
                     422, field, "not a field")
    assert_error(client.post("/v1/generate", json={"image": img, "emotion": "fear", "params": {"model": "/tmp"}}),
                 422, "params.model")
    for path in ("/etc/passwd", "file:///etc/passwd", str(Path(__file__))):
        assert_error(client.post("/v1/policy", json={"image": path, "prompt": "x"}), 422, "image", "base64")


def test_non_image_and_unsupported_images(client):
    assert_error(client.post("/v1/policy", json={"image": b64(b"hello, I am text" * 10), "prompt": "x"}),
                 422, "image", "not a PNG or JPEG")
    assert_error(client.post("/v1/policy", json={"image": b64(image_bytes(noise(64, 64), "GIF")), "prompt": "x"}),
                 422, "image", "GIF")
    truncated = image_bytes(noise(128, 128), "PNG")[:3000]
    assert_error(client.post("/v1/policy", json={"image": b64(truncated), "prompt": "x"}), 422, "image", "truncated")
    assert_error(client.post("/v1/policy", json={"image": encode_image(noise(16, 16)), "prompt": "x"}),
                 422, "image", "at least 32")
    assert_error(client.post("/v1/policy", json={"image": "", "prompt": "x"}), 422, "image", "empty")


def test_oversize_images(client):
    # Bytes over serve.max_image_bytes: refused from the decoded size ...
    png = image_bytes(noise(265, 265), "PNG")
    assert MAX_IMAGE_BYTES < len(png) < MAX_IMAGE_BYTES * 1.2
    assert_error(client.post("/v1/policy", json={"image": b64(png), "prompt": "x"}), 413, "image", "limit")
    # ... a much bigger body from its Content-Length, before parsing ...
    big = b64(image_bytes(noise(400, 400), "PNG"))
    assert_error(client.post("/v1/policy", json={"image": big, "prompt": "x"}), 413, "image", "limit")
    # ... and a small file of too many pixels before it is decoded.
    flat = image_bytes(np.zeros((1001, 1000, 3), np.uint8), "PNG")
    assert len(flat) < MAX_IMAGE_BYTES
    assert_error(client.post("/v1/generate", json={"image": b64(flat), "emotion": "fear"}), 413, "image", "pixels")


def test_no_face_found(client):
    smooth = np.full((128, 128, 3), 128, np.uint8)
    for route, body in (("/v1/policy", {"prompt": "x"}), ("/v1/generate", {"emotion": "fear"})):
        assert_error(client.post(route, json={"image": encode_image(smooth), **body}), 422, "image", "no face")


def test_bad_generation_requests(client, face):
    img = encode_image(face)
    assert_error(client.post("/v1/generate", json={"image": img, "emotion": "boredom"}), 422, "emotion",
                 "unknown emotion", "surprise")
    assert_error(client.post("/v1/generate", json={"image": img, "emotion": "neutral"}), 422, "emotion")
    assert_error(client.post("/v1/generate", json={"image": img, "emotion": "fear", "num_frames": 500}),
                 422, "num_frames", "limit is 24")
    assert_error(client.post("/v1/generate", json={"image": img, "emotion": "fear", "num_frames": 1}),
                 422, "num_frames")
    assert_error(client.post("/v1/generate", json={"image": img, "emotion": "fear", "params": {"steps": 7}}),
                 422, "params.steps", "[5, 10, 15, 20, 25]")
    assert_error(client.post("/v1/generate", json={"image": img, "emotion": "fear", "params": {"alpha": "high"}}),
                 422, "params.alpha")
    # The warp backend animates target AUs: a bare prompt gives it none (a 4xx, not a 500).
    assert_error(client.post("/v1/generate", json={"image": img, "prompt": "a smile", "params":
                                                   {"steps": 5, "alpha": 1.0, "beta": 1.0}}),
                 422, "request", "neither target AUs nor an emotion")
