"""Keyed pseudonyms and per-patient date offsets, both HMAC-SHA256 under the deid key.

The same value under the same key gives the same pseudonym in every file and on every
run, so one patient's records still link; without the key nobody can recompute or
reverse them (the key lives in the medserve key store, purpose ``"deid"``). Values are
normalised first, so ``" ab123"`` and ``"AB123"`` are one record number.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import pandas as pd

from medserve.deid.shapes import PSEUDONYM

KEY_SIZE = 32
MAX_SHIFT_DAYS = 365
PSEUDONYM_HEX = 16  # 64 bits: collisions stay unlikely up to hundreds of millions of values

# Kinds that share a namespace: an MRN in one file and a patient id in another link.
_DOMAIN = {"record_id": "id", "phone": "phone", "fax": "phone"}
_PREFIX = {
    "id": "P",
    "name": "N",
    "ssn": "S",
    "phone": "T",
    "email": "E",
    "street_address": "A",
}


def check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ValueError("the deid key must be 32 bytes (KeyStore(settings).purpose_key('deid'))")


def key_fingerprint(key: bytes) -> str:
    """An id for the key that reveals nothing about it: which key made these pseudonyms."""
    return hashlib.sha256(b"medserve deid key\x00" + key).hexdigest()[:16]


def normalise(value: object, kind: str) -> str:
    """The form that is hashed: case, spaces and punctuation that do not change who it is;
    kind ``exact``, the value as given (ids a system keeps case-sensitive, as FHIR's)."""
    if kind == "exact":
        return str(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a record number read as 123.0 from Parquet is 123
    text = " ".join(str(value).split())
    if kind in ("ssn", "phone", "fax"):
        return re.sub(r"\D", "", text)
    if kind in ("email", "url", "name", "street_address"):
        return text.casefold()
    return text.upper()


def pseudonym(key: bytes, value: object, kind: str) -> str:
    domain = _DOMAIN.get(kind, kind)
    message = f"pseudonym\x00{domain}\x00{normalise(value, kind)}".encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
    return f"{_PREFIX.get(domain, 'X')}-{digest}"


def pseudonymise(key: bytes, values: pd.Series, kind: str) -> pd.Series:
    """Each present value → its pseudonym (each distinct value hashed once); missing stays.

    A value that already is a pseudonym (``P-`` and 16 hex digits, from an earlier pass)
    stays as it is, so de-identifying a de-identified table changes nothing and records
    still link.
    """
    present = values.dropna()
    mapping = {
        value: value if is_pseudonym(value) else pseudonym(key, value, kind)
        for value in present.unique()
    }
    out = pd.Series(None, index=values.index, dtype=object)
    out[present.index] = present.map(mapping)
    return out


def is_pseudonym(value: object) -> bool:
    return isinstance(value, str) and PSEUDONYM.fullmatch(value) is not None


def shift_days(key: bytes, patient: object) -> int:
    """A patient's date offset: ±1..365 days, never 0, the same in every file under one key."""
    message = f"date-shift\x00{normalise(patient, 'record_id')}".encode()
    number = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:8], "big")
    magnitude = 1 + number % MAX_SHIFT_DAYS
    return magnitude if (number >> 32) & 1 else -magnitude


def row_shift_days(key: bytes, row: object) -> int:
    """The offset for a row whose patient is unknown: keyed on the row, so still repeatable."""
    return shift_days(key, f"\x00row\x00{row}")
