"""The EHR's signed JWT, verified as CDS Hooks asks: the matrix of the issue (ES384 and
RS384 accepted; none, HS256, wrong aud, expired, future iat, no kid or jti, unknown iss,
unknown kid, a jku off the allow-list and a replay refused), with keys this test makes,
and the replay guard on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import Engine, func, select

from medserve.config import EhrIssuer, Settings
from medserve.errors import AuthError, RegistryError
from medserve.security import ehr_jwt
from medserve.security.ehr_jwt import (
    MISSING_BEARER,
    SANDBOX_ISSUER,
    SANDBOX_JKU,
    EhrCaller,
    EhrTokenVerifier,
    fetch_jwks,
    loud_sandbox_warning,
)
from medserve.storage import Registry
from medserve.storage.database import open_engine
from medserve.storage.tables import EhrTokenIdRow
from medserve.storage.token_ids import PURGE_INTERVAL_S, TokenIds

ISS = "https://ehr.example.org"
OTHER_ISS = "https://other-ehr.example.org"
AUD = "https://cds.example.org/cds-services/diabetes-risk"
JKU = "https://ehr.example.org/.well-known/jwks.json"
EC_KID = "ec-384"
RSA_KID = "rsa-2048"


# -- keys and tokens the test makes -------------------------------------------------------


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks(ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return {
        "keys": [
            _public_jwk(ec_key, EC_KID),
            _public_jwk(rsa_key, RSA_KID),
        ]
    }


def _public_jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
    jwk = algorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory, jwks: dict[str, Any]) -> Path:
    path = tmp_path_factory.mktemp("ehr") / "jwks.json"
    path.write_text(json.dumps(jwks))
    return path


@pytest.fixture(scope="module")
def shared_token_ids(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIds]:
    """One migrated SQLite database for the matrix (each token has its own jti)."""
    with Registry(Settings(home=tmp_path_factory.mktemp("home"))) as registry:
        yield TokenIds(registry.engine)


@pytest.fixture
def verifier(jwks_file: Path, shared_token_ids: TokenIds) -> EhrTokenVerifier:
    return EhrTokenVerifier({ISS: EhrIssuer(jwks_file=jwks_file)}, shared_token_ids)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    fields: dict[str, Any] = {
        "iss": ISS,
        "sub": "ehr-client-7",
        "aud": AUD,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "tenant": "2ddd6c3a-8e9a-44c6-a305-52111ad302a2",
    }
    fields.update(overrides)
    return {name: value for name, value in fields.items() if value is not None}


def sign(
    key: Any, payload: dict[str, Any] | None = None, *, alg: str = "ES384", **header: Any
) -> str:
    headers = {"typ": "JWT", "kid": EC_KID if alg.startswith("ES") else RSA_KID, **header}
    headers = {name: value for name, value in headers.items() if value is not None}
    return jwt.encode(payload or claims(), key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token built without PyJWT: unsigned (``none``) or HMAC-SHA256 with ``secret``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def refused(verifier: EhrTokenVerifier, token: str, audience: str = AUD) -> str:
    with pytest.raises(AuthError) as raised:
        verifier.verify(f"Bearer {token}", audience)
    message = raised.value.message
    assert token not in message and "\n" not in message
    return message


# -- accepted ---------------------------------------------------------------------------


def test_an_es384_token_is_accepted_and_says_who_called(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    payload = claims()
    caller = verifier.verify(f"Bearer {sign(ec_key, payload)}", AUD)
    assert caller == EhrCaller(
        issuer=ISS,
        subject="ehr-client-7",
        jti=payload["jti"],
        expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        tenant="2ddd6c3a-8e9a-44c6-a305-52111ad302a2",
    )


def test_an_rs384_token_whose_aud_is_an_array_holding_the_url_is_accepted(
    verifier: EhrTokenVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    payload = claims(aud=["https://cds.example.org/cds-services", AUD], sub=None, tenant=None)
    caller = verifier.verify(f"bearer {sign(rsa_key, payload, alg='RS384')}", AUD)
    assert (caller.issuer, caller.subject, caller.tenant) == (ISS, None, None)


# -- refused: the header ----------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer"])
def test_a_call_without_a_bearer_token_is_refused(
    verifier: EhrTokenVerifier, authorization: str | None
) -> None:
    with pytest.raises(AuthError, match="needs Authorization: Bearer") as raised:
        verifier.verify(authorization, AUD)
    assert raised.value.message == MISSING_BEARER


def test_a_bearer_value_that_is_not_a_jwt_is_refused(verifier: EhrTokenVerifier) -> None:
    assert "not a JWT" in refused(verifier, "an-api-key-not-a-jwt")


def test_alg_none_is_refused(verifier: EhrTokenVerifier) -> None:
    token = hand_made({"alg": "none", "typ": "JWT", "kid": EC_KID}, claims(), None)
    assert "alg 'none' is refused" in refused(verifier, token)


def test_hs256_is_refused(verifier: EhrTokenVerifier) -> None:
    token = jwt.encode(claims(), "a-shared-secret-of-32-bytes-long!", "HS256", {"kid": EC_KID})
    message = refused(verifier, token)
    assert "alg 'HS256' is refused: the EHR must sign with its private key" in message


def test_hs256_signed_with_the_public_key_as_secret_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """The classic key-confusion attack: the public key, which anyone may have, used as an
    HMAC secret in the hope the verifier feeds it to HMAC."""
    pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hand_made({"alg": "HS256", "typ": "JWT", "kid": EC_KID}, claims(), pem)
    assert "alg 'HS256' is refused" in refused(verifier, token)


def test_a_token_without_kid_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    assert "no kid" in refused(verifier, sign(ec_key, kid=None))


def test_a_token_whose_typ_is_not_jwt_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    assert "typ 'at+jwt' is refused" in refused(verifier, sign(ec_key, typ="at+jwt"))


# -- refused: the claims ----------------------------------------------------------------


def test_a_wrong_aud_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key, claims(aud="https://cds.example.org/cds-services/another-service"))
    assert f"aud does not name this endpoint: it must be exactly {AUD}" in refused(verifier, token)


def test_a_wrong_aud_inside_an_array_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key, claims(aud=["https://cds.example.org/cds-services", AUD + "/"]))
    assert "aud does not name this endpoint" in refused(verifier, token)


def test_an_expired_token_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    now = int(time.time())
    token = sign(ec_key, claims(iat=now - 400, exp=now - 100))  # past the 60 s skew
    assert "the token has expired" in refused(verifier, token)


def test_a_token_expired_within_the_clock_skew_is_accepted(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    now = int(time.time())
    verifier.verify(f"Bearer {sign(ec_key, claims(iat=now - 320, exp=now - 20))}", AUD)


def test_a_token_issued_in_the_future_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    now = int(time.time())
    token = sign(ec_key, claims(iat=now + 600, exp=now + 900))
    assert "issued in the future" in refused(verifier, token)


def test_a_token_living_longer_than_five_minutes_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    now = int(time.time())
    token = sign(ec_key, claims(iat=now, exp=now + 3600))
    assert "the token lives 3600 s (exp - iat); at most 300 s" in refused(verifier, token)


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud"])
def test_a_token_without_a_required_claim_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey, claim: str
) -> None:
    token = sign(ec_key, claims(**{claim: None}))
    assert f"the token lacks the claim '{claim}'" in refused(verifier, token)


def test_an_unknown_issuer_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    message = refused(verifier, sign(ec_key, claims(iss=OTHER_ISS)))
    assert f"issuer '{OTHER_ISS}' is not trusted; add it to MEDSERVE_CDS_ISSUERS" in message


# -- refused: the keys and the signature ------------------------------------------------


def test_a_kid_not_in_the_jwks_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    message = refused(verifier, sign(ec_key, kid="retired-2019"))
    assert "kid 'retired-2019' is not among the issuer's keys" in message


def test_a_tampered_signature_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    head, body, signature = sign(ec_key).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    token = f"{head}.{body}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    assert "signature does not verify with the issuer's key 'ec-384'" in refused(verifier, token)


def test_a_tampered_payload_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    head, _, signature = sign(ec_key, claims(aud="https://elsewhere.example.org")).split(".")
    body = b64(json.dumps(claims()).encode())
    assert "signature does not verify" in refused(verifier, f"{head}.{body}.{signature}")


def test_a_token_signed_by_another_key_with_the_same_kid_is_refused(
    verifier: EhrTokenVerifier,
) -> None:
    impostor = ec.generate_private_key(ec.SECP384R1())
    assert "signature does not verify" in refused(verifier, sign(impostor))


def test_an_rsa_alg_with_the_kid_of_an_ec_key_is_refused(
    verifier: EhrTokenVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = sign(rsa_key, alg="RS384", kid=EC_KID)
    assert "kid 'ec-384' is not a usable RS384 key" in refused(verifier, token)


def test_an_es256_token_for_a_p384_key_is_refused(verifier: EhrTokenVerifier) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    assert "not a usable ES256 key" in refused(verifier, sign(p256, alg="ES256"))


def test_a_rotated_jwks_file_is_read_again(
    tmp_path: Path, shared_token_ids: TokenIds, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_public_jwk(ec_key, "2025")]}))
    verifier = EhrTokenVerifier({ISS: EhrIssuer(jwks_file=path)}, shared_token_ids)
    verifier.verify(f"Bearer {sign(ec_key, kid='2025')}", AUD)
    new_key = ec.generate_private_key(ec.SECP384R1())
    path.write_text(json.dumps({"keys": [_public_jwk(new_key, "2026-01")]}))
    verifier.verify(f"Bearer {sign(new_key, kid='2026-01')}", AUD)
    assert "kid '2025' is not among" in refused(verifier, sign(ec_key, kid="2025"))


def test_an_unreadable_jwks_file_refuses_without_showing_its_path(
    tmp_path: Path, shared_token_ids: TokenIds, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    missing = tmp_path / "nowhere" / "jwks.json"
    verifier = EhrTokenVerifier({ISS: EhrIssuer(jwks_file=missing)}, shared_token_ids)
    message = refused(verifier, sign(ec_key))
    assert "operator must fix its jwks_file" in message and str(tmp_path) not in message


def test_an_issuer_without_keys_is_refused_with_a_configuration_hint(
    shared_token_ids: TokenIds, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = EhrTokenVerifier({ISS: EhrIssuer()}, shared_token_ids)
    message = refused(verifier, sign(ec_key))
    assert "no keys are configured for issuer" in message and "jwks_file" in message


# -- jku ----------------------------------------------------------------------------------


class FakeJwksServer:
    """``fetch`` for the verifier: the EHR's JWKS, with every URL asked recorded."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.asked: list[str] = []
        self.down = False

    def __call__(self, url: str) -> dict[str, Any]:
        self.asked.append(url)
        if self.down:
            raise ConnectionError("connection refused")
        return self.jwks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jku_verifier(
    token_ids: TokenIds, server: FakeJwksServer, clock: Callable[[], float] = time.monotonic
) -> EhrTokenVerifier:
    return EhrTokenVerifier({ISS: EhrIssuer(jku=[JKU])}, token_ids, fetch=server, clock=clock)


