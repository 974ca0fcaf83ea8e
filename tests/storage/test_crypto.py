"""Envelope encryption: round trips, and every kind of altered or foreign file refused."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import pytest
from pydantic import SecretStr

from medserve.config import Settings
from medserve.core.crypto import (
    HEADER_SIZE,
    KEY_ID_SIZE,
    MAGIC,
    MAGIC_V1,
    MINIMUM_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    WRAPPED_KEY_SIZE,
    decrypt,
    decrypt_stream,
    encrypt,
    parse,
    rewrap,
)
from medserve.errors import IntegrityError
from medserve.storage import ModelVersion, Registry
from medserve.storage.keystore import KeyStore, key_id

RegisterModel = Callable[..., ModelVersion]  # the register_model fixture
PAYLOAD = b"joblib pickle of a model \x00\x01\x02" * 50

KEY_ID_AT = len(MAGIC)
WRAP_NONCE_AT = KEY_ID_AT + KEY_ID_SIZE
WRAPPED_KEY_AT = WRAP_NONCE_AT + NONCE_SIZE
BODY_NONCE_AT = WRAPPED_KEY_AT + WRAPPED_KEY_SIZE
FLIP_LOCATIONS = {
    "magic": 0,
    "magic version": len(MAGIC) - 1,
    "key id": KEY_ID_AT + 3,
    "wrap nonce": WRAP_NONCE_AT,
    "wrapped data key": WRAPPED_KEY_AT + 5,
    "wrapped data key tag": BODY_NONCE_AT - 1,
    "body nonce": BODY_NONCE_AT + 2,
    "chunk size": HEADER_SIZE - 2,
    "body": HEADER_SIZE + 10,
    "body tag": -1,
}


class Tripwire:
    """Counts unpickling, so a test can prove a refused artifact was never unpickled."""

    unpickled = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        Tripwire.unpickled += 1
        self.__dict__.update(state)


# Written by medserve 0.1 (format 1, single shot) under OLD_MASTER_KEY; its payload is
# OLD_PAYLOAD. The same bytes are in tests/storage/test_artifacts_stream.py.
OLD_MASTER_KEY = bytes(range(32))
OLD_PAYLOAD = b"model saved by medserve 0.1 \x00\x01" * 3
OLD_FORMAT_FILE = bytes.fromhex(
    "4d53454e43313633306463643239363663343333363656e0a29006b7583807378c532412832ecb3b54d0d"
    "ee6029d46f549cf878d33685b7e168a70a091110924b9fbd2041cc40a78b3584d45d4da90cbb5ea250ed"
    "f7f830c793b1db4bb890b8517a15dfa610f8adf45852d3afb24a958541dad67f34007212938d49809b45"
    "7f4111fb915e21fadc13061d4578567478c9d156cd9895985285401bbeb9bfab3033ee1b4e36a093a0dc"
    "9d43d6c85ab7e2207df787be6383dc3996bd5f5c134bcea15486b4550f295cd"
)
SMALL_CHUNK = 1000


@pytest.fixture
def home_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def keystore(home_settings: Settings) -> KeyStore:
    return KeyStore(home_settings)


@pytest.fixture
def sqlite_registry(home_settings: Settings) -> Iterator[Registry]:
    with Registry(home_settings) as opened:
        yield opened


@pytest.fixture
def old_format_keystore(tmp_path: Path) -> KeyStore:
    """A key store holding the master key the format-1 file was written under."""
    environment = base64.b64encode(OLD_MASTER_KEY).decode()
    return KeyStore(Settings(home=tmp_path / "old", master_key=SecretStr(environment)))


def flipped(blob: bytes, position: int) -> bytes:
    altered = bytearray(blob)
    altered[position] ^= 0x01
    return bytes(altered)


def chunks_of(blob: bytes, chunk_size: int = SMALL_CHUNK) -> tuple[bytes, list[bytes]]:
    """A format-2 file's header and its sealed chunks."""
    record = chunk_size + TAG_SIZE
    body = blob[HEADER_SIZE:]
    return blob[:HEADER_SIZE], [body[at : at + record] for at in range(0, len(body), record)]


