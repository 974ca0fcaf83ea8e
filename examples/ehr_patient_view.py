"""Call medserve's CDS Hooks service as an EHR does: sign a JWT with the EHR's own key,
discover the services, then send a patient-view call with the prefetch the service asks
for, filled from a patient's FHIR Bundle. Prints the card that comes back.

    # once: make the EHR's key pair; medserve trusts the public half (a JWKS file)
    python examples/ehr_patient_view.py keys --dir ehr
    export MEDSERVE_CDS_ISSUERS='{"https://ehr.example.org": {"jwks_file": "ehr/jwks.json"}}'
    medserve serve --port 8000
    # then, as the EHR, for a patient in a FHIR Bundle:
    python examples/ehr_patient_view.py call http://127.0.0.1:8000 \\
        tests/fixtures/fhir/patient-1.json --dir ehr

Development aid: the EHR's private key is a file next to its JWKS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISSUER = "https://ehr.example.org"
KID = "ehr-1"


def make_keys(directory: Path) -> None:
    """The EHR's ES384 key pair: ``private.pem`` (kept by the EHR), ``jwks.json`` (given
    to medserve)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private = directory / "private.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    public.update(kid=KID, alg="ES384", use="sig")
    (directory / "jwks.json").write_text(json.dumps({"keys": [public]}, indent=1))


def token(directory: Path, audience: str) -> str:
    """A token for one call: ``aud`` the exact URL called, five minutes to live, a fresh
    ``jti`` (medserve refuses one used twice)."""
    key = serialization.load_pem_private_key((directory / "private.pem").read_bytes(), None)
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 300,
              "jti": uuid.uuid4().hex, "sub": "example-ehr"}  # fmt: skip
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})


def prefetch_for(templates: dict[str, str], bundle: dict) -> dict:
    """Each prefetch template's answer from the patient's Bundle: the Patient for a read,
    a searchset Bundle of that resource type for a search."""
    resources = [entry["resource"] for entry in bundle["entry"]]
    filled = {}
    for name, template in templates.items():
        kind = template.split("/", 1)[0].split("?", 1)[0]
        if kind == "Patient" and "?" not in template:
            filled[name] = next(r for r in resources if r["resourceType"] == "Patient")
        else:
            entries = [{"resource": r} for r in resources if r["resourceType"] == kind]
            filled[name] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    return filled


def call(base: str, bundle_path: Path, directory: Path) -> dict:
    """Discovery, then a patient-view call for the Bundle's patient; the service's answer."""
    base = base.rstrip("/")
    bundle = json.loads(bundle_path.read_text())
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    with httpx.Client(timeout=30) as client:
        url = f"{base}/cds-services"
        discovery = client.get(url, headers={"Authorization": f"Bearer {token(directory, url)}"})
        discovery.raise_for_status()
        service = next(s for s in discovery.json()["services"] if s["hook"] == "patient-view")
        url = f"{base}/cds-services/{service['id']}"
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/example", "patientId": patient["id"]},
            "prefetch": prefetch_for(service.get("prefetch", {}), bundle),
        }
        answer = client.post(
            url, json=body, headers={"Authorization": f"Bearer {token(directory, url)}"}
        )
        if answer.status_code != 200:
            raise SystemExit(f"{answer.status_code}: {answer.text}")
        return answer.json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    keys = commands.add_parser("keys", help="make the EHR's key pair and JWKS")
    keys.add_argument("--dir", type=Path, default=Path("ehr"))
    calls = commands.add_parser("call", help="discover, then call patient-view")
    calls.add_argument("base", help="medserve's URL, e.g. http://127.0.0.1:8000")
    calls.add_argument("bundle", type=Path, help="the patient's FHIR Bundle (JSON)")
    calls.add_argument("--dir", type=Path, default=Path("ehr"))
    args = parser.parse_args(argv)
    if args.command == "keys":
        make_keys(args.dir)
        print(f"wrote {args.dir / 'private.pem'} and {args.dir / 'jwks.json'}")
    else:
        print(json.dumps(call(args.base, args.bundle, args.dir), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
