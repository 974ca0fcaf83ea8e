"""Master keys (which wrap every data key) and long-lived purpose keys derived from none.

The master key comes from ``settings.master_key`` (``MEDSERVE_MASTER_KEY``) when
set, else from ``<home>/master.key``, created on first use. A key id is the first
16 hex characters of the sha256 of the key bytes: the same key has the same id
on every replica and in every header, and the id reveals nothing usable.

``MEDSERVE_MASTER_KEY`` holds one base64 key, or several separated by commas: the
first is current (it wraps new data keys), the rest are older keys still read.
The key file is not consulted then.

``master.key`` (mode 0600, JSON)::

    {"format": "medserve-master-keys", "version": 1, "current": "<id>",
     "keys": [{"id": "<id>", "key": "<base64>", "created_at": "...",
               "retired_at": null | "..."}, ...]}

``keys.json`` (mode 0600) holds purpose keys, random 32-byte secrets for other
subsystems (audit-trail HMAC, pseudonyms, the MACs of registry rows) that must outlive
master-key rotation.
Each is stored wrapped by a master key and re-wrapped when the master key rotates::

    {"format": "medserve-purpose-keys", "version": 1,
     "keys": {"<purpose>": {"master_key_id": "<id>", "nonce": "<base64>",
                            "wrapped": "<base64>", "created_at": "..."}}}

Changes to either file happen under an exclusive ``key_lock`` on ``<home>/keys.lock``;
``write_artifact`` holds it shared while it encrypts and writes, so a rotation
never misses an artifact being written under the key it replaces.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medserve.config import Settings
from medserve.core.crypto import KEY_SIZE, unwrap_key, wrap_key
from medserve.core.files import DIR_MODE, FILE_MODE, write_file_atomic
from medserve.errors import ConfigError, IntegrityError

logger = logging.getLogger("medserve.keystore")

KEY_FILE_NAME = "master.key"
PURPOSE_FILE_NAME = "keys.json"
LOCK_FILE_NAME = "keys.lock"
GENERATE_HINT = (
    "generate one with: python -c "
    "'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'"
)
PURPOSE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_MASTER_FORMAT = "medserve-master-keys"
_PURPOSE_FORMAT = "medserve-purpose-keys"


def key_id(key: bytes) -> str:
    """The id of a master key: the first 16 hex characters of its sha256."""
    return hashlib.sha256(key).hexdigest()[:16]


def generate_key() -> bytes:
    """A fresh random 256-bit key."""
    return secrets.token_bytes(KEY_SIZE)


class KeyStore:
    """The master keys of one medserve home, and the purpose keys they protect.

    Without ``MEDSERVE_MASTER_KEY``, opening a store creates ``<home>/master.key``
    if there is none; ``create=False`` defers that until a key is needed to
    encrypt (``current``), so a reader never replaces a lost key file with a new
    key. ``created_key_file`` is the key file's path when this instance created
    it, else None: the caller should then tell the user "created master key
    <path>: back it up; without it the models cannot be decrypted" (the same line
    is logged on ``medserve.keystore``). Safe to share between threads.
    """

    def __init__(self, settings: Settings, *, create: bool = True) -> None:
        self.home = settings.home
        self.key_file = settings.home / KEY_FILE_NAME
        self.purpose_file = settings.home / PURPOSE_FILE_NAME
        self.created_key_file: Path | None = None
        self.from_environment = settings.master_key is not None
        self._mutex = threading.RLock()
        self._keys: dict[str, bytes] = {}  # every key this instance has seen, by id
        self._current_id: str | None = None
        self._file_state: tuple[int, int, int] | None = None
        self._purpose_keys: dict[str, bytes] = {}
        if settings.master_key is not None:
            for key in parse_master_keys(settings.master_key.get_secret_value()):
                self._keys.setdefault(key_id(key), key)
                self._current_id = self._current_id or key_id(key)
        elif not self._load_key_file() and create:
            self._create_key_file()

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of the keys held: the current one first (empty before the key file exists)."""
        with self._mutex:
            if self._current_id is None:
                return ()
            return (self._current_id, *(i for i in self._keys if i != self._current_id))

    def current(self) -> tuple[str, bytes]:
        """``(key_id, key)`` of the master key that wraps new data keys.

        With a key file, a rotation by another process is picked up here, and the
        file is created (0600, in a 0700 home) if there is none yet.
        """
        with self._mutex:
            if not self.from_environment:
                if not self._load_key_file():
                    self._create_key_file()
            assert self._current_id is not None
            return self._current_id, self._keys[self._current_id]

    def get(self, key_id: str, *, subject: str = "artifact") -> bytes:
        """The master key ``key_id``; IntegrityError naming it when it is not held."""
        with self._mutex:
            if key_id not in self._keys and not self.from_environment:
                self._load_key_file()  # a rotation elsewhere may have added it
            if key_id in self._keys:
                return self._keys[key_id]
        if self.from_environment:
            fix = "add that key to MEDSERVE_MASTER_KEY (current key first, then older ones, "
            fix += "comma-separated)"
        else:
            fix = f"set MEDSERVE_MASTER_KEY to that key or restore {self.key_file}"
        raise IntegrityError(
            f"{subject} was encrypted under master key {key_id}, which this key store does "
            f"not hold; {fix}"
        )

    def purpose_key(
        self, purpose: str, *, on_create: Callable[[bytes], None] | None = None
    ) -> bytes:
        """A stable random 32-byte secret for ``purpose`` (e.g. "audit-hmac"), made on first use.

        The same value comes back on every replica sharing the home and after any
        master-key rotation. ``on_create`` is called with a new secret before it is
        stored, under the exclusive key lock; if it raises, nothing is stored (a later
        call makes a fresh secret and calls it again).
        """
        _check_purpose(purpose)
        with self._mutex:
            if purpose in self._purpose_keys:
                return self._purpose_keys[purpose]
        entries = self._read_purpose_file()
        if purpose not in entries:
            with key_lock(self.home, exclusive=True):
                entries = self._read_purpose_file()
                if purpose not in entries:
                    current_id, master_key = self.current()
                    secret = generate_key()
                    if on_create is not None:
                        on_create(secret)
                    entries[purpose] = _wrap_purpose(purpose, secret, current_id, master_key)
                    self._write_purpose_file(entries)
        secret = self._unwrap_purpose(purpose, entries[purpose])
        with self._mutex:
            self._purpose_keys[purpose] = secret
        return secret

    def has_purpose_key(self, purpose: str) -> bool:
        """Whether ``purpose`` already has a key; never creates one (or any file)."""
        _check_purpose(purpose)
        with self._mutex:
            if purpose in self._purpose_keys:
                return True
        return purpose in self._read_purpose_file()

    # Rotation steps, used by ``medserve.storage.artifacts.rotate_master_key``.
    # Call them while holding ``key_lock(home, exclusive=True)``.

    def add_master_key(self) -> tuple[str, str]:
        """Make a fresh key current, keeping the old one as retired; ``(old_id, new_id)``."""
        if self.from_environment:
            raise ConfigError(environment_rotation_help())
        with self._mutex:
            if not self._load_key_file():
                raise ConfigError(
                    f"there is no master key file {self.key_file} yet: nothing to rotate"
                )
            document = self._read_key_document()
            old_id = document["current"]
            new_key = generate_key()
            new_id = key_id(new_key)
            now = _now()
            for entry in document["keys"]:
                if entry["id"] == old_id:
                    entry["retired_at"] = now
            document["keys"].insert(
                0, {"id": new_id, "key": _b64(new_key), "created_at": now, "retired_at": None}
            )
            document["current"] = new_id
            write_file_atomic(self.key_file, _dump(document), exclusive=False)
            self._load_key_file()
            return old_id, new_id

    def rewrap_purpose_keys(self) -> int:
        """Re-wrap every purpose key not under the current master key; how many were."""
        current_id, master_key = self.current()
        entries = self._read_purpose_file()
        stale = [p for p, entry in entries.items() if entry["master_key_id"] != current_id]
        for purpose in stale:
            secret = self._unwrap_purpose(purpose, entries[purpose])
            entries[purpose] = _wrap_purpose(
                purpose, secret, current_id, master_key, entries[purpose].get("created_at")
            )
        if stale:
            self._write_purpose_file(entries)
        return len(stale)

    def drop_retired_keys(self) -> tuple[str, ...]:
        """Delete every key but the current one from the key file (and this instance)."""
        if self.from_environment:
            raise ConfigError(
                "retired keys in MEDSERVE_MASTER_KEY cannot be dropped by medserve: remove "
                "them from the variable (keep the first, current key)"
            )
        with self._mutex:
            self._load_key_file()
            document = self._read_key_document()
            current_id = document["current"]
            dropped = tuple(e["id"] for e in document["keys"] if e["id"] != current_id)
            if dropped:
                document["keys"] = [e for e in document["keys"] if e["id"] == current_id]
                write_file_atomic(self.key_file, _dump(document), exclusive=False)
            self._keys = {current_id: self._keys[current_id]}
            self._load_key_file()
            return dropped

    def _load_key_file(self) -> bool:
        """Read the key file if it changed since last read; False when there is none."""
        try:
            file_stat = self.key_file.stat()
        except FileNotFoundError:
            return False
        except OSError as error:
            raise ConfigError(
                f"cannot read the master key file {self.key_file}: {error.strerror}"
            ) from error
        state = (file_stat.st_ino, file_stat.st_mtime_ns, file_stat.st_size)
        if state == self._file_state:
            return True
        if stat.S_IMODE(file_stat.st_mode) & 0o077:
            logger.warning(
                "master key file %s can be read by other users (mode %o); run: chmod 600 %s",
                self.key_file,
                stat.S_IMODE(file_stat.st_mode),
                self.key_file,
            )
        document = self._read_key_document()
        for entry in document["keys"]:
            self._keys[entry["id"]] = base64.b64decode(entry["key"])
        self._current_id = document["current"]
        self._file_state = state
        return True

    def _read_key_document(self) -> dict[str, Any]:
        """The key file, validated: every key 32 bytes and matching its id."""
        corrupt = f"master key file {self.key_file} is corrupt"
        try:
            document = json.loads(self.key_file.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(
                f"cannot read the master key file {self.key_file}: {error.strerror}"
            ) from error
        except ValueError:
            raise IntegrityError(f"{corrupt} (not JSON); restore it from backup") from None
        try:
            if document["format"] != _MASTER_FORMAT or document["version"] != 1:
                raise IntegrityError(f"{corrupt} (unknown format); restore it from backup")
            for entry in document["keys"]:
                key = base64.b64decode(entry["key"], validate=True)
                if len(key) != KEY_SIZE or key_id(key) != entry["id"]:
                    raise IntegrityError(
                        f"{corrupt}: key {entry['id']} does not match its id; restore it"
                    )
            if document["current"] not in {entry["id"] for entry in document["keys"]}:
                raise IntegrityError(f"{corrupt}: its current key is missing; restore it")
        except (KeyError, TypeError, binascii.Error):
            raise IntegrityError(f"{corrupt} (missing or malformed fields); restore it") from None
        return dict(document)

    def _create_key_file(self) -> None:
        key = generate_key()
        now = _now()
        document = {
            "format": _MASTER_FORMAT,
            "version": 1,
            "current": key_id(key),
            "keys": [{"id": key_id(key), "key": _b64(key), "created_at": now, "retired_at": None}],
        }
        try:
            write_file_atomic(self.key_file, _dump(document), exclusive=True)
        except FileExistsError:
            pass  # another process or thread made it first: use theirs
        else:
            self.created_key_file = self.key_file
            logger.warning(
                "created master key %s: back it up; without it the models cannot be decrypted",
                self.key_file,
            )
        self._load_key_file()

    def _read_purpose_file(self) -> dict[str, dict[str, Any]]:
        try:
            document = json.loads(self.purpose_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise ConfigError(f"cannot read {self.purpose_file}: {error.strerror}") from error
        except ValueError:
            document = None
        if (
            not isinstance(document, dict)
            or document.get("format") != _PURPOSE_FORMAT
            or not isinstance(document.get("keys"), dict)
            or not all(
                isinstance(entry, dict) and isinstance(entry.get("master_key_id"), str)
                for entry in document["keys"].values()
            )
        ):
            raise IntegrityError(
                f"purpose key file {self.purpose_file} is corrupt; restore it from backup"
            )
        return dict(document["keys"])

    def _write_purpose_file(self, entries: dict[str, dict[str, Any]]) -> None:
        document = {"format": _PURPOSE_FORMAT, "version": 1, "keys": entries}
        write_file_atomic(self.purpose_file, _dump(document), exclusive=False)

    def _unwrap_purpose(self, purpose: str, entry: dict[str, Any]) -> bytes:
        subject = f"purpose key {purpose!r} in {self.purpose_file}"
        try:
            master_id = entry["master_key_id"]
            nonce = base64.b64decode(entry["nonce"], validate=True)
            wrapped = base64.b64decode(entry["wrapped"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise IntegrityError(f"{subject} is malformed; restore the file from backup") from None
        master_key = self.get(master_id, subject=subject)
        secret = unwrap_key(master_key, nonce, wrapped, _purpose_context(purpose, master_id))
        if secret is None or len(secret) != KEY_SIZE:
            raise IntegrityError(
                f"{subject} failed its integrity check under master key {master_id}: the file "
                "was modified or corrupted; restore it from backup"
            )
        return secret


def parse_master_keys(value: str) -> list[bytes]:
    """The keys in a ``MEDSERVE_MASTER_KEY`` value: base64 of 32 bytes, comma-separated."""
    parts = [part.strip() for part in value.split(",")]
    keys = []
    for position, part in enumerate(parts, start=1):
        which = "MEDSERVE_MASTER_KEY"
        if len(parts) > 1:
            which += f" entry {position}"
        try:
            key = base64.b64decode(part, validate=True)
        except binascii.Error:
            key = b""
        if len(key) != KEY_SIZE:
            raise ConfigError(f"{which} is not the base64 of 32 random bytes; {GENERATE_HINT}")
        keys.append(key)
    return keys


def environment_rotation_help() -> str:
    return (
        "MEDSERVE_MASTER_KEY is set, so medserve cannot store a new master key itself; to "
        f"rotate, make a new key ({GENERATE_HINT}), set MEDSERVE_MASTER_KEY=NEW,OLD (new key "
        "first) on every replica, run the rotation again, then set MEDSERVE_MASTER_KEY=NEW"
    )


@contextlib.contextmanager
def key_lock(home: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold ``<home>/keys.lock``: exclusive to change keys, shared to encrypt under them.

    An advisory ``flock``: it orders processes and threads on hosts sharing the home.
    """
    home.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    fd = os.open(home / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_purpose(purpose: str) -> None:
    if not PURPOSE_PATTERN.fullmatch(purpose):
        raise ConfigError(
            f"purpose {purpose!r} is not a valid key name: use lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )


def _wrap_purpose(
    purpose: str, secret: bytes, master_id: str, master_key: bytes, created_at: str | None = None
) -> dict[str, Any]:
    nonce, wrapped = wrap_key(master_key, secret, _purpose_context(purpose, master_id))
    return {
        "master_key_id": master_id,
        "nonce": _b64(nonce),
        "wrapped": _b64(wrapped),
        "created_at": created_at or _now(),
    }


def _purpose_context(purpose: str, master_id: str) -> bytes:
    """Associated data: an entry moved to another purpose name or key id fails to unwrap."""
    return f"medserve purpose key\x00{purpose}\x00{master_id}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _dump(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")
