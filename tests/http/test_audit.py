"""The audit trail: appends chain, and edits, deletions and re-orderings are all detected."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Connection, Engine, inspect, text

from medserve.config import Settings
from medserve.errors import ConfigError, IntegrityError, RegistryError
from medserve.security.audit import (
    AuditEntry,
    AuditLog,
    AuditWriter,
    Checkpoint,
    VerifyResult,
    record_hash,
)
from medserve.storage import Registry

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


@pytest.fixture
def log(engine: Engine) -> AuditLog:
    return AuditLog(engine, KEY)


def entry(i: int, **overrides: object) -> AuditEntry:
    fields: dict[str, object] = {
        "route": "/v1/models/heart/predict" if i % 3 else "/v1/models/straße/explain",
        "method": "POST",
        "status": 200 if i % 5 else 422,
        "request_id": f"req-{i:06d}",
        "key_id": f"{i:012x}",
        "role": "predictor",
        "model": "heart",
        "model_version": 1 + i % 2,
        "n_records": i,
        "client": "10.0.0.7",
    }
    if i % 4 == 0:  # some entries come from a clock in another zone
        fields["at"] = datetime.now(timezone(timedelta(hours=2)))
    fields.update(overrides)
    return AuditEntry(**fields)  # type: ignore[arg-type]


def fill(log: AuditLog, count: int) -> None:
    for start in range(0, count, 7):
        batch = [entry(i) for i in range(start, min(start + 7, count))]
        if len(batch) == 1:
            log.append(batch[0])
        else:
            log.append_many(batch)


def count_records(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM audit_log")).scalar_one())


def test_audit_table_holds_only_who_when_what_never_patient_data(engine: Engine) -> None:
    columns = {column["name"] for column in inspect(engine).get_columns("audit_log")}
    assert columns == {
        "seq", "at", "key_id", "role", "route", "method", "model", "model_version",
        "n_records", "status", "request_id", "client", "prev_hash", "hash", "mac",
        # FHIR and CDS Hooks calls: a keyed pseudonym of the patient, the token's issuer.
        "patient", "issuer",
    }  # fmt: skip


def test_clinical_records_hash_their_pseudonym_and_issuer_and_older_ones_still_verify(
    log: AuditLog, engine: Engine
) -> None:
    fill(log, 3)  # records as an older medserve wrote them: no patient, no issuer
    clinical = entry(3, patient="P-0123456789abcdef", issuer="https://ehr.example.org")
    log.append(clinical)
    fill_more = [entry(4)]
    log.append_many(fill_more)
    assert log.verify() == VerifyResult(ok=True, checked=5)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_log SET patient = 'P-fedcba9876543210' WHERE seq = 4")
        )
    result = log.verify()
    assert (result.ok, result.first_broken_seq) == (False, 4)


def test_empty_log_verifies(log: AuditLog) -> None:
    assert log.verify() == VerifyResult(ok=True, checked=0)


def test_chain_of_many_appends_verifies(log: AuditLog, engine: Engine) -> None:
    fill(log, 100)
    assert log.verify() == VerifyResult(ok=True, checked=100)
    assert count_records(engine) == 100


def test_appends_return_consecutive_seqs(log: AuditLog) -> None:
    assert log.append(entry(1)) == 1
    assert log.append_many([entry(2), entry(3)]) == [2, 3]
    assert log.append_many([]) == []
    assert log.append(entry(4)) == 4


def test_records_link_by_hash_from_a_zero_genesis(log: AuditLog) -> None:
    fill(log, 3)
    records = list(log.export())
    assert records[0]["prev_hash"] == "0" * 64
    assert [r["prev_hash"] for r in records[1:]] == [r["hash"] for r in records[:-1]]
    assert all(
        record_hash(r | {"at": datetime.fromisoformat(r["at"])}) == r["hash"] for r in records
    )


def tamper_field(connection: Connection) -> None:
    connection.execute(text("UPDATE audit_log SET n_records = 999 WHERE seq = 7"))


def tamper_timestamp(connection: Connection) -> None:
    at = connection.execute(text("SELECT at FROM audit_log WHERE seq = 4")).scalar_one()
    moved = (at if isinstance(at, datetime) else datetime.fromisoformat(at)) - timedelta(hours=1)
    connection.execute(text("UPDATE audit_log SET at = :at WHERE seq = 4"), {"at": moved})


def tamper_route(connection: Connection) -> None:
    connection.execute(text("UPDATE audit_log SET route = '/v1/models' WHERE seq = 1"))


def delete_middle(connection: Connection) -> None:
    connection.execute(text("DELETE FROM audit_log WHERE seq = 5"))


def delete_last(connection: Connection) -> None:
    connection.execute(text("DELETE FROM audit_log WHERE seq = 10"))


def delete_last_two(connection: Connection) -> None:
    connection.execute(text("DELETE FROM audit_log WHERE seq >= 9"))


def swap_records(connection: Connection) -> None:
    connection.execute(text("UPDATE audit_log SET seq = -1 WHERE seq = 3"))
    connection.execute(text("UPDATE audit_log SET seq = 3 WHERE seq = 6"))
    connection.execute(text("UPDATE audit_log SET seq = 6 WHERE seq = -1"))


def edit_mac(connection: Connection) -> None:
    connection.execute(text("UPDATE audit_log SET mac = :mac WHERE seq = 4"), {"mac": "ab" * 32})


def edit_and_rehash_the_rest(connection: Connection) -> None:
    """A forger with database access but no audit key: edits record 6 and re-chains the rest."""
    rows = connection.execute(text("SELECT * FROM audit_log ORDER BY seq")).mappings().all()
    prev_hash = rows[4]["hash"]
    for row in rows[5:]:
        fields = dict(row)
        if isinstance(fields["at"], str):
            fields["at"] = datetime.fromisoformat(fields["at"]).replace(tzinfo=UTC)
        if fields["seq"] == 6:
            fields["status"] = 200 if fields["status"] != 200 else 403
        fields["prev_hash"] = prev_hash
        fields["hash"] = record_hash(fields)
        connection.execute(
            text(
                "UPDATE audit_log SET status = :status, prev_hash = :prev_hash, hash = :hash "
                "WHERE seq = :seq"
            ),
            fields,
        )
        prev_hash = fields["hash"]


@pytest.mark.parametrize(
    ("tamper", "first_broken_seq", "reason"),
    [
        (tamper_field, 7, "do not match its hash"),
        (tamper_timestamp, 4, "do not match its hash"),
        (tamper_route, 1, "do not match its hash"),
        (delete_middle, 5, "record 5 is missing"),
        (delete_last, 10, "record 10 is missing at the end"),
        (delete_last_two, 9, "records 9–10 are missing at the end"),
        (swap_records, 3, "do not match its hash"),
        (edit_mac, 4, "MAC does not match"),
        (edit_and_rehash_the_rest, 6, "MAC does not match"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_tampering_is_detected_at_the_first_broken_record(
    log: AuditLog,
    engine: Engine,
    tamper: Callable[[Connection], None],
    first_broken_seq: int,
    reason: str,
) -> None:
    fill(log, 10)
    with engine.begin() as connection:
        tamper(connection)

    result = log.verify()

    assert not result.ok
    assert result.first_broken_seq == first_broken_seq
    assert result.checked == first_broken_seq - 1
    assert result.reason is not None and reason in result.reason


def test_a_log_written_with_another_key_fails_at_the_first_record(engine: Engine) -> None:
    fill(AuditLog(engine, KEY), 5)
    result = AuditLog(engine, OTHER_KEY).verify()
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 1, 0)
    assert "another audit key" in (result.reason or "")


def test_a_missing_head_is_detected_and_blocks_appends(log: AuditLog, engine: Engine) -> None:
    fill(log, 3)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_head"))
    result = log.verify()
    assert not result.ok and "head is missing" in (result.reason or "")
    with pytest.raises(IntegrityError, match="head is missing"):
        log.append(entry(4))


def test_a_head_rewound_to_hide_deleted_records_is_detected(log: AuditLog, engine: Engine) -> None:
    fill(log, 5)
    with engine.begin() as connection:
        fourth = connection.execute(text("SELECT hash FROM audit_log WHERE seq = 4")).scalar_one()
        connection.execute(text("DELETE FROM audit_log WHERE seq = 5"))
        connection.execute(text("UPDATE audit_head SET seq = 4, hash = :hash"), {"hash": fourth})
    result = log.verify()
    assert not result.ok and "head's MAC does not match" in (result.reason or "")
    with pytest.raises(IntegrityError, match="MAC"):
        log.append(entry(6))
    assert count_records(engine) == 4


def test_a_forged_record_at_the_end_is_detected(log: AuditLog, engine: Engine) -> None:
    fill(log, 3)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_log SELECT 4, at, key_id, role, route, method, model, "
                "model_version, n_records, status, request_id, client, hash, hash, mac, "
                "patient, issuer FROM audit_log WHERE seq = 3"
            )
        )
    result = log.verify()
    assert (result.ok, result.first_broken_seq) == (False, 4)


def test_verify_sees_a_consistent_state_while_others_append(log: AuditLog) -> None:
    fill(log, 5)
    done = threading.Event()

    def keep_appending() -> None:
        for i in range(60):
            log.append(entry(i))
        done.set()

    writer = threading.Thread(target=keep_appending)
    writer.start()
    results = []
    while not done.is_set():
        results.append(log.verify())
    writer.join()
    assert results and all(result.ok for result in results)
    assert log.verify() == VerifyResult(ok=True, checked=65)


def test_two_replicas_appending_at_once_keep_one_chain(settings: Settings) -> None:
    threads_per_replica, appends_per_thread = 3, 20
    with Registry(settings) as first, Registry(settings) as second:
        replicas = [AuditLog(first.engine, KEY), AuditLog(second.engine, KEY)]
        start = threading.Barrier(2 * threads_per_replica)
        errors: list[BaseException] = []

        def append_from(replica: AuditLog, thread: int) -> None:
            try:
                start.wait()
                for i in range(appends_per_thread):
                    if i % 4 == 0:
                        replica.append_many([entry(thread * 100 + i), entry(thread * 100 + i + 1)])
                    else:
                        replica.append(entry(thread * 100 + i))
            except BaseException as error:  # surfaced by the assertion below
                errors.append(error)

        threads = [
            threading.Thread(target=append_from, args=(replica, n * 10 + t))
            for n, replica in enumerate(replicas)
            for t in range(threads_per_replica)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        expected = 2 * threads_per_replica * (appends_per_thread + appends_per_thread // 4)
        assert replicas[0].verify() == VerifyResult(ok=True, checked=expected)
        assert count_records(second.engine) == expected


def test_writer_from_many_threads_loses_nothing_at_close(log: AuditLog, engine: Engine) -> None:
    writer = AuditWriter(log)
    start = threading.Barrier(8)

    def submit_from(thread: int) -> None:
        start.wait()
        for i in range(100):
            writer.submit(entry(thread * 1000 + i, request_id=f"t{thread}-{i}"))

    threads = [threading.Thread(target=submit_from, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()

    assert count_records(engine) == 800
    assert log.verify() == VerifyResult(ok=True, checked=800)
    request_ids = {record["request_id"] for record in log.export()}
    assert request_ids == {f"t{t}-{i}" for t in range(8) for i in range(100)}


def test_writer_flush_waits_for_everything_submitted(log: AuditLog, engine: Engine) -> None:
    with AuditWriter(log, flush_interval_s=0.2, max_batch=7) as writer:
        for i in range(30):
            writer.submit(entry(i))
        writer.flush()
        assert count_records(engine) == 30
        writer.submit(entry(30))
        writer.flush()
        assert count_records(engine) == 31
    assert log.verify().checked == 31


def test_writer_refuses_entries_after_close(log: AuditLog) -> None:
    writer = AuditWriter(log)
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(entry(1))


def test_writer_reports_records_it_could_not_write(log: AuditLog, engine: Engine) -> None:
    log.append(entry(0))
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_head SET mac = :mac"), {"mac": "00" * 32})
    writer = AuditWriter(log)
    writer.RETRY_DELAYS_S = (0.0,)  # type: ignore[misc]
    writer.submit(entry(1))
    with pytest.raises(RegistryError, match="1 audit records could not be written"):
        writer.flush()
    assert writer.lost == 1
    writer.close()


def test_export_since_returns_later_records_as_json_ready_dicts(log: AuditLog) -> None:
    base = datetime(2025, 11, 1, 8, 0, tzinfo=UTC)
    log.append_many([entry(i, at=base + timedelta(hours=i)) for i in range(5)])

    everything = list(log.export())
    later = list(log.export(since=base + timedelta(hours=3)))

    assert [r["seq"] for r in everything] == [1, 2, 3, 4, 5]
    assert [r["seq"] for r in later] == [4, 5]
    assert later[0]["at"] == "2025-11-01T11:00:00.000000+00:00"
    assert later[0]["request_id"] == "req-000003" and len(later[0]["mac"]) == 64


def test_export_needs_a_time_zone(log: AuditLog) -> None:
    with pytest.raises(ConfigError, match="time zone"):
        list(log.export(since=datetime(2025, 11, 1)))


def test_long_values_are_cut_to_their_column_and_still_verify(log: AuditLog) -> None:
    log.append(entry(1, route="/v1/" + "x" * 2000, client="c" * 1000))
    (record,) = log.export()
    assert len(record["route"]) == 512 and len(record["client"]) == 255
    assert log.verify().ok


def test_entries_need_an_aware_timestamp() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        entry(1, at=datetime(2025, 11, 1, 8, 0))


def test_audit_key_must_be_long_enough(engine: Engine) -> None:
    with pytest.raises(ConfigError, match="16 bytes"):
        AuditLog(engine, b"short")


def test_values_the_database_cannot_hold_are_stored_as_unknown(log: AuditLog) -> None:
    """A URL can carry any integer; INTEGER columns hold 32 bits (PostgreSQL) or 64."""
    log.append_many(
        [
            entry(1, model_version=2**63, n_records=2**31),
            entry(2, model_version=-1, n_records=2**31 - 1),
            entry(3, model="he\x00art\ud800", request_id="r" * 100),
        ]
    )
    first, second, third = log.export()
    assert (first["model_version"], first["n_records"]) == (None, None)
    assert (second["model_version"], second["n_records"]) == (None, 2**31 - 1)
    assert "\x00" not in third["model"] and len(third["request_id"]) == 64
    assert log.verify() == VerifyResult(ok=True, checked=3)


def unstorable(i: int) -> AuditEntry:
    """An entry the database refuses, however it got past AuditEntry's checks."""
    poison = entry(i, request_id="poison")
    object.__setattr__(poison, "model_version", 2**63)
    return poison


