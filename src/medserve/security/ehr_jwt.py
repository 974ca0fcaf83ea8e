"""Trusting the EHR that calls the CDS Hooks service: the signed JWT of every call, verified
as the CDS Hooks 2.0 specification's "Trusting CDS Clients" section asks.

* ``iss`` on an allow-list, each issuer with its keys: a JWKS file, or a ``jku`` URL that
  is exactly on that issuer's list;
* the key chosen by ``kid``; asymmetric ``alg`` only (``none`` and HMAC refused);
* ``aud`` exactly the URL called (a string, or an array holding it);
* ``exp`` and ``iat`` checked with a small clock skew, and a lifetime (``exp - iat``) of at
  most five minutes plus the skew (CDS Hooks 1.0 asked for five minutes at most; 2.0 keeps
  tokens per call, so a longer one is a misconfigured EHR or a stolen token kept for later);
* ``jti`` kept in the database until the token expires (plus the skew), so a replay to any
  replica is refused.

The signature and the standard claims are checked by PyJWT; nothing here is cryptography.
Every refusal is an AuthError (401) with one line an EHR's developer can act on; the token
itself is never echoed or logged. A JWKS that cannot be fetched from its ``jku`` is also an
AuthError (401): the EHR's next call, with keys it has fixed, is what recovers. A failed
fetch is remembered for 30 s and at most one fetch per URL is in flight, so a flood of
forged tokens naming an allow-listed ``jku`` costs one outbound request per 30 s, not one
each, and never holds a call longer than one fetch's timeout.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from medserve.config import EhrIssuer
from medserve.errors import AuthError
from medserve.storage.token_ids import TokenIds

logger = logging.getLogger("medserve.security")

# CDS Hooks recommends ES384 and RS384; every asymmetric JWS algorithm PyJWT verifies with
# `cryptography` is accepted too. Symmetric ones (HS*) and `none` never are.
ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
MAX_LIFETIME_S = 300.0
MAX_TOKEN_CHARS = 16_384
MAX_JTI_CHARS = 255  # the ehr_token_ids column
JKU_CACHE_S = 300.0
JKU_REFETCH_S = 30.0  # an unknown kid re-fetches a cached jku at most this often
JKU_TIMEOUT_S = 5.0  # one fetch, as a whole
JKU_FAILURE_S = 30.0  # a failed fetch of a jku is remembered (not retried) this long
JKU_WAIT_S = 0.5  # a call waits this long for another's fetch of the same jku, then is refused
MAX_JWKS_BYTES = 1_000_000

# The public CDS Hooks sandbox (https://sandbox.cds-hooks.org) signs its calls as this
# issuer, with keys at this jku. Its private key is published with its source code, so
# anyone can sign as it: trusted only in the explicit development mode.
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"

MISSING_BEARER = "the CDS Hooks call needs Authorization: Bearer <JWT signed by the EHR>"


def loud_sandbox_warning() -> str:
    """What the CLI prints (and the verifier logs) when the sandbox's issuer is trusted."""
    return (
        "DEVELOPMENT ONLY: the CDS Hooks service trusts the public sandbox's issuer "
        f"{SANDBOX_ISSUER} (keys from {SANDBOX_JKU}). Its private key is public, so anyone "
        "can sign as it: never turn on MEDSERVE_CDS_SANDBOX where real patient data is served."
    )


@dataclass(frozen=True)
class EhrCaller:
    """Who called, as the audit trail records it: the token's issuer, its ``sub`` (a
    client id, when it has one), its ``jti``, when it expires, and its ``tenant``."""

    issuer: str
    subject: str | None
    jti: str
    expires_at: datetime
    tenant: str | None


@dataclass
class _KeySet:
    """One JWKS as read: the raw JWKs by kid (None where a kid appears twice), and when
    (``clock`` seconds) or from which file version it was read."""

    keys: dict[str, dict[str, Any] | None]
    read_at: float
    stamp: tuple[int, int] | None = None


@dataclass(frozen=True)
class _Failure:
    """A jku fetch that failed: the refusal it gave, and when (``clock`` seconds)."""

    message: str
    at: float


