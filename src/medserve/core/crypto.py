"""Envelope encryption of stored files with AES-256-GCM (the ``cryptography`` package).

Each object gets a fresh random 256-bit data key; the data key is wrapped by a
master key from the key store and kept in the file's header, so rotating the
master key re-wraps 48 bytes per file and never touches the ciphertext. Format::

    offset  size  field
         0     6  magic b"MSENC1" (format version 1)
         6    16  master key id, ASCII lowercase hex
        22    12  nonce of the data-key wrap
        34    48  wrapped data key: AES-GCM(master key) of the 32-byte data key + 16-byte tag,
                  associated data = magic + master key id
        82    12  nonce of the body
        94     n  body: AES-GCM(data key) of the payload + 16-byte tag,
                  associated data = magic + body nonce

Every header byte is authenticated: the key id and magic by the wrap, the wrap
nonce and wrapped key by the wrap's tag, the body nonce by the body's tag; a
header moved onto another body carries the wrong data key and fails the body's
tag. The wrapped key is deliberately not part of the body's associated data:
that is what lets rotation re-wrap it without re-encrypting the body.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medserve.errors import IntegrityError

MAGIC = b"MSENC1"
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_ID_SIZE = 16
WRAPPED_KEY_SIZE = KEY_SIZE + TAG_SIZE
HEADER_SIZE = len(MAGIC) + KEY_ID_SIZE + NONCE_SIZE + WRAPPED_KEY_SIZE + NONCE_SIZE
MINIMUM_SIZE = HEADER_SIZE + TAG_SIZE  # an empty payload still has a tag

_KEY_ID_PATTERN = re.compile(rb"[0-9a-f]{16}")


class MasterKeys(Protocol):
    """What encryption needs from a key store (``medserve.storage.keystore.KeyStore``)."""

    def current(self) -> tuple[str, bytes]: ...

    def get(self, key_id: str, *, subject: str = ...) -> bytes: ...


@dataclass(frozen=True)
class Envelope:
    """The parsed parts of an encrypted file; ``body`` is ciphertext plus tag."""

    key_id: str
    wrap_nonce: bytes
    wrapped_key: bytes
    body_nonce: bytes
    body: bytes

    def to_bytes(self) -> bytes:
        return (
            MAGIC
            + self.key_id.encode("ascii")
            + self.wrap_nonce
            + self.wrapped_key
            + self.body_nonce
            + self.body
        )


def encrypt(payload: bytes, keystore: MasterKeys) -> bytes:
    """``payload`` sealed under a fresh data key, wrapped by the key store's current master key."""
    key_id, master_key = keystore.current()
    data_key = AESGCM.generate_key(bit_length=256)
    wrap_nonce, wrapped_key = wrap_key(master_key, data_key, _wrap_context(key_id))
    body_nonce = os.urandom(NONCE_SIZE)
    body = AESGCM(data_key).encrypt(body_nonce, payload, MAGIC + body_nonce)
    return Envelope(key_id, wrap_nonce, wrapped_key, body_nonce, body).to_bytes()


def decrypt(blob: bytes, keystore: MasterKeys, *, subject: str = "file") -> bytes:
    """The payload of ``blob``, returned only after both GCM tags verified.

    Anything that is not an intact medserve-encrypted file under a master key the
    store holds raises IntegrityError; ``subject`` names the file in the message.
    """
    envelope = parse(blob, subject=subject)
    data_key = _unwrap_data_key(envelope, keystore, subject)
    try:
        return AESGCM(data_key).decrypt(
            envelope.body_nonce, envelope.body, MAGIC + envelope.body_nonce
        )
    except InvalidTag:
        raise IntegrityError(
            f"{subject} failed its integrity check (AES-GCM tag mismatch): it was modified "
            "or corrupted; restore it from backup or retrain"
        ) from None


