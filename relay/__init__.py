"""Rocket Relay: an OpenAI- and Anthropic-compatible LLM API gateway."""

import os

# The relay prices from its own catalog; LiteLLM must not fetch its cost map over the network at
# import (it would stall start-up where the internet is unreachable).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
