"""`medserve predict --engine ray`: Ray Data scores Parquet shards or the rows of a SQL query
on PostgreSQL with the step the single process runs, so the scores are the same; the
output is a folder of private Parquet shards, released only after its audit record, and
what cannot work is refused in one line before Ray starts."""

from __future__ import annotations

import contextlib
import json
import shutil
import stat
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy

from medserve.config import Settings
from medserve.errors import SchemaError
from medserve.flows import predict_file
from medserve.scale.batch import predict_on_ray
from test_cli import assert_clean_failure, run, run_json, train_heart_args
from test_cli_models import audit_records

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def trained(tmp_path_factory, heart_csv):
    """The heart model, trained once for the module."""
    home = tmp_path_factory.mktemp("ray-batch") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSERVE_HOME", str(home))
        patch.delenv("MEDSERVE_DATABASE_URL", raising=False)
        run_json(*train_heart_args(heart_csv))
    return home


@pytest.fixture
def home(trained, tmp_path, monkeypatch):
    """A copy of the trained home for this test (its audit trail its own)."""
    copy = tmp_path / "home"
    shutil.copytree(trained, copy)
    monkeypatch.setenv("MEDSERVE_HOME", str(copy))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return copy


@pytest.fixture
def patients(heart_csv) -> pd.DataFrame:
    """The heart data without its outcome, a patient aged 250 among them."""
    rows = pd.read_csv(heart_csv).drop(columns=["num"])
    rows.loc[7, "age"] = 250
    return rows


@pytest.fixture
def shards(patients, tmp_path):
    """The patients as three Parquet shards in a folder."""
    folder = tmp_path / "admissions"
    folder.mkdir()
    for number, start in enumerate(range(0, len(patients), 307)):
        shard = patients.iloc[start : start + 307]
        shard.to_parquet(folder / f"part-{number}.parquet", index=False)
    return folder


def scored_locally(home, patients, tmp_path, **options) -> pd.DataFrame:
    out = tmp_path / "local.parquet"
    predict_file(Settings(home=home), "heart", patients, out, **options)
    return pd.read_parquet(out)


def read_scores(folder) -> pd.DataFrame:
    return pd.read_parquet(folder).sort_values(["id"]).reset_index(drop=True)


