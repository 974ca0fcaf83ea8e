"""Artifacts streamed to and from files: bounded memory, every chunk checked, atomic 0600
outputs, rotation and the previous format still read."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import tracemalloc
from pathlib import Path

import pytest
from pydantic import SecretStr

from medserve.config import Settings
from medserve.core.crypto import HEADER_SIZE, MAGIC, MAGIC_V1, TAG_SIZE, parse
from medserve.errors import DataError, IntegrityError
from medserve.storage import read_artifact
from medserve.storage.artifacts import (
    ArtifactRef,
    body_sha256,
    read_artifact_to,
    rotate_master_key,
    write_artifact,
    write_artifact_file,
)

CHUNK = 64 * 1024  # small chunks keep multi-chunk files small and the tests fast
WEIGHTS_SIZE = 3 * (1 << 20) + 123  # 49 chunks, the last one short

# Written by medserve 0.1 (format 1) under OLD_MASTER_KEY; see tests/storage/test_crypto.py.
OLD_MASTER_KEY = bytes(range(32))
OLD_PAYLOAD = b"model saved by medserve 0.1 \x00\x01" * 3
OLD_FORMAT_FILE = bytes.fromhex(
    "4d53454e43313633306463643239363663343333363656e0a29006b7583807378c532412832ecb3b54d0d"
    "ee6029d46f549cf878d33685b7e168a70a091110924b9fbd2041cc40a78b3584d45d4da90cbb5ea250ed"
    "f7f830c793b1db4bb890b8517a15dfa610f8adf45852d3afb24a958541dad67f34007212938d49809b45"
    "7f4111fb915e21fadc13061d4578567478c9d156cd9895985285401bbeb9bfab3033ee1b4e36a093a0dc"
    "9d43d6c85ab7e2207df787be6383dc3996bd5f5c134bcea15486b4550f295cd"
)


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """A bring-your-own weight file, several chunks long."""
    path = tmp_path / "model.onnx"
    path.write_bytes(os.urandom(WEIGHTS_SIZE))
    return path


@pytest.fixture
def stored(home: Settings, weights: Path) -> ArtifactRef:
    return write_artifact_file(home, weights, chunk_size=CHUNK)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def environment_keys(*keys: bytes) -> SecretStr:
    return SecretStr(",".join(base64.b64encode(key).decode() for key in keys))


def test_a_weight_file_streams_in_and_back_out_unchanged(
    home: Settings, weights: Path, stored: ArtifactRef, tmp_path: Path
) -> None:
    path = home.home / stored.path
    on_disk = path.read_bytes()
    assert on_disk.startswith(MAGIC)
    assert weights.read_bytes()[:32] not in on_disk  # encrypted at rest
    assert len(on_disk) == HEADER_SIZE + WEIGHTS_SIZE + 49 * TAG_SIZE
    assert stored.size == len(on_disk)
    assert stored.sha256 == hashlib.sha256(on_disk[HEADER_SIZE:]).hexdigest()
    assert body_sha256(path) == body_sha256(on_disk) == stored.sha256
    assert mode(path) == 0o600
    assert [p.name for p in home.artifacts_dir.iterdir()] == [path.name]  # no temp file left

    dest = tmp_path / "out" / "deployed.onnx"
    read_artifact_to(home, stored.path, stored.sha256, dest)

    assert dest.read_bytes() == weights.read_bytes()
    assert mode(dest) == 0o600
    assert [p.name for p in dest.parent.iterdir()] == ["deployed.onnx"]
    assert read_artifact(home, stored.path, stored.sha256) == weights.read_bytes()


def test_bytes_written_whole_read_back_as_a_stream(home: Settings, tmp_path: Path) -> None:
    payload = os.urandom(5 * CHUNK + 1)
    ref = write_artifact(home, payload, chunk_size=CHUNK)
    dest = tmp_path / "payload.bin"
    read_artifact_to(home, ref.path, ref.sha256, dest)
    assert dest.read_bytes() == payload


def test_streaming_holds_a_few_chunks_not_the_file(
    home: Settings, weights: Path, tmp_path: Path
) -> None:
    write_artifact(home, b"warm up")  # the key file, the lock and imports are not measured
    tracemalloc.start()
    try:
        ref = write_artifact_file(home, weights, chunk_size=CHUNK)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read_artifact_to(home, ref.path, ref.sha256, tmp_path / "out.onnx")
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert write_peak < 8 * CHUNK < WEIGHTS_SIZE / 6
    assert read_peak < 8 * CHUNK


def split(blob: bytes) -> tuple[bytes, list[bytes]]:
    record = CHUNK + TAG_SIZE
    body = blob[HEADER_SIZE:]
    return blob[:HEADER_SIZE], [body[at : at + record] for at in range(0, len(body), record)]


def tampered(blob: bytes, how: str) -> bytes:
    header, chunks = split(blob)
    if how == "a byte of chunk 5 flipped":
        altered = bytearray(chunks[4])
        altered[100] ^= 0x01
        chunks[4] = bytes(altered)
    elif how == "chunks 2 and 3 swapped":
        chunks[1], chunks[2] = chunks[2], chunks[1]
    elif how == "chunk 7 dropped":
        del chunks[6]
    elif how == "cut after chunk 10":
        chunks = chunks[:10]
    elif how == "the last chunk dropped":
        chunks = chunks[:-1]
    elif how == "chunk 1 appended":
        chunks.append(chunks[0])
    elif how == "the last chunk appended again":
        chunks.append(chunks[-1])
    return header + b"".join(chunks)


TAMPERINGS = [
    "a byte of chunk 5 flipped",
    "chunks 2 and 3 swapped",
    "chunk 7 dropped",
    "cut after chunk 10",
    "the last chunk dropped",
    "chunk 1 appended",
    "the last chunk appended again",
]


@pytest.mark.parametrize("recorded_sha256", [True, False], ids=["recorded sha256", "forged sha256"])
@pytest.mark.parametrize("how", TAMPERINGS)
def test_a_tampered_streamed_artifact_is_refused_and_leaves_no_file(
    home: Settings, stored: ArtifactRef, tmp_path: Path, how: str, recorded_sha256: bool
) -> None:
    path = home.home / stored.path
    path.write_bytes(tampered(path.read_bytes(), how))
    # A forged sha256 (as if the registry row had been rewritten to match): the tags alone
    # must refuse it.
    expected = stored.sha256 if recorded_sha256 else body_sha256(path)
    dest = tmp_path / "out" / "deployed.onnx"

    with pytest.raises(IntegrityError, match=f"^artifact {stored.path} failed its integrity"):
        read_artifact_to(home, stored.path, expected, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial or temp file
    with pytest.raises(IntegrityError, match=f"^artifact {stored.path} failed its integrity"):
        read_artifact(home, stored.path, expected)


def test_a_refused_artifact_leaves_an_existing_destination_as_it_was(
    home: Settings, stored: ArtifactRef, tmp_path: Path
) -> None:
    path = home.home / stored.path
    path.write_bytes(tampered(path.read_bytes(), "cut after chunk 10"))
    dest = tmp_path / "deployed.onnx"
    dest.write_bytes(b"the model already deployed")

    with pytest.raises(IntegrityError):
        read_artifact_to(home, stored.path, stored.sha256, dest)
    assert dest.read_bytes() == b"the model already deployed"


def test_another_intact_artifact_in_its_place_is_refused_by_sha256(
    home: Settings, stored: ArtifactRef, weights: Path, tmp_path: Path
) -> None:
    other = write_artifact_file(home, weights, chunk_size=CHUNK)
    (home.home / stored.path).write_bytes((home.home / other.path).read_bytes())
    dest = tmp_path / "deployed.onnx"

    with pytest.raises(IntegrityError, match=f"artifact {stored.path} .*sha256 mismatch"):
        read_artifact_to(home, stored.path, stored.sha256, dest)
    assert not dest.exists()


def test_a_missing_artifact_is_named(home: Settings, stored: ArtifactRef, tmp_path: Path) -> None:
    (home.home / stored.path).unlink()
    with pytest.raises(IntegrityError, match=f"artifact {stored.path} is missing"):
        read_artifact_to(home, stored.path, stored.sha256, tmp_path / "deployed.onnx")
    assert not (tmp_path / "deployed.onnx").exists()


def test_a_missing_weight_file_is_named_and_stores_nothing(home: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(DataError, match=f"cannot read model file {missing}: no such file"):
        write_artifact_file(home, missing)
    assert not home.artifacts_dir.exists() or not any(home.artifacts_dir.iterdir())


def test_rotation_rewraps_a_streamed_artifact_and_it_still_reads(
    home: Settings, stored: ArtifactRef, weights: Path, tmp_path: Path
) -> None:
    path = home.home / stored.path
    before = path.read_bytes()

    result = rotate_master_key(home, retire_old=True)

    after = path.read_bytes()
    assert result.rewrapped == 1 and result.retired_key_ids == (result.old_key_id,)
    assert parse(after).key_id == result.new_key_id
    assert after[:HEADER_SIZE] != before[:HEADER_SIZE]
    assert after[HEADER_SIZE:] == before[HEADER_SIZE:]  # only the header was rewritten
    assert body_sha256(path) == stored.sha256
    assert mode(path) == 0o600
    assert [p.name for p in home.artifacts_dir.iterdir()] == [path.name]
    dest = tmp_path / "deployed.onnx"
    read_artifact_to(home, stored.path, stored.sha256, dest)  # under the new key alone
    assert dest.read_bytes() == weights.read_bytes()


def test_an_artifact_in_the_previous_format_still_reads_and_rotates(tmp_path: Path) -> None:
    home = Settings(home=tmp_path / "home", master_key=environment_keys(OLD_MASTER_KEY))
    home.artifacts_dir.mkdir(parents=True)
    (home.artifacts_dir / "old.bin").write_bytes(OLD_FORMAT_FILE)
    ref_path, sha256 = (
        "artifacts/old.bin",
        hashlib.sha256(OLD_FORMAT_FILE[HEADER_SIZE:]).hexdigest(),
    )
    assert body_sha256(home.home / ref_path) == sha256

    assert read_artifact(home, ref_path, sha256) == OLD_PAYLOAD
    read_artifact_to(home, ref_path, sha256, tmp_path / "old.out")
    assert (tmp_path / "old.out").read_bytes() == OLD_PAYLOAD

    new_key = os.urandom(32)
    rotating = Settings(home=home.home, master_key=environment_keys(new_key, OLD_MASTER_KEY))
    assert rotate_master_key(rotating).rewrapped == 1
    rotated = (home.artifacts_dir / "old.bin").read_bytes()
    assert rotated.startswith(MAGIC_V1)  # re-wrapped in its own format, body untouched
    assert body_sha256(rotated) == sha256
    new_only = Settings(home=home.home, master_key=environment_keys(new_key))
    assert read_artifact(new_only, ref_path, sha256) == OLD_PAYLOAD
