"""OpenAI image generation and edits (`/v1/images/generations`, `/v1/images/edits`)."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from typing import Any

from starlette.datastructures import UploadFile

from .common import Call, Reply, error_response
from .tokens import text_tokens

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_SIDE = 4  # pixels; tiny but a valid image
IMAGE_INPUT_TOKENS = 100  # per input image on edits
# gpt-image-1 output tokens per image, by quality then size.
OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}


def make_png(seed: bytes, transparent: bool = False, side: int = PNG_SIDE) -> bytes:
    """A valid RGB(A) PNG whose colour depends on `seed` (zlib + struct, no Pillow)."""
    r, g, b = hashlib.sha256(seed).digest()[:3]
    pixel = bytes([r, g, b, 0 if transparent else 255]) if transparent else bytes([r, g, b])
    raw = b"".join(b"\x00" + pixel * side for _ in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 6 if transparent else 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def is_dalle(model: str) -> bool:
    return model.startswith("dall-e")


async def build_images(call: Call, params: dict[str, Any], seed: bytes, input_images: int) -> Reply:
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return error_response("openai", 400, message="'prompt' is required.")
    model = str(params.get("model") or "dall-e-2")
    n = int(params.get("n") or 1)
    size = str(params.get("size") or "auto")
    size = "1024x1024" if size == "auto" else size
    quality = str(params.get("quality") or "auto")
    quality = "medium" if quality in ("auto", "standard", "hd") else quality
    background = str(params.get("background") or "opaque")
    output_format = str(params.get("output_format") or "png")
    as_url = (params.get("response_format") or ("url" if is_dalle(model) else "b64_json")) == "url"
    data = []
    for index in range(n):
        png = make_png(seed + prompt.encode() + bytes([index]), transparent=background == "transparent")
        item: dict[str, Any] = {}
        if as_url:
            item["url"] = f"{call.base_url}/_emulator/files/{call.control.store_file(png)}.png"
        else:
            item["b64_json"] = base64.b64encode(png).decode()
        if model == "dall-e-3":
            item["revised_prompt"] = prompt
        data.append(item)
    payload: dict[str, Any] = {"created": call.created, "data": data}
    if not is_dalle(model):
        text, image = text_tokens(prompt), IMAGE_INPUT_TOKENS * input_images
        output = OUTPUT_TOKENS.get(quality, OUTPUT_TOKENS["medium"]).get(size, 1056) * n
        payload.update(background=background, output_format=output_format, quality=quality, size=size, usage={
            "input_tokens": text + image, "input_tokens_details": {"text_tokens": text, "image_tokens": image},
            "output_tokens": output, "total_tokens": text + image + output})
    return await call.respond(payload)


async def generations(call: Call) -> Reply:
    body = call.body if isinstance(call.body, dict) else {}
    return await build_images(call, body, b"gen", 0)


async def edits(call: Call) -> Reply:
    if call.form is not None:
        params = {k: v for k, v in call.form.multi_items() if isinstance(v, str)}
        files = [v for k, v in call.form.multi_items() if k in ("image", "image[]") and isinstance(v, UploadFile)]
        digest = hashlib.sha256()
        for upload in files:
            await upload.seek(0)
            digest.update(await upload.read())
        count, seed = len(files), digest.digest()
    else:
        params = call.body if isinstance(call.body, dict) else {}
        images = params.get("images") or []
        count, seed = len(images), hashlib.sha256(repr(images).encode()).digest()
    if not count:
        return error_response("openai", 400, message="'image' is required.")
    return await build_images(call, params, seed, count)