def test_shards_are_scored_on_ray_as_one_process_scores_them(
    ray_local, home, patients, shards, tmp_path
):
    result = run("predict", "heart", shards, "-o", tmp_path / "scores", "--explain",
                 "--engine", "ray", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert (answer["rows"], answer["flagged_rows"], answer["version"]) == (920, 1, 1)
    (notice,) = answer["notices"]
    assert "1 of 920 rows hold values the HTTP API refuses" in notice
    (record,) = audit_records(home)
    assert (record["route"], record["model_version"], record["n_records"]) == (
        "cli predict",
        1,
        920,
    )
    on_ray = read_scores(tmp_path / "scores")
    local = scored_locally(home, patients, tmp_path, explain=True)
    local = local.sort_values(["id"]).reset_index(drop=True)
    assert list(on_ray.columns) == list(local.columns)
    assert np.allclose(on_ray.risk, local.risk)
    assert on_ray.label.tolist() == local.label.tolist()
    assert on_ray.validation.tolist() == local.validation.tolist()
    assert on_ray.explanation.tolist() == local.explanation.tolist()
    # Scores of patients are private: the folder and every shard the owner's only.
    assert stat.S_IMODE((tmp_path / "scores").stat().st_mode) == 0o700
    for shard in (tmp_path / "scores").iterdir():
        assert stat.S_IMODE(shard.stat().st_mode) == 0o600


@pytest.mark.postgres
def test_the_rows_of_a_sql_query_on_postgresql_are_scored(
    ray_local, home, patients, postgres_url, tmp_path
):
    engine = sqlalchemy.create_engine(postgres_url)
    patients.to_sql("admissions", engine, index=False)
    engine.dispose()
    query = "SELECT * FROM admissions WHERE age < 60"
    outcome = predict_on_ray(
        Settings(home=home), "heart", postgres_url, tmp_path / "scores", query=query
    )
    younger = patients[patients.age < 60]
    assert outcome.n_rows == len(younger) and outcome.version.ref == "heart:1"
    on_ray = read_scores(tmp_path / "scores")
    local = scored_locally(home, younger, tmp_path).sort_values(["id"]).reset_index(drop=True)
    assert np.allclose(on_ray.risk, local.risk)


@pytest.mark.postgres
def test_a_query_that_would_write_is_refused_by_the_database(
    ray_local, home, patients, postgres_url, tmp_path
):
    engine = sqlalchemy.create_engine(postgres_url)
    patients.head(5).to_sql("admissions", engine, index=False)
    query = "DELETE FROM admissions RETURNING *"
    result = run("predict", "heart", postgres_url, "-o", tmp_path / "s", "--engine", "ray",
                 "--query", query)  # fmt: skip
    assert_clean_failure(result, "the --query could not be run", code=2)
    with engine.connect() as connection:
        remaining = connection.execute(sqlalchemy.text("SELECT count(*) FROM admissions"))
        assert remaining.scalar() == 5
    engine.dispose()
    assert not (tmp_path / "s").exists()


def test_strict_scoring_releases_nothing_when_a_row_breaks_a_rule(
    ray_local, home, shards, tmp_path
):
    with pytest.raises(SchemaError, match="1 of 920 rows hold values the HTTP API refuses"):
        predict_on_ray(Settings(home=home), "heart", shards, tmp_path / "scores", strict=True)
    assert list(tmp_path.glob("*scores*")) == []  # no folder, no partial shards
    assert audit_records(home) == []


def test_an_unseen_level_raised_in_an_actor_is_the_commands_one_line(
    ray_local, home, patients, tmp_path
):
    patients.loc[3, "cp"] = "crushing"
    patients.to_parquet(tmp_path / "rows.parquet", index=False)
    result = run("predict", "heart", tmp_path / "rows.parquet", "-o", tmp_path / "scores",
                 "--engine", "ray")  # fmt: skip
    assert_clean_failure(result, "--score-unseen-levels", code=2)
    assert "counted within its batch" in result.output
    assert list(tmp_path.glob("*scores*")) == []
    assert audit_records(home) == []


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        ("heart.csv", (), "scoring on Ray reads Parquet"),
        ("rows.parquet", ("-o", "scores.csv"), "writes a folder of Parquet shards"),
        ("rows.parquet", ("--sep", ";"), "--engine ray reads and writes Parquet"),
        ("rows.parquet", ("--query", "SELECT 1"), "--query runs on PostgreSQL"),
        ("postgresql://127.0.0.1/test", (), "name the rows to score with --query"),
        ("missing/*.parquet", (), "no file matches"),
        ("postgresql://u:s3cret@127.0.0.1/test", ("--query", "SELECT 1"), "PGPASSWORD"),
    ],
    ids=[
        "csv",
        "csv-output",
        "csv-options",
        "query-on-a-file",
        "url-without-query",
        "glob",
        "password-in-the-url",  # it would cross Ray in the read task's arguments
    ],
)
def test_what_cannot_work_on_ray_is_refused_in_one_line(
    home, heart_csv, patients, tmp_path, monkeypatch, source, extra, message
):
    """Refused before Ray starts: the ray_local fixture is not needed."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(heart_csv, "heart.csv")
    patients.to_parquet("rows.parquet", index=False)
    output = () if "-o" in extra else ("-o", "scores")
    result = run("predict", "heart", source, *output, *extra, "--engine", "ray")
    assert_clean_failure(result, message, code=2)
    assert "s3cret" not in result.output
    assert audit_records(home) == []


def test_the_scoring_actors_are_told_no_secret(home, shards, tmp_path, monkeypatch):
    """What the actors are given crosses Ray (its object store, a cluster's control store):
    secrets (the master key, the FHIR token) stay in each worker's own environment. A
    stand-in for Ray keeps what ``map_batches`` is given."""
    given = {}

    class Dataset:
        def map_batches(self, scorer, **options):
            given.update(options["fn_constructor_kwargs"])
            raise _Stop

    fake_ray = SimpleNamespace(
        cluster_resources=lambda: {"CPU": 2},
        nodes=lambda: [{"Alive": True}],
        data=SimpleNamespace(
            read_parquet=lambda files: Dataset(),
            DataContext=SimpleNamespace(get_current=lambda: SimpleNamespace()),
            ActorPoolStrategy=lambda size: size,
        ),
    )
    monkeypatch.setattr(
        "medserve.scale.batch.ray_session", lambda settings: contextlib.nullcontext(fake_ray)
    )
    secret = "fhir-t0ken-of-the-ehr"
    settings = Settings(home=home, fhir_server_token=secret)
    with pytest.raises(_Stop):
        predict_on_ray(settings, "heart", shards, tmp_path / "scores")
    assert secret not in repr(given)
    assert "fhir_server_token" not in given["told"] and given["told"]["home"] == str(home.resolve())


class _Stop(Exception):
    pass


def test_a_query_is_refused_on_the_local_engine(home, heart_csv, tmp_path):
    result = run("predict", "heart", heart_csv, "-o", tmp_path / "s.csv", "--query", "SELECT 1")
    assert_clean_failure(result, "--query is for --engine ray", code=2)
