"""Provider answers (LiteLLM objects or plain JSON) as the plain dicts the relay sends on."""

from __future__ import annotations

from typing import Any

# LiteLLM's response objects carry bookkeeping that is not part of OpenAI's wire format.
PRIVATE_FIELDS = ("_hidden_params", "_response_ms", "provider_specific_fields")


def plain(obj: Any) -> dict:
    if hasattr(obj, "model_dump"):
        # warnings=False: LiteLLM types embeddings as floats, but base64 answers carry strings.
        data = obj.model_dump(exclude_none=True, warnings=False)
    else:
        data = dict(obj)
    for key in PRIVATE_FIELDS:
        data.pop(key, None)
    return data