def test_an_allow_listed_jku_is_fetched_cached_and_accepted(
    shared_token_ids: TokenIds, jwks: dict[str, Any], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    server, clock = FakeJwksServer(jwks), Clock()
    verifier = jku_verifier(shared_token_ids, server, clock)
    assert verifier.verify(f"Bearer {sign(ec_key, jku=JKU)}", AUD).issuer == ISS
    verifier.verify(f"Bearer {sign(ec_key, jku=JKU)}", AUD)
    assert server.asked == [JKU]  # kept
    clock.now += 301
    verifier.verify(f"Bearer {sign(ec_key, jku=JKU)}", AUD)
    assert server.asked == [JKU, JKU]  # and fetched again after five minutes


def test_a_token_without_jku_uses_the_one_allow_listed_for_its_issuer(
    shared_token_ids: TokenIds, jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    server = FakeJwksServer(jwks)
    jku_verifier(shared_token_ids, server).verify(f"Bearer {sign(rsa_key, alg='RS384')}", AUD)
    assert server.asked == [JKU]


def test_a_jku_not_on_the_allow_list_is_refused_and_never_fetched(
    shared_token_ids: TokenIds, jwks: dict[str, Any], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    server = FakeJwksServer(jwks)
    verifier = jku_verifier(shared_token_ids, server)
    token = sign(ec_key, jku="https://attacker.example.net/jwks.json")
    assert "jku not on the allow-list for this issuer" in refused(verifier, token)
    assert server.asked == []


def test_a_jku_that_cannot_be_fetched_is_refused(
    shared_token_ids: TokenIds, jwks: dict[str, Any], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    server = FakeJwksServer(jwks)
    server.down = True
    message = refused(jku_verifier(shared_token_ids, server), sign(ec_key, jku=JKU))
    assert f"could not fetch the issuer's keys from {JKU}" in message


def test_a_new_kid_refetches_a_cached_jku_at_most_every_30_seconds(
    shared_token_ids: TokenIds, jwks: dict[str, Any], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    server, clock = FakeJwksServer(jwks), Clock()
    verifier = jku_verifier(shared_token_ids, server, clock)
    verifier.verify(f"Bearer {sign(ec_key, jku=JKU)}", AUD)
    rotated = ec.generate_private_key(ec.SECP384R1())
    server.jwks = {"keys": [*jwks["keys"], _public_jwk(rotated, "rotated-in")]}
    refused(verifier, sign(rotated, kid="rotated-in", jku=JKU))  # cache is fresh
    assert len(server.asked) == 1
    clock.now += 31
    verifier.verify(f"Bearer {sign(rotated, kid='rotated-in', jku=JKU)}", AUD)
    assert len(server.asked) == 2


class CountingFailingFetch:
    """``fetch`` for a jku whose server never answers usably: counts the calls, each
    taking ``delay_s``, then raising (or, once ``jwks`` is set, answering it)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0
        self.jwks: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def __call__(self, url: str) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay_s)
        if self.jwks is None:
            raise TimeoutError("timed out")
        return self.jwks


def forged(jku: str = JKU) -> str:
    """An unsigned token naming the trusted issuer and its allow-listed jku."""
    return hand_made({"alg": "ES384", "typ": "JWT", "kid": EC_KID, "jku": jku}, claims(), None)


def test_a_failed_jku_fetch_is_remembered_for_30_seconds(
    shared_token_ids: TokenIds, jwks: dict[str, Any], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    fetch, clock = CountingFailingFetch(), Clock()
    verifier = EhrTokenVerifier(
        {ISS: EhrIssuer(jku=[JKU])}, shared_token_ids, fetch=fetch, clock=clock
    )
    messages = {refused(verifier, forged()) for _ in range(20)}
    assert messages == {
        f"could not fetch the issuer's keys from {JKU}; the EHR must serve its JWK Set there"
    }
    assert fetch.calls == 1  # one outbound request for 20 forged tokens
    clock.now += 29
    refused(verifier, sign(ec_key, jku=JKU))  # even a good token: the keys are unknown
    assert fetch.calls == 1
    clock.now += 2  # past the window: fetched again, and now the EHR serves its keys
    fetch.jwks = jwks
    assert verifier.verify(f"Bearer {sign(ec_key, jku=JKU)}", AUD).issuer == ISS
    assert fetch.calls == 2
    assert "signature" in refused(verifier, forged())  # cached keys: no fetch
    assert fetch.calls == 2


def test_a_failed_refetch_for_a_new_kid_leaves_the_known_keys_usable(
    shared_token_ids: TokenIds, jwks: dict[str, Any], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    fetch, clock = CountingFailingFetch(), Clock()
    fetch.jwks = jwks
    verifier = EhrTokenVerifier(
        {ISS: EhrIssuer(jku=[JKU])}, shared_token_ids, fetch=fetch, clock=clock
    )
    verifier.verify(f"Bearer {sign(ec_key, jku=JKU)}", AUD)
    fetch.jwks = None  # the EHR's key server goes down
    clock.now += 31
    for _ in range(5):
        assert "could not fetch" in refused(verifier, sign(ec_key, kid="new", jku=JKU))
    assert fetch.calls == 2
    verifier.verify(f"Bearer {sign(ec_key, jku=JKU)}", AUD)  # its known kid still works


@pytest.mark.parametrize("answers", [False, True], ids=["down", "slow"])
def test_concurrent_calls_share_one_jku_fetch(
    shared_token_ids: TokenIds,
    jwks: dict[str, Any],
    ec_key: ec.EllipticCurvePrivateKey,
    answers: bool,
) -> None:
    fetch = CountingFailingFetch(delay_s=0.3)
    fetch.jwks = jwks if answers else None
    verifier = EhrTokenVerifier({ISS: EhrIssuer(jku=[JKU])}, shared_token_ids, fetch=fetch)
    tokens = [sign(ec_key, jku=JKU) for _ in range(8)]
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def call(token: str) -> None:
        barrier.wait()
        try:
            verifier.verify(f"Bearer {token}", AUD)
            outcomes.append("accepted")
        except AuthError as error:
            outcomes.append(error.message)

    threads = [threading.Thread(target=call, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fetch.calls == 1
    expected = "accepted" if answers else f"could not fetch the issuer's keys from {JKU}"
    assert len(outcomes) == 8 and all(outcome.startswith(expected) for outcome in outcomes)


@pytest.fixture
def jwks_http(jwks: dict[str, Any]) -> Iterator[str]:
    """A real HTTP server for jku fetches: /jwks.json answers the JWKS at once,
    /drip.json a head at once and then a byte of its body every 0.1 s (for 3 s)."""
    body = json.dumps(jwks).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path == "/jwks.json":
                self.wfile.write(body)
                return
            try:
                for byte in body[:30]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the client gave up
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_default_fetch_reads_a_jwks_over_http(
    jwks_http: str,
    jwks: dict[str, Any],
    shared_token_ids: TokenIds,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    assert fetch_jwks(f"{jwks_http}/jwks.json") == jwks
    jku = f"{jwks_http}/jwks.json"
    verifier = EhrTokenVerifier({ISS: EhrIssuer(jku=[jku])}, shared_token_ids)
    assert verifier.verify(f"Bearer {sign(ec_key, jku=jku)}", AUD).issuer == ISS


def test_the_default_fetch_cuts_off_a_server_dripping_its_answer(
    jwks_http: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each byte comes within the per-read timeout; the whole-fetch bound stops it.
    monkeypatch.setattr(ehr_jwt, "JKU_TIMEOUT_S", 0.5)
    with pytest.raises(TimeoutError):
        fetch_jwks(f"{jwks_http}/drip.json")


# -- the sandbox --------------------------------------------------------------------------


def test_the_sandbox_issuer_is_trusted_only_in_the_loud_development_mode(
    shared_token_ids: TokenIds,
    jwks: dict[str, Any],
    ec_key: ec.EllipticCurvePrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FakeJwksServer(jwks)
    token = sign(ec_key, claims(iss=SANDBOX_ISSUER), jku=SANDBOX_JKU)
    off = EhrTokenVerifier({}, shared_token_ids, fetch=server)
    assert "is not trusted" in refused(off, token)
    with caplog.at_level(logging.WARNING, logger="medserve.security"):
        on = EhrTokenVerifier({}, shared_token_ids, sandbox=True, fetch=server)
    assert any("DEVELOPMENT ONLY" in record.getMessage() for record in caplog.records)
    assert "anyone can sign as it" in loud_sandbox_warning()
    assert on.verify(f"Bearer {token}", AUD).issuer == SANDBOX_ISSUER
    assert server.asked == [SANDBOX_JKU]


# -- replays ------------------------------------------------------------------------------


def test_a_replayed_token_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key)
    verifier.verify(f"Bearer {token}", AUD)
    assert "this token (jti) was already used: a replay is refused" in refused(verifier, token)


def test_a_token_replayed_after_exp_but_within_the_clock_skew_is_refused(
    verifier: EhrTokenVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """Still accepted by the skew, so its jti is kept until exp plus the skew."""
    now = int(time.time())
    token = sign(ec_key, claims(iat=now - 320, exp=now - 20))
    verifier.verify(f"Bearer {token}", AUD)
    assert "a replay is refused" in refused(verifier, token)


def test_the_same_token_sent_by_8_threads_is_accepted_exactly_once(
    engine: Engine, jwks_file: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = EhrTokenVerifier({ISS: EhrIssuer(jwks_file=jwks_file)}, TokenIds(engine))
    token = sign(ec_key)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def call() -> None:
        barrier.wait()
        try:
            verifier.verify(f"Bearer {token}", AUD)
            outcomes.append("accepted")
        except AuthError as error:
            outcomes.append(error.message)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (
        sorted(outcomes)
        == ["accepted"] + ["this token (jti) was already used: a replay is refused"] * 7
    )


# -- the replay guard itself, on SQLite and PostgreSQL ------------------------------------


def _rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(EhrTokenIdRow)).scalar_one()


def test_a_token_id_is_new_once_per_issuer_until_it_expires(engine: Engine) -> None:
    now = datetime.now(UTC)
    current = [now]
    token_ids = TokenIds(engine, now=lambda: current[0])
    later = now + timedelta(minutes=5)
    assert token_ids.first_use(ISS, "jti-1", later)
    assert not token_ids.first_use(ISS, "jti-1", later)
    assert token_ids.first_use(OTHER_ISS, "jti-1", later)  # another issuer's namespace
    current[0] = later + timedelta(seconds=1)  # the kept one has expired: taken over
    assert token_ids.first_use(ISS, "jti-1", later + timedelta(minutes=5))
    assert not token_ids.first_use(ISS, "jti-1", later + timedelta(minutes=5))


def test_expired_token_ids_are_purged(engine: Engine) -> None:
    now = datetime.now(UTC)
    clock = Clock()
    token_ids = TokenIds(engine, now=lambda: now, clock=clock)
    token_ids.first_use(ISS, "fresh", now + timedelta(minutes=5))  # first use purges
    with engine.begin() as connection:
        connection.execute(
            EhrTokenIdRow.__table__.insert(),
            [
                {"issuer": ISS, "jti": f"old-{n}", "expires_at": now - timedelta(seconds=n + 1)}
                for n in range(5)
            ],
        )
    assert _rows(engine) == 6
    token_ids.first_use(ISS, "soon", now + timedelta(minutes=5))
    assert _rows(engine) == 7  # not due yet
    clock.now += PURGE_INTERVAL_S
    token_ids.first_use(ISS, "later", now + timedelta(minutes=5))
    assert _rows(engine) == 3
    assert token_ids.purge(now + timedelta(hours=1)) == 3


def test_a_replay_guard_that_cannot_write_fails_closed(tmp_path: Path) -> None:
    unmigrated = open_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(RegistryError, match="the replay guard .* could not be written"):
            TokenIds(unmigrated).first_use(ISS, "jti", datetime.now(UTC))
    finally:
        unmigrated.dispose()
