"""OpenAI embeddings (`/v1/embeddings`): deterministic unit vectors seeded by the input."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any


from .common import Call, Reply, error_response
from .tokens import canonical, text_tokens


def default_dimensions(model: str) -> int:
    if model.endswith("-large"):
        return 3072
    if model.endswith("-small") or "ada-002" in model:
        return 1536
    return 8


def normalise_inputs(raw: Any) -> list[str | list[int]] | None:
    """str | list[str] | list[int] | list[list[int]] → list of single inputs."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, (str, list)) for x in raw):
        return raw
    return None


def vector(item: str | list[int], dims: int) -> list[float]:
    seed = item if isinstance(item, str) else "tokens:" + canonical(item)
    words: list[int] = []
    block = 0
    while len(words) < dims:
        words.extend(struct.unpack("<8I", hashlib.sha256(f"{seed}:{block}".encode()).digest()))
        block += 1
    values = [w / 2**31 - 1.0 for w in words[:dims]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Round-trip through float32 so the float and base64 encodings carry identical numbers.
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(v / norm for v in values))))


async def embeddings(call: Call) -> Reply:
    body = call.body if isinstance(call.body, dict) else {}
    inputs = normalise_inputs(body.get("input"))
    model = body.get("model")
    if not model or not inputs or any(len(i) == 0 for i in inputs):
        return error_response("openai", 400, message="'$.input' is invalid. Please check the API reference.")
    dims = int(body.get("dimensions") or default_dimensions(model))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        vec = vector(item, dims)
        encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if as_base64 else vec
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(text_tokens(i) if isinstance(i, str) else len(i) for i in inputs)
    return await call.respond({"object": "list", "data": data, "model": model,
                               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
