"""Suite-wide settings. LiteLLM must not try to download its cost map in tests."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
