"""Finance's pricing tool behind scripts/update_pricing.py (never imported by the gateway).

source  list prices from LiteLLM's bundled cost map (with TTL cache writes and long-context tiers)
markup  pricing/markup.toml, and the catalog it calls for (sell = list x multiplier)
render  the catalog's TOML text, and the diff finance reviews
check   what --check refuses: prices below list, tiers or TTL prices the provider has and we lack
"""
