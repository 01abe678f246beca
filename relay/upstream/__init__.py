"""Adapters, one per operation: the upstream call (relay.upstream.client; translated through
relay.upstream.litellm_bridge where the protocols differ) and the reading of its answer."""
