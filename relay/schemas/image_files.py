"""Checking image inputs before anything is spent: a corrupt or non-image upload is a 400 naming
its field. Pillow only reads and verifies the bytes; they are forwarded exactly as received."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from PIL import Image

from relay.errors import RelayError, bad_request

# What OpenAI's image edits accept.
FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?);base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def invalid_image(field: str, what: str, reason: str) -> RelayError:
    return bad_request(
        f"'{field}': {what} is not a valid image ({reason}). Send a PNG, JPEG or WebP image.",
        param=field, code="invalid_image",
    )


def inspect_image(data: bytes, field: str, what: str = "the upload") -> ImageInfo:
    """Format and dimensions of an image, or a 400 naming `field`. verify() checks the structure
    (PNG chunk checksums, truncation) without decoding pixels or touching `data`."""
    if not data:
        raise invalid_image(field, what, "it is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            info = ImageInfo(image.format or "", *image.size)
            image.verify()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for hostile input; all mean "not an image"
        reason = "unrecognised format" if isinstance(exc, Image.UnidentifiedImageError) else f"corrupt: {exc}"
        raise invalid_image(field, what, reason[:200]) from None
    if info.format not in FORMATS:
        raise invalid_image(field, what, f"{info.format} is not accepted")
    return info


def decode_data_url(url: str, field: str) -> bytes:
    """The bytes of a base64 `data:` URL, or a 400 naming `field`."""
    match = _DATA_URL.match(url)
    if not match:
        raise bad_request(f"'{field}' must be a base64 data URL (data:image/png;base64,…), an https URL "
                          "or a file id.", param=field, code="invalid_image")
    try:
        return base64.b64decode(url[match.end():], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_image(field, "the data URL", "its base64 does not decode") from None
