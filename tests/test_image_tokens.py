"""Image-token estimates (holds, and usage where the provider reported none)."""

from __future__ import annotations

import pytest

from relay.call import Call
from relay.image_tokens import input_image_tokens, output_tokens
from relay.upstream.embeddings import EmbeddingsAdapter
from relay.upstream.images import ImageEditAdapter, ImageGenerationAdapter
from relay.usage import Usage


@pytest.mark.parametrize("size, quality, tokens", [
    # OpenAI's published per-image output tokens for gpt-image models.
    ("1024x1024", "low", 272), ("1024x1024", "medium", 1056), ("1024x1024", "high", 4160),
    ("1024x1536", "low", 408), ("1024x1536", "medium", 1584), ("1024x1536", "high", 6240),
    ("1536x1024", "low", 408), ("1536x1024", "medium", 1584), ("1536x1024", "high", 6240),
    # auto quality counts as high; auto or missing size as the largest published size.
    ("1024x1024", "auto", 4160), ("1024x1024", None, 4160), ("auto", "low", 408), (None, None, 6240),
    # other sizes scale with area.
    ("2048x2048", "high", 16640), ("512x512", "medium", 264),
])
def test_output_tokens_per_image(size, quality, tokens) -> None:
    assert output_tokens(size, quality) == tokens


def test_output_tokens_scale_with_n() -> None:
    assert output_tokens("1024x1024", "medium", 3) == 3 * 1056


def test_input_image_tokens_are_capped_at_the_largest_output_size() -> None:
    assert input_image_tokens(1024, 1024) == 4160
    assert input_image_tokens(4000, 3000) == input_image_tokens() == 6240
    assert input_image_tokens(64, 64) == 17


def edit_call(**body) -> Call:
    return Call("image_edit", "openai", "gpt-image-2", {"prompt": "p", **body}, prompt_tokens=7,
                input_image_tokens=2 * 4160)


def test_edit_estimate_is_prompt_plus_input_images_plus_output() -> None:
    estimate = ImageEditAdapter().estimate(edit_call(size="1024x1024", quality="low", n="2"), None)  # type: ignore[arg-type]
    assert estimate == Usage(input_tokens=7, image_input_tokens=8320, image_output_tokens=544)


def test_usage_is_the_providers_when_reported() -> None:
    result = {"data": [{}], "usage": {"input_tokens": 50, "output_tokens": 272,
                                      "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}}}
    usage = ImageEditAdapter().usage(edit_call(), result)
    assert usage == Usage(input_tokens=10, image_input_tokens=40, image_output_tokens=272)


def test_usage_is_estimated_from_the_answer_when_none_is_reported() -> None:
    # The answer names the size and quality "auto" resolved to, and how many images came back.
    result = {"data": [{}, {}], "size": "1024x1536", "quality": "medium"}
    usage = ImageGenerationAdapter().usage(edit_call(size="auto", quality="auto"), result)
    assert usage == Usage(input_tokens=7, image_input_tokens=8320, image_output_tokens=2 * 1584, estimated=True)


def test_embeddings_estimate_is_input_only() -> None:
    call = Call("embeddings", "openai", "text-embedding-3-small", {"input": "x"}, prompt_tokens=12)
    assert EmbeddingsAdapter().estimate(call, None) == Usage(input_tokens=12)  # type: ignore[arg-type]
