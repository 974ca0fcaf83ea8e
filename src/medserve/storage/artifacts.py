"""The one place model artifacts (and files stored beside them) are written and read.

Paths handed out and taken back are relative to ``settings.home`` so a home
directory can move. Artifacts are encrypted at rest (``medserve.core.crypto``:
AES-256-GCM, a fresh data key per artifact wrapped by the master key of
``medserve.storage.keystore``); ``rotate_master_key`` re-wraps them all in place.

Artifacts are written and checked a chunk at a time (1 MiB), so a weight file of
any size goes in with ``write_artifact_file`` and comes out with
``read_artifact_to`` in a few MiB of memory; ``write_artifact`` and
``read_artifact`` are the same for payloads held as bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from medserve.config import Settings
from medserve.core.crypto import (
    CHUNK_SIZE,
    HEADER_SIZE,
    MAGIC,
    Readable,
    decrypt,
    decrypt_stream,
    encrypt_stream,
    parse_header,
    rewrap_header,
)
from medserve.core.files import open_atomic
from medserve.errors import ConfigError, DataError, IntegrityError, Location
from medserve.storage.keystore import KeyStore, environment_rotation_help, key_lock

logger = logging.getLogger("medserve.keystore")

COPY_BUFFER_SIZE = 1 << 20


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lies (relative to home), its ciphertext's sha256 and its file size.

    ``sha256`` covers the encrypted body only, not the header, so it survives
    master-key rotation (which rewrites the header); ``size`` is the file's size
    in bytes, which rotation does not change either.
    """

    artifact_id: str
    path: str
    sha256: str
    size: int


def write_artifact(
    settings: Settings, payload: bytes, *, chunk_size: int = CHUNK_SIZE
) -> ArtifactRef:
    """Encrypt ``payload`` and store it as a new artifact ``artifacts/<id>.bin``.

    The master key is the home's (``KeyStore(settings)``); if that creates the key
    file, ``medserve.keystore`` logs a warning to back it up.
    """
    return _write(settings, io.BytesIO(payload), chunk_size)


def write_artifact_file(
    settings: Settings, source: Path, *, chunk_size: int = CHUNK_SIZE
) -> ArtifactRef:
    """Encrypt the file ``source`` into a new artifact, as ``write_artifact`` does, reading
    it a chunk at a time: memory stays a few MiB whatever the file's size."""
    try:
        file = source.open("rb")
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise DataError(
            f"cannot read model file {source}: {error.strerror.lower()}; check the path",
            location=Location(file=str(source)),
        ) from None
    with file:
        return _write(settings, file, chunk_size)


