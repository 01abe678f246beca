"""OpenAI Images API: generations through LiteLLM, edits straight to the provider (see http.py).

Both bill image tokens: the provider's reported usage where there is one, else an estimate from
the size, quality and number of images produced (relay.image_tokens), marked estimated.
"""

from __future__ import annotations

from typing import Any

import litellm

from relay.call import Call
from relay.catalog import CatalogModel
from relay.image_tokens import output_tokens
from relay.upstream import http
from relay.upstream.base import Target
from relay.upstream.wire import plain
from relay.usage import Usage, from_openai_images

_OWN_FIELDS = {"model", "prompt"}


def _field(result: Any, key: str) -> Any:
    return result.get(key) if isinstance(result, dict) else getattr(result, key, None)


def _count(value: Any) -> int:
    """`n` from JSON (an int) or from a multipart form (a string)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value if isinstance(value, int) and value > 0 else 1


class _ImagesAdapter:
    operation = ""

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        body = call.body
        return Usage(
            input_tokens=call.prompt_tokens,
            image_input_tokens=call.input_image_tokens,
            image_output_tokens=output_tokens(body.get("size"), body.get("quality"), _count(body.get("n"))),
        )

    def usage(self, call: Call, result: Any) -> Usage:
        reported = _field(result, "usage")
        if reported is not None and (_field(reported, "input_tokens") or _field(reported, "output_tokens")):
            return from_openai_images(reported)
        # None reported (e.g. DALL·E): what was produced, at the size and quality the answer names.
        images = len(_field(result, "data") or []) or _count(call.body.get("n"))
        size = _field(result, "size") or call.body.get("size")
        quality = _field(result, "quality") or call.body.get("quality")
        return Usage(input_tokens=call.prompt_tokens, image_input_tokens=call.input_image_tokens,
                     image_output_tokens=output_tokens(size, quality, images), estimated=True)

    def answer(self, result: Any, call: Call, usage: Usage, cost_usd: float) -> dict:
        body = plain(result)
        body["usage"] = image_usage(usage, cost_usd)
        return body


class ImageGenerationAdapter(_ImagesAdapter):
    operation = "image_generation"

    async def send(self, call: Call, target: Target) -> Any:
        # Everything but model and prompt goes as extra_body: LiteLLM's own parameter list for
        # gpt-image models would silently drop response_format (and any newer parameter).
        extra = {k: v for k, v in call.body.items() if k not in _OWN_FIELDS}
        return await litellm.aimage_generation(
            **target.litellm_args(), prompt=call.body["prompt"], extra_body=extra
        )


class ImageEditAdapter(_ImagesAdapter):
    operation = "image_edit"

    async def send(self, call: Call, target: Target) -> Any:
        fields = {**call.body, "model": http.upstream_model(target)}
        if not call.files:  # JSON image inputs (URLs, file ids)
            return await http.post(target, "/images/edits", json=fields)
        # Multipart, as the client sent it: same field names, filenames, content types and bytes.
        files = [(name, (upload.filename, upload.data, upload.content_type or None))
                 for name, uploads in call.files.items() for upload in uploads]
        return await http.post(target, "/images/edits", data=fields, files=files)


def image_usage(usage: Usage, cost_usd: float | None) -> dict:
    """The Images API `usage` shape, plus `cost` in USD as on the other OpenAI routes."""
    body: dict[str, Any] = {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "text_tokens": usage.input_tokens + usage.cached_input_tokens,
            "image_tokens": usage.image_input_tokens + usage.image_cached_input_tokens,
            "cached_tokens": usage.cached_input_tokens + usage.image_cached_input_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if cost_usd is not None:
        body["cost"] = cost_usd
    return body
