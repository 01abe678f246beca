"""OpenAI Images API requests: generations (JSON), and edits as multipart uploads (`image=@file`,
several `image[]`, optional `mask`) or as JSON image inputs (data/https URLs or file ids).

Every image input is checked here, before admission and hold, and its image tokens estimated.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from relay.call import Call
from relay.errors import RelayError, bad_request
from relay.image_tokens import input_image_tokens
from relay.schemas.body import read_json, validate
from relay.schemas.image_files import decode_data_url, inspect_image
from relay.schemas.multipart import read_form
from relay.schemas.openai import ImageEditRequest, ImageGenerationRequest, ImageRef
from relay.settings import Settings
from relay.tokens import count_text

IMAGE_FIELDS = ("image", "image[]")  # curl's image=@input.png; the SDKs send image[] for several
FILE_FIELDS = (*IMAGE_FIELDS, "mask")
MAX_IMAGES = 16  # OpenAI's limit for gpt-image edits


def _refuse_stream(body: dict) -> None:
    if body.get("stream") not in (None, False, "false"):
        raise bad_request("Streaming partial images is not supported by this relay; omit 'stream'.", "stream")


def _call(operation: str, spec: ImageGenerationRequest, body: dict, **extra: Any) -> Call:
    return Call(operation=operation, protocol="openai", model=spec.model, body=body,
                prompt_tokens=count_text(spec.prompt), **extra)


async def parse_image_generation(request: Request, settings: Settings) -> Call:
    body = await read_json(request, settings.max_body_bytes)
    _refuse_stream(body)
    return _call("image_generation", validate(ImageGenerationRequest, body), body)


async def parse_image_edit(request: Request, settings: Settings) -> Call:
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        return await _multipart_edit(request, settings)
    if not content_type or content_type.startswith("application/json"):
        return await _json_edit(request, settings)
    raise bad_request(
        f"Unsupported content type '{content_type}' for image edits: send multipart/form-data "
        "(image=@input.png) or JSON with image URLs or file ids.", code="unsupported_content_type")


async def _multipart_edit(request: Request, settings: Settings) -> Call:
    form = await read_form(request, settings.max_upload_bytes)
    for name in FILE_FIELDS:
        if name in form.fields:
            raise bad_request(f"'{name}' must be a file upload ({name}=@file.png), not a text field.", name)
    _refuse_stream(form.fields)
    spec = validate(ImageGenerationRequest, form.fields)
    images = [upload for name in IMAGE_FIELDS for upload in form.files.get(name, [])]
    if not images:
        raise bad_request("'image' is required: upload the image to edit as a file (image=@input.png).", "image")
    if len(images) > MAX_IMAGES:
        raise bad_request(f"Too many images: at most {MAX_IMAGES} per edit.", "image")
    if len(form.files.get("mask", [])) > 1:
        raise bad_request("Only one 'mask' file may be sent.", "mask")
    tokens = 0
    for name, uploads in form.files.items():  # every file part of an image edit must be an image
        for upload in uploads:
            info = inspect_image(upload.data, name, f"the file '{upload.filename}'")
            if name in IMAGE_FIELDS:
                tokens += input_image_tokens(info.width, info.height)
    return _call("image_edit", spec, form.fields, files=form.files, input_image_tokens=tokens)


async def _json_edit(request: Request, settings: Settings) -> Call:
    # A JSON body is held to the JSON limit (README); larger images go as multipart uploads, which
    # are streamed against the upload limit.
    try:
        body = await read_json(request, settings.max_body_bytes)
    except RelayError as error:
        if error.status == 413:
            error.message += " Send larger images as a multipart/form-data upload (image=@input.png)."
        raise
    _refuse_stream(body)
    spec = validate(ImageEditRequest, body)
    if not spec.images:
        raise bad_request("'images' is required: a list of {\"image_url\": \"data:image/png;base64,…\"} "
                          "or {\"file_id\": \"file-…\"} objects.", "images")
    tokens = sum(_check_ref(ref, f"images[{i}]") for i, ref in enumerate(spec.images))
    if spec.mask is not None:
        _check_ref(spec.mask, "mask")
    return _call("image_edit", spec, body, input_image_tokens=tokens)


def _check_ref(ref: ImageRef, field: str) -> int:
    """Validate one JSON image input; its estimated input image tokens."""
    if (ref.image_url is None) == (ref.file_id is None):
        raise bad_request(f"'{field}' needs exactly one of 'image_url' or 'file_id'.", field)
    url = ref.image_url
    if url is None or url.startswith(("https://", "http://")):
        return input_image_tokens()  # the provider fetches it; dimensions unknown here
    info = inspect_image(decode_data_url(url, f"{field}.image_url"), f"{field}.image_url", "the data URL")
    return input_image_tokens(info.width, info.height)
