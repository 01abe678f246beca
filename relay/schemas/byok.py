"""The body of POST /byok/credentials."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from relay.credentials import check_provider
from relay.schemas.admin import check_api_key, check_label


class CredentialIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    provider: str
    api_key: str = Field(min_length=1, max_length=4096)
    base_url: str | None = Field(default=None, max_length=2048)  # e.g. Azure or a self-hosted gateway
    label: str | None = Field(default=None, max_length=200)
    verify: bool = False  # check the key against the provider before answering

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        return check_provider(value)

    @field_validator("api_key")
    @classmethod
    def _sendable_key(cls, value: str) -> str:
        return check_api_key(value)

    @field_validator("label")
    @classmethod
    def _printable_label(cls, value: str | None) -> str | None:
        return check_label(value)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        return check_base_url(value)


def check_base_url(value: str) -> str:
    """An http(s) URL the upstream client can open: ASCII (punycode for international names), a
    host, a valid port."""
    example = "e.g. https://my-gateway.example.com/v1"
    if any(not "!" <= c <= "~" for c in value):
        raise ValueError(f"base_url must be printable ASCII without spaces (punycode for international host "
                         f"names), {example}")
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number from 0 to 65535
    except ValueError:
        raise ValueError(f"base_url has an invalid port, {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL, {example}")
    return value.rstrip("/")
