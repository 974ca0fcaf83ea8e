"""Model bundles: a version exported from one home, verified and imported into another."""

from __future__ import annotations

import json
import stat
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from medserve.config import Settings
from medserve.errors import ConfigError, IntegrityError, ModelNotFound, RegistryError
from medserve.storage import Registry
from medserve.storage.bundle import (
    MAGIC,
    PREFIX_SIZE,
    export_bundle,
    import_bundle,
    read_header,
)
from medserve.storage.keystore import KeyStore

PASSPHRASE = "correct horse battery staple"
FEATURES = ["age", "trestbps", "chol", "thalch", "oldpeak"]


@pytest.fixture
def homes(tmp_path: Path) -> tuple[Settings, Settings]:
    return Settings(home=tmp_path / "origin"), Settings(home=tmp_path / "destination")


@pytest.fixture(scope="module")
def heart_features(heart: pd.DataFrame) -> np.ndarray:
    numeric = heart[FEATURES].apply(pd.to_numeric, errors="coerce")
    return numeric.fillna(numeric.median()).to_numpy(dtype=float)


@pytest.fixture(scope="module")
def heart_model(heart: pd.DataFrame, heart_features: np.ndarray) -> LogisticRegression:
    outcome = (pd.to_numeric(heart["num"]) > 0).astype(int)
    return LogisticRegression(max_iter=1000).fit(heart_features, outcome)


@pytest.fixture
def bundle(homes, register_model, heart_model, tmp_path) -> Path:
    origin, _ = homes
    with Registry(origin) as registry:
        register_model(registry, "heart", heart_model, report={"kind": "training"})
    path = tmp_path / "heart.bundle"
    export_bundle(origin, "heart:1", path, PASSPHRASE)
    return path


def registered(settings: Settings) -> list[str]:
    with Registry(settings) as registry:
        return [version.ref for version in registry.list()]


def test_a_bundle_round_trips_between_homes_with_different_master_keys(
    homes, bundle, heart_model, heart_features
):
    origin, destination = homes
    imported = import_bundle(destination, bundle, PASSPHRASE)
    assert imported.ref == "heart:1" and imported.stage == "production"
    assert KeyStore(origin).key_ids != KeyStore(destination).key_ids
    with Registry(origin) as registry:
        original = registry.get("heart:1")
        original_risk = registry.load(original).predict_proba(heart_features)
    with Registry(destination) as registry:
        loaded = registry.load("heart:1")
    np.testing.assert_array_equal(loaded.predict_proba(heart_features), original_risk)
    np.testing.assert_array_equal(original_risk, heart_model.predict_proba(heart_features))
    for field in ("family", "threshold", "schema", "metrics", "params", "data_sha256"):
        assert getattr(imported, field) == getattr(original, field), field
    assert imported.lineage["imported_from"]["ref"] == "heart:1"
    assert {k: v for k, v in imported.lineage.items() if k != "imported_from"} == original.lineage
    report = destination.home / imported.report_path
    assert json.loads(report.read_text()) == {"kind": "training"}


def test_an_import_is_the_next_version_a_candidate_and_may_be_renamed(homes, bundle):
    _, destination = homes
    assert import_bundle(destination, bundle, PASSPHRASE).ref == "heart:1"
    second = import_bundle(destination, bundle, PASSPHRASE)
    assert (second.ref, second.stage) == ("heart:2", "candidate")
    renamed = import_bundle(destination, bundle, PASSPHRASE, name="heart-site-b")
    assert (renamed.ref, renamed.stage) == ("heart-site-b:1", "production")
    # A page names the ref it was drawn for: under a new ref it is drawn again when read.
    assert not (destination.home / renamed.report_path).with_name("report.html").exists()
    with pytest.raises(ConfigError, match="is not allowed"):
        import_bundle(destination, bundle, PASSPHRASE, name="Not A Name")


def test_a_wrong_passphrase_fails_and_registers_nothing(homes, bundle):
    _, destination = homes
    with pytest.raises(IntegrityError, match="passphrase is wrong or the file was altered"):
        import_bundle(destination, bundle, "not the passphrase")
    with pytest.raises(ModelNotFound):
        Registry(destination).get("heart")


def stored_files(settings: Settings) -> set[Path]:
    """Every artifact and report file and folder under the home."""
    folders = (settings.artifacts_dir, settings.reports_dir)
    return {path for folder in folders if folder.is_dir() for path in folder.rglob("*")}


