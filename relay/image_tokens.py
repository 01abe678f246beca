"""Image-token estimates for gpt-image models: the hold before an images request, and the usage of
an answer whose provider reported none (marked estimated; billing prefers reported usage).

OpenAI publishes the output tokens of one image by quality and size (image generation guide,
"Cost and latency", gpt-image models):

    size                     low   medium   high
    1024x1024 (square)       272    1056    4160
    1024x1536 / 1536x1024    408    1584    6240

The larger sizes cost exactly 1.5× the square, i.e. tokens are proportional to pixel area, so other
sizes (gpt-image-2 accepts any WxH) are estimated from the square row by area. "auto" (and any
quality we do not know) counts as high, and an "auto" size as the largest published one, so that
a hold is rarely short.
"""

from __future__ import annotations

import math
import re

SQUARE_AREA = 1024 * 1024
SQUARE_TOKENS = {"low": 272, "medium": 1056, "high": 4160}
LARGEST_PUBLISHED_AREA = 1024 * 1536
_SIZE = re.compile(r"^\s*(\d{1,5})\s*x\s*(\d{1,5})\s*$")


def quality_of(quality: object) -> str:
    return quality if quality in SQUARE_TOKENS else "high"  # type: ignore[return-value]


def area_of(size: object) -> int:
    """Pixels of a "WxH" size; "auto", missing or unparsable sizes count as the largest published."""
    match = _SIZE.match(size) if isinstance(size, str) else None
    if not match:
        return LARGEST_PUBLISHED_AREA
    return int(match.group(1)) * int(match.group(2))


def tokens_for_area(area: int, quality: object = "high") -> int:
    return math.ceil(SQUARE_TOKENS[quality_of(quality)] * area / SQUARE_AREA)


def output_tokens(size: object, quality: object, n: object = 1) -> int:
    """Output image tokens of `n` images of `size` at `quality`."""
    count = n if isinstance(n, int) and n > 0 else 1
    return tokens_for_area(area_of(size), quality) * count


def input_image_tokens(width: int | None = None, height: int | None = None) -> int:
    """One input image (edits), at high fidelity. The provider scales inputs down to the largest
    output size, so that caps the estimate; an image of unknown dimensions (a file id or URL)
    counts as that cap."""
    area = LARGEST_PUBLISHED_AREA if not width or not height else min(width * height, LARGEST_PUBLISHED_AREA)
    return tokens_for_area(area, "high")
