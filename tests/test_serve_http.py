"""The Serve app over real HTTP on 127.0.0.1 with the local preset: every route, every bad input.

One app for the whole module (Serve start takes tens of seconds on 2 cores); its policy is
`serve_setup.write_policy`'s (a fresh network saved through training's export path).
"""
from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from serve_setup import MAX_IMAGE_BYTES, WARP_ENCODER, astronaut_face, b64, image_bytes

from argen_ray.serving.images import encode_image

pytestmark = [pytest.mark.slow, pytest.mark.shared_serve_app]  # its `server` is conftest's


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return astronaut_face()


@pytest.fixture(scope="module")
def client(server):
    import httpx

    with httpx.Client(base_url=server["url"], timeout=300) as c:
        yield c


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


def test_every_png_and_jpeg_mode_of_a_face_is_read(client, face):
    """16-bit grayscale (scaled, not clipped to white), 8-bit grayscale, RGBA, palette, CMYK JPEG."""
    from PIL import Image

    rgb = Image.fromarray(face)
    gray = np.asarray(rgb.convert("L"))
    modes = {"gray16-png": (Image.fromarray(gray.astype(np.uint16) * 257), "PNG"),
             "gray8-png": (rgb.convert("L"), "PNG"), "rgba-png": (rgb.convert("RGBA"), "PNG"),
             "palette-png": (rgb.convert("P"), "PNG"), "cmyk-jpeg": (rgb.convert("CMYK"), "JPEG")}
    assert Image.open(io.BytesIO(image_bytes(*modes["gray16-png"]))).mode.startswith("I")
    for name, (image, fmt) in modes.items():
        r = client.post("/v1/policy", json={"image": b64(image_bytes(image, fmt)), "prompt": "the eyes widen"})
        assert r.status_code == 200, (name, r.text)


def test_sixteen_bit_gray_decodes_to_the_eight_bit_image():
    from PIL import Image

    from argen_ray.config.serve import ServeConfig
    from argen_ray.serving.images import decode_image

    gray = np.asarray(Image.fromarray(astronaut_face()).convert("L"))
    decoded = decode_image(b64(image_bytes(Image.fromarray(gray.astype(np.uint16) * 257), "PNG")), ServeConfig())
    assert decoded.shape == (*gray.shape, 3) and np.array_equal(decoded[..., 0], gray)
