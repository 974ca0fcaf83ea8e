"""Master keys, purpose keys and master-key rotation."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

from medserve.config import Settings
from medserve.core.crypto import HEADER_SIZE, decrypt, encrypt, parse
from medserve.errors import ConfigError, IntegrityError
from medserve.storage import ArtifactRef, ModelVersion, Registry, read_artifact, write_artifact
from medserve.storage.artifacts import rotate_master_key
from medserve.storage.keystore import KeyStore, key_id

RegisterModel = Callable[..., ModelVersion]  # the register_model fixture
PAYLOAD = b"model bytes \x00\x01" * 64


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def environment_keys(*keys: bytes) -> SecretStr:
    """A MEDSERVE_MASTER_KEY value: the keys in base64, current first, comma-separated."""
    return SecretStr(",".join(b64(key) for key in keys))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def home_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def sqlite_registry(home_settings: Settings) -> Iterator[Registry]:
    with Registry(home_settings) as opened:
        yield opened


def header_key_ids(settings: Settings) -> set[str]:
    return {parse(path.read_bytes()).key_id for path in settings.artifacts_dir.glob("*.bin")}


# Master key from the key file


def test_first_use_creates_a_private_key_file_and_says_so_once(
    home_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="medserve.keystore")
    store = KeyStore(home_settings)
    current_id, key = store.current()

    assert store.created_key_file == home_settings.home / "master.key"
    assert mode(store.key_file) == 0o600
    assert mode(home_settings.home) == 0o700
    assert len(key) == 32
    assert current_id == key_id(key) == hashlib.sha256(key).hexdigest()[:16]
    assert caplog.messages == [
        f"created master key {store.key_file}: back it up; without it the models cannot be "
        "decrypted"
    ]
    reopened = KeyStore(home_settings)
    assert reopened.current() == (current_id, key)
    assert reopened.created_key_file is None
    assert [path.name for path in home_settings.home.iterdir() if path.name.startswith(".")] == []


def test_a_store_opened_without_create_makes_a_key_only_to_encrypt(
    home_settings: Settings,
) -> None:
    store = KeyStore(home_settings, create=False)
    assert not store.key_file.exists() and store.key_ids == ()
    store.current()
    assert store.created_key_file == store.key_file


def test_writing_an_artifact_creates_the_key_file(home_settings: Settings) -> None:
    ref = write_artifact(home_settings, PAYLOAD)
    document = json.loads((home_settings.home / "master.key").read_text())
    assert parse((home_settings.home / ref.path).read_bytes()).key_id == document["current"]


def test_concurrent_first_uses_agree_on_one_key(home_settings: Settings) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        stores = list(pool.map(lambda _: KeyStore(home_settings), range(8)))
    current = {store.current() for store in stores}
    assert len(current) == 1
    assert sum(store.created_key_file is not None for store in stores) == 1


def test_an_unknown_key_id_is_named_with_the_fix(home_settings: Settings) -> None:
    store = KeyStore(home_settings, create=False)
    with pytest.raises(IntegrityError) as raised:
        store.get("0123456789abcdef")
    assert str(raised.value) == (
        "artifact was encrypted under master key 0123456789abcdef, which this key store does "
        f"not hold; set MEDSERVE_MASTER_KEY to that key or restore {store.key_file}"
    )
    assert not store.key_file.exists()  # reading never invents a key


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"format": "medserve-master-keys", "version": 1}'],
)
def test_a_corrupt_key_file_is_refused(home_settings: Settings, content: str) -> None:
    home_settings.home.mkdir()
    (home_settings.home / "master.key").write_text(content)
    with pytest.raises(IntegrityError, match="master key file .* is corrupt"):
        KeyStore(home_settings)


def test_a_key_file_whose_key_does_not_match_its_id_is_refused(home_settings: Settings) -> None:
    store = KeyStore(home_settings)
    store.current()
    document = json.loads(store.key_file.read_text())
    document["keys"][0]["key"] = b64(os.urandom(32))
    store.key_file.write_text(json.dumps(document))
    with pytest.raises(IntegrityError, match="does not match its id"):
        KeyStore(home_settings)


# Master key from MEDSERVE_MASTER_KEY


def test_a_master_key_from_the_environment_is_used_instead_of_a_file(tmp_path: Path) -> None:
    key = os.urandom(32)
    settings = Settings(home=tmp_path / "home", master_key=environment_keys(key))

    ref = write_artifact(settings, PAYLOAD)

    assert KeyStore(settings).current() == (key_id(key), key)
    assert parse((settings.home / ref.path).read_bytes()).key_id == key_id(key)
    assert read_artifact(settings, ref.path, ref.sha256) == PAYLOAD
    assert not (settings.home / "master.key").exists()
    with pytest.raises(IntegrityError, match="add that key to MEDSERVE_MASTER_KEY"):
        KeyStore(settings).get("0123456789abcdef")


@pytest.mark.parametrize(
    "value",
    ["not base64!", b64(os.urandom(16)), b64(os.urandom(33)), "", f"{b64(os.urandom(32))},xyz"],
    ids=["not base64", "16 bytes", "33 bytes", "empty", "bad second entry"],
)
def test_a_malformed_master_key_setting_says_how_to_make_one(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        KeyStore(Settings(home=tmp_path / "home", master_key=SecretStr(value)))
    message = str(raised.value)
    assert message.startswith("MEDSERVE_MASTER_KEY")
    assert "generate one with: python -c 'import os,base64;print(base64.b64encode(" in message
    assert "\n" not in message
    assert not value or value.split(",")[-1] not in message  # the secret is never echoed


def test_a_master_key_list_puts_the_first_key_current(tmp_path: Path) -> None:
    new, old = os.urandom(32), os.urandom(32)
    store = KeyStore(
        Settings(home=tmp_path / "home", master_key=SecretStr(f"{b64(new)}, {b64(old)}"))
    )
    assert store.key_ids == (key_id(new), key_id(old))
    assert store.current() == (key_id(new), new)
    assert store.get(key_id(old)) == old


# Purpose keys


def test_purpose_keys_are_stable_private_and_separate(home_settings: Settings) -> None:
    audit = KeyStore(home_settings).purpose_key("audit-hmac")
    pseudonyms = KeyStore(home_settings).purpose_key("deid-pseudonym")

    assert len(audit) == len(pseudonyms) == 32
    assert audit != pseudonyms
    assert KeyStore(home_settings).purpose_key("audit-hmac") == audit
    purpose_file = home_settings.home / "keys.json"
    assert mode(purpose_file) == 0o600
    stored = purpose_file.read_bytes()
    assert audit not in stored and b64(audit).encode() not in stored  # kept wrapped


def test_concurrent_first_requests_for_a_purpose_key_agree(home_settings: Settings) -> None:
    stores = [KeyStore(home_settings) for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        secrets = set(pool.map(lambda store: store.purpose_key("audit-hmac"), stores))
    assert len(secrets) == 1


def test_a_purpose_key_moved_to_another_name_is_refused(home_settings: Settings) -> None:
    store = KeyStore(home_settings)
    store.purpose_key("audit-hmac")
    purpose_file = home_settings.home / "keys.json"
    document = json.loads(purpose_file.read_text())
    document["keys"]["deid-pseudonym"] = document["keys"]["audit-hmac"]
    purpose_file.write_text(json.dumps(document))
    with pytest.raises(IntegrityError, match="purpose key 'deid-pseudonym'.*failed"):
        KeyStore(home_settings).purpose_key("deid-pseudonym")


def test_on_create_sees_the_new_key_once_and_a_failure_stores_nothing(
    home_settings: Settings,
) -> None:
    seen: list[bytes] = []

    def refuse(secret: bytes) -> None:
        raise OSError("simulated failure before the key is stored")

    with pytest.raises(OSError, match="simulated"):
        KeyStore(home_settings).purpose_key("model-versions", on_create=refuse)
    assert not KeyStore(home_settings).has_purpose_key("model-versions")

    key = KeyStore(home_settings).purpose_key("model-versions", on_create=seen.append)
    again = KeyStore(home_settings).purpose_key("model-versions", on_create=seen.append)
    assert seen == [key] and again == key


def test_asking_whether_a_purpose_key_exists_creates_nothing(home_settings: Settings) -> None:
    assert not KeyStore(home_settings, create=False).has_purpose_key("audit")
    assert not home_settings.home.exists()


@pytest.mark.parametrize("purpose", ["", "Audit", "../x", "a b"])
def test_a_purpose_name_must_be_a_plain_identifier(home_settings: Settings, purpose: str) -> None:
    with pytest.raises(ConfigError, match="not a valid key name"):
        KeyStore(home_settings).purpose_key(purpose)


# Rotation


def test_rotation_rewraps_every_artifact_and_models_still_load(
    sqlite_registry: Registry, register_model: RegisterModel, home_settings: Settings
) -> None:
    versions = [register_model(sqlite_registry, name) for name in ("sepsis", "sepsis", "aki")]
    audit = KeyStore(home_settings).purpose_key("audit-hmac")
    old_id = KeyStore(home_settings).current()[0]
    bodies = {p.name: p.read_bytes()[HEADER_SIZE:] for p in home_settings.artifacts_dir.iterdir()}

    result = rotate_master_key(home_settings)

    assert result.old_key_id == old_id
    assert result.new_key_id != old_id
    assert result.rewrapped == 3
    assert result.purpose_keys_rewrapped == 2  # audit-hmac, and the registry's row MAC key
    assert result.retired_key_ids == () and result.unreadable == ()
    assert header_key_ids(home_settings) == {result.new_key_id}
    after = {p.name: p.read_bytes()[HEADER_SIZE:] for p in home_settings.artifacts_dir.iterdir()}
    assert after == bodies  # only headers change; the recorded sha256 still holds
    with Registry(home_settings) as reopened:  # unwraps the row MAC key afresh
        for mv in versions:
            assert type(sqlite_registry.load(mv)).__name__ == "LogisticRegression"
            assert type(reopened.load(mv)).__name__ == "LogisticRegression"
    store = KeyStore(home_settings)
    assert store.key_ids == (result.new_key_id, old_id)  # the old key is kept, retired
    assert store.purpose_key("audit-hmac") == audit
    assert json.loads((home_settings.home / "keys.json").read_text())["keys"]["audit-hmac"][
        "master_key_id"
    ] == (result.new_key_id)
    assert mode(store.key_file) == 0o600
    assert rotate_master_key(home_settings).rewrapped == 3  # and again


def test_readers_keep_working_across_a_rotation(home_settings: Settings) -> None:
    ref = write_artifact(home_settings, PAYLOAD)
    path = home_settings.home / ref.path
    reader_before = KeyStore(home_settings)  # opened before: knows only the old key
    reader_before.current()
    blob_before = path.read_bytes()  # read before: wrapped under the old key

    result = rotate_master_key(home_settings)

    assert decrypt(path.read_bytes(), reader_before) == PAYLOAD  # picks up the new key
    assert decrypt(blob_before, KeyStore(home_settings)) == PAYLOAD  # old key still held
    assert reader_before.current()[0] == result.new_key_id
    assert parse(encrypt(PAYLOAD, reader_before)).key_id == result.new_key_id


def test_retiring_drops_the_old_key_once_everything_is_rewrapped(
    sqlite_registry: Registry, register_model: RegisterModel, home_settings: Settings
) -> None:
    mv = register_model(sqlite_registry, "sepsis")
    audit = KeyStore(home_settings).purpose_key("audit-hmac")
    blob_before = (home_settings.home / mv.artifact_path).read_bytes()

    result = rotate_master_key(home_settings, retire_old=True)

    assert result.retired_key_ids == (result.old_key_id,)
    store = KeyStore(home_settings)
    assert store.key_ids == (result.new_key_id,)
    assert type(sqlite_registry.load(mv)).__name__ == "LogisticRegression"
    assert store.purpose_key("audit-hmac") == audit
    with pytest.raises(IntegrityError, match=f"under master key {result.old_key_id}"):
        decrypt(blob_before, store)


def test_retiring_keeps_the_old_key_while_an_artifact_cannot_be_rewrapped(
    home_settings: Settings,
) -> None:
    ref = write_artifact(home_settings, PAYLOAD)
    write_artifact(home_settings, PAYLOAD)
    path = home_settings.home / ref.path
    damaged = bytearray(path.read_bytes())
    damaged[HEADER_SIZE - 20] ^= 0x01  # inside the wrapped data key
    path.write_bytes(bytes(damaged))
    old_id = KeyStore(home_settings).current()[0]

    with pytest.raises(IntegrityError, match=r"old master key was kept: 1 artifact"):
        rotate_master_key(home_settings, retire_old=True)
    assert old_id in KeyStore(home_settings).key_ids


def test_rotation_while_artifacts_are_being_written_loses_none(home_settings: Settings) -> None:
    write_artifact(home_settings, PAYLOAD)
    refs: list[ArtifactRef] = []
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set() or len(refs) < 5:
            refs.append(write_artifact(home_settings, PAYLOAD))

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        result = rotate_master_key(home_settings, retire_old=True)
    finally:
        stop.set()
        writer.join()

    assert header_key_ids(home_settings) == {result.new_key_id}
    for ref in refs:
        assert read_artifact(home_settings, ref.path, ref.sha256) == PAYLOAD


def test_rotation_needs_a_key_to_rotate(home_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="nothing to rotate"):
        rotate_master_key(home_settings)
    assert not (home_settings.home / "master.key").exists()


def test_reading_an_artifact_never_makes_a_new_key(home_settings: Settings) -> None:
    ref = write_artifact(home_settings, PAYLOAD)
    key_file = home_settings.home / "master.key"
    key_file.unlink()  # lost
    with pytest.raises(IntegrityError, match=f"restore {key_file}"):
        read_artifact(home_settings, ref.path, ref.sha256)
    assert not key_file.exists()


def test_rotation_with_a_single_environment_key_explains_what_to_do(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", master_key=environment_keys(os.urandom(32)))
    with pytest.raises(ConfigError, match=r"cannot store a new master key.*NEW,OLD"):
        rotate_master_key(settings)


def test_rotation_with_environment_keys_rewraps_to_the_first(tmp_path: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    before = Settings(home=tmp_path / "home", master_key=environment_keys(old))
    ref = write_artifact(before, PAYLOAD)
    audit = KeyStore(before).purpose_key("audit-hmac")
    during = Settings(home=tmp_path / "home", master_key=environment_keys(new, old))

    result = rotate_master_key(during)

    assert (result.old_key_id, result.new_key_id) == (key_id(old), key_id(new))
    assert (result.rewrapped, result.purpose_keys_rewrapped) == (1, 1)
    after = Settings(home=tmp_path / "home", master_key=environment_keys(new))
    assert read_artifact(after, ref.path, ref.sha256) == PAYLOAD
    assert KeyStore(after).purpose_key("audit-hmac") == audit
    with pytest.raises(ConfigError, match="remove the old keys"):
        rotate_master_key(during, retire_old=True)