@pytest.mark.parametrize("payload", [b"", b"x", PAYLOAD, os.urandom(1 << 20)])
def test_decrypt_returns_what_was_encrypted(keystore: KeyStore, payload: bytes) -> None:
    blob = encrypt(payload, keystore)
    assert blob.startswith(MAGIC)
    assert len(blob) == MINIMUM_SIZE + len(payload)
    assert decrypt(blob, keystore) == payload


def test_each_encryption_uses_a_fresh_data_key_and_nonce(keystore: KeyStore) -> None:
    first, second = parse(encrypt(PAYLOAD, keystore)), parse(encrypt(PAYLOAD, keystore))
    assert first.key_id == second.key_id == keystore.current()[0]
    assert first.wrapped_key != second.wrapped_key
    assert first.body_nonce != second.body_nonce
    assert first.body != second.body


@pytest.mark.parametrize("position", FLIP_LOCATIONS.values(), ids=FLIP_LOCATIONS.keys())
def test_a_flipped_byte_anywhere_is_refused(keystore: KeyStore, position: int) -> None:
    blob = encrypt(PAYLOAD, keystore)
    with pytest.raises(IntegrityError, match="artifact"):
        decrypt(flipped(blob, position), keystore, subject="artifact")


@pytest.mark.parametrize("length", [0, 3, len(MAGIC), HEADER_SIZE, MINIMUM_SIZE - 1, -1])
def test_a_truncated_file_is_refused(keystore: KeyStore, length: int) -> None:
    blob = encrypt(PAYLOAD, keystore)
    with pytest.raises(IntegrityError, match="truncated|integrity check"):
        decrypt(blob[:length], keystore)


def test_a_header_moved_onto_another_body_is_refused(keystore: KeyStore) -> None:
    first, second = encrypt(PAYLOAD, keystore), encrypt(PAYLOAD, keystore)
    with pytest.raises(IntegrityError, match="tag mismatch"):
        decrypt(first[:HEADER_SIZE] + second[HEADER_SIZE:], keystore)


def test_a_file_from_another_master_key_is_refused_naming_the_key(
    keystore: KeyStore, tmp_path: Path
) -> None:
    foreign_store = KeyStore(Settings(home=tmp_path / "elsewhere"))
    foreign_id, _ = foreign_store.current()
    blob = encrypt(PAYLOAD, foreign_store)
    keystore.current()  # this home has its own key file

    with pytest.raises(IntegrityError) as raised:
        decrypt(blob, keystore, subject="artifact")
    assert str(raised.value) == (
        f"artifact was encrypted under master key {foreign_id}, which this key store does not "
        f"hold; set MEDSERVE_MASTER_KEY to that key or restore {keystore.key_file}"
    )


@pytest.mark.parametrize(
    "blob",
    [b"\x80\x04\x95sklearn pickle" * 20, b"PK\x03\x04" + bytes(200), b"MSENC3" + bytes(200)],
    ids=["pickle", "zip", "future format"],
)
def test_bytes_not_written_by_medserve_are_refused(keystore: KeyStore, blob: bytes) -> None:
    with pytest.raises(IntegrityError, match="not a medserve-encrypted file|cannot read"):
        decrypt(blob, keystore)


def test_a_registered_model_is_encrypted_on_disk_and_loads_back(
    sqlite_registry: Registry, register_model: RegisterModel, home_settings: Settings
) -> None:
    mv = register_model(sqlite_registry, "sepsis")
    stored = (home_settings.home / mv.artifact_path).read_bytes()
    payload = decrypt(stored, KeyStore(home_settings))

    assert b"sklearn" in zlib.decompress(payload)  # recognisable in the plaintext...
    assert b"sklearn" not in stored  # ...but not on disk
    assert payload[:32] not in stored
    assert stored.startswith(MAGIC)
    assert mv.artifact_sha256 == hashlib.sha256(stored[HEADER_SIZE:]).hexdigest()
    assert type(sqlite_registry.load(mv)).__name__ == "LogisticRegression"
    assert type(joblib.load(io.BytesIO(payload))).__name__ == "LogisticRegression"


