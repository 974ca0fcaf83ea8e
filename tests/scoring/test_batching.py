"""Dynamic batching: concurrent requests scored in one call give each request exactly what
it gets alone; batches respect their size and wait, an invalid or failing request fails
alone, shutdown answers every request still queued, and which models are batched by
default (those with no fast path) follows the settings."""

from __future__ import annotations

import asyncio
import dataclasses

import pandas as pd
import pytest

from medserve.config import BatchPolicy, Settings
from medserve.errors import DataError
from medserve.flows import TrainRequest, train_and_register
from medserve.scoring.batching import Batchers
from medserve.scoring.catalog import ServedModel
from medserve.scoring.compiled import CompositeRisk, FastScorer
from medserve.scoring.predictor import InvalidRecords, Prediction, Predictor
from medserve.storage import Registry
from support.servers import json_records

LONG_WAIT = BatchPolicy(max_size=1000, wait_ms=60_000)


@pytest.fixture(scope="module")
def served(tmp_path_factory, heart_csv) -> ServedModel:
    """The heart model as the service holds it, with its fast path taken away: scored by
    the reference pipeline, as a model with no fast path is (the ones batched by default)."""
    settings = Settings(home=tmp_path_factory.mktemp("batching") / "home")
    request = TrainRequest(
        data=heart_csv, name="heart", target="num", positive_if=">0", family="logistic", cv=3
    )
    version = train_and_register(settings, request).version
    with Registry(settings) as registry:
        model = registry.load(version)
    fast = ServedModel.of(version, model)
    reference = FastScorer(model, None, None, fast.scorer.recalibrate)
    assert not reference.exact_fast_path
    return dataclasses.replace(fast, scorer=reference)


@pytest.fixture(scope="module")
def records(heart_csv) -> list[dict]:
    frame = pd.read_csv(heart_csv, dtype=str, keep_default_na=False, na_values=[""])
    return json_records(frame.drop(columns=["id", "num"]).head(40))


@pytest.fixture
def predictor() -> Predictor:
    return Predictor(Settings().bands_for, max_records=10_000)


def batchers_for(predictor: Predictor, policy: BatchPolicy | None) -> Batchers:
    return Batchers(predictor, {"heart": policy}, default=None)


def answers(predictions: list[Prediction]) -> list[dict]:
    """As REST answers them, less each prediction's own id (no two calls share one)."""
    return [
        {k: v for k, v in prediction.to_dict().items() if k != "prediction_id"}
        for prediction in predictions
    ]


