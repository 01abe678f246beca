"""Rocket Relay: an OpenAI- and Anthropic-compatible LLM API gateway."""
