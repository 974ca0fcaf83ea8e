"""The model registry: versioned model artifacts plus their metadata rows."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import io
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import PurePath
from types import TracebackType
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
from sqlalchemy import Engine, func, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from medserve.config import Settings
from medserve.core.files import DIR_MODE, loose_mode, write_file_atomic
from medserve.core.stored_files import STORED_FILES, reading_stored_files
from medserve.core.user import login_name
from medserve.errors import ConfigError, IntegrityError, ModelNotFound, RegistryError, option
from medserve.storage.artifacts import (
    delete_artifact,
    read_artifact,
    read_artifact_to,
    resolve_in_home,
    write_artifact,
)
from medserve.storage.database import (
    MigrationError,
    describe_url,
    lock_for_write,
    migrate,
    one_line,
    open_engine,
    sqlite_path,
)
from medserve.storage.integrity import (
    check_threshold,
    check_version,
    model_threshold,
    version_key,
    version_mac,
)
from medserve.storage.tables import ModelVersionRow

logger = logging.getLogger("medserve.storage")

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
NAME_RULE = (
    "1-63 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
)
# Concurrent registrations of one name are serialised by a lock; the retry covers
# databases without one and the rare race the lock cannot see.
ALLOCATION_ATTEMPTS = 5


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a named model: where its artifact is and what it is."""

    name: str
    version: int
    stage: str
    family: str
    created_at: datetime
    created_by: str
    artifact_id: str
    artifact_path: str
    artifact_sha256: str
    data_sha256: str
    threshold: float
    schema: dict[str, Any]
    metrics: dict[str, Any]
    params: dict[str, Any]
    lineage: dict[str, Any]
    report_path: str | None
    mac: str | None  # binds the row to its artifact: see medserve.storage.integrity

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (timestamps as ISO 8601), including ``ref``."""
        fields = dataclasses.asdict(self)
        fields["created_at"] = self.created_at.isoformat()
        fields["ref"] = self.ref
        return fields

    @classmethod
    def from_row(cls, row: ModelVersionRow) -> ModelVersion:
        return cls(**{field.name: getattr(row, field.name) for field in dataclasses.fields(cls)})

# Given a version's ref, the files to store beside its report: file name → content.
ReportFiles = Callable[[str], Mapping[str, bytes]]


def _beside_report(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """``files`` checked to be plain names beside ``report.json`` (never a path elsewhere)."""
    for file_name in files:
        if PurePath(file_name).name != file_name or file_name in {"", ".", "..", "report.json"}:
            raise ConfigError(f"report file name {file_name!r} must be a plain file name")
    return dict(files)


class Registry:
    """Registers, finds, loads and stages model versions.

    Metadata lives in the database at ``settings.resolved_database_url`` (schema
    migrated on open); artifacts and reports live under ``settings.home``.
    Safe to share between threads; every method runs its own transaction.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        url = settings.resolved_database_url
        try:
            for directory in (settings.home, settings.artifacts_dir, settings.reports_dir):
                directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        except OSError as error:
            raise RegistryError(
                f"cannot create the medserve home {settings.home}: {error.strerror}"
            ) from error
        engine: Engine | None = None
        try:
            engine = open_engine(url)
            migrate(engine)
        except (sa_exc.SQLAlchemyError, MigrationError, ImportError, OSError) as error:
            if engine is not None:
                engine.dispose()
            raise RegistryError(
                f"cannot open the registry database {describe_url(url)}: {one_line(error)}"
            ) from error
        self._engine = engine
        self._version_key: bytes | None = None
        _warn_if_loose(settings, url)

    @property
    def engine(self) -> Engine:
        return self._engine

    def register(
        self,
        name: str,
        model: object,
        *,
        family: str,
        schema: dict[str, Any],
        metrics: dict[str, Any],
        threshold: float,
        params: dict[str, Any],
        lineage: dict[str, Any],
        data_sha256: str,
        created_by: str | None = None,
        report: dict[str, Any] | None = None,
        report_files: ReportFiles | None = None,
    ) -> ModelVersion:
        """Store ``model`` as the next version of ``name`` and return its record.

        The first version of a name goes straight to production, later ones are
        candidates. All or nothing: on any failure the row, artifact and report
        written so far are removed and the error is re-raised.
        ``created_by`` defaults to the login name of the current user.
        ``report_files(ref)`` gives the files to store beside ``report.json`` (file name →
        content) once the version's ref is known: they are written in the row's
        transaction too, so the row, the JSON report and its pages land together.
        """
        check_name(name)
        if not family:
            raise ConfigError("a model family is required to register a model")
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold {threshold} is not a probability between 0 and 1")
        own_threshold = model_threshold(model)
        if own_threshold is not None and own_threshold != float(threshold):
            raise ConfigError(
                f"threshold {threshold} differs from the model's own threshold {own_threshold}: "
                "register the model with the threshold it carries"
            )
        fields: dict[str, Any] = {
            "name": name,
            "family": family,
            "threshold": float(threshold),
            "data_sha256": data_sha256,
            "created_by": created_by or login_name(),
            "schema": json_document(schema, "schema"),
            "metrics": json_document(metrics, "metrics"),
            "params": json_document(params, "params"),
            "lineage": json_document(lineage, "lineage"),
        }
        report_json = None
        if report is not None:
            report_json = json.dumps(json_document(report, "report"), indent=2, allow_nan=False)

        payload = serialise(model)
        key = self._key(create=True)
        artifact = write_artifact(self._settings, payload)
        fields.update(
            artifact_id=artifact.artifact_id,
            artifact_path=artifact.path,
            artifact_sha256=artifact.sha256,
        )
        if report_files is not None and report is None:
            raise ConfigError("report files are stored beside a report: pass the report too")
        try:
            return self._insert_with_retry(fields, report_json, report_files, key)
        except BaseException:
            delete_artifact(self._settings, artifact.path)
            raise

    def _insert_with_retry(
        self,
        fields: dict[str, Any],
        report_json: str | None,
        report_files: ReportFiles | None,
        key: bytes,
    ) -> ModelVersion:
        attempt = 1
        while True:
            try:
                return self._insert_next_version(fields, report_json, report_files, key)
            except sa_exc.IntegrityError as conflict:
                if attempt == ALLOCATION_ATTEMPTS:
                    raise RegistryError(
                        f"could not allocate a version of {fields['name']!r} after {attempt} "
                        f"attempts: {one_line(conflict)}; try again"
                    ) from conflict
                attempt += 1

    def _insert_next_version(
        self,
        fields: dict[str, Any],
        report_json: str | None,
        report_files: ReportFiles | None,
        key: bytes,
    ) -> ModelVersion:
        """One attempt: claim the next version number, write the report and the files
        beside it, commit the row."""
        name = fields["name"]
        written: list[str] = []
        with Session(self._engine) as session:
            try:
                lock_for_write(session.connection(), f"model:{name}")
                latest = session.scalar(
                    select(func.max(ModelVersionRow.version)).where(ModelVersionRow.name == name)
                )
                version = (latest or 0) + 1
                report_path = None
                if report_json is not None:
                    reports = self._settings.reports_dir.relative_to(self._settings.home)
                    report_path = (reports / name / f"v{version}" / "report.json").as_posix()
                row = ModelVersionRow(
                    **fields,
                    version=version,
                    stage="production" if version == 1 else "candidate",
                    created_at=datetime.now(UTC),
                    report_path=report_path,
                )
                row.mac = version_mac(key, row)
                # Flushing claims (name, version) through the unique constraint before any
                # file named after it is written; the row becomes visible only at commit,
                # after every file it points at.
                session.add(row)
                session.flush()
                if report_json is not None and report_path is not None:
                    files = {PurePath(report_path).name: report_json.encode()}
                    if report_files is not None:
                        files.update(_beside_report(report_files(f"{name}:{version}")))
                    for file_name, content in files.items():
                        path = (PurePath(report_path).parent / file_name).as_posix()
                        # Marked before the write: an interruption just after the file
                        # lands (before the call returns) must remove it too.
                        written.append(path)
                        write_file_atomic(resolve_in_home(self._settings, path), content)
                registered = ModelVersion.from_row(row)
                session.commit()
            except BaseException:
                if written:
                    self._remove_report(written)
                session.rollback()
                raise
        return registered

    def _remove_report(self, paths: builtins.list[str]) -> None:
        for path in paths:
            delete_artifact(self._settings, path)
        version_dir = resolve_in_home(self._settings, paths[0]).parent
        for directory in (version_dir, version_dir.parent):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only succeeds when empty: others' reports are never touched

    def get(self, ref: str) -> ModelVersion:
        """``name:VERSION`` exactly, or ``name``: its production version, else its latest."""
        with Session(self._engine) as session:
            return ModelVersion.from_row(_resolve(session, ref))

    def list(self) -> builtins.list[ModelVersion]:
        """Every version of every model, ordered by name then version."""
        with Session(self._engine) as session:
            rows = session.scalars(
                select(ModelVersionRow).order_by(ModelVersionRow.name, ModelVersionRow.version)
            )
            return [ModelVersion.from_row(row) for row in rows]

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        """Every version of ``name``, oldest first; ModelNotFound if there is none."""
        with Session(self._engine) as session:
            return [ModelVersion.from_row(row) for row in _versions_of(session, name)]

    def load(self, model_version: ModelVersion | str) -> object:
        """The model object of a version, refused (IntegrityError naming it) unless its row
        is what was registered (its MAC) and its artifact is intact (sha256, then AES-GCM),
        both checked before unpickling; a model that carries its own threshold must carry
        the row's."""
        key = self._key(create=False)  # first: making it seals the rows of older releases
        if isinstance(model_version, str):
            model_version = self.get(model_version)
        elif model_version.mac is None:  # read before sealing, perhaps by the line above
            model_version = dataclasses.replace(model_version, mac=self.get(model_version.ref).mac)
        check_version(key, model_version)
        payload = read_artifact(
            self._settings, model_version.artifact_path, model_version.artifact_sha256
        )
        # A model that keeps files beside its artifact (imported weights) restores them
        # while it is unpickled, through this reader (``core.stored_files``).
        with reading_stored_files(functools.partial(read_artifact_to, self._settings)):
            model = joblib.load(io.BytesIO(payload))
        check_threshold(model_version, model)
        return model

    def _key(self, *, create: bool) -> bytes:
        """The key of the rows' MACs (made on first use, sealing rows stored without one)."""
        if self._version_key is None:
            self._version_key = version_key(self._settings, self._engine, create=create)
        return self._version_key

    def promote(self, ref: str) -> ModelVersion:
        """Make a version production; the name's previous production version is archived."""
        name, _ = _exact_ref(ref, "promote")
        with Session(self._engine) as session, session.begin():
            lock_for_write(session.connection(), f"model:{name}")
            target = _resolve(session, ref)
            if target.stage != "production":
                # Archive first: the database allows one production version per name.
                session.execute(
                    update(ModelVersionRow)
                    .where(ModelVersionRow.name == name, ModelVersionRow.stage == "production")
                    .values(stage="archived")
                )
                target.stage = "production"
            return ModelVersion.from_row(target)

    def archive(self, ref: str, *, force: bool = False) -> ModelVersion:
        """Retire a version. The production version only with ``force``: the name is then
        served by no version until another is promoted, and ``get(name)`` falls back to
        the latest candidate."""
        name, _ = _exact_ref(ref, "archive")
        with Session(self._engine) as session, session.begin():
            lock_for_write(session.connection(), f"model:{name}")
            target = _resolve(session, ref)
            _refuse_production(target, "archive", force)
            target.stage = "archived"
            return ModelVersion.from_row(target)

    def delete(self, ref: str, *, force: bool = False) -> ModelVersion:
        """Remove a version: its row, its artifact and its reports. The production version
        only with ``force``. The row goes first (in its transaction); files follow, so a
        failure can leave a file no row points at, never a row without its artifact."""
        name, _ = _exact_ref(ref, "delete")
        with Session(self._engine) as session, session.begin():
            lock_for_write(session.connection(), f"model:{name}")
            target = _resolve(session, ref)
            _refuse_production(target, "delete", force)
            removed = ModelVersion.from_row(target)
            session.delete(target)
        delete_artifact(self._settings, removed.artifact_path)
        for stored in (removed.lineage or {}).get(STORED_FILES) or []:
            if (path := _stored_artifact_path(self._settings, stored)) is not None:
                delete_artifact(self._settings, path)  # an imported model's weights
        if removed.report_path is not None:
            reports = resolve_in_home(self._settings, removed.report_path).parent
            for path in sorted(reports.glob("*")) if reports.is_dir() else []:
                delete_artifact(self._settings, path.relative_to(self._settings.home).as_posix())
            with contextlib.suppress(OSError):
                reports.rmdir()
        return removed

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _warn_if_loose(settings: Settings, url: str) -> None:
    """One warning line per loose path: group or others may read the home or the database."""
    database = sqlite_path(url)
    for what, path, fix in (
        ("medserve home", settings.home, "chmod 700"),
        ("registry database", database, "chmod 600"),
    ):
        mode = None if path is None else loose_mode(path)
        if mode is not None:
            logger.warning(
                "%s %s is accessible to other users (mode %o); run: %s %s",
                what,
                path,
                mode,
                fix,
                path,
            )


