"""Encryption at rest for provider credentials (Fernet: AES-128-CBC + HMAC, from `cryptography`).

RELAY_SECRET_KEY may be any string: it is stretched to a Fernet key with SHA-256. Rotation keeps the
old keys able to decrypt (MultiFernet) until `relay byok rotate-key` has re-encrypted every row.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["SecretBox", "InvalidToken"]


def _fernet(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


class SecretBox:
    """Encrypts with the current secret; decrypts with the current or any older one."""

    def __init__(self, secret: str, old_secrets: list[str] | tuple[str, ...] = ()) -> None:
        self._current = _fernet(secret)
        self._all = MultiFernet([self._current, *(_fernet(s) for s in old_secrets)])

    def encrypt(self, plaintext: str) -> str:
        return self._current.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._all.decrypt(token.encode()).decode()

    def rotate(self, token: str) -> str:
        """Re-encrypt a token made with any known secret under the current one."""
        return self._all.rotate(token.encode()).decode()


def mask_key(api_key: str) -> str:
    """`sk-proj-abc…wxyz` → `sk-…wxyz`: enough to recognise a key, never enough to use it."""
    head = api_key.split("-", 1)[0] + "-" if "-" in api_key[:8] else ""
    return f"{head}…{api_key[-4:]}" if len(api_key) > 8 else "…"
