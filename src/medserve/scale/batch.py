"""`medserve predict --engine ray`: batch scoring on Ray Data. Parquet shards (a file, a
folder of them, a glob) or the rows of a SQL query on PostgreSQL are read in blocks, each
batch is scored by ``flows.predict.score_batch`` (the step the single process runs, so the
columns are the same) in actors of one CPU, and the scores are written as Parquet shards.

The model reference is resolved once, here, to NAME:VERSION: every actor loads that
version from the registry (its integrity checked there as in one process) even if
production changes mid-run. The actors read the registry through the same ``Settings``:
on a local Ray they share this machine's home; on a cluster of several nodes the registry
must be PostgreSQL and the home (artifacts, keys) on storage every node mounts.

Scores are written to a private folder beside the output and moved into place only after
the run's audit record is written: no record, no scores (as ``predict_file``)."""

from __future__ import annotations

import functools
import glob
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as pads
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from medserve.config import Settings
from medserve.errors import ConfigError, DataError, MedserveError, SchemaError, option
from medserve.flows.common import load_model, notes_cached
from medserve.flows.predict import (
    PredictOutcome,
    check_strictness,
    flagged_notice,
    score_batch,
)
from medserve.scale.cluster import cluster_cpus, ray_session, settings_told, worker_settings
from medserve.security.local_audit import record_local_action
from medserve.storage import Registry
from medserve.storage.database import describe_url, one_line

PARQUET_SUFFIXES = (".parquet", ".pq")
# Rows per batch an actor scores: large enough that pandas and the model's vectorised
# paths dominate, small enough that explanations of a batch stay in memory.
BATCH_ROWS = 4096
POSTGRES_SCHEMES = ("postgresql", "postgres")

__all__ = ["BATCH_ROWS", "BatchScorer", "predict_on_ray"]


