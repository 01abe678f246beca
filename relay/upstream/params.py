"""Which fields of a client's body may reach LiteLLM as call arguments.

LiteLLM takes its own controls as keyword arguments beside the provider's parameters: a body
field named `api_base`, `base_url`, `mock_response` or `api_key` would redirect or fake the call
(and could send a pool key to a host of the client's choosing). Those never pass.
"""

from __future__ import annotations

from typing import Any

from litellm.types.utils import all_litellm_params

# LiteLLM's controls, plus transport arguments its list does not name. `metadata` is also an
# OpenAI and Anthropic request field, and is passed as such.
LITELLM_CONTROLS = (frozenset(all_litellm_params) - {"metadata"}) | {
    "api_base", "base_url", "api_key", "api_version", "timeout", "client", "extra_headers", "extra_body",
    "extra_query", "num_retries", "max_retries", "drop_params", "custom_llm_provider", "shared_session",
}


def passthrough(body: dict[str, Any], own: frozenset[str] | set[str]) -> dict[str, Any]:
    """The client's fields that go to the provider: all but the relay's own and LiteLLM's controls
    (including its private `_…` arguments)."""
    return {k: v for k, v in body.items()
            if k not in own and k not in LITELLM_CONTROLS and not k.startswith("_")}
