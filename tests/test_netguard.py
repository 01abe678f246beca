"""Which caller-supplied upstream URLs reach internal addresses."""

from __future__ import annotations

import pytest

from relay.netguard import internal_target
from relay.settings import Settings


@pytest.mark.parametrize("url", ["http://127.0.0.1/v1", "http://localhost:1/", "http://169.254.169.254/",
                                 "http://10.0.0.1/", "http://172.16.5.4/", "http://[fd00::1]/", "http://0.0.0.0/",
                                 "http://nowhere.invalid/"])
def test_internal_or_unresolvable_hosts_are_named(url: str) -> None:
    assert internal_target(url) is not None


@pytest.mark.parametrize("url", ["https://8.8.8.8/v1", "https://[2606:4700:4700::1111]/v1"])
def test_public_addresses_pass(url: str) -> None:
    assert internal_target(url) is None


def test_internal_base_urls_default_to_dev_only() -> None:
    assert Settings(_env_file=None, env="dev").allow_internal_base_urls
    assert not Settings(_env_file=None, env="production", secret_key="s").allow_internal_base_urls
    assert Settings(_env_file=None, env="production", RELAY_ALLOW_INTERNAL_BASE_URLS=True).allow_internal_base_urls
