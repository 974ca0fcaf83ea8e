"""An EHR as CDS Hooks tests need one: its own signing key (the test makes it; no identity
provider exists here), the JWKS file medserve is told to trust, and signed tokens."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISSUER = "https://ehr.example.org"
KID = "ehr-key-1"


class Ehr:
    """Signs CDS Hooks tokens with an ES384 key; ``jwks_file`` holds its public key."""

    def __init__(self, directory: Path, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        self.key = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid=KID, use="sig", alg="ES384")
        self.jwks_file = directory / "ehr-jwks.json"
        self.jwks_file.write_text(json.dumps({"keys": [public]}))

    def trust(self, fhir_servers: tuple[str, ...] = ()) -> dict:
        """The MEDSERVE_CDS_ISSUERS value that trusts this EHR (and lets medserve fetch
        from ``fhir_servers`` for it)."""
        return {self.issuer: {"jwks_file": str(self.jwks_file), "fhir_servers": list(fhir_servers)}}

    def token(self, audience: str, **claims: object) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": audience,
            "exp": now + 300,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "sub": "ehr-client",
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="ES384", headers={"kid": KID})

    def headers(self, audience: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(audience)}"}
