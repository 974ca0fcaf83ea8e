"""Envelope encryption: round trips, and every kind of altered or foreign file refused."""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import pytest

from medserve.config import Settings
from medserve.core.crypto import (
    HEADER_SIZE,
    KEY_ID_SIZE,
    MAGIC,
    MINIMUM_SIZE,
    NONCE_SIZE,
    WRAPPED_KEY_SIZE,
    decrypt,
    encrypt,
    parse,
)
from medserve.errors import IntegrityError
from medserve.storage import ModelVersion, Registry
from medserve.storage.keystore import KeyStore

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
    "body": HEADER_SIZE + 10,
    "body tag": -1,
}


class Tripwire:
    """Counts unpickling, so a test can prove a refused artifact was never unpickled."""

    unpickled = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        Tripwire.unpickled += 1
        self.__dict__.update(state)


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


def flipped(blob: bytes, position: int) -> bytes:
    altered = bytearray(blob)
    altered[position] ^= 0x01
    return bytes(altered)


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
    [b"\x80\x04\x95sklearn pickle" * 20, b"PK\x03\x04" + bytes(200), b"MSENC2" + bytes(200)],
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