@pytest.mark.parametrize("position", FLIP_LOCATIONS.values(), ids=FLIP_LOCATIONS.keys())
def test_a_tampered_artifact_is_refused_before_unpickling(
    sqlite_registry: Registry,
    register_model: RegisterModel,
    home_settings: Settings,
    position: int,
) -> None:
    mv = register_model(sqlite_registry, "tripwire", model=Tripwire())
    path = home_settings.home / mv.artifact_path
    path.write_bytes(flipped(path.read_bytes(), position))
    Tripwire.unpickled = 0

    with pytest.raises(IntegrityError, match=f"artifact {mv.artifact_path}"):
        sqlite_registry.load(mv)
    assert Tripwire.unpickled == 0


# Format 2: a body of chunks (STREAM)

CHUNKED_SIZES = [
    0,
    1,
    SMALL_CHUNK - 1,
    SMALL_CHUNK,
    SMALL_CHUNK + 1,
    3 * SMALL_CHUNK,
    3 * SMALL_CHUNK + 7,
]


@pytest.mark.parametrize("size", CHUNKED_SIZES)
def test_a_chunked_payload_decrypts_to_what_was_encrypted(keystore: KeyStore, size: int) -> None:
    payload = os.urandom(size)
    blob = encrypt(payload, keystore, chunk_size=SMALL_CHUNK)
    chunk_count = max(1, -(-size // SMALL_CHUNK))  # an empty payload is one empty chunk
    assert len(blob) == HEADER_SIZE + size + chunk_count * TAG_SIZE
    assert parse(blob).chunk_size == SMALL_CHUNK
    assert decrypt(blob, keystore) == payload
    pieces = list(decrypt_stream(io.BytesIO(blob), keystore))
    assert [len(piece) for piece in pieces[:-1]] == [SMALL_CHUNK] * (chunk_count - 1)
    assert b"".join(pieces) == payload


def rearranged(blob: bytes, how: str) -> bytes:
    header, chunks = chunks_of(blob)
    first, second, third, last = chunks
    altered = {
        "second chunk altered": [first, flipped(second, 10), third, last],
        "chunks swapped": [first, third, second, last],
        "a chunk dropped": [first, third, last],
        "a chunk repeated": [first, second, second, third, last],
        "cut after a whole chunk": [first, second, third],
        "cut inside a chunk": [first, second, third, last[:-3]],
        "cut inside a tag": [first, second, third[: TAG_SIZE - 1]],
        "a chunk appended": [first, second, third, last, first],
        "the last chunk appended again": [first, second, third, last, last],
        "bytes appended": [first, second, third, last, b"\x00" * 5],
    }[how]
    return header + b"".join(altered)


REARRANGEMENTS = [
    "second chunk altered",
    "chunks swapped",
    "a chunk dropped",
    "a chunk repeated",
    "cut after a whole chunk",
    "cut inside a chunk",
    "cut inside a tag",
    "a chunk appended",
    "the last chunk appended again",
    "bytes appended",
]


@pytest.mark.parametrize("how", REARRANGEMENTS)
def test_a_chunked_body_altered_cut_reordered_or_extended_is_refused(
    keystore: KeyStore, how: str
) -> None:
    blob = encrypt(os.urandom(3 * SMALL_CHUNK + 7), keystore, chunk_size=SMALL_CHUNK)
    assert len(chunks_of(blob)[1]) == 4
    altered = rearranged(blob, how)

    with pytest.raises(IntegrityError, match="^artifact 7 failed its integrity check"):
        decrypt(altered, keystore, subject="artifact 7")
    with pytest.raises(IntegrityError, match="^artifact 7 failed its integrity check"):
        list(decrypt_stream(io.BytesIO(altered), keystore, subject="artifact 7"))


def test_a_chunk_from_another_file_under_the_same_key_store_is_refused(keystore: KeyStore) -> None:
    payload = os.urandom(2 * SMALL_CHUNK)
    header, (first, _) = chunks_of(encrypt(payload, keystore, chunk_size=SMALL_CHUNK))
    _, (_, foreign) = chunks_of(encrypt(payload, keystore, chunk_size=SMALL_CHUNK))
    with pytest.raises(IntegrityError, match="tag mismatch in chunk 2"):
        decrypt(header + first + foreign, keystore)


def test_a_format_2_file_relabelled_format_1_is_refused(keystore: KeyStore) -> None:
    blob = encrypt(PAYLOAD, keystore)
    with pytest.raises(IntegrityError, match="data key does not verify"):
        decrypt(MAGIC_V1 + blob[len(MAGIC) :], keystore)


def test_a_header_naming_an_absurd_chunk_size_is_refused(keystore: KeyStore) -> None:
    blob = bytearray(encrypt(PAYLOAD, keystore))
    blob[HEADER_SIZE - 4 : HEADER_SIZE] = (1 << 31).to_bytes(4, "big")
    with pytest.raises(IntegrityError, match="chunk size 2147483648 is out of range"):
        decrypt(bytes(blob), keystore)


def test_rewrap_keeps_the_chunks_and_they_still_decrypt(
    keystore: KeyStore, home_settings: Settings
) -> None:
    payload = os.urandom(3 * SMALL_CHUNK)
    blob = encrypt(payload, keystore, chunk_size=SMALL_CHUNK)
    keystore.add_master_key()

    rewrapped = rewrap(blob, keystore)

    assert parse(rewrapped).key_id == keystore.current()[0] != parse(blob).key_id
    assert rewrapped[HEADER_SIZE - NONCE_SIZE :] == blob[HEADER_SIZE - NONCE_SIZE :]
    assert decrypt(rewrapped, KeyStore(home_settings)) == payload


# Format 1 (medserve 0.1): still read, never written


def test_a_file_written_by_the_previous_format_still_decrypts(
    old_format_keystore: KeyStore,
) -> None:
    assert OLD_FORMAT_FILE.startswith(MAGIC_V1)
    assert parse(OLD_FORMAT_FILE).key_id == key_id(OLD_MASTER_KEY)
    assert decrypt(OLD_FORMAT_FILE, old_format_keystore) == OLD_PAYLOAD
    assert b"".join(decrypt_stream(io.BytesIO(OLD_FORMAT_FILE), old_format_keystore)) == (
        OLD_PAYLOAD
    )


@pytest.mark.parametrize("position", FLIP_LOCATIONS.values(), ids=FLIP_LOCATIONS.keys())
def test_a_flipped_byte_in_a_previous_format_file_is_refused(
    old_format_keystore: KeyStore, position: int
) -> None:
    with pytest.raises(IntegrityError, match="^artifact"):
        decrypt(flipped(OLD_FORMAT_FILE, position), old_format_keystore, subject="artifact")


@pytest.mark.parametrize("length", [HEADER_SIZE, MINIMUM_SIZE - 1, -1])
def test_a_truncated_previous_format_file_is_refused(
    old_format_keystore: KeyStore, length: int
) -> None:
    with pytest.raises(IntegrityError, match="truncated|integrity check"):
        decrypt(OLD_FORMAT_FILE[:length], old_format_keystore)


def test_a_previous_format_file_is_rewrapped_in_its_own_format(tmp_path: Path) -> None:
    new_key = os.urandom(32)
    both = ",".join(base64.b64encode(key).decode() for key in (new_key, OLD_MASTER_KEY))
    rotating = KeyStore(Settings(home=tmp_path / "both", master_key=SecretStr(both)))

    rewrapped = rewrap(OLD_FORMAT_FILE, rotating)

    assert rewrapped.startswith(MAGIC_V1)
    assert rewrapped[HEADER_SIZE:] == OLD_FORMAT_FILE[HEADER_SIZE:]
    only_new = SecretStr(base64.b64encode(new_key).decode())
    assert decrypt(rewrapped, KeyStore(Settings(home=tmp_path / "new", master_key=only_new))) == (
        OLD_PAYLOAD
    )
