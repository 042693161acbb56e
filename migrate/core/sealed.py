"""Sealing small secrets for the state store: AES-256-GCM under a key derived from a secret the project file
names, so that the store (and every backup of it) holds only ciphertext, useless without that key.

The key material is any secret of at least :data:`MIN_KEY_LENGTH` characters (``openssl rand -base64 32``
makes one); HKDF-SHA256 turns it into the AES key. Each value is sealed with a fresh 96-bit nonce and bound to
what it is (``aad``: the extension and field), so a sealed value cannot be moved to another row unnoticed. A
key's *id* (a fingerprint of the derived key, never the key) is kept beside each value, so a changed key is
recognised and named instead of failing as garbage.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from migrate.core.config import KEY_LENGTH
from migrate.core.errors import SecretError
from migrate.core.secrets import Secret

#: Key material shorter than this is refused: a guessable key would make the sealing decoration.
MIN_KEY_LENGTH = KEY_LENGTH
_VERSION = "v1"
_INFO = b"govmigrate sealed secrets v1"


class SealError(SecretError):
    """A sealed value cannot be opened: another key sealed it, or it was changed."""


class Sealer:
    """Seals and opens values with one key."""

    def __init__(self, material: Secret, *, label: str = "key") -> None:
        value = material.reveal()
        if len(value) < MIN_KEY_LENGTH:
            raise SecretError(f"{label}: the key is {len(value)} characters long; it needs at least "
                              f"{MIN_KEY_LENGTH} (make one with: openssl rand -base64 32)")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"govmigrate", info=_INFO).derive(value.encode())
        self._aead = AESGCM(key)
        #: Names the key in the store without revealing anything of it.
        self.key_id = hashlib.sha256(b"key id:" + key).hexdigest()[:16]

    def seal(self, value: str, aad: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), aad.encode("utf-8"))
        return f"{_VERSION}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def open(self, token: str, aad: str) -> str:
        version, _, body = token.partition(":")
        if version != _VERSION:
            raise SealError(f"a sealed value of an unknown form ({version!r})")
        try:
            raw = base64.b64decode(body, validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], aad.encode("utf-8")).decode("utf-8")
        except (InvalidTag, ValueError) as exc:
            raise SealError("a sealed value does not open with this key (changed, or sealed for another row)") from exc