def read_artifact(settings: Settings, ref_path: str, expected_sha256: str) -> bytes:
    """Decrypt and return an artifact's payload; anything tampered with raises IntegrityError.

    ``expected_sha256`` is ``ArtifactRef.sha256``: the sha256 of the encrypted body
    (the file without its header), checked first; then the AES-GCM tags are
    verified before a byte of the payload is returned. The file and the payload
    are both held in memory: large artifacts are read with ``read_artifact_to``.
    """
    path = resolve_in_home(settings, ref_path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise _missing(settings, ref_path) from None
    if not blob:
        raise IntegrityError(
            f"artifact {ref_path} is empty (truncated): restore it from backup or retrain"
        )
    subject = f"artifact {ref_path}"
    if body_sha256(blob, subject=subject) != expected_sha256:
        raise _sha256_mismatch(ref_path)
    return decrypt(blob, KeyStore(settings, create=False), subject=subject)


def read_artifact_to(settings: Settings, ref_path: str, expected_sha256: str, dest: Path) -> None:
    """Decrypt an artifact into the file ``dest`` (mode 0600), a chunk at a time.

    The body's sha256 (``ArtifactRef.sha256``) and every chunk's AES-GCM tag are
    checked as it streams; ``dest`` appears, atomically, only once all of them
    held and the body ended where it should: a refused artifact (IntegrityError)
    leaves no file and an existing ``dest`` as it was.
    """
    path = resolve_in_home(settings, ref_path)
    try:
        file = path.open("rb")
    except FileNotFoundError:
        raise _missing(settings, ref_path) from None
    subject = f"artifact {ref_path}"
    with file, open_atomic(dest) as sink:
        source = _BodyHasher(file)
        for chunk in decrypt_stream(source, KeyStore(settings, create=False), subject=subject):
            sink.write(chunk)
        if source.digest.hexdigest() != expected_sha256:
            raise _sha256_mismatch(ref_path)


def body_sha256(stored: bytes | Path, *, subject: str = "artifact") -> str:
    """The sha256 recorded for an encrypted artifact: of its body, not its header.

    ``stored`` is the file's bytes or its path; a path is read a piece at a time.
    """
    if isinstance(stored, bytes):
        parse_header(stored[:HEADER_SIZE], subject=subject, size=len(stored))
        return hashlib.sha256(memoryview(stored)[HEADER_SIZE:]).hexdigest()
    with stored.open("rb") as file:
        parse_header(file.read(HEADER_SIZE), subject=subject, size=os.fstat(file.fileno()).st_size)
        return hashlib.file_digest(file, "sha256").hexdigest()


@dataclass(frozen=True)
class RotationResult:
    """What ``rotate_master_key`` did; ``unreadable`` lists files it could not re-wrap."""

    old_key_id: str
    new_key_id: str
    rewrapped: int
    purpose_keys_rewrapped: int = 0
    retired_key_ids: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()


def rotate_master_key(settings: Settings, *, retire_old: bool = False) -> RotationResult:
    """Put every artifact and purpose key under a new master key, without downtime.

    With a key file: a new key becomes current and the old one stays in the file,
    retired, so readers (in this or other processes) decrypt both old and
    re-wrapped files throughout. Each artifact's header is then re-wrapped and the
    file replaced atomically; bodies, and the sha256 in the registry rows, do not
    change. ``retire_old=True`` then drops the retired keys, but only once a final
    pass, under the exclusive key lock, finds every artifact under the new key.

    With ``MEDSERVE_MASTER_KEY`` medserve cannot store a key: set it to
    ``NEW,OLD`` (new key first, comma-separated) on every replica and call this to
    re-wrap everything under NEW; then set it to ``NEW`` yourself. A single key
    there, or ``retire_old=True``, raises ConfigError saying so.

    Only files under ``artifacts_dir`` and the purpose keys are re-wrapped: other
    files encrypted with ``crypto.encrypt`` must be re-wrapped (``crypto.rewrap``)
    by their owners before the old key is retired.
    """
    keystore = KeyStore(settings, create=False)
    if keystore.from_environment:
        if len(keystore.key_ids) < 2:
            raise ConfigError(environment_rotation_help())
        if retire_old:
            raise ConfigError(
                "retire_old cannot drop keys held in MEDSERVE_MASTER_KEY: once rotation has "
                "finished, remove the old keys from the variable (keep the first one)"
            )
        old_key_id, new_key_id = keystore.key_ids[1], keystore.key_ids[0]
        with key_lock(settings.home, exclusive=True):
            purpose_keys = keystore.rewrap_purpose_keys()
    else:
        with key_lock(settings.home, exclusive=True):
            old_key_id, new_key_id = keystore.add_master_key()
            purpose_keys = keystore.rewrap_purpose_keys()
    rewrapped, unreadable = _rewrap_artifacts(settings, keystore)
    retired: tuple[str, ...] = ()
    if retire_old:
        with key_lock(settings.home, exclusive=True):
            # No artifact is being written now; catch any written under a stale key.
            more, unreadable = _rewrap_artifacts(settings, keystore)
            rewrapped += more
            if unreadable:
                raise IntegrityError(
                    f"the old master key was kept: {len(unreadable)} artifact(s) could not be "
                    f"re-wrapped ({'; '.join(unreadable[:3])}); restore or delete them and "
                    "rotate again"
                )
            purpose_keys += keystore.rewrap_purpose_keys()
            retired = keystore.drop_retired_keys()
    return RotationResult(
        old_key_id=old_key_id,
        new_key_id=new_key_id,
        rewrapped=rewrapped,
        purpose_keys_rewrapped=purpose_keys,
        retired_key_ids=retired,
        unreadable=tuple(unreadable),
    )


def _rewrap_artifacts(settings: Settings, keystore: KeyStore) -> tuple[int, list[str]]:
    """Re-wrap each encrypted file under artifacts_dir not yet under the current key."""
    current_id, _ = keystore.current()
    rewrapped, unreadable = 0, []
    for path in sorted(settings.artifacts_dir.rglob("*")):
        if not path.is_file() or path.name.endswith(".part"):
            continue  # a directory, or a write in progress
        relative = path.relative_to(settings.home).as_posix()
        try:
            file = path.open("rb")
        except FileNotFoundError:
            continue  # deleted meanwhile
        with file:
            header = file.read(HEADER_SIZE)
            if not header.startswith(MAGIC[:-1]):
                continue  # not encrypted: no key to rotate
            if header[len(MAGIC) : len(MAGIC) + len(current_id)] == current_id.encode():
                continue
            try:
                updated = rewrap_header(header, keystore, subject=f"artifact {relative}")
            except IntegrityError as error:
                logger.warning("cannot re-wrap %s: %s", relative, error.message)
                unreadable.append(f"{relative}: {error.message}")
                continue
            if updated is not None:
                # The body is copied, not re-encrypted: it and its sha256 stay as they were.
                with open_atomic(path) as sink:
                    sink.write(updated)
                    shutil.copyfileobj(file, sink, COPY_BUFFER_SIZE)
                rewrapped += 1
    return rewrapped, unreadable


def delete_artifact(settings: Settings, path: str) -> None:
    """Remove a stored file (artifact or report) if it is there; used to undo a failed write."""
    with contextlib.suppress(FileNotFoundError):
        resolve_in_home(settings, path).unlink()


def resolve_in_home(settings: Settings, relative: str) -> Path:
    """Absolute path of ``relative`` under home; a path escaping home is refused."""
    home = settings.home.resolve()
    path = (home / relative).resolve()
    if not path.is_relative_to(home):
        raise IntegrityError(f"stored path {relative!r} points outside {settings.home}; refused")
    return path


def _write(settings: Settings, source: Readable, chunk_size: int) -> ArtifactRef:
    artifact_id = uuid.uuid4().hex
    relative = Path(settings.artifacts_dir.relative_to(settings.home)) / f"{artifact_id}.bin"
    digest = hashlib.sha256()
    # Shared lock, held until the file is in place: a rotation cannot swap the current
    # key between encrypting and writing, nor miss a file still being written.
    with key_lock(settings.home, exclusive=False):
        pieces = encrypt_stream(source, KeyStore(settings), chunk_size=chunk_size)
        header = next(pieces)
        with open_atomic(settings.home / relative) as sink:
            sink.write(header)
            for piece in pieces:
                digest.update(piece)
                sink.write(piece)
            size = sink.tell()
    return ArtifactRef(
        artifact_id=artifact_id, path=relative.as_posix(), sha256=digest.hexdigest(), size=size
    )


class _BodyHasher:
    """Reads through to a stored file, hashing every byte after its header."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._header_left = HEADER_SIZE
        self.digest = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self._file.read(size)
        skip = min(self._header_left, len(data))
        self._header_left -= skip
        self.digest.update(memoryview(data)[skip:])
        return data


def _missing(settings: Settings, ref_path: str) -> IntegrityError:
    return IntegrityError(
        f"artifact {ref_path} is missing from {settings.home}: it was deleted or moved; "
        "restore it from backup or retrain"
    )


def _sha256_mismatch(ref_path: str) -> IntegrityError:
    return IntegrityError(
        f"artifact {ref_path} failed its integrity check (sha256 mismatch): "
        "it was modified or replaced; retrain or restore it from backup"
    )
