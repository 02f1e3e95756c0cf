"""Every malformed request to the Serve app gets a 4xx in the documented JSON shape, never a 500,
a hang or a crashed replica, and no bad request fails a good one sent beside it.

A loopback fuzz table over both model routes (each issue-13 finding plus the cases that always
worked), FastAPI's own errors, a body that never arrives, and a concurrent mix of crash-inducing,
malformed and valid requests. One app for the module; default pixel limits (so the 400000x32
strip reaches the aspect check exactly as it reached the face detector before).
"""
from __future__ import annotations

import json
import random
import socket
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from serve_setup import BODY_TIMEOUT_S, MAX_IMAGE_BYTES, assert_error, astronaut_face, b64, image_bytes

from argen_ray.serving.images import encode_image

pytestmark = [pytest.mark.slow, pytest.mark.shared_serve_app]  # its `server` is conftest's


@pytest.fixture(scope="module")
def client(server):
    import httpx

    with httpx.Client(base_url=server["url"], timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def img() -> str:
    return encode_image(astronaut_face())


# ---------------------------------------------------------------------------------------------
# Crafted images
# ---------------------------------------------------------------------------------------------
def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def flat_png(width: int, height: int) -> bytes:
    from PIL import Image

    return image_bytes(Image.new("L", (width, height), 128), "PNG")


def post(client, route: str, payload):
    """POST a dict as JSON (Python's encoder: NaN, huge ints and \\ud800 escapes pass through as
    a hostile client would send them) or raw bytes."""
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode("ascii")
    return client.post(route, content=content, headers={"content-type": "application/json"})


# ---------------------------------------------------------------------------------------------
# The fuzz table: (id, route, payload builder, status, field, words in the message)
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def cases(image: str) -> list[tuple]:
    gen = {"image": image, "emotion": "fear"}
    return [
        # -- issue 13: were 500s, a crash, or a hang
        ("bomb-header-100000x100000", "/v1/policy", {"image": b64(png_header(100_000, 100_000)), "prompt": "x"},
         413, "image", "pixels"),
        ("strip-400000x32", "/v1/policy", {"image": b64(flat_png(400_000, 32)), "prompt": "x"},
         422, "image", "400000x32", "serve.max_image_aspect"),
        ("strip-400000x32-generate", "/v1/generate", {**gen, "image": b64(flat_png(400_000, 32))},
         422, "image", "serve.max_image_aspect"),
        ("pixels-over-limit", "/v1/policy", {"image": b64(flat_png(4100, 4000)), "prompt": "x"},
         413, "image", "serve.max_image_pixels"),
        ("lone-surrogate-policy", "/v1/policy", {"image": image, "prompt": "smile \ud800"}, 422, "prompt", "surrogate"),
        ("lone-surrogate-generate", "/v1/generate", {**gen, "prompt": "\ud800"}, 422, "prompt", "surrogate"),
        ("lone-surrogate-emotion", "/v1/generate", {**gen, "emotion": "fe\udfffar"}, 422, "emotion", "surrogate"),
        ("lone-surrogate-field-name", "/v1/policy", {"image": image, "prompt": "x", "\ud800": 1}, 422, "body"),
        ("steps-10^400", "/v1/generate", {**gen, "params": {"steps": 10 ** 400}}, 422, "params.steps"),
        ("seed-10^400", "/v1/generate", {**gen, "seed": 10 ** 400}, 422, "seed"),
        ("num-frames-10^400", "/v1/generate", {**gen, "num_frames": 10 ** 400}, 422, "num_frames"),
        ("alpha-NaN", "/v1/generate", {**gen, "params": {"alpha": float("nan")}}, 422, "params.alpha"),
        ("beta-Infinity", "/v1/generate", {**gen, "params": {"beta": float("inf")}}, 422, "params.beta"),
        ("alpha-1e400", "/v1/generate", b'{"image": "%s", "emotion": "fear", "params": {"alpha": 1e400}}'
         % image.encode(), 422, "params.alpha"),
        ("seed-NaN", "/v1/generate", {**gen, "seed": float("nan")}, 422, "seed"),
        ("invalid-utf8-body", "/v1/policy", b'{"image": "\xff\xfe", "prompt": "x"}', 400, "body"),
        ("json-100000-deep", "/v1/policy", b"[" * 100_000 + b"]" * 100_000, 400, "body"),
        # -- always 4xx: keep them so
        ("missing-image", "/v1/policy", {"prompt": "x"}, 422, "image", "required"),
        ("missing-prompt", "/v1/policy", {"image": image}, 422, "prompt", "required"),
        ("blank-prompt", "/v1/policy", {"image": image, "prompt": "  "}, 422, "prompt", "empty"),
        ("long-prompt", "/v1/policy", {"image": image, "prompt": "x" * 2001}, 422, "prompt", "2000"),
        ("not-json", "/v1/policy", b"{not json", 422, "body", "JSON"),
        ("json-array", "/v1/policy", b"[1, 2]", 422, "body"),
        ("json-null", "/v1/policy", b"null", 422, "body"),
        ("no-emotion-no-prompt", "/v1/generate", {"image": image}, 422, "emotion", "emotion", "prompt"),
        ("negative-seed", "/v1/generate", {**gen, "seed": -1}, 422, "seed"),
        ("extra-checkpoint", "/v1/policy", {"image": image, "prompt": "x", "checkpoint": "/etc/passwd"},
         422, "checkpoint", "not a field"),
        ("extra-image-path", "/v1/policy", {"image": image, "prompt": "x", "image_path": "/etc/passwd"},
         422, "image_path", "not a field"),
        ("extra-run-dir", "/v1/policy", {"image": image, "prompt": "x", "run_dir": "/tmp"}, 422, "run_dir"),
        ("extra-params-model", "/v1/generate", {**gen, "params": {"model": "/tmp"}}, 422, "params.model"),
        ("image-is-a-path", "/v1/policy", {"image": "/etc/passwd", "prompt": "x"}, 422, "image", "base64"),
        ("image-is-a-url", "/v1/policy", {"image": "file:///etc/passwd", "prompt": "x"}, 422, "image", "base64"),
        ("image-this-file", "/v1/policy", {"image": str(Path(__file__)), "prompt": "x"}, 422, "image", "base64"),
        ("bad-base64", "/v1/policy", {"image": "abc$%^", "prompt": "x"}, 422, "image", "base64"),
        ("data-url-not-base64", "/v1/policy", {"image": "data:image/png,abc", "prompt": "x"}, 422, "image",
         "base64"),
        ("text-not-image", "/v1/policy", {"image": b64(b"hello, I am text" * 10), "prompt": "x"}, 422, "image",
         "not a PNG or JPEG"),
        ("gif", "/v1/policy", {"image": b64(image_bytes(noise(64, 64), "GIF")), "prompt": "x"}, 422, "image", "GIF"),
        ("truncated-png", "/v1/policy", {"image": b64(image_bytes(noise(128, 128), "PNG")[:3000]), "prompt": "x"},
         422, "image", "truncated"),
        ("too-small", "/v1/policy", {"image": encode_image(noise(16, 16)), "prompt": "x"}, 422, "image",
         "at least 32"),
        ("empty-image", "/v1/policy", {"image": "", "prompt": "x"}, 422, "image", "empty"),
        ("bytes-over-limit", "/v1/policy", {"image": b64(image_bytes(noise(265, 265), "PNG")), "prompt": "x"},
         413, "image", "limit"),
        ("huge-body", "/v1/policy", {"image": b64(image_bytes(noise(400, 400), "PNG")), "prompt": "x"},
         413, "image", "request body is", "limit"),  # from Content-Length, before parsing
        ("no-face-policy", "/v1/policy", {"image": encode_image(np.full((128, 128, 3), 128, np.uint8)),
                                          "prompt": "x"}, 422, "image", "no face"),
        ("no-face-generate", "/v1/generate", {**gen, "image": encode_image(np.full((128, 128, 3), 128, np.uint8))},
         422, "image", "no face"),
        ("unknown-emotion", "/v1/generate", {**gen, "emotion": "boredom"}, 422, "emotion", "unknown emotion",
         "surprise"),
        ("neutral-emotion", "/v1/generate", {**gen, "emotion": "neutral"}, 422, "emotion"),
        ("too-many-frames", "/v1/generate", {**gen, "num_frames": 500}, 422, "num_frames", "limit is 24"),
        ("one-frame", "/v1/generate", {**gen, "num_frames": 1}, 422, "num_frames"),
        ("steps-not-in-action-set", "/v1/generate", {**gen, "params": {"steps": 7}}, 422, "params.steps",
         "[5, 10, 15, 20, 25]"),
        ("alpha-a-string", "/v1/generate", {**gen, "params": {"alpha": "high"}}, 422, "params.alpha"),
        ("warp-without-aus", "/v1/generate", {"image": image, "prompt": "a smile",
                                              "params": {"steps": 5, "alpha": 1.0, "beta": 1.0}},
         422, "request", "neither target AUs nor an emotion"),
    ]


CASE_IDS = [c[0] for c in cases("")]


@pytest.mark.parametrize("name", CASE_IDS)
def test_malformed_request_is_a_4xx_in_the_documented_shape(client, img, name):
    _, route, payload, status, field, *words = next(c for c in cases(img) if c[0] == name)
    assert_error(post(client, route, payload), status, field, *words)


def test_fastapis_own_errors_have_the_same_shape(client):
    assert_error(client.get("/v1/policy"), 405, None, "Method Not Allowed")
    assert_error(client.post("/healthz"), 405, None)
    assert_error(client.get("/nowhere"), 404, None, "Not Found")
    assert_error(client.post("/v1/policy", content=b"image=x", headers={"content-type": "text/plain"}), 422, "body")
    head = client.head("/healthz")
    assert head.status_code == 200 and head.content == b""


def test_a_body_that_never_arrives_gets_408(server):
    """Content-Length 100000, 11 bytes sent, then silence: an answer within serve.body_timeout_s."""
    url = urlparse(server["url"])
    with socket.create_connection((url.hostname, url.port), timeout=BODY_TIMEOUT_S + 30) as sock:
        sock.sendall(b"POST /v1/policy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n" + b'{"image": "')
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data[:500]
    error = json.loads(body)["error"]
    assert error["field"] == "body" and error["status"] == 408 and "serve.body_timeout_s" in error["message"]


def test_a_streamed_body_over_the_limit_is_refused_without_content_length(client):
    def chunks():
        for _ in range(20):
            yield b"x" * 50_000

    assert_error(client.post("/v1/policy", content=chunks(), headers={"content-type": "application/json"}),
                 413, "image", "request body is over", "limit")


def test_bad_requests_mixed_into_valid_ones_never_fail_them(client, img):
    """Crash-inducing and malformed requests sent concurrently with valid ones, in a shuffled
    stream: every valid request gets its decision, every bad one its 4xx, none a 500."""
    bad = [c for c in cases(img) if c[0] in {
        "strip-400000x32", "bomb-header-100000x100000", "pixels-over-limit", "lone-surrogate-policy",
        "lone-surrogate-generate", "steps-10^400", "alpha-NaN", "invalid-utf8-body", "json-100000-deep",
        "truncated-png", "bad-base64", "no-face-policy", "huge-body"}]
    valid = [("valid", "/v1/policy", {"image": img, "prompt": f"prompt {i}: the brows rise"}, 200, None)
             for i in range(16)]
    stream = bad + valid
    random.Random(13).shuffle(stream)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda c: (c, post(client, c[1], c[2])), stream))
    for (name, _, _, status, field, *words), response in answers:
        if name == "valid":
            assert response.status_code == 200, response.text
            assert set(response.json()["action"]) == {"steps", "alpha", "beta"}
        else:
            assert_error(response, status, field, *words)
    assert client.get("/healthz").json() == {"status": "ok"}


def test_the_app_is_still_healthy_after_the_fuzz(client, img):
    assert client.get("/healthz").status_code == 200
    assert post(client, "/v1/policy", {"image": img, "prompt": "the eyes widen"}).status_code == 200
