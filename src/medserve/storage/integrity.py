"""Registry rows bound to their artifacts: an HMAC over what a model version is.

A ``model_versions`` row says which artifact to load and how to read its output
(threshold, schema). Without a check, anyone who can write the database could point
``heart:1`` at another model's artifact or change its threshold. So each row carries
``mac``: HMAC-SHA256, under the key store's ``model-versions`` purpose key, of the
canonical JSON of its name, version, family, threshold, the sha256 of its schema,
its artifact's id, path and sha256, and the sha256 of its training data.
``Registry.load`` checks it before the artifact is read. The stage is not covered:
promoting and archiving change it.

Rows stored by releases before this one have no MAC. They are sealed once, when the
purpose key is created (``seal_all`` runs inside that creation, before the key is
stored, so a crash leaves no key and the next use seals again). From then on a row
without a MAC is refused as stripped, never taken for an old one: the database does
not decide that, the key file does, and a database writer cannot remove the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import numbers
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from medserve.config import Settings
from medserve.errors import IntegrityError
from medserve.storage.database import lock_for_write
from medserve.storage.keystore import KeyStore
from medserve.storage.tables import ModelVersionRow

logger = logging.getLogger("medserve.storage")

PURPOSE = "model-versions"
MAC_FORMAT = "medserve-model-version-mac/1"
# The row fields the MAC covers as they are; the schema is covered by its sha256.
BOUND_FIELDS = (
    "name",
    "version",
    "family",
    "artifact_id",
    "artifact_path",
    "artifact_sha256",
    "data_sha256",
)
RESTORE_HINT = "restore the model_versions row from a backup, or register the model again"


def version_mac(key: bytes, record: Any) -> str:
    """The MAC of a model version (a ``ModelVersion`` or a ``ModelVersionRow``)."""
    document = {field: getattr(record, field) for field in BOUND_FIELDS}
    document.update(
        format=MAC_FORMAT,
        threshold=float(record.threshold),
        schema_sha256=hashlib.sha256(_canonical(record.schema)).hexdigest(),
    )
    return hmac.new(key, _canonical(document), hashlib.sha256).hexdigest()


def check_version(key: bytes, version: Any) -> None:
    """IntegrityError naming ``version.ref`` unless its row is what was registered."""
    if version.mac is None:
        raise IntegrityError(
            f"model {version.ref} was refused: its registry row has no integrity MAC, so it "
            "was stripped (or the row was written by a medserve older than this home's "
            f"registry key); {RESTORE_HINT}"
        )
    if not hmac.compare_digest(str(version.mac).encode(), version_mac(key, version).encode()):
        raise IntegrityError(
            f"model {version.ref} was refused: its registry row does not match what was "
            "registered (its name, version, family, threshold, schema, data sha256 or the "
            f"artifact it points to was changed); {RESTORE_HINT}"
        )


def model_threshold(model: object) -> float | None:
    """The decision threshold a model carries itself (``TrainedModel.threshold``), if any."""
    own = getattr(model, "threshold", None)
    if isinstance(own, numbers.Real) and not isinstance(own, bool):
        return float(own)
    return None


def check_threshold(version: Any, model: object) -> None:
    """IntegrityError unless a model that carries its own threshold carries the row's."""
    own = model_threshold(model)
    if own is not None and own != version.threshold:
        raise IntegrityError(
            f"model {version.ref} was refused: its registry row's threshold "
            f"{version.threshold!r} differs from its artifact's {own!r}; {RESTORE_HINT}"
        )


def version_key(settings: Settings, engine: Engine, *, create: bool) -> bytes:
    """The ``model-versions`` purpose key; made on first use, sealing every stored row.

    ``create=False`` (readers) never creates a master key: without one it raises
    IntegrityError saying how to restore it.
    """
    keystore = KeyStore(settings, create=create)
    if not create and not keystore.key_ids:
        raise IntegrityError(
            f"registered models cannot be checked: {settings.home} has no master key "
            f"({keystore.key_file} is missing and MEDSERVE_MASTER_KEY is unset); restore "
            "the key file from backup or set the variable"
        )
    return keystore.purpose_key(PURPOSE, on_create=lambda key: seal_all(engine, key))


def seal_all(engine: Engine, key: bytes) -> int:
    """Set the MAC of every row under ``key`` (a new key: no stored MAC can hold under it)."""
    with Session(engine) as session, session.begin():
        lock_for_write(session.connection(), "model-versions")
        rows = session.scalars(select(ModelVersionRow)).all()
        for row in rows:
            row.mac = version_mac(key, row)
    if rows:
        logger.warning(
            "sealed %d model versions stored without an integrity MAC (by an older medserve); "
            "from now on a row that does not match its MAC is refused",
            len(rows),
        )
    return len(rows)


def _canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
