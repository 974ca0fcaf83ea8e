"""A model version as one portable file: exported from one medserve home, imported into another.

A bundle is encrypted and authenticated under a key derived from a passphrase (scrypt),
so it can travel by any channel and only someone with the passphrase can read or load
it. Format::

    offset  size  field
         0     8  magic b"MSBUNDLE"
         8     4  header length n, unsigned big-endian
        12     n  header: a UTF-8 JSON object, readable without the passphrase (format
                  version, model ref, family, schema and data sha256, created_at, the
                  scrypt parameters and salt, the AES-GCM nonce); no patient data
      12+n     m  AES-256-GCM ciphertext of the payload + 16-byte tag,
                  associated data = bytes 0 to 12+n (magic, length and header)

The payload is a JSON object: the version's metadata (family, threshold, schema,
metrics, params, lineage, data sha256; not its stage), its model artifact (the joblib
bytes, decrypted from the exporting home, with their sha256) and its training report
(``report.json`` and the page beside it).

The GCM tag covers every byte of the file, so a bundle that imports was made by
someone who had the passphrase and has not been altered since; a wrong passphrase
and an altered byte are told apart by nobody, both fail the tag. The model is
unpickled only after the tag and the artifact's sha256 verified. On import the
version is registered through ``Registry.register`` as in training: encrypted under
the importing home's master key, its row MACed under that home's key. An import is
recorded (``audit``) before it counts: when the record cannot be written the version is
removed again, its artifact and report with it, and nothing of the import stays.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import os
import struct
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from medserve.config import Settings
from medserve.core.files import write_file_atomic
from medserve.core.stored_files import STORED_FILES
from medserve.errors import (
    ConfigError,
    IntegrityError,
    MedserveError,
    RegistryError,
    option,
)
from medserve.storage.artifacts import read_artifact, resolve_in_home
from medserve.storage.integrity import check_version, version_key
from medserve.storage.registry import ModelVersion, Registry, check_name

MAGIC = b"MSBUNDLE"
FORMAT = "medserve-model-bundle"
FORMAT_VERSION = 1
PAYLOAD_FORMAT = "medserve-model-bundle-payload/1"
_LENGTH = struct.Struct(">I")
PREFIX_SIZE = len(MAGIC) + _LENGTH.size
MAX_HEADER_SIZE = 64 * 1024
SALT_SIZE = 16
NONCE_SIZE = 12
KEY_SIZE = 32
# scrypt cost: 2**15 x 8 x 128 bytes = 32 MiB of memory, a fraction of a second per try.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
# What an import accepts from a header: enough to read bundles made with a higher cost,
# bounded so a crafted header cannot ask for gigabytes of memory.
SCRYPT_N_RANGE = (2**14, 2**18)
MIN_PASSPHRASE_LENGTH = 8
# Files of a version's report carried in a bundle (the training report and its page).
REPORT_FILES = ("report.json", "report.html")


def export_bundle(settings: Settings, ref: str, path: Path, passphrase: str) -> ModelVersion:
    """Write version ``ref`` of this home's registry to ``path`` (a new file, mode 0600)
    as a bundle sealed under ``passphrase``; the version exported.

    The version's row and artifact are checked (MAC, sha256, AES-GCM) as for loading,
    but the model is not unpickled. An existing ``path`` is refused (ConfigError).
    """
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise ConfigError(
            f"the bundle passphrase has {len(passphrase)} characters: use at least "
            f"{MIN_PASSPHRASE_LENGTH} (a bundle is only as safe as its passphrase)"
        )
    with Registry(settings) as registry:
        version = registry.get(ref)
        if (version.lineage or {}).get(STORED_FILES):
            # Its weights are artifacts of their own, which a bundle does not carry yet.
            raise ConfigError(
                f"{version.ref} was imported from model files ({version.family}); a bundle "
                "does not carry them: import the same files in the other medserve with "
                "`medserve models import NAME` and its schema file"
            )
        check_version(version_key(settings, registry.engine, create=False), version)
        artifact = read_artifact(settings, version.artifact_path, version.artifact_sha256)
    payload = {
        "format": PAYLOAD_FORMAT,
        "model": {
            "ref": version.ref,
            "family": version.family,
            "threshold": version.threshold,
            "schema": version.schema,
            "metrics": version.metrics,
            "params": version.params,
            "lineage": version.lineage,
            "data_sha256": version.data_sha256,
            "created_at": version.created_at.isoformat(),
            "created_by": version.created_by,
        },
        "artifact": {"sha256": hashlib.sha256(artifact).hexdigest(), "joblib": _b64(artifact)},
        "reports": {name: _b64(content) for name, content in _report_files(settings, version)},
    }
    salt, nonce = os.urandom(SALT_SIZE), os.urandom(NONCE_SIZE)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": version.ref,
        "family": version.family,
        "schema_sha256": schema_sha256(version.schema),
        "data_sha256": version.data_sha256,
        "created_at": datetime.now(UTC).isoformat(),
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
        "salt": _b64(salt),
        "cipher": "AES-256-GCM",
        "nonce": _b64(nonce),
    }
    header_bytes = _canonical(header)
    prefix = MAGIC + _LENGTH.pack(len(header_bytes)) + header_bytes
    key = _derive_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    sealed = AESGCM(key).encrypt(nonce, _canonical(payload), prefix)
    try:
        write_file_atomic(path, prefix + sealed, exclusive=True)
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists: choose another file name or remove it first"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot write the bundle {path}: {error.strerror}") from error
    return version


# Records an import in the audit trail once the version is registered; raises if it cannot.
Audit = Callable[[Registry, ModelVersion], object]


def import_bundle(
    settings: Settings,
    path: Path,
    passphrase: str,
    name: str | None = None,
    *,
    audit: Audit | None = None,
) -> ModelVersion:
    """Verify and decrypt the bundle at ``path`` and register its model as the next
    version of ``name`` (default: the exported version's name) in this home.

    A wrong passphrase, an altered bundle or one of another format raises
    IntegrityError and registers nothing; the model is unpickled only once verified.
    ``audit(registry, version)`` records the import; if it raises, the version is
    removed again (RegistryError saying so), so no unrecorded import stays registered.
    """
    header, payload = read_bundle(path, passphrase)
    model = payload["model"]
    original_name = str(model["ref"]).partition(":")[0]
    target = name or original_name
    check_name(target)
    artifact = _unb64(payload["artifact"]["joblib"], path)
    if hashlib.sha256(artifact).hexdigest() != payload["artifact"]["sha256"]:
        raise IntegrityError(
            f"bundle {path} was refused: its model artifact does not match its sha256"
        )
    if (
        header["model"] != model["ref"]
        or header["family"] != model["family"]
        or header["data_sha256"] != model["data_sha256"]
        or header["schema_sha256"] != schema_sha256(model["schema"])
    ):
        raise IntegrityError(
            f"bundle {path} was refused: its header and its contents describe different models"
        )
    if (model.get("lineage") or {}).get(STORED_FILES):
        raise ConfigError(
            f"bundle {path} holds a model imported from files whose weights it does not "
            "carry; import the model's own files with `medserve models import NAME`"
        )
    reports = {file: _unb64(content, path) for file, content in payload["reports"].items()}
    lineage = {
        **model["lineage"],
        "imported_from": {
            "ref": model["ref"],
            "created_at": model["created_at"],
            "created_by": model["created_by"],
            "bundle_created_at": header["created_at"],
        },
    }
    report = json.loads(reports["report.json"]) if "report.json" in reports else None
    page = {file: content for file, content in reports.items() if file != "report.json"}

    def pages_for(ref: str) -> dict[str, bytes]:
        # The page names the version it was rendered for: kept under the same ref only;
        # otherwise it is rendered from report.json when read (medserve.flows.report).
        return page if ref == model["ref"] else {}

    loaded = joblib.load(io.BytesIO(artifact))  # only now: the bytes are authenticated
    with Registry(settings) as registry:
        version = registry.register(
            target,
            loaded,
            family=model["family"],
            schema=model["schema"],
            metrics=model["metrics"],
            threshold=float(model["threshold"]),
            params=model["params"],
            lineage=lineage,
            data_sha256=model["data_sha256"],
            report=report,
            report_files=pages_for if report is not None else None,
        )
        if audit is not None:
            _recorded_or_removed(settings, registry, version, audit, path)
        return version


def _recorded_or_removed(
    settings: Settings, registry: Registry, version: ModelVersion, audit: Audit, path: Path
) -> None:
    """Run ``audit``; when it fails, delete the version just registered (row, artifact,
    report) and raise, saying whether the import was undone."""
    try:
        audit(registry, version)
    except BaseException as error:
        reason = _reason(error)
        try:
            registry.delete(version.ref, force=True)  # the first of a name is in production
        except Exception as undo:
            raise RegistryError(
                f"bundle {path} was imported as {version.ref}, but the audit record of the "
                f"import could not be written ({reason}) and removing the version again "
                f"failed ({_reason(undo)}): delete it (`medserve models delete "
                f"{version.ref}` with {option('force')})"
            ) from error
        if version.report_path is not None:  # the name's folder, when this was its only one
            with contextlib.suppress(OSError):
                resolve_in_home(settings, version.report_path).parent.parent.rmdir()
        if isinstance(error, MedserveError | OSError):
            raise RegistryError(
                f"bundle {path} was not imported: the audit record of the import could not "
                f"be written ({reason}), so {version.ref} was removed again and nothing is "
                "registered; fix the audit trail (`medserve audit verify`) and import again"
            ) from error
        raise


def _reason(error: BaseException) -> str:
    """An error's own message on one line (an OSError's strerror when it has one)."""
    if isinstance(error, MedserveError):
        return error.message
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def read_bundle(path: Path, passphrase: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and the decrypted payload of a bundle, after its tag verified."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"bundle {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"cannot read the bundle {path}: {error.strerror}") from error
    header, prefix = read_header(blob, path)
    kdf = header["kdf"]
    try:
        salt, nonce = base64.b64decode(header["salt"]), base64.b64decode(header["nonce"])
    except (binascii.Error, TypeError):
        raise _corrupt(path, "its salt or nonce is not base64") from None
    if len(salt) != SALT_SIZE or len(nonce) != NONCE_SIZE:
        raise _corrupt(path, "its salt or nonce has the wrong length")
    key = _derive_key(passphrase, salt, kdf["n"], kdf["r"], kdf["p"])
    try:
        plaintext = AESGCM(key).decrypt(nonce, blob[len(prefix) :], prefix)
    except InvalidTag:
        raise IntegrityError(
            f"bundle {path} failed its integrity check: the passphrase is wrong or the file "
            "was altered or corrupted; nothing was imported"
        ) from None
    payload = json.loads(plaintext)
    if payload.get("format") != PAYLOAD_FORMAT:
        raise _corrupt(path, f"its contents are not {PAYLOAD_FORMAT}")
    return header, payload


def read_header(blob: bytes, path: Path | str = "bundle") -> tuple[dict[str, Any], bytes]:
    """The bundle's header (checked for its format version and scrypt parameters, not yet
    authenticated) and the bytes it is authenticated as: magic, length and header."""
    if not blob.startswith(MAGIC):
        raise IntegrityError(f"{path} is not a medserve model bundle (no {MAGIC.decode()} magic)")
    if len(blob) < PREFIX_SIZE:
        raise _corrupt(path, "it is truncated")
    (length,) = _LENGTH.unpack_from(blob, len(MAGIC))
    if length > MAX_HEADER_SIZE or len(blob) < PREFIX_SIZE + length:
        raise _corrupt(path, "its header length is out of range")
    prefix = blob[: PREFIX_SIZE + length]
    try:
        header = json.loads(prefix[PREFIX_SIZE:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _corrupt(path, "its header is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _corrupt(path, f"its header is not a {FORMAT} header")
    if header.get("format_version") != FORMAT_VERSION:
        raise IntegrityError(
            f"bundle {path} has format version {header.get('format_version')!r}; this medserve "
            f"reads version {FORMAT_VERSION}: export it again with this medserve's version, "
            "or upgrade"
        )
    kdf = header.get("kdf")
    if not (
        isinstance(kdf, dict)
        and kdf.get("name") == "scrypt"
        and all(type(kdf.get(p)) is int for p in ("n", "r", "p"))
        and SCRYPT_N_RANGE[0] <= kdf["n"] <= SCRYPT_N_RANGE[1]
        and kdf["n"] & (kdf["n"] - 1) == 0
        and kdf["r"] == SCRYPT_R
        and kdf["p"] == SCRYPT_P
    ):
        raise _corrupt(path, "its key derivation parameters are not accepted")
    if header.get("cipher") != "AES-256-GCM":
        raise _corrupt(path, "its cipher is not AES-256-GCM")
    return header, prefix


def schema_sha256(schema: Any) -> str:
    """The sha256 of a schema's canonical JSON (the header's ``schema_sha256``)."""
    return hashlib.sha256(_canonical(schema)).hexdigest()


def _report_files(settings: Settings, version: ModelVersion) -> list[tuple[str, bytes]]:
    if version.report_path is None:
        return []
    directory = resolve_in_home(settings, version.report_path).parent
    files = [(name, directory / name) for name in REPORT_FILES]
    return [(name, file.read_bytes()) for name, file in files if file.is_file()]


def _derive_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if not passphrase:
        raise ConfigError("the bundle passphrase is empty")
    # NFC: the same passphrase typed on another system gives the same bytes.
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return Scrypt(salt=salt, length=KEY_SIZE, n=n, r=r, p=p).derive(secret)


def _corrupt(path: Path | str, reason: str) -> IntegrityError:
    return IntegrityError(f"bundle {path} is corrupt ({reason}); nothing was imported")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, path: Path) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError):
        raise _corrupt(path, "an encoded file in it is not base64") from None


def _canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
