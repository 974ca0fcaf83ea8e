"""Dynamic batching: concurrent requests to one model version are scored together, in one
call of the model on their concatenated records, and each request gets its own part back.

Why and when. A model without a fast path (the notes family runs a sentence encoder; EBM
and imported ONNX or transformers models run their own pipelines) pays a fixed cost per
call (a DataFrame, the encoder's forward pass, torch's dispatch) that 32 records share
almost as cheaply as one carries it: under concurrency a batch answers several times the
requests per second of one call each (bench/batching.py: the notes model on 2 cores, ~4x
at concurrency 32). The fast-path models (``FastScorer.exact_fast_path``: logistic,
LightGBM, MLP, and blends of them, see ``answers_fast``) answer one record in well under a
millisecond on the event loop; a queue, a wait and a hop to a thread would only add
latency, so they are not batched unless a model is named in MEDSERVE_BATCHING. Hence the
default (``Settings.batching_default``): on, at most 32 records and 5 ms of wait, for the
models with no fast path; off for the others. The wait is what a lone request pays at
light load (5 ms beside the notes model's ~50 ms per call); under load most of a batch
gathers while the previous one is scored, so ``wait_ms: 0`` is the choice where latency
at light load matters more than the last bit of throughput.

How. One ``Batcher`` per served version (and per ``explain``, since explained and
unexplained requests are scored differently). A request's records are validated first,
on their own, so an invalid request gets its own 422 and never joins a batch. Then it
waits in the batcher's queue. The batcher's one worker takes the oldest request, lets
others join until the batch holds ``max_size`` records or the oldest has waited
``wait_ms`` (a request larger than ``max_size`` is scored alone, never split), and
scores the batch in a thread while the next one gathers. Each record's risk, label,
band and explanation depend on that record only, so a batch gives what separate calls
give, to the rounding of the arithmetic: a taller matrix may round in the last bits
(float64 BLAS), and a note padded among others in the 7th digit (the float32 encoder), as
the records of one many-record request already do. If scoring a batch raises anyway, each
of its requests is scored alone, so only the request that caused it fails.

Only the scoring is shared: the route still accounts, audits and rate-limits each request
as its own, and a batch's size is counted without anything of its records."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from medserve.config import BatchPolicy
from medserve.scoring.catalog import ServedModel
from medserve.scoring.compiled import FastScorer
from medserve.scoring.encoding import Record
from medserve.scoring.predictor import Prediction, Predictor

log = logging.getLogger("medserve.http")
# Requests of up to this many records are validated on the event loop (microseconds);
# larger ones in a thread.
INLINE_VALIDATION_RECORDS = 32
# Threads scoring batches: one per batcher at a time, so at most this many models at once.
SCORING_THREADS = 4

T = TypeVar("T")
# (model name, records in the batch): how each batch formed is counted (no patient data).
BatchObserver = Callable[[str, int], None]


@dataclass(slots=True)
class BatchStats:
    """The batches a batcher has formed: how many, and their sizes in requests and records."""

    batches: int = 0
    requests: int = 0
    records: int = 0
    requests_per_batch: Counter[int] = field(default_factory=Counter)
    records_per_batch: Counter[int] = field(default_factory=Counter)
    fallbacks: int = 0  # batches that raised and were scored request by request

    @property
    def largest(self) -> int:
        """The most requests scored together."""
        return max(self.requests_per_batch, default=0)

    def add(self, other: BatchStats) -> None:
        self.batches += other.batches
        self.requests += other.requests
        self.records += other.records
        self.requests_per_batch.update(other.requests_per_batch)
        self.records_per_batch.update(other.records_per_batch)
        self.fallbacks += other.fallbacks


@dataclass(slots=True, eq=False)
class _Waiting:
    """One request in the queue: its records and where its answer goes."""

    records: Sequence[Record]
    answer: asyncio.Future[list[Prediction]]
    arrived: float  # loop time


class Batcher:
    """Coalesces concurrent requests to one served version; use from one event loop."""

    def __init__(
        self,
        predictor: Predictor,
        served: ServedModel,
        policy: BatchPolicy,
        *,
        explain: bool,
        executor: ThreadPoolExecutor,
        observe: BatchObserver | None = None,
    ) -> None:
        self.predictor, self.served, self.policy, self.explain = predictor, served, policy, explain
        self.stats = BatchStats()
        self._executor = executor
        self._observe = observe
        self._queue: deque[_Waiting] = deque()
        self._queued_records = 0
        self._arrived = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None

    async def predict(self, records: Sequence[Record]) -> list[Prediction]:
        """The request's predictions, as ``Predictor.predict`` gives them; InvalidRecords
        (this request only) before it joins a batch."""
        self.predictor.admit(len(records))
        if len(records) <= INLINE_VALIDATION_RECORDS:
            self.predictor.validate(self.served, records)
        else:
            await self._in_thread(self.predictor.validate, self.served, records)
        if self._closing:  # after shutdown began: answered alone, never left waiting
            return await asyncio.to_thread(self._score, records)
        loop = asyncio.get_running_loop()
        waiting = _Waiting(records, loop.create_future(), loop.time())
        self._queue.append(waiting)
        self._queued_records += len(records)
        self._arrived.set()
        if self._worker is None:
            self._worker = loop.create_task(self._work(), name=f"batcher {self.served.version.ref}")
        return await waiting.answer

    async def close(self) -> None:
        """Score everything still queued (no waiting for others), then stop the worker."""
        self._closing = True
        self._arrived.set()
        if self._worker is not None:
            await self._worker

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        wait_s = self.policy.wait_ms / 1000
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            deadline = self._queue[0].arrived + wait_s
            while self._queued_records < self.policy.max_size and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take()
            if batch:
                await self._answer(batch)

    def _take(self) -> list[_Waiting]:
        """The oldest requests whose records fit ``max_size`` together (at least one);
        requests whose caller has gone (cancelled) are dropped."""
        batch: list[_Waiting] = []
        size = 0
        while self._queue:
            waiting = self._queue[0]
            if batch and size + len(waiting.records) > self.policy.max_size:
                break
            self._queue.popleft()
            self._queued_records -= len(waiting.records)
            if waiting.answer.done():
                continue
            batch.append(waiting)
            size += len(waiting.records)
        return batch

    async def _answer(self, batch: list[_Waiting]) -> None:
        records = [record for waiting in batch for record in waiting.records]
        self._count(len(batch), len(records))
        try:
            predictions = await self._in_thread(self._score, records)
        except Exception as error:  # relayed to the requests, never swallowed
            if len(batch) == 1:
                _settle(batch[0], error=error)
                return
            self.stats.fallbacks += 1
            log.warning(
                "batch failed, scoring its requests one by one",
                extra={"fields": {"model": self.served.version.ref, "requests": len(batch)}},
            )
            for waiting in batch:
                try:
                    _settle(waiting, await self._in_thread(self._score, waiting.records))
                except Exception as alone:  # this request's own error, as it would get it
                    _settle(waiting, error=alone)
            return
        start = 0
        for waiting in batch:
            end = start + len(waiting.records)
            _settle(waiting, predictions[start:end])
            start = end

    def _score(self, records: Sequence[Record]) -> list[Prediction]:
        return self.predictor.scored(self.served, records, explain=self.explain)

    def _count(self, n_requests: int, n_records: int) -> None:
        stats = self.stats
        stats.batches += 1
        stats.requests += n_requests
        stats.records += n_records
        stats.requests_per_batch[n_requests] += 1
        stats.records_per_batch[n_records] += 1
        if self._observe is not None:
            self._observe(self.served.version.name, n_records)

    async def _in_thread(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)


def _settle(
    waiting: _Waiting,
    predictions: list[Prediction] | None = None,
    *,
    error: BaseException | None = None,
) -> None:
    if waiting.answer.done():  # its caller has gone
        return
    if error is not None:
        waiting.answer.set_exception(error)
    else:
        waiting.answer.set_result(predictions or [])


def answers_fast(scorer: FastScorer) -> bool:
    """True where the scorer needs no reference pipeline: a compiled family, or a blend
    whose members all are (a blend has no one matrix, so ``exact_fast_path`` is False)."""
    if scorer.composite is not None:
        return all(answers_fast(member) for _, member in scorer.composite.members)
    return scorer.exact_fast_path


class Batchers:
    """The service's batchers: which models are batched (``policies`` by model name, where
    None turns batching off; ``default`` for the models with no fast path), one batcher
    per served version made on first use, and their shutdown."""

    def __init__(
        self,
        predictor: Predictor,
        policies: dict[str, BatchPolicy | None],
        default: BatchPolicy | None,
        *,
        observe: BatchObserver | None = None,
    ) -> None:
        self.predictor = predictor
        self.policies = policies
        self.default = default
        self._observe = observe
        self._batchers: dict[tuple[str, int, bool], Batcher] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    def policy_for(self, served: ServedModel) -> BatchPolicy | None:
        """The model's batching, None when its requests are scored one by one."""
        name = served.version.name
        if name in self.policies:
            policy = self.policies[name]
        else:
            policy = None if answers_fast(served.scorer) else self.default
        if policy is None or policy.max_size <= 1:  # a batch of one is no batching
            return None
        return policy

    def batcher(self, served: ServedModel, *, explain: bool) -> Batcher | None:
        """The version's batcher (made now, on the calling event loop, if new); None when
        the model is not batched."""
        policy = self.policy_for(served)
        if policy is None or self._closed:
            return None
        key = (served.version.name, served.version.version, explain)
        found = self._batchers.get(key)
        if found is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    SCORING_THREADS, thread_name_prefix="medserve-batch"
                )
            found = self._batchers[key] = Batcher(
                self.predictor,
                served,
                policy,
                explain=explain,
                executor=self._executor,
                observe=self._observe,
            )
        return found

    def stats(self, name: str) -> BatchStats:
        """Every batch formed for model ``name``, all versions together."""
        total = BatchStats()
        for (batched, _, _), batcher in list(self._batchers.items()):
            if batched == name:
                total.add(batcher.stats)
        return total

    async def close(self) -> None:
        """Answer every queued request, then stop the workers and their threads; requests
        after this are scored one by one."""
        self._closed = True
        await asyncio.gather(*(batcher.close() for batcher in list(self._batchers.values())))
        if self._executor is not None:
            self._executor.shutdown()
