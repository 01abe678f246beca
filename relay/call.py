"""The request as the pipeline sees it, whatever protocol or prefix it came in on."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request, kept byte for byte."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class Call:
    operation: str  # chat | messages | count_tokens | embeddings | image_generation | image_edit
    protocol: str  # openai | anthropic: the error shape and stream framing the client expects
    model: str  # as the client named it
    body: dict  # validated JSON body, or the text fields of a multipart form
    stream: bool = False
    prompt_tokens: int = 0  # pre-counted with tiktoken
    input_image_tokens: int = 0  # estimated image inputs (image edits), see relay.image_tokens
    max_output_tokens: int | None = None  # what the client capped the output at, if it did
    files: dict[str, list[Upload]] = field(default_factory=dict)
    forward_headers: dict[str, str] = field(default_factory=dict)  # e.g. anthropic-beta
