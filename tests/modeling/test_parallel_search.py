"""The search through a ``Parallel`` (the folds at once, the families side by side) chooses
the model, and writes the leaderboard, that the search in turn does; no Ray here."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from medserve.data import infer_schema
from medserve.modeling import TrainOptions, train_model
from medserve.modeling.parallel import IN_PROCESS
from support.notes import notes_table

FAMILIES = "logistic,lightgbm,mlp"
OPTIONS = TrainOptions(family=FAMILIES, cv=3)


class Threads:
    """Every call on a thread of its own, at once (a real concurrent engine)."""

    def map(self, fn, shared, items):
        with ThreadPoolExecutor(max_workers=len(items)) as threads:
            return list(threads.map(lambda item: fn(shared, item), items))


class LightgbmLast(Threads):
    """Threads, where LightGBM's fits wait for the MLP's to finish (the MLP comes after
    LightGBM's capacities in the candidates' order)."""

    def __init__(self) -> None:
        self.mlp_done = threading.Event()

    def map(self, fn, shared, items):
        family = items[0].candidate.family
        if family == "lightgbm":
            assert self.mlp_done.wait(timeout=120)
        results = super().map(fn, shared, items)
        if family == "mlp":
            self.mlp_done.set()
        return results


class LastFirst:
    """The calls in the reverse of their order, the results handed back in theirs."""

    def map(self, fn, shared, items):
        return [fn(shared, item) for item in reversed(items)][::-1]


class Pickled:
    """As another process gets them: the payload, each call and each result through pickle;
    the labels of the candidates it was given."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def map(self, fn, shared, items):
        self.labels += [item.candidate.label for item in items]
        shared = pickle.loads(pickle.dumps(shared))
        calls = [pickle.loads(pickle.dumps(item)) for item in items]
        return [pickle.loads(pickle.dumps(fn(shared, item))) for item in calls]


def leaderboard(result) -> list[dict]:
    """What the report keeps of each candidate, bar its fitting time."""
    return [{k: v for k, v in row.to_dict().items() if k != "fit_seconds"} for row in
            result.leaderboard]  # fmt: skip


@pytest.fixture(scope="module")
def in_turn(heart, heart_schema):
    return train_model(heart, heart_schema, OPTIONS)


@pytest.mark.parametrize(
    "parallel",
    [IN_PROCESS, Threads(), LightgbmLast(), LastFirst(), Pickled()],
    ids=lambda p: type(p).__name__,
)
def test_a_parallel_search_chooses_the_model_the_search_in_turn_does(
    heart, heart_schema, in_turn, parallel
):
    result = train_model(heart, heart_schema, OPTIONS, parallel=parallel)
    assert leaderboard(result) == leaderboard(in_turn)
    assert [row.family for row in result.leaderboard][:2] == ["logistic", "lightgbm (4 leaves)"]
    for row, reference in zip(result.leaderboard, in_turn.leaderboard, strict=True):
        assert (row.oof_risk is None) == (reference.oof_risk is None)
        if row.oof_risk is not None:
            assert np.array_equal(row.oof_risk, reference.oof_risk)
    assert result.model.info["candidate"] == in_turn.model.info["candidate"]
    assert result.model.threshold == in_turn.model.threshold
    assert np.array_equal(result.model.predict_risk(heart), in_turn.model.predict_risk(heart))


def test_progress_counts_each_fold_once_while_families_fit_side_by_side(heart, heart_schema):
    """The bar moves as in turn: one step per fold fitted, counted once, never backwards."""

    def steps(parallel) -> list[tuple[int, int]]:
        seen: list[tuple[int, int]] = []
        progress = lambda what, done, total: seen.append((done, total))  # noqa: E731
        train_model(heart, heart_schema, OPTIONS, progress=progress, parallel=parallel)
        return seen

    side_by_side = steps(Threads())
    assert [done for done, _ in side_by_side] == list(range(1, len(side_by_side) + 1))
    assert side_by_side == steps(None)


def test_in_parallel_the_time_limit_is_checked_before_each_candidate(
    heart, heart_schema, monkeypatch
):
    """With no time left, the first candidate still fits all its folds at once (in turn it
    would stop after one); the others are not started."""
    from medserve.modeling import search

    monkeypatch.setattr(search.Budget, "spent", property(lambda self: True))
    result = train_model(
        heart, heart_schema, TrainOptions(family=FAMILIES, cv=3, time_limit=30), parallel=Threads()
    )
    first, *others = result.leaderboard
    assert first.family == "logistic" and first.error is None and first.selected
    assert first.oof_risk is not None and np.all(first.oof_risk > 0)  # every fold scored
    assert others and all((row.error or "").startswith("skipped") for row in others)
    assert {row.family: row.error for row in others}["mlp"].startswith("skipped: the time limit")
    assert result.model.family == "logistic"


def test_a_family_whose_inputs_are_computed_here_is_fitted_here():
    """The text family reads the notes' embeddings this process computed: its folds stay
    here, the tabular families' go to the engine, and the search is the one in turn."""
    table = notes_table(200, seed=1)
    columns = [
        c.model_copy(update={"type": "text", "role": "feature"}) if c.name == "note" else c
        for c in infer_schema(table, target="event").columns
    ]
    schema = infer_schema(table, target="event").model_copy(update={"columns": columns})
    options = TrainOptions(family="logistic,text", cv=3, time_limit=None)
    elsewhere = Pickled()
    result = train_model(table, schema, options, parallel=elsewhere)
    assert "logistic" in elsewhere.labels
    assert not [label for label in elsewhere.labels if label.startswith("text")]
    assert any(row.family.startswith("text") and row.usable for row in result.leaderboard)
    assert leaderboard(result) == leaderboard(train_model(table, schema, options))
