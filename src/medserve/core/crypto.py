"""Envelope encryption of stored files with AES-256-GCM (the ``cryptography`` package).

Each object gets a fresh random 256-bit data key; the data key is wrapped by a
master key from the key store and kept in the file's header, so rotating the
master key re-wraps 48 bytes per file and never touches the ciphertext. Both
formats share the header's layout (``HEADER_SIZE`` bytes); medserve writes
format 2 and reads both::

    offset  size  field
         0     6  magic b"MSENC2" (format 2; b"MSENC1" for format 1)
         6    16  master key id, ASCII lowercase hex
        22    12  nonce of the data-key wrap
        34    48  wrapped data key: AES-GCM(master key) of the 32-byte data key + 16-byte tag,
                  associated data = magic + master key id
        82    12  format 2: nonce prefix (8 random bytes) + chunk size (uint32, big-endian)
                  format 1: nonce of the body
        94     n  body

Format 2 (streamed; the STREAM construction of Hoang, Reyhanitabar, Rogaway and
Vizár, 2015): the payload is cut into chunks of ``chunk size`` bytes, the last
one shorter or even empty, and the body is each chunk's AES-GCM(data key)
ciphertext + 16-byte tag, one after the other. Chunk ``i`` (from 0) is sealed
with nonce = prefix + ``i`` (uint32, big-endian) and associated data = magic +
prefix + chunk size + a final flag (1 on the last chunk, else 0). So a chunk
altered, moved, dropped or copied fails its tag (wrong nonce); a body cut at a
chunk boundary ends on a chunk not flagged final, and one with anything appended
makes the real last chunk be read as not final: both fail a tag. Reading and
writing hold two chunks at a time, whatever the payload's size.

Format 1 (single shot, still read): the body is AES-GCM(data key) of the whole
payload + 16-byte tag, associated data = magic + body nonce.

Every header byte is authenticated: the key id and magic by the wrap, the wrap
nonce and wrapped key by the wrap's tag, the last 12 bytes by the body's tags; a
header moved onto another body carries the wrong data key and fails the body's
tag. The wrapped key is deliberately not part of the body's associated data:
that is what lets rotation re-wrap it without re-encrypting the body.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medserve.errors import ConfigError, IntegrityError

MAGIC = b"MSENC2"  # the format medserve writes
MAGIC_V1 = b"MSENC1"  # single-shot, read only
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_ID_SIZE = 16
WRAPPED_KEY_SIZE = KEY_SIZE + TAG_SIZE
HEADER_SIZE = len(MAGIC) + KEY_ID_SIZE + NONCE_SIZE + WRAPPED_KEY_SIZE + NONCE_SIZE
MINIMUM_SIZE = HEADER_SIZE + TAG_SIZE  # an empty payload still has a tag

NONCE_PREFIX_SIZE = 8
CHUNK_SIZE = 1 << 20  # plaintext bytes per chunk that medserve writes
MAX_CHUNK_SIZE = 64 << 20  # the largest a reader accepts: bounds its memory
MAX_CHUNKS = 1 << 32  # the counter's range

_KEY_ID_PATTERN = re.compile(rb"[0-9a-f]{16}")
_NOT_FINAL, _FINAL = b"\x00", b"\x01"


class MasterKeys(Protocol):
    """What encryption needs from a key store (``medserve.storage.keystore.KeyStore``)."""

    def current(self) -> tuple[str, bytes]: ...

    def get(self, key_id: str, *, subject: str = ...) -> bytes: ...


class Readable(Protocol):
    """A binary source read in pieces: an open file, ``io.BytesIO``, a hashing wrapper."""

    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class Envelope:
    """The parsed parts of an encrypted file; ``body`` is the ciphertext with its tag(s).

    ``body_nonce`` is the header's last field: in format 2 the nonce prefix and the
    chunk size, in format 1 the body's nonce.
    """

    key_id: str
    wrap_nonce: bytes
    wrapped_key: bytes
    body_nonce: bytes
    body: bytes
    magic: bytes = MAGIC

    @property
    def version(self) -> int:
        return int(self.magic[-1:])

    @property
    def chunk_size(self) -> int:
        """Plaintext bytes per chunk (format 2)."""
        return int.from_bytes(self.body_nonce[NONCE_PREFIX_SIZE:], "big")

    @property
    def header(self) -> bytes:
        return (
            self.magic
            + self.key_id.encode("ascii")
            + self.wrap_nonce
            + self.wrapped_key
            + self.body_nonce
        )

    def to_bytes(self) -> bytes:
        return self.header + self.body


def encrypt(payload: bytes, keystore: MasterKeys, *, chunk_size: int = CHUNK_SIZE) -> bytes:
    """``payload`` sealed (format 2) under a fresh data key, wrapped by the current master key."""
    return b"".join(encrypt_stream(io.BytesIO(payload), keystore, chunk_size=chunk_size))


def encrypt_stream(
    source: Readable, keystore: MasterKeys, *, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """The encrypted file of what ``source`` holds, in pieces: the header, then each chunk.

    The master key is taken from ``keystore`` when the first piece is asked for.
    """
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ConfigError(f"chunk size must be between 1 and {MAX_CHUNK_SIZE} bytes")
    key_id, master_key = keystore.current()
    data_key = AESGCM.generate_key(bit_length=256)
    wrap_nonce, wrapped_key = wrap_key(master_key, data_key, _wrap_context(MAGIC, key_id))
    body_nonce = os.urandom(NONCE_PREFIX_SIZE) + chunk_size.to_bytes(4, "big")
    yield Envelope(key_id, wrap_nonce, wrapped_key, body_nonce, b"").header
    aead = AESGCM(data_key)
    chunk = _read_up_to(source, chunk_size)
    for index in range(MAX_CHUNKS):
        following = _read_up_to(source, chunk_size) if len(chunk) == chunk_size else b""
        final = not following
        yield aead.encrypt(
            _chunk_nonce(body_nonce, index), chunk, _chunk_context(body_nonce, final)
        )
        if final:
            return
        chunk = following
    raise ConfigError(
        f"the payload is larger than {MAX_CHUNKS} chunks of {chunk_size} bytes; "
        "use a larger chunk size"
    )


def decrypt(blob: bytes, keystore: MasterKeys, *, subject: str = "file") -> bytes:
    """The payload of ``blob``, returned only after the wrap's and the body's tags verified.

    Anything that is not an intact medserve-encrypted file under a master key the
    store holds raises IntegrityError; ``subject`` names the file in the message.
    """
    parse_header(blob[:HEADER_SIZE], subject=subject, size=len(blob))  # names a cut file's size
    return b"".join(decrypt_stream(io.BytesIO(blob), keystore, subject=subject))


def decrypt_stream(
    source: Readable, keystore: MasterKeys, *, subject: str = "file"
) -> Iterator[bytes]:
    """The payload of the encrypted file read from ``source``, chunk by chunk, either format.

    Each chunk is yielded once its tag verified, but the payload is whole and
    intact only when the iterator ends without raising IntegrityError (a cut,
    reordered or extended body is found at its end): keep what it yields where
    no one can use it until then.
    """
    header = _read_up_to(source, HEADER_SIZE)
    envelope = parse_header(header, subject=subject)
    data_key = _unwrap_data_key(envelope, keystore, subject)
    aead = AESGCM(data_key)
    if envelope.magic == MAGIC_V1:
        body = source.read()
        _check_body_size(len(body), subject)
        yield _open(aead, envelope.body_nonce, body, MAGIC_V1 + envelope.body_nonce, subject, "")
        return
    record_size = envelope.chunk_size + TAG_SIZE
    record = _read_up_to(source, record_size)
    _check_body_size(len(record), subject)
    for index in range(MAX_CHUNKS):
        following = _read_up_to(source, record_size) if len(record) == record_size else b""
        final = not following
        yield _open(
            aead,
            _chunk_nonce(envelope.body_nonce, index),
            record,
            _chunk_context(envelope.body_nonce, final),
            subject,
            f" in chunk {index + 1}",
        )
        if final:
            return
        if len(following) < TAG_SIZE:
            raise IntegrityError(
                f"{subject} failed its integrity check: it ends {len(following)} bytes into a "
                "chunk (truncated or extended); restore it from backup or retrain"
            )
        record = following
    raise IntegrityError(f"{subject} has more chunks than its format allows; it was extended")


def rewrap(blob: bytes, keystore: MasterKeys, *, subject: str = "file") -> bytes:
    """``blob`` with its data key re-wrapped under the current master key; body untouched.

    Returns ``blob`` itself when it is already under the current key.
    """
    envelope = parse(blob, subject=subject)
    header = rewrap_header(envelope.header, keystore, subject=subject)
    return blob if header is None else header + envelope.body


def rewrap_header(header: bytes, keystore: MasterKeys, *, subject: str = "file") -> bytes | None:
    """A file's header (its first ``HEADER_SIZE`` bytes) with the data key re-wrapped
    under the current master key, in the same format; None when it already is."""
    envelope = parse_header(header, subject=subject)
    key_id, master_key = keystore.current()
    if envelope.key_id == key_id:
        return None
    data_key = _unwrap_data_key(envelope, keystore, subject)
    wrap_nonce, wrapped_key = wrap_key(master_key, data_key, _wrap_context(envelope.magic, key_id))
    return replace(envelope, key_id=key_id, wrap_nonce=wrap_nonce, wrapped_key=wrapped_key).header


def parse(blob: bytes, *, subject: str = "file") -> Envelope:
    """Split an encrypted file into its fields; only the layout is checked, not the tags."""
    envelope = parse_header(blob[:HEADER_SIZE], subject=subject, size=len(blob))
    return replace(envelope, body=blob[HEADER_SIZE:])


def parse_header(header: bytes, *, subject: str = "file", size: int | None = None) -> Envelope:
    """The fields of a file's header (``body`` left empty); ``size``, the file's size when
    known, is checked to hold at least one tag."""
    magic = header[: len(MAGIC)]
    if magic not in (MAGIC, MAGIC_V1):
        version = header[len(MAGIC) - 1 : len(MAGIC)]
        if header.startswith(MAGIC[:-1]) and version.isdigit() and version > MAGIC[-1:]:
            raise IntegrityError(
                f"{subject} uses medserve encryption format {version.decode()}, which this version "
                "of medserve cannot read; upgrade medserve"
            )
        if len(header) < len(MAGIC) and MAGIC[: len(header)] == header:
            raise IntegrityError(
                f"{subject} is truncated ({len(header)} bytes); restore it from backup or retrain"
            )
        raise IntegrityError(
            f"{subject} is not a medserve-encrypted file (no {MAGIC.decode()} header): it was "
            "replaced or written without encryption; restore it from backup or retrain"
        )
    size = len(header) if size is None and len(header) < HEADER_SIZE else size
    if size is not None and size < MINIMUM_SIZE:
        raise IntegrityError(
            f"{subject} is truncated ({size} bytes, an encrypted file has at least "
            f"{MINIMUM_SIZE}); restore it from backup or retrain"
        )
    offset = len(MAGIC)
    key_id = header[offset : offset + KEY_ID_SIZE]
    if not _KEY_ID_PATTERN.fullmatch(key_id):
        raise IntegrityError(
            f"{subject} has a corrupt header (master key id is not hex): it was modified; "
            "restore it from backup or retrain"
        )
    offset += KEY_ID_SIZE
    wrap_nonce = header[offset : offset + NONCE_SIZE]
    offset += NONCE_SIZE
    wrapped_key = header[offset : offset + WRAPPED_KEY_SIZE]
    offset += WRAPPED_KEY_SIZE
    body_nonce = header[offset : offset + NONCE_SIZE]
    envelope = Envelope(key_id.decode("ascii"), wrap_nonce, wrapped_key, body_nonce, b"", magic)
    if magic == MAGIC and not 1 <= envelope.chunk_size <= MAX_CHUNK_SIZE:
        raise IntegrityError(
            f"{subject} has a corrupt header (chunk size {envelope.chunk_size} is out of range): "
            "it was modified; restore it from backup or retrain"
        )
    return envelope


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
        master_key,
        envelope.wrap_nonce,
        envelope.wrapped_key,
        _wrap_context(envelope.magic, envelope.key_id),
    )
    if data_key is None or len(data_key) != KEY_SIZE:
        raise IntegrityError(
            f"{subject} failed its integrity check: its data key does not verify under master "
            f"key {envelope.key_id} (the header was modified or corrupted); restore it from "
            "backup or retrain"
        )
    return data_key


def _open(
    aead: AESGCM, nonce: bytes, sealed: bytes, associated_data: bytes, subject: str, where: str
) -> bytes:
    try:
        return aead.decrypt(nonce, sealed, associated_data)
    except InvalidTag:
        raise IntegrityError(
            f"{subject} failed its integrity check (AES-GCM tag mismatch{where}): it was "
            "modified, cut short, reordered or corrupted; restore it from backup or retrain"
        ) from None


def _check_body_size(size: int, subject: str) -> None:
    if size < TAG_SIZE:
        raise IntegrityError(
            f"{subject} is truncated ({HEADER_SIZE + size} bytes, an encrypted file has at "
            f"least {MINIMUM_SIZE}); restore it from backup or retrain"
        )


def _read_up_to(source: Readable, size: int) -> bytes:
    """``size`` bytes from ``source``, fewer only at its end (a pipe may return less)."""
    data = source.read(size)
    if len(data) in (0, size):
        return data
    pieces = [data]
    missing = size - len(data)
    while missing and (piece := source.read(missing)):
        pieces.append(piece)
        missing -= len(piece)
    return b"".join(pieces)


def _chunk_nonce(body_nonce: bytes, index: int) -> bytes:
    return body_nonce[:NONCE_PREFIX_SIZE] + index.to_bytes(4, "big")


def _chunk_context(body_nonce: bytes, final: bool) -> bytes:
    return MAGIC + body_nonce + (_FINAL if final else _NOT_FINAL)


def _wrap_context(magic: bytes, key_id: str) -> bytes:
    return magic + key_id.encode("ascii")
