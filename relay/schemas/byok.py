"""The body of POST /byok/credentials."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from relay.credentials import check_provider


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

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("base_url must be an http(s) URL, e.g. https://my-gateway.example.com/v1")
        return value.rstrip("/")
