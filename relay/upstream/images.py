"""OpenAI Images API, passed through: generations as JSON, edits as JSON or as the client's own
multipart form (same field names, filenames, content types and bytes).

Both bill image tokens: the provider's reported usage where there is one, else an estimate from
the size, quality and number of images produced (relay.image_tokens), marked estimated.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from relay.call import Call
from relay.catalog import CatalogModel
from relay.image_tokens import output_tokens
from relay.upstream import client
from relay.upstream.base import Target
from relay.upstream.litellm_bridge import LITELLM_CONTROLS
from relay.upstream.wire import forwarded_body, openai_headers, openai_url, usage_with_cost
from relay.usage import Usage, from_openai_images


def _field(result: Any, key: str) -> Any:
    if isinstance(result, client.Reply):
        result = result.body
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

    def answer(self, result: client.Reply, call: Call, usage: Usage, cost_usd: float) -> dict:
        body = result.body
        body["usage"] = usage_with_cost(body.get("usage"), usage, cost_usd, image_usage)
        return body


class ImageGenerationAdapter(_ImagesAdapter):
    operation = "image_generation"

    async def send(self, call: Call, target: Target) -> Any:
        body = forwarded_body(call.body, {"model": target.upstream_model}, LITELLM_CONTROLS)
        return await client.post(openai_url(target, "/images/generations"), openai_headers(target), target.where,
                                 body=body)


class ImageEditAdapter(_ImagesAdapter):
    operation = "image_edit"

    async def send(self, call: Call, target: Target) -> Any:
        url = openai_url(target, "/images/edits")
        if not call.files:  # JSON image inputs (URLs, file ids)
            body = forwarded_body(call.body, {"model": target.upstream_model}, LITELLM_CONTROLS)
            return await client.post(url, openai_headers(target), target.where, body=body)
        form = aiohttp.FormData(quote_fields=False)
        for name, value in {**call.body, "model": target.upstream_model}.items():
            form.add_field(name, str(value))
        for name, uploads in call.files.items():
            for upload in uploads:
                form.add_field(name, upload.data, filename=upload.filename,
                               content_type=upload.content_type or "application/octet-stream")
        headers = {"Authorization": f"Bearer {target.credential.api_key}"}  # aiohttp sets the multipart type
        return await client.post(url, headers, target.where, form=form)


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