def same(found: object, expected: object) -> bool:
    """Equal answers: labels, bands and texts exactly; numbers to the last bits that BLAS
    may round differently for a matrix of another height (as for any two request sizes)."""
    if isinstance(expected, float):
        return found == pytest.approx(expected, rel=1e-12, abs=1e-15)
    if isinstance(expected, dict):
        return (
            isinstance(found, dict)
            and found.keys() == expected.keys()
            and all(same(found[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(found, list)
            and len(found) == len(expected)
            and all(same(f, e) for f, e in zip(found, expected, strict=True))
        )
    return found == expected


@pytest.mark.parametrize("explain", [False, True], ids=["risk", "explained"])
def test_concurrent_requests_get_what_sequential_calls_give(served, records, predictor, explain):
    requests = [records[i : i + 1 + i % 3] for i in range(0, 24, 3)]  # 8 requests, 1-3 records
    batchers = batchers_for(predictor, BatchPolicy(max_size=1000, wait_ms=60_000))
    alone = [answers(predictor.predict(served, request, explain=explain)) for request in requests]

    async def concurrently() -> list[list[Prediction]]:
        batcher = batchers.batcher(served, explain=explain)
        assert batcher is not None
        pending = [asyncio.create_task(batcher.predict(request)) for request in requests]
        await asyncio.sleep(0)  # all queued before any batch is scored
        await batchers.close()  # the last batch need not wait a minute for more
        return [await task for task in pending]

    together = asyncio.run(concurrently())

    assert same([answers(found) for found in together], alone)
    if explain:
        assert all(p["explanation"]["summary"] for found in alone for p in found)
    stats = batchers.stats("heart")
    assert stats.requests == len(requests) and stats.records == sum(map(len, requests))
    assert stats.largest == len(requests)  # one batch of all of them


def test_batches_hold_at_most_max_size_records_and_never_split_a_request(
    served, records, predictor
):
    sizes = [3, 3, 2, 4, 1, 7]
    requests, start = [], 0
    for size in sizes:
        requests.append(records[start : start + size])
        start += size
    batchers = batchers_for(predictor, BatchPolicy(max_size=5, wait_ms=60_000))

    async def concurrently() -> list[list[Prediction]]:
        batcher = batchers.batcher(served, explain=False)
        assert batcher is not None
        return await asyncio.gather(*(batcher.predict(request) for request in requests))

    together = asyncio.run(concurrently())

    assert [len(found) for found in together] == sizes
    stats = batchers.stats("heart")
    # 3 | 3+2 | 4+1 | 7 (larger than max_size: scored alone, whole)
    assert stats.records_per_batch == {3: 1, 5: 2, 7: 1}
    assert stats.requests_per_batch == {1: 2, 2: 2}


@pytest.mark.parametrize(("wait_ms", "batches"), [(60_000, {2: 1}), (0, {1: 2})])
def test_a_request_waits_up_to_wait_ms_for_others_to_join(
    served, records, predictor, wait_ms, batches
):
    batchers = batchers_for(predictor, BatchPolicy(max_size=2, wait_ms=wait_ms))

    async def one_then_another() -> None:
        batcher = batchers.batcher(served, explain=False)
        assert batcher is not None
        first = asyncio.create_task(batcher.predict(records[:1]))
        for _ in range(5):  # the worker has taken the first request and is waiting
            await asyncio.sleep(0)
        second = asyncio.create_task(batcher.predict(records[1:2]))
        await asyncio.gather(first, second)

    asyncio.run(one_then_another())

    assert batchers.stats("heart").requests_per_batch == batches


def test_an_invalid_request_fails_alone_before_joining_a_batch(served, records, predictor):
    broken = [{**records[0], "age": "abc"}]
    batchers = batchers_for(predictor, BatchPolicy(max_size=4, wait_ms=60_000))

    async def concurrently() -> list[object]:
        batcher = batchers.batcher(served, explain=False)
        assert batcher is not None
        requests = [records[:1], broken, records[1:2], records[2:3], records[3:4]]
        return await asyncio.gather(
            *(batcher.predict(request) for request in requests), return_exceptions=True
        )

    found = asyncio.run(concurrently())

    assert isinstance(found[1], InvalidRecords)
    assert "record 0, field 'age'" in found[1].message
    valid = [found[0], *found[2:]]
    expected = [answers(predictor.predict(served, records[i : i + 1])) for i in range(4)]
    assert same([answers(f) for f in valid], expected)  # type: ignore[arg-type]
    assert batchers.stats("heart").requests_per_batch == {4: 1}


class FailsOnAge77(Predictor):
    """A predictor whose scoring raises for any call holding a record aged 77 (valid for
    the schema): the batch holding it raises, as a model can on one record."""

    def scored(self, served, records, *, explain=False):
        if any(record.get("age") == 77 for record in records):
            raise DataError("cannot score a record aged 77")
        return super().scored(served, records, explain=explain)


def test_a_batch_that_raises_is_scored_request_by_request_so_only_the_culprit_fails(
    served, records
):
    predictor = FailsOnAge77(Settings().bands_for, max_records=10_000)
    culprit = [{**records[0], "age": 77}]
    requests = [records[:1], culprit, records[1:2]]
    batchers = batchers_for(predictor, BatchPolicy(max_size=3, wait_ms=60_000))

    async def concurrently() -> list[object]:
        batcher = batchers.batcher(served, explain=False)
        assert batcher is not None
        return await asyncio.gather(
            *(batcher.predict(request) for request in requests), return_exceptions=True
        )

    found = asyncio.run(concurrently())

    assert isinstance(found[1], DataError) and "aged 77" in found[1].message
    assert same(answers(found[0]), answers(predictor.predict(served, records[:1])))  # type: ignore[arg-type]
    assert same(answers(found[2]), answers(predictor.predict(served, records[1:2])))  # type: ignore[arg-type]
    assert batchers.stats("heart").fallbacks == 1


def test_shutdown_answers_every_request_still_queued(served, records, predictor):
    batchers = batchers_for(predictor, LONG_WAIT)

    async def queued_then_closed() -> list[asyncio.Task]:
        batcher = batchers.batcher(served, explain=False)
        assert batcher is not None
        pending = [asyncio.create_task(batcher.predict(records[i : i + 1])) for i in range(3)]
        for _ in range(5):  # queued, the worker waiting a minute for more
            await asyncio.sleep(0)
        assert not any(task.done() for task in pending)
        await batchers.close()
        assert all(task.done() for task in pending)
        after = batchers.batcher(served, explain=False)  # closed: scored one by one
        assert after is None
        return pending

    pending = asyncio.run(queued_then_closed())

    expected = [answers(predictor.predict(served, records[i : i + 1])) for i in range(3)]
    assert same([answers(task.result()) for task in pending], expected)


def test_models_without_a_fast_path_are_batched_by_default_and_others_not(served, predictor):
    fast = ServedModel.of(served.version, served.model)
    assert fast.scorer.exact_fast_path
    default = Settings()
    batchers = Batchers(predictor, default.batching, default.batching_default)
    assert batchers.policy_for(served) == BatchPolicy(max_size=32, wait_ms=5)
    assert batchers.policy_for(fast) is None

    # A blend is as fast as its members: batched only when one of them has no fast path.
    blend_of = lambda *members: dataclasses.replace(  # noqa: E731
        fast,
        scorer=FastScorer(
            fast.model, None, None, fast.scorer.recalibrate,
            CompositeRisk(0.0, tuple((0.5, member.scorer) for member in members)),
        ),
    )  # fmt: skip
    assert not blend_of(fast, fast).scorer.exact_fast_path
    assert batchers.policy_for(blend_of(fast, fast)) is None
    assert batchers.policy_for(blend_of(fast, served)) == BatchPolicy()

    named = Batchers(predictor, {"heart": BatchPolicy(max_size=8, wait_ms=1)}, None)
    assert named.policy_for(fast) == BatchPolicy(max_size=8, wait_ms=1)
    assert named.policy_for(served) == BatchPolicy(max_size=8, wait_ms=1)
    for off in (None, BatchPolicy(max_size=1)):
        assert Batchers(predictor, {"heart": off}, BatchPolicy()).policy_for(served) is None
    assert Batchers(predictor, {}, None).policy_for(served) is None


def test_batching_is_configured_per_model_from_the_environment(monkeypatch):
    monkeypatch.setenv("MEDSERVE_BATCHING", '{"notes": {"max_size": 16, "wait_ms": 2}, "x": null}')
    monkeypatch.setenv("MEDSERVE_BATCHING_DEFAULT", "null")
    settings = Settings()
    assert settings.batching == {"notes": BatchPolicy(max_size=16, wait_ms=2), "x": None}
    assert settings.batching_default is None
