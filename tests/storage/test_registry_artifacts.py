"""Artifacts: atomic private encrypted writes, and reads that refuse anything altered."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from medserve.config import Settings
from medserve.core.crypto import HEADER_SIZE, MAGIC
from medserve.errors import IntegrityError
from medserve.storage import read_artifact, write_artifact
from medserve.storage.artifacts import delete_artifact

PAYLOAD = b"model bytes \x00\x01\x02" * 100


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_write_artifact_stores_private_file_under_artifacts(home: Settings) -> None:
    ref = write_artifact(home, PAYLOAD)

    path = home.home / ref.path
    assert ref.path == f"artifacts/{ref.artifact_id}.bin"
    assert len(ref.artifact_id) == 32
    stored = path.read_bytes()
    assert stored.startswith(MAGIC)
    assert PAYLOAD[:24] not in stored  # encrypted at rest
    assert ref.sha256 == hashlib.sha256(stored[HEADER_SIZE:]).hexdigest()  # body, not header
    assert ref.size == len(stored)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in home.artifacts_dir.iterdir()] == [path.name]  # no temp file left


def test_each_artifact_gets_its_own_id(home: Settings) -> None:
    assert write_artifact(home, PAYLOAD).path != write_artifact(home, PAYLOAD).path


def test_read_artifact_returns_the_bytes_written(home: Settings) -> None:
    ref = write_artifact(home, PAYLOAD)
    assert read_artifact(home, ref.path, ref.sha256) == PAYLOAD


def test_read_artifact_refuses_a_modified_byte(home: Settings) -> None:
    ref = write_artifact(home, PAYLOAD)
    path = home.home / ref.path
    tampered = bytearray(path.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    path.write_bytes(bytes(tampered))

    with pytest.raises(IntegrityError, match=r"sha256 mismatch.*modified or replaced"):
        read_artifact(home, ref.path, ref.sha256)


def test_read_artifact_refuses_a_truncated_file(home: Settings) -> None:
    ref = write_artifact(home, PAYLOAD)
    path = home.home / ref.path
    stored = path.read_bytes()
    path.write_bytes(stored[:-10])
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        read_artifact(home, ref.path, ref.sha256)
    path.write_bytes(stored[:10])
    with pytest.raises(IntegrityError, match="truncated"):
        read_artifact(home, ref.path, ref.sha256)
    path.write_bytes(b"")
    with pytest.raises(IntegrityError, match="empty"):
        read_artifact(home, ref.path, ref.sha256)


def test_read_artifact_refuses_a_plaintext_file(home: Settings) -> None:
    ref = write_artifact(home, PAYLOAD)
    (home.home / ref.path).write_bytes(PAYLOAD)
    with pytest.raises(IntegrityError, match="not a medserve-encrypted file"):
        read_artifact(home, ref.path, hashlib.sha256(PAYLOAD).hexdigest())


def test_read_artifact_reports_a_missing_file(home: Settings) -> None:
    ref = write_artifact(home, PAYLOAD)
    (home.home / ref.path).unlink()
    with pytest.raises(IntegrityError, match="missing.*restore it from backup"):
        read_artifact(home, ref.path, ref.sha256)


def test_read_artifact_refuses_a_path_outside_home(home: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(PAYLOAD)
    with pytest.raises(IntegrityError, match="outside"):
        read_artifact(home, "../outside.bin", hashlib.sha256(PAYLOAD).hexdigest())


def test_delete_artifact_removes_the_file_and_tolerates_a_second_call(home: Settings) -> None:
    ref = write_artifact(home, PAYLOAD)
    delete_artifact(home, ref.path)
    delete_artifact(home, ref.path)
    assert not (home.home / ref.path).exists()
