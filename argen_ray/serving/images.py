"""Uploaded images: base64 -> checked RGB array, every failure a `RequestError` naming the field.

Checks run cheapest first and before any pixel is decoded: size of the base64 text, base64
syntax, byte size, format (PNG or JPEG by content, not by a claimed name), pixel count (a
decompression bomb never reaches memory), minimum side and aspect ratio (a 400000x32 strip never
reaches the face detector's upscaling), then the decode itself; any decoder failure is a 422.
"""
from __future__ import annotations

import base64
import binascii
import io

import numpy as np

from argen_ray.serving.schemas import RequestError

FORMATS = ("PNG", "JPEG")


def decode_image(data: str, cfg, field: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB from base64 PNG/JPEG text, checked against the `serve` limits."""
    from PIL import Image

    text = data.strip()
    if text.startswith("data:"):  # data:image/png;base64,....
        head, _, text = text.partition(",")
        if not head.endswith(";base64"):
            raise RequestError(field, "a data: URL must be base64 encoded (data:image/png;base64,...)")
    if not text:
        raise RequestError(field, "is empty; send the image bytes as base64")
    if len(text) * 3 // 4 > cfg.max_image_bytes + 3:
        raise RequestError(field, f"is about {len(text) * 3 // 4} bytes; the limit is {cfg.max_image_bytes} "
                                  "(serve.max_image_bytes)", status=413)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(field, "is not valid base64 (send the PNG or JPEG bytes base64-encoded, not a path "
                                  "or a URL)") from None
    if len(raw) > cfg.max_image_bytes:
        raise RequestError(field, f"is {len(raw)} bytes; the limit is {cfg.max_image_bytes} (serve.max_image_bytes)",
                           status=413)
    try:
        img = Image.open(io.BytesIO(raw))  # reads the header only
    except Image.DecompressionBombError as exc:  # the header claims more pixels than PIL allows
        raise RequestError(field, f"declares too many pixels ({exc}); the limit is {cfg.max_image_pixels} "
                                  "(serve.max_image_pixels)", status=413) from None
    except Exception:  # noqa: BLE001 - PIL raises OSError, SyntaxError, struct.error, ... on junk headers
        raise RequestError(field, f"is not a PNG or JPEG image ({len(raw)} bytes that no image decoder "
                                  "recognises)") from None
    if img.format not in FORMATS:
        raise RequestError(field, f"is a {img.format} image; send PNG or JPEG")
    check_size(img.size, cfg, field)
    try:
        rgb = to_rgb(img)  # decodes; a truncated or corrupt body fails here
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this upload's fault, never a 500
        raise RequestError(field, f"{img.format} data is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    return rgb


def check_size(size: tuple[int, int], cfg, field: str = "image") -> None:
    """Pixel count, shortest side and aspect ratio from the header, before any pixel is decoded
    (or upscaled for the face detector)."""
    width, height = size
    if width * height > cfg.max_image_pixels:
        raise RequestError(field, f"is {width}x{height} = {width * height} pixels; the limit is "
                                  f"{cfg.max_image_pixels} (serve.max_image_pixels)", status=413)
    if min(width, height) < cfg.min_image_side:
        raise RequestError(field, f"is {width}x{height}; both sides must be at least {cfg.min_image_side} px "
                                  "(serve.min_image_side)")
    if max(width, height) > cfg.max_image_aspect * min(width, height):
        raise RequestError(field, f"is {width}x{height}; the longer side may be at most {cfg.max_image_aspect:g} "
                                  "times the shorter (serve.max_image_aspect): send a face photo")


def to_rgb(img) -> np.ndarray:
    """(H, W, 3) uint8 of any PNG/JPEG mode. 16-bit grayscale PNGs ("I;16", or "I" in older
    Pillows) are scaled by 255/65535: PIL's own convert would clip them to white."""
    if img.mode.startswith("I;16") or img.mode == "I":
        gray = np.clip(np.asarray(img).astype(np.float64) / 257.0, 0, 255).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def require_face(image: np.ndarray, field: str = "image"):
    """The 68 landmarks of the most confident face (dlib, as the warp backend and the AU reader
    see it); no face is a 422 on `field`."""
    from argen_ray.faces import detect_landmarks

    found = detect_landmarks(image)
    if found is None:
        raise RequestError(field, f"no face found in the {image.shape[1]}x{image.shape[0]} image; send a "
                                  "frontal face photo")
    return found


def encode_image(image: np.ndarray, fmt: str = "PNG") -> str:
    """base64 text of an RGB array (what a client sends; tests and the benchmark use it)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode("ascii")