def rewrap(blob: bytes, keystore: MasterKeys, *, subject: str = "file") -> bytes:
    """``blob`` with its data key re-wrapped under the current master key; body untouched.

    Returns ``blob`` itself when it is already under the current key.
    """
    envelope = parse(blob, subject=subject)
    key_id, master_key = keystore.current()
    if envelope.key_id == key_id:
        return blob
    data_key = _unwrap_data_key(envelope, keystore, subject)
    wrap_nonce, wrapped_key = wrap_key(master_key, data_key, _wrap_context(key_id))
    return Envelope(key_id, wrap_nonce, wrapped_key, envelope.body_nonce, envelope.body).to_bytes()


def parse(blob: bytes, *, subject: str = "file") -> Envelope:
    """Split an encrypted file into its fields; only the layout is checked, not the tags."""
    if not blob.startswith(MAGIC):
        version = blob[len(MAGIC) - 1 : len(MAGIC)]
        if blob.startswith(MAGIC[:-1]) and version.isdigit() and version > MAGIC[-1:]:
            raise IntegrityError(
                f"{subject} uses medserve encryption format {version.decode()}, which this version "
                "of medserve cannot read; upgrade medserve"
            )
        if len(blob) < len(MAGIC) and MAGIC.startswith(blob):
            raise IntegrityError(
                f"{subject} is truncated ({len(blob)} bytes); restore it from backup or retrain"
            )
        raise IntegrityError(
            f"{subject} is not a medserve-encrypted file (no {MAGIC.decode()} header): it was "
            "replaced or written without encryption; restore it from backup or retrain"
        )
    if len(blob) < MINIMUM_SIZE:
        raise IntegrityError(
            f"{subject} is truncated ({len(blob)} bytes, an encrypted file has at least "
            f"{MINIMUM_SIZE}); restore it from backup or retrain"
        )
    offset = len(MAGIC)
    key_id = blob[offset : offset + KEY_ID_SIZE]
    if not _KEY_ID_PATTERN.fullmatch(key_id):
        raise IntegrityError(
            f"{subject} has a corrupt header (master key id is not hex): it was modified; "
            "restore it from backup or retrain"
        )
    offset += KEY_ID_SIZE
    wrap_nonce = blob[offset : offset + NONCE_SIZE]
    offset += NONCE_SIZE
    wrapped_key = blob[offset : offset + WRAPPED_KEY_SIZE]
    offset += WRAPPED_KEY_SIZE
    body_nonce = blob[offset : offset + NONCE_SIZE]
    return Envelope(key_id.decode("ascii"), wrap_nonce, wrapped_key, body_nonce, blob[HEADER_SIZE:])


def wrap_key(wrapping_key: bytes, secret: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
    """``(nonce, AES-GCM ciphertext + tag)`` of ``secret`` under ``wrapping_key``."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce, AESGCM(wrapping_key).encrypt(nonce, secret, associated_data)


def unwrap_key(
    wrapping_key: bytes, nonce: bytes, wrapped: bytes, associated_data: bytes
) -> bytes | None:
    """The secret ``wrap_key`` sealed, or None when the tag does not verify."""
    try:
        return AESGCM(wrapping_key).decrypt(nonce, wrapped, associated_data)
    except InvalidTag:
        return None


def _unwrap_data_key(envelope: Envelope, keystore: MasterKeys, subject: str) -> bytes:
    master_key = keystore.get(envelope.key_id, subject=subject)
    data_key = unwrap_key(
        master_key, envelope.wrap_nonce, envelope.wrapped_key, _wrap_context(envelope.key_id)
    )
    if data_key is None or len(data_key) != KEY_SIZE:
        raise IntegrityError(
            f"{subject} failed its integrity check: its data key does not verify under master "
            f"key {envelope.key_id} (the header was modified or corrupted); restore it from "
            "backup or retrain"
        )
    return data_key


def _wrap_context(key_id: str) -> bytes:
    return MAGIC + key_id.encode("ascii")