def test_an_import_whose_audit_record_cannot_be_written_leaves_nothing_behind(homes, bundle):
    """Audited or not imported: the version, its artifact and its report are removed again,
    for the next version of a name (a candidate) and for the first of a new name alike."""
    _, destination = homes
    import_bundle(destination, bundle, PASSPHRASE)
    before = stored_files(destination)

    def broken_trail(registry: Registry, version) -> None:
        assert registry.get(version.ref) == version  # registered, not yet recorded
        raise IntegrityError("the audit head fails its MAC")

    for name, ref in (("heart", "heart:2"), ("heart-site-b", "heart-site-b:1")):
        with pytest.raises(RegistryError) as refused:
            import_bundle(destination, bundle, PASSPHRASE, name=name, audit=broken_trail)
        assert str(refused.value) == (
            f"bundle {bundle} was not imported: the audit record of the import could not be "
            f"written (the audit head fails its MAC), so {ref} was removed again and nothing "
            "is registered; fix the audit trail (`medserve audit verify`) and import again"
        )
    assert registered(destination) == ["heart:1"]
    assert stored_files(destination) == before
    recorded: list[str] = []
    imported = import_bundle(
        destination, bundle, PASSPHRASE, audit=lambda _, version: recorded.append(version.ref)
    )
    assert recorded == [imported.ref] == ["heart:2"]


def flip(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))


def header_offset(path: Path, field: str) -> int:
    """Where the value of a header field starts (a byte inside the JSON header)."""
    blob = path.read_bytes()
    return blob.index(f'"{field}":"'.encode(), PREFIX_SIZE) + len(field) + 4


@pytest.mark.parametrize("field", ["data_sha256", "schema_sha256", "created_at", "model"])
def test_a_flipped_byte_in_the_header_fails_authentication(homes, bundle, field):
    _, destination = homes
    flip(bundle, header_offset(bundle, field))
    with pytest.raises(IntegrityError, match="failed its integrity check"):
        import_bundle(destination, bundle, PASSPHRASE)
    assert registered(destination) == []


@pytest.mark.parametrize("from_end", [1, 17, 500])
def test_a_flipped_byte_in_the_payload_fails_authentication(homes, bundle, from_end):
    _, destination = homes
    flip(bundle, len(bundle.read_bytes()) - from_end)
    with pytest.raises(IntegrityError, match="failed its integrity check"):
        import_bundle(destination, bundle, PASSPHRASE)
    assert registered(destination) == []


def rewrite_header(path: Path, **changes: object) -> None:
    blob = path.read_bytes()
    header, prefix = read_header(blob)
    header.update(changes)
    encoded = json.dumps(header).encode()
    path.write_bytes(MAGIC + struct.pack(">I", len(encoded)) + encoded + blob[len(prefix) :])


def test_a_bundle_of_another_format_version_is_refused(homes, bundle):
    _, destination = homes
    rewrite_header(bundle, format_version=2)
    with pytest.raises(IntegrityError, match="format version 2; this medserve reads version 1"):
        import_bundle(destination, bundle, PASSPHRASE)


def test_a_header_asking_for_an_excessive_scrypt_cost_is_refused(homes, bundle):
    _, destination = homes
    rewrite_header(bundle, kdf={"name": "scrypt", "n": 2**30, "r": 8, "p": 1})
    with pytest.raises(IntegrityError, match="key derivation parameters are not accepted"):
        import_bundle(destination, bundle, PASSPHRASE)


def test_a_file_that_is_not_a_bundle_is_refused(homes, tmp_path):
    _, destination = homes
    other = tmp_path / "model.pkl"
    other.write_bytes(b"\x80\x04not a bundle")
    with pytest.raises(IntegrityError, match="is not a medserve model bundle"):
        import_bundle(destination, other, PASSPHRASE)


def test_the_bundle_file_is_private_and_never_overwritten(homes, bundle):
    origin, _ = homes
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="already exists"):
        export_bundle(origin, "heart:1", bundle, PASSPHRASE)


def test_a_short_passphrase_is_refused_on_export(homes, bundle, tmp_path):
    origin, _ = homes
    with pytest.raises(ConfigError, match="at least 8"):
        export_bundle(origin, "heart:1", tmp_path / "weak.bundle", "short")
    assert not (tmp_path / "weak.bundle").exists()


def test_the_header_is_readable_and_carries_no_secrets(bundle):
    header, _ = read_header(bundle.read_bytes())
    assert header["model"] == "heart:1" and header["family"] == "logistic"
    assert header["kdf"] == {"name": "scrypt", "n": 2**15, "r": 8, "p": 1}
    assert PASSPHRASE.encode() not in bundle.read_bytes()