def test_one_unstorable_entry_costs_no_other_entry_its_record(
    log: AuditLog, engine: Engine
) -> None:
    writer = AuditWriter(log, flush_interval_s=0.5, max_batch=500)
    writer.RETRY_DELAYS_S = (0.0,)  # type: ignore[misc]
    futures = [writer.submit(entry(i) if i != 57 else unstorable(i)) for i in range(200)]
    with pytest.raises(RegistryError, match="1 audit records could not be written"):
        writer.flush()
    writer.close()
    assert writer.lost == 1 and count_records(engine) == 199
    assert "poison" not in {record["request_id"] for record in log.export()}
    with pytest.raises(RegistryError, match="could not be written"):
        futures[57].result()
    seqs = [future.result() for i, future in enumerate(futures) if i != 57]
    assert sorted(seqs) == list(range(1, 200))
    assert log.verify() == VerifyResult(ok=True, checked=199)


def test_each_entry_s_future_resolves_once_its_record_is_committed(
    log: AuditLog, engine: Engine
) -> None:
    with AuditWriter(log) as writer:
        for i in range(1, 6):
            assert writer.submit(entry(i)).result(timeout=10) == i
            assert count_records(engine) == i


def test_writer_failure_is_set_while_writes_fail_and_cleared_by_the_next_success(
    log: AuditLog, engine: Engine
) -> None:
    log.append(entry(0))
    with engine.begin() as connection:
        mac = connection.execute(text("SELECT mac FROM audit_head")).scalar_one()
        connection.execute(text("UPDATE audit_head SET mac = :mac"), {"mac": "00" * 32})
    writer = AuditWriter(log)
    writer.RETRY_DELAYS_S = ()  # type: ignore[misc]
    assert writer.failure is None
    with pytest.raises(RegistryError):
        writer.submit(entry(1)).result(timeout=10)
    assert "MAC" in (writer.failure or "")
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_head SET mac = :mac"), {"mac": mac})
    assert writer.submit(entry(2)).result(timeout=10) == 2
    assert writer.failure is None
    writer.close()
    assert writer.failure == "the audit writer is closed"


