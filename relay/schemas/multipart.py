"""Reading a multipart/form-data body: text fields and file parts, byte for byte, under a size limit
(413 as soon as the body passes it, whether or not a content-length was declared)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from relay.call import Upload
from relay.errors import bad_request
from relay.schemas.body import limited_stream

MAX_FILES = 32  # OpenAI takes up to 16 input images plus a mask
MAX_FIELDS = 100


@dataclass
class Form:
    fields: dict[str, str | list[str]] = field(default_factory=dict)  # a repeated field keeps every value
    files: dict[str, list[Upload]] = field(default_factory=dict)


async def read_form(request: Request, limit: int) -> Form:
    stream = limited_stream(request, limit, "Upload")
    # Text parts may be as large as the whole body allows; the stream enforces that limit.
    parser = MultiPartParser(request.headers, stream, max_files=MAX_FILES, max_fields=MAX_FIELDS,  # type: ignore[arg-type]
                             max_part_size=limit)
    try:
        parsed = await parser.parse()
    except MultiPartException as exc:
        raise bad_request(f"The multipart/form-data body could not be read: {exc.message}",
                          code="invalid_multipart") from None
    form = Form()
    try:
        for name, value in parsed.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                upload = Upload(value.filename or "", value.content_type or "", data)  # "" = none sent
                form.files.setdefault(name, []).append(upload)
            elif name in form.fields:
                previous = form.fields[name]
                form.fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                form.fields[name] = value
    finally:
        await parsed.close()
    return form