class EhrTokenVerifier:
    """Verifies the bearer JWT of a CDS Hooks call against the trusted issuers.

    ``issuers``: the allow-list, by exact ``iss`` (``Settings.cds_issuers``); ``sandbox``
    adds the public sandbox's issuer (and logs a warning). ``fetch`` gets a ``jku`` URL's
    JWKS as a dict (default: an HTTP GET bounded to 5 s as a whole); each is kept 5
    minutes, a kid not in it re-fetches it at most every 30 s, a failed fetch is
    remembered for 30 s (calls needing that URL are refused at once with the same
    AuthError), and at most one fetch per URL runs at a time (other calls wait for it, up
    to 5 s). ``clock`` (monotonic seconds) ages those caches. A token's own times are checked
    against the system clock, as PyJWT reads it.

    ``verify`` blocks (the database, perhaps a key fetch): run it off the event loop. Safe
    to share between threads."""

    def __init__(
        self,
        issuers: Mapping[str, EhrIssuer],
        token_ids: TokenIds,
        *,
        clock_skew_s: float = 60.0,
        sandbox: bool = False,
        fetch: Callable[[str], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuers = dict(issuers)
        if sandbox:
            self._issuers.setdefault(SANDBOX_ISSUER, EhrIssuer(jku=[SANDBOX_JKU]))
            logger.warning(loud_sandbox_warning())
        self._token_ids = token_ids
        self._skew = float(clock_skew_s)
        self._fetch = fetch or fetch_jwks
        self._clock = clock
        self._lock = threading.Lock()
        self._files: dict[Path, _KeySet] = {}
        self._urls: dict[str, _KeySet] = {}
        self._failures: dict[str, _Failure] = {}
        self._fetching: dict[str, threading.Event] = {}
        for iss, issuer in self._issuers.items():
            if issuer.jwks_file is None and not issuer.jku:
                logger.warning(
                    "CDS Hooks issuer %s has neither jwks_file nor jku: its calls are refused",
                    iss,
                )

    @property
    def issuers(self) -> tuple[str, ...]:
        """The issuers trusted, sandbox included when on."""
        return tuple(self._issuers)

    def verify(self, authorization: str | None, audience: str) -> EhrCaller:
        """The caller of a CDS Hooks call whose ``Authorization`` header is
        ``authorization``, sent to the URL ``audience``; AuthError saying why not.
        RegistryError when the replay guard cannot be written (refuse the call)."""
        token = _bearer(authorization)
        header = _header(token)
        alg, kid = _alg_and_kid(header)
        iss = _unverified_issuer(token)
        issuer = self._issuers.get(iss)
        if issuer is None:
            raise AuthError(
                f"issuer {iss!r} is not trusted; add it to MEDSERVE_CDS_ISSUERS "
                "with its jwks_file or jku"
            )
        key = self._key(iss, issuer, header, alg, kid)
        claims = self._decode(token, key, alg, kid, iss, audience)
        return self._record(iss, claims)

    # -- keys -------------------------------------------------------------------------

    def _key(
        self, iss: str, issuer: EhrIssuer, header: dict[str, Any], alg: str, kid: str
    ) -> jwt.PyJWK:
        jku = header.get("jku")
        if jku is not None:
            if not isinstance(jku, str) or jku not in issuer.jku:
                raise AuthError(
                    f"jku not on the allow-list for this issuer {iss!r}; send a jku listed "
                    "for it in MEDSERVE_CDS_ISSUERS, or none (the configured keys are used)"
                )
            jwk = self._from_url(jku, kid)
        elif issuer.jwks_file is not None:
            jwk = self._from_file(iss, issuer.jwks_file, kid)
        elif len(issuer.jku) == 1:
            # No jku in the token: the one allow-listed for the issuer is the key set
            # agreed out of band.
            jwk = self._from_url(issuer.jku[0], kid)
        else:
            raise AuthError(
                f"no keys are configured for issuer {iss!r}: set its jwks_file in "
                "MEDSERVE_CDS_ISSUERS, or send a jku on its allow-list"
            )
        if jwk.get("alg") not in (None, alg):
            raise AuthError(f"kid {kid!r} is a key for alg {jwk['alg']!r}, not {alg!r}")
        try:
            return jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            raise AuthError(
                f"kid {kid!r} is not a usable {alg} key (wrong key type or curve)"
            ) from None

    def _from_file(self, iss: str, path: Path, kid: str) -> dict[str, Any]:
        try:
            status = path.stat()
            stamp = (status.st_mtime_ns, status.st_size)
            with self._lock:
                cached = self._files.get(path)
            if cached is None or cached.stamp != stamp:
                cached = _KeySet(_keys_by_kid(json.loads(path.read_bytes())), 0.0, stamp)
                with self._lock:
                    self._files[path] = cached
        except (OSError, ValueError) as error:
            logger.warning("the JWKS file of CDS Hooks issuer %s cannot be read: %s", iss, error)
            raise AuthError(
                f"the keys configured for issuer {iss!r} cannot be read; the service's "
                "operator must fix its jwks_file"
            ) from None
        return _pick(cached, kid)

    def _from_url(self, url: str, kid: str) -> dict[str, Any]:
        while True:
            now = self._clock()
            with self._lock:
                cached = self._urls.get(url)
                stale = cached is None or now - cached.read_at >= JKU_CACHE_S
                # A kid the cached set lacks may be a key the EHR has just rotated in.
                rotated = (
                    cached is not None
                    and kid not in cached.keys
                    and now - cached.read_at >= JKU_REFETCH_S
                )
                if not (stale or rotated):
                    break
                failure = self._failures.get(url)
                if failure is not None and now - failure.at < JKU_FAILURE_S:
                    raise AuthError(failure.message)
                pending = self._fetching.get(url)
                if pending is None:
                    pending = self._fetching[url] = threading.Event()
                    mine = True
                else:
                    mine = False
            if mine:
                cached = self._fetch_into_cache(url, now, pending)
                break
            # Another call is fetching this URL: its result (keys or failure) is ours, if it
            # comes soon; a slow key server must not hold every verification thread.
            if not pending.wait(JKU_WAIT_S):
                raise AuthError(_unfetched(url))
        assert cached is not None
        return _pick(cached, kid)

    def _fetch_into_cache(self, url: str, now: float, done: threading.Event) -> _KeySet:
        """The key set at ``url``, fetched once, cached (or its failure remembered), and
        ``done`` set for the calls waiting on it."""
        try:
            keys = _KeySet(_keys_by_kid(self._fetch(url)), now)
        except Exception as error:  # a fetch is the EHR's server: anything can fail
            if isinstance(error, AuthError):
                message = error.message
            else:
                logger.warning("fetching a CDS Hooks JWKS failed: %s", type(error).__name__)
                message = _unfetched(url)
            with self._lock:
                # Stamped when the fetch gave up: a fetch slower than the window still counts.
                self._failures[url] = _Failure(message, self._clock())
            raise AuthError(message) from None
        else:
            with self._lock:
                self._urls[url] = keys
                self._failures.pop(url, None)
            return keys
        finally:
            with self._lock:
                self._fetching.pop(url, None)
            done.set()

    # -- the token --------------------------------------------------------------------

    def _decode(
        self, token: str, key: jwt.PyJWK, alg: str, kid: str, iss: str, audience: str
    ) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                leeway=self._skew,
                options={"require": ["exp", "iat", "jti", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise AuthError(_refusal(error, alg, kid, audience, self._skew)) from None
        lifetime = float(claims["exp"]) - float(claims["iat"])
        if lifetime > MAX_LIFETIME_S + self._skew:
            raise AuthError(
                f"the token lives {lifetime:.0f} s (exp - iat); at most {MAX_LIFETIME_S:.0f} s "
                "is accepted: the EHR must sign a fresh, short-lived token for each call"
            )
        return claims

    def _record(self, iss: str, claims: dict[str, Any]) -> EhrCaller:
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
            raise AuthError(f"the token's jti must be a string of 1 to {MAX_JTI_CHARS} characters")
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
        keep_until = expires_at + timedelta(seconds=self._skew)
        if not self._token_ids.first_use(iss, jti, keep_until):
            raise AuthError("this token (jti) was already used: a replay is refused")
        return EhrCaller(
            issuer=iss,
            subject=_optional_str(claims.get("sub")),
            jti=jti,
            expires_at=expires_at,
            tenant=_optional_str(claims.get("tenant")),
        )


def fetch_jwks(url: str) -> dict[str, Any]:
    """The JWK Set at ``url`` (an HTTP GET, no redirects followed, at most
    MAX_JWKS_BYTES, done within JKU_TIMEOUT_S as a whole: a server dripping its answer
    is cut off too)."""
    import httpx

    deadline = time.monotonic() + JKU_TIMEOUT_S
    body = bytearray()
    with httpx.stream("GET", url, timeout=JKU_TIMEOUT_S, follow_redirects=False) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError("JWKS too large")
            if time.monotonic() > deadline:
                raise TimeoutError("JWKS fetch too slow")
    document = json.loads(bytes(body))
    if not isinstance(document, dict):
        raise ValueError("not a JWK Set")
    return document


def _unfetched(url: str) -> str:
    return f"could not fetch the issuer's keys from {url}; the EHR must serve its JWK Set there"


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(MISSING_BEARER)
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError(f"the bearer token is longer than {MAX_TOKEN_CHARS} characters")
    return token


def _header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthError(
            "the bearer token is not a JWT (header.payload.signature, base64url)"
        ) from None


def _alg_and_kid(header: dict[str, Any]) -> tuple[str, str]:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise AuthError(
            f"alg {alg!r} is refused: the EHR must sign with its private key "
            f"(ES384 or RS384; accepted: {', '.join(ALGORITHMS)})"
        )
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise AuthError(f"typ {typ!r} is refused: a CDS Hooks token's typ is 'JWT'")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AuthError("the token's header has no kid: the EHR must name the key it signed with")
    return alg, kid


def _unverified_issuer(token: str) -> str:
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthError("the bearer token's payload is not a JSON object (base64url)") from None
    iss = payload.get("iss")
    if not isinstance(iss, str) or not iss:
        raise AuthError("the token has no iss: the EHR must name itself as the issuer")
    return iss


def _keys_by_kid(document: object) -> dict[str, dict[str, Any] | None]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWK Set is a JSON object with a "keys" array')
    keys: dict[str, dict[str, Any] | None] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("use") not in (None, "sig"):
            continue
        kid = jwk["kid"]
        keys[kid] = None if kid in keys else jwk  # a kid must be unique in its set
    return keys


def _pick(keys: _KeySet, kid: str) -> dict[str, Any]:
    if kid not in keys.keys:
        raise AuthError(f"kid {kid!r} is not among the issuer's keys")
    jwk = keys.keys[kid]
    if jwk is None:
        raise AuthError(
            f"kid {kid!r} names more than one of the issuer's keys; kids must be unique"
        )
    return jwk


def _refusal(error: jwt.PyJWTError, alg: str, kid: str, audience: str, skew: float) -> str:
    if isinstance(error, jwt.ExpiredSignatureError):
        return (
            f"the token has expired (exp, {skew:.0f} s clock skew allowed): the EHR must sign "
            "a fresh token for each call"
        )
    if isinstance(error, jwt.ImmatureSignatureError):
        return (
            f"the token is issued in the future (iat or nbf beyond the {skew:.0f} s clock "
            "skew allowed): check the EHR's clock"
        )
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"the token lacks the claim {error.claim!r}, which CDS Hooks requires"
    if isinstance(error, jwt.InvalidAudienceError):
        return f"the token's aud does not name this endpoint: it must be exactly {audience}"
    if isinstance(error, jwt.InvalidSignatureError):
        return f"the token's signature does not verify with the issuer's key {kid!r}"
    if isinstance(error, jwt.InvalidKeyError):
        return f"kid {kid!r} is not a usable {alg} key (wrong key type or curve)"
    if isinstance(error, jwt.InvalidIssuerError):
        return "the token's iss is not the issuer it was checked against"
    if isinstance(error, jwt.DecodeError):
        return f"the token cannot be decoded ({error}); it must be a signed JWT (JWS)"
    return f"the token is refused: {error}"


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