def _stored_artifact_path(settings: Settings, stored: Any) -> str | None:
    """A stored file's artifact path from a row's lineage, or None unless it lies in the
    artifacts folder (a row never makes the registry delete anything else)."""
    path = str(stored.get("artifact_path") or "") if isinstance(stored, dict) else ""
    artifacts = settings.artifacts_dir.resolve()
    with contextlib.suppress(IntegrityError):
        if path and resolve_in_home(settings, path).is_relative_to(artifacts):
            return path
    return None


def check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"model name {name!r} is not allowed: use {NAME_RULE}")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split ``name`` or ``name:VERSION``; a version that is not a whole number is refused."""
    name, sep, version_text = ref.partition(":")
    if not name:
        raise ConfigError(f"model reference {ref!r} has no name: write NAME or NAME:VERSION")
    if not sep:
        return name, None
    if not (version_text.isascii() and version_text.isdigit() and int(version_text) > 0):
        raise ConfigError(
            f"model reference {ref!r}: version {version_text!r} is not a positive whole number; "
            f"write NAME or NAME:VERSION, e.g. {name}:1"
        )
    return name, int(version_text)


def serialise(model: object) -> bytes:
    """The model pickled by joblib (compressed), as bytes for ``write_artifact``."""
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()


def json_document(value: Any, field: str) -> Any:
    """``value`` as plain JSON data: numpy scalars/arrays unwrapped, NaN and infinities as null.

    Metrics such as an undefined AUROC are NaN; JSON (and PostgreSQL) has no NaN.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic | np.ndarray):
        return json_document(value.tolist(), field)
    if isinstance(value, dict):
        return {str(key): json_document(item, field) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_document(item, field) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    raise ConfigError(
        f"{field} holds a {type(value).__name__}, which cannot be stored as JSON; "
        "use numbers, strings, lists and dicts"
    )


def _exact_ref(ref: str, action: str) -> tuple[str, int]:
    """NAME and VERSION of ``ref``; ConfigError when it names no version (a change of
    stage, or a deletion, is never made to "whatever NAME resolves to")."""
    name, version = parse_ref(ref)
    if version is None:
        raise ConfigError(
            f"name the version to {action}: '{name}:VERSION' (`medserve models list` shows "
            "the versions)"
        )
    return name, version


def _refuse_production(row: ModelVersionRow, action: str, force: bool) -> None:
    if row.stage == "production" and not force:
        raise ConfigError(
            f"{row.name}:{row.version} is in production: promote another version first, or "
            f"{action} it anyway with {option('force')} (then no version of '{row.name}' is "
            "served)"
        )


def _resolve(session: Session, ref: str) -> ModelVersionRow:
    """``name:VERSION`` exactly; ``name``: its production version, else its latest
    candidate (never an archived one: ModelNotFound saying so)."""
    name, version = parse_ref(ref)
    rows = _versions_of(session, name)
    if version is None:
        production = [row for row in rows if row.stage == "production"]
        candidates = [row for row in rows if row.stage == "candidate"]
        if production or candidates:
            return (production or candidates)[-1]
        raise ModelNotFound(
            f"'{name}' has no production or candidate version (all {len(rows)} are archived); "
            f"name one ('{name}:{rows[-1].version}') or promote it"
        )
    for row in rows:
        if row.version == version:
            return row
    existing = ", ".join(str(row.version) for row in rows)
    raise ModelNotFound(f"model {name!r} has no version {version}; its versions are {existing}")


def _versions_of(session: Session, name: str) -> builtins.list[ModelVersionRow]:
    rows = builtins.list(
        session.scalars(
            select(ModelVersionRow)
            .where(ModelVersionRow.name == name)
            .order_by(ModelVersionRow.version)
        )
    )
    if not rows:
        raise ModelNotFound(
            f"no model named {name!r} in the registry; `medserve models list` shows what is there"
        )
    return rows