def predict_on_ray(
    settings: Settings,
    ref: str,
    source: str | Path,
    out: Path,
    *,
    query: str | None = None,
    explain: bool = False,
    score_unseen_levels: bool = False,
    strict: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> PredictOutcome:
    """Score ``source`` (Parquet: a file, a folder of shards, a glob; or, with ``query``, a
    postgresql:// URL to run it on, read-only) with ``ref`` on Ray, writing a folder of
    Parquet shards at ``out`` with the columns ``predict_file`` writes, each file 0600.
    With ``strict``, scores are released only if no row breaks a rule of the HTTP API."""
    check_strictness(strict, score_unseen_levels)
    out = check_output_folder(Path(out))
    read = source_reader(source, query)  # every input checked before Ray starts
    with Registry(settings) as registry:
        version, _ = load_model(registry, ref)  # resolved once: the actors load this one
        with ray_session(settings) as ray:
            check_shared_registry(settings, ray)
            cpus = cluster_cpus(ray)
            if cpus < 2:
                raise ConfigError(
                    f"scoring on Ray needs 2 CPUs or more (this Ray has {cpus}): one scores "
                    "while another reads; set MEDSERVE_RAY_NUM_CPUS=2 or score it locally"
                )
            # An actor's own error (an unseen level) raised as itself, not as Ray Data's
            # "UDF failed", so that medserve_errors can say it in one line.
            ray.data.DataContext.get_current().raise_original_map_exception = True
            scored = read(ray, cpus).map_batches(
                BatchScorer,
                fn_constructor_kwargs={
                    "told": worker_settings(settings),  # no secret crosses Ray
                    "ref": version.ref,
                    "explain": explain,
                    "score_unseen_levels": score_unseen_levels,
                },
                batch_format="pandas",
                batch_size=batch_rows,
                # One CPU left for the read tasks: actors holding every CPU would wait
                # forever for blocks no task can read.
                compute=ray.data.ActorPoolStrategy(size=max(1, cpus - 1)),
                num_cpus=1,
            )
            staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.partial"
            staging.mkdir(mode=0o700)
            try:
                with medserve_errors(ray):
                    scored.write_parquet(str(staging))
                n_rows, n_flagged = written_counts(staging)
                if strict and n_flagged:
                    raise SchemaError(
                        f"{n_flagged} of {n_rows} rows hold values the HTTP API refuses (the "
                        f"validation column names the rules); nothing was written: correct "
                        f"the data, or score it without {option('strict')}"
                    )
                for shard in staging.rglob("*"):
                    shard.chmod(0o600 if shard.is_file() else 0o700)
                record_local_action(settings, registry.engine, "predict", version, n_records=n_rows)
                if out.exists():
                    out.rmdir()  # an empty folder (check_output_folder)
                staging.rename(out)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    notice = flagged_notice(n_flagged, n_rows)
    return PredictOutcome(
        version=version, n_rows=n_rows, n_flagged=n_flagged, notices=[notice] if notice else []
    )


class BatchScorer:
    """A Ray Data actor: loads the version once, then scores each pandas batch."""

    def __init__(
        self, told: dict[str, Any], ref: str, explain: bool, score_unseen_levels: bool
    ) -> None:
        settings = settings_told(told)
        with Registry(settings) as registry:
            version, self._model = load_model(registry, ref)
        self._settings = settings
        self._bands = settings.bands_for(version.name, self._model.threshold)
        self._explain = explain
        self._score_unseen_levels = score_unseen_levels

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        with notes_cached(self._settings), rows_counted_in_batch():
            scored, _ = score_batch(
                self._bands,
                self._model,
                batch.reset_index(drop=True),
                explain=self._explain,
                score_unseen_levels=self._score_unseen_levels,
            )
        return scored


@contextmanager
def rows_counted_in_batch() -> Iterator[None]:
    """A SchemaError naming a row says that the row is counted within its batch (the
    actor sees one batch, not the file)."""
    try:
        yield
    except SchemaError as error:
        raise SchemaError(
            f"{error.template} (the row counted within its batch on Ray)",
            code=error.code,
            location=error.location,
        ) from None


def check_output_folder(out: Path) -> Path:
    """``out`` if a folder of Parquet shards can be made there: no suffix or .parquet, its
    parent there, itself absent or an empty folder (never mixed with an earlier run's)."""
    if out.suffix.lower() not in ("", *PARQUET_SUFFIXES):
        raise DataError(
            f"{out}: scoring on Ray writes a folder of Parquet shards; name a folder such as "
            f"{out.with_suffix('')} or {out.with_suffix('.parquet')}"
        )
    if not out.parent.is_dir():
        raise DataError(f"{out}: the folder {out.parent} does not exist; create it first")
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise DataError(f"{out}: already exists; name a new folder for the scores")
    return out


Reader = Callable[[Any, int], Any]


def source_reader(source: str | Path, query: str | None) -> Reader:
    """A function of (ray, cluster CPUs) to the Ray Dataset of ``source``'s rows."""
    text = str(source)
    if _is_postgres_url(text):
        if not query:
            raise ConfigError(
                f"{describe_url(text)}: name the rows to score with {option('query')} "
                '(e.g. "SELECT * FROM admissions")'
            )
        return _sql_reader(text, query)
    if query:
        raise ConfigError(
            f"{option('query')} runs on PostgreSQL: give the database's postgresql:// URL "
            "in place of the file"
        )
    files = parquet_files(text)
    return lambda ray, cpus: ray.data.read_parquet(files)


def parquet_files(source: str) -> list[str]:
    """The Parquet files ``source`` names: itself, those in the folder, or the glob's."""
    if glob.has_magic(source):
        paths = [Path(p) for p in sorted(glob.glob(source, recursive=True))]
        if not paths:
            raise DataError(f"{source}: no file matches")
    elif Path(source).is_dir():
        paths = sorted(p for p in Path(source).rglob("*") if p.suffix.lower() in PARQUET_SUFFIXES)
        if not paths:
            raise DataError(f"{source}: the folder holds no .parquet files")
    elif Path(source).exists():
        paths = [Path(source)]
    else:
        raise DataError(f"{source}: no such file")
    for path in paths:
        if path.suffix.lower() not in PARQUET_SUFFIXES:
            raise DataError(
                f"{path}: scoring on Ray reads Parquet (a file, a folder of shards, a glob) "
                f"or a SQL query; convert it to Parquet or score it with {option('engine')} "
                "local"
            )
    return [str(path) for path in paths]


def _sql_reader(url: str, query: str) -> Reader:
    """Rows of ``query``, read in a read-only transaction, then spread over the cluster (a
    query is read by one task: Ray's sharding needs MD5 sums PostgreSQL types as text)."""
    libpq = _libpq_url(url)
    if make_url(libpq).password is not None:  # the read task's arguments cross Ray
        raise ConfigError(
            f"{describe_url(url)}: give the database's password in PGPASSWORD or ~/.pgpass "
            "(read by the task that runs the query), not in the URL, which Ray would carry"
        )
    connect = functools.partial(read_only_connection, libpq)
    _check_query(connect, query)

    def read(ray: Any, cpus: int) -> Any:
        return ray.data.read_sql(query, connect).repartition(cpus)

    return read


def read_only_connection(url: str) -> Any:
    """A psycopg connection whose transactions are read-only: the query cannot write."""
    import psycopg

    connection = psycopg.connect(url, connect_timeout=10)
    connection.read_only = True
    return connection


def _check_query(connect: Callable[[], Any], query: str) -> None:
    """DataError now, in one line, if the database cannot be reached or the query run."""
    import psycopg

    try:
        with connect() as connection, connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM ({query}) AS rows_to_score LIMIT 0")
    except psycopg.Error as error:
        raise DataError(f"the {option('query')} could not be run: {one_line(error)}") from None


def _is_postgres_url(text: str) -> bool:
    scheme = text.split("://", 1)[0] if "://" in text else ""
    return scheme.split("+", 1)[0] in POSTGRES_SCHEMES


def _libpq_url(url: str) -> str:
    """``url`` as libpq reads it: SQLAlchemy's ``+psycopg`` driver suffix dropped."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{describe_url(url)}: not a database URL") from None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def check_shared_registry(settings: Settings, ray: Any) -> None:
    """ConfigError when the actors could not all read the registry: a SQLite registry is a
    file of this machine, and a cluster of several nodes has actors elsewhere."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1 and not settings.database_url:
        raise ConfigError(
            f"scoring on a Ray cluster of {len(nodes)} nodes reads the registry on each of "
            "them: set MEDSERVE_DATABASE_URL to a PostgreSQL database and MEDSERVE_HOME to "
            "storage every node mounts"
        )


def written_counts(folder: Path) -> tuple[int, int]:
    """Rows written under ``folder`` and how many of them the `validation` column flags."""
    if not any(folder.glob("*.parquet")):
        raise DataError("the source holds no rows to score")
    validation = pads.dataset(str(folder), format="parquet").to_table(columns=["validation"])
    column = validation.column("validation")
    flagged = pc.sum(pc.greater(pc.utf8_length(pc.fill_null(column, "")), 0)).as_py()
    return len(column), int(flagged or 0)


@contextmanager
def medserve_errors(ray: Any) -> Iterator[None]:
    """A medserve error raised in an actor (an unseen level) raised here as itself, not in
    Ray's wrappers, so that the command says it in one line."""
    # Ray Data logs its plan, and a failure's traceback (the error's text with it), on this
    # process's stderr: the command's own line says what failed. Its logs stay in Ray's
    # session folder.
    ray_data_log = logging.getLogger("ray.data")
    level = ray_data_log.level
    ray_data_log.setLevel(logging.CRITICAL)
    try:
        yield
    except ray.exceptions.RayError as error:
        cause: BaseException | None = error
        while cause is not None:
            inner = getattr(cause, "cause", None)  # a RayTaskError's: the actor's own error
            if isinstance(cause, MedserveError) and not isinstance(inner, BaseException):
                raise cause from None
            cause = inner if isinstance(inner, BaseException) else cause.__cause__
        raise
    finally:
        ray_data_log.setLevel(level)
