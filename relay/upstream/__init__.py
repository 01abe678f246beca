"""Adapters: one per operation, each the LiteLLM call and the reading of its answer."""