def test_close_logs_lost_records_in_one_line_instead_of_raising(
    log: AuditLog, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    writer = AuditWriter(log)
    writer.RETRY_DELAYS_S = ()  # type: ignore[misc]
    writer.submit(unstorable(1))
    writer.close()  # at shutdown: no traceback through the server
    assert writer.lost == 1
    (line,) = [r for r in caplog.records if "since the service started" in r.getMessage()]
    assert line.levelname == "ERROR" and line.exc_info is None


def test_head_problem_names_a_head_that_fails_its_check(log: AuditLog, engine: Engine) -> None:
    assert log.head_problem() is None
    fill(log, 3)
    assert log.head_problem() is None
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_head SET mac = :mac"), {"mac": "00" * 32})
    assert "MAC" in (log.head_problem() or "")


def cut_tail_keeping_an_old_head(engine: Engine, keep: int, old_head: dict) -> None:
    """What an attacker with a copy of an old head row does: delete the newest records,
    put the old (validly MACed) head back."""
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq > :keep"), {"keep": keep})
        connection.execute(
            text("UPDATE audit_head SET seq = :seq, hash = :hash, mac = :mac"), old_head
        )


def head_row(engine: Engine) -> dict:
    with engine.connect() as connection:
        row = connection.execute(text("SELECT seq, hash, mac FROM audit_head")).one()
    return dict(row._mapping)


def test_a_checkpoint_finds_a_tail_cut_with_an_old_head_put_back(
    log: AuditLog, engine: Engine
) -> None:
    fill(log, 4)
    old_head = head_row(engine)
    fill(log, 3)
    anchor = log.checkpoint()
    assert (anchor.seq, len(anchor.mac)) == (7, 64)
    assert log.verify_checkpoint(anchor) == VerifyResult(ok=True, checked=7)
    cut_tail_keeping_an_old_head(engine, 4, old_head)
    assert log.verify().ok  # nothing inside the database shows it
    result = log.verify_checkpoint(anchor)
    assert not result.ok and result.first_broken_seq == 5
    assert "truncated or rolled back" in (result.reason or "")
    assert "7 records" in (result.reason or "")


def test_a_checkpoint_finds_a_rollback_to_another_history(log: AuditLog, engine: Engine) -> None:
    fill(log, 4)
    old_head = head_row(engine)
    fill(log, 2)
    anchor = log.checkpoint()
    cut_tail_keeping_an_old_head(engine, 4, old_head)
    log.append_many([entry(100), entry(101), entry(102)])  # the chain grows past it again
    result = log.verify_checkpoint(anchor)
    assert (result.ok, result.first_broken_seq) == (False, 6)
    assert "rolled back or rewritten" in (result.reason or "")


def test_an_altered_checkpoint_is_refused(log: AuditLog) -> None:
    fill(log, 3)
    anchor = log.checkpoint()
    forged = Checkpoint(seq=1, hash=anchor.hash, at=anchor.at, mac=anchor.mac)
    with pytest.raises(IntegrityError, match="checkpoint fails its MAC"):
        log.verify_checkpoint(forged)
    with pytest.raises(IntegrityError, match="checkpoint fails its MAC"):
        AuditLog(log._engine, OTHER_KEY).verify_checkpoint(anchor)


def test_no_checkpoint_vouches_for_a_broken_chain(log: AuditLog, engine: Engine) -> None:
    fill(log, 3)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET n_records = 0 WHERE seq = 2"))
    with pytest.raises(IntegrityError, match="broken at record 2"):
        log.checkpoint()


@pytest.mark.parametrize(
    "change",
    [{"mac": "é" * 64}, {"hash": "zz"}, {"seq": True}, {"seq": -1}, {"mac": 7}],
    ids=["non-ascii-mac", "short-hash", "bool-seq", "negative-seq", "number-mac"],
)
def test_a_malformed_checkpoint_is_refused_as_not_a_checkpoint(log: AuditLog, change) -> None:
    """Found in review: a non-ASCII MAC crashed the comparison with a TypeError."""
    fill(log, 2)
    with pytest.raises(ConfigError, match="not an audit checkpoint"):
        Checkpoint.from_dict({**log.checkpoint().to_dict(), **change})


def test_a_head_mac_that_is_not_text_fails_its_check_without_crashing(
    log: AuditLog, engine: Engine
) -> None:
    fill(log, 2)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_head SET mac = :mac"), {"mac": "é" * 64})
    assert "fails its MAC check" in (log.head_problem() or "")
    assert not log.verify().ok
