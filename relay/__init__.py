"""Rocket Relay: an OpenAI- and Anthropic-compatible LLM API gateway."""

import os

# LiteLLM reads these when it is first imported, so they are set before any relay module imports it.
# Its bundled Anthropic beta-header table, rather than a blocking GitHub fetch on the first Claude call:
os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
# A client that leaves a Claude stream stops the upstream stream; by default LiteLLM keeps draining it
# in the background (the provider keeps generating and billing the pool key for output nobody reads).
os.environ.setdefault("ANTHROPIC_MESSAGES_MAX_DETACHED_STREAM_DRAINS", "0")
