"""API keys: shown once, stored as hashes, one role each, refused once revoked."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Engine, text

from medserve.config import Settings
from medserve.errors import ConfigError
from medserve.security.api_keys import ROLES, ApiKey, ApiKeyStore
from medserve.storage import Registry


@pytest.fixture
def store(engine: Engine) -> ApiKeyStore:
    return ApiKeyStore(engine)


def test_roles_are_those_of_the_security_model() -> None:
    # outcomes: sends observed outcomes for earlier predictions, may not predict.
    assert ROLES == ("predictor", "trainer", "auditor", "admin", "outcomes")


@pytest.mark.parametrize("role", ROLES)
def test_created_token_authenticates_as_its_key_and_role(store: ApiKeyStore, role: str) -> None:
    key, token = store.create(role, name="ward 7 app")

    assert token.startswith(f"ms_{key.id}_")
    assert len(key.id) == 12 and int(key.id, 16) >= 0
    assert len(token.removeprefix(f"ms_{key.id}_")) == 43
    assert key.role == role and key.name == "ward 7 app" and key.active
    assert key.created_at.tzinfo is not None
    assert store.authenticate(token) == key


def test_only_the_hash_of_the_token_is_stored(store: ApiKeyStore, engine: Engine) -> None:
    key, token = store.create("predictor")
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT * FROM api_keys WHERE id = :id"), {"id": key.id}
        ).one()
    stored = [str(value) for value in row]
    assert token not in stored
    assert not any(token.split("_", 2)[2] in value for value in stored)
    assert row.secret_hash == hashlib.sha256(token.encode()).hexdigest()


def test_every_token_is_different(store: ApiKeyStore) -> None:
    tokens = {store.create("predictor")[1] for _ in range(20)}
    assert len(tokens) == 20


def test_list_shows_keys_but_never_secrets(store: ApiKeyStore) -> None:
    first, first_token = store.create("admin", name="ops")
    second, second_token = store.create("auditor")

    keys = store.list()

    assert [key.id for key in keys] == [first.id, second.id]
    for key in keys:
        shown = key.to_dict()
        assert set(shown) == {"id", "name", "role", "created_at", "revoked_at"}
        assert first_token not in repr(key) + str(shown)
        assert second_token not in repr(key) + str(shown)
        assert "hash" not in repr(key)


def test_revoked_key_no_longer_authenticates(store: ApiKeyStore) -> None:
    key, token = store.create("predictor")
    kept, kept_token = store.create("predictor")

    revoked = store.revoke(key.id)

    assert revoked.revoked_at is not None and not revoked.active
    assert store.authenticate(token) is None
    assert store.authenticate(kept_token) == kept
    assert [k.revoked_at is not None for k in store.list()] == [True, False]


def test_revoking_twice_keeps_the_first_revocation_time(store: ApiKeyStore) -> None:
    key, _ = store.create("trainer")
    first = store.revoke(key.id)
    assert store.revoke(key.id).revoked_at == first.revoked_at


def test_revocation_reaches_every_replica_at_once(store: ApiKeyStore, settings: Settings) -> None:
    key, token = store.create("predictor")
    with Registry(settings) as replica:
        other = ApiKeyStore(replica.engine)
        assert other.authenticate(token) == key
        store.revoke(key.id)
        assert other.authenticate(token) is None


def test_count_active_ignores_revoked_keys(store: ApiKeyStore) -> None:
    assert store.count_active() == 0
    keys = [store.create("predictor")[0] for _ in range(3)]
    store.revoke(keys[1].id)
    assert store.count_active() == 2


def test_revoking_an_unknown_key_says_how_to_find_the_right_id(store: ApiKeyStore) -> None:
    with pytest.raises(ConfigError, match=r"no API key with id 'deadbeef0000'.*keys list"):
        store.revoke("deadbeef0000")


def test_unknown_role_names_the_allowed_roles(store: ApiKeyStore) -> None:
    with pytest.raises(ConfigError, match="predictor, trainer, auditor, admin"):
        store.create("superuser")
    assert store.list() == []


def test_overlong_name_is_refused(store: ApiKeyStore) -> None:
    with pytest.raises(ConfigError, match="255"):
        store.create("predictor", name="x" * 256)


def _malformed(token: str, other_token: str) -> list[str]:
    prefix, key_id, secret = token.split("_", 2)
    other_secret = other_token.split("_", 2)[2]
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    return [
        "",
        "ms_",
        "Bearer " + token,
        token + "x",
        token[:-1],
        token.upper(),
        f"xx_{key_id}_{secret}",
        f"ms_{key_id}-{secret}",
        f"ms_{key_id}_{flipped}",
        f"ms_{key_id}_{other_secret}",  # another key's secret under this id
        f"ms_{'0' * 12}_{secret}",  # unknown id
        f"ms_{key_id}_{secret[:-1]}é",
        f"ms_{key_id}_{secret[:-1]}\x00",
        "ms_" + "a" * 10_000,
    ]


def test_malformed_wrong_or_unknown_tokens_are_refused(store: ApiKeyStore) -> None:
    key, token = store.create("admin")
    _, other_token = store.create("predictor")
    for candidate in _malformed(token, other_token):
        assert store.authenticate(candidate) is None, candidate
    assert store.authenticate(None) is None  # type: ignore[arg-type]
    assert store.authenticate(token) == key


def test_api_key_to_dict_is_json_ready(store: ApiKeyStore) -> None:
    key, _ = store.create("auditor", name="privacy office")
    revoked = store.revoke(key.id)
    shown = revoked.to_dict()
    assert shown["role"] == "auditor" and shown["name"] == "privacy office"
    assert isinstance(shown["created_at"], str) and isinstance(shown["revoked_at"], str)
    assert ApiKey(**{**shown, "created_at": key.created_at, "revoked_at": None}) == key
