"""CDS Hooks latency: a patient-view call with prefetch, as an EHR makes it, against
`medserve serve` on loopback, next to the in-process floors it is built on.

Trains the Pima diabetes model (LightGBM) through the CLI in a temporary MEDSERVE_HOME,
stores the README's LOINC binding with `medserve fhir bind --file`, trusts an EHR key
this script makes (ES384, a JWKS file), starts `medserve serve` as a subprocess and
measures, for the three Synthea patients of tests/fixtures/fhir in turn:

- in process: reading the prefetch through the binding (`read_resources`), scoring and
  explaining the record (`assess`: the Predictor REST uses), and building the card;
- over HTTP: the whole call (JWT verified, jti recorded, prefetch read, scored,
  explained, card logged, audited), one keep-alive client, tokens signed beforehand.

The spec asks a service to answer in about 500 ms.

    .venv/bin/python bench/cds_hooks.py                # 300 calls
    .venv/bin/python bench/cds_hooks.py --calls 1000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

import medserve

ROOT = Path(__file__).resolve().parents[1]
PIMA = Path(medserve.__file__).parent / "datasets" / "pima_diabetes.csv"
FIXTURES = ROOT / "tests" / "fixtures" / "fhir"
ISSUER = "https://ehr.example.org"
BINDING = (ROOT / "examples" / "pima.fhir.yaml").read_text()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ehr_example() -> ModuleType:
    """examples/ehr_patient_view.py: how an EHR fills the prefetch."""
    spec = importlib.util.spec_from_file_location("ehr", ROOT / "examples" / "ehr_patient_view.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prefetch_for = ehr_example().prefetch_for


def patients() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(FIXTURES.glob("patient-*.json"))]


def patient_id(bundle: dict) -> str:
    return next(
        e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )


def row(name: str, times_s: list[float]) -> str:
    ms = [t * 1000 for t in times_s]
    return (
        f"| {name} | {len(ms)} | {statistics.median(ms):.2f} | {percentile(ms, 0.99):.2f} "
        f"| {max(ms):.2f} |"
    )


def in_process(home: Path, calls: int) -> list[str]:
    """The floors: the same parts the route calls, without HTTP, JWT or audit."""
    os.environ["MEDSERVE_HOME"] = str(home)
    from medserve.config import Settings
    from medserve.flows.clinical import Bindings, assess, assessment_card, cds_services
    from medserve.interop.cds_hooks.discovery import prefetch_templates
    from medserve.interop.cds_hooks.request import parse_hook_request, prefetched_resources
    from medserve.interop.fhir.extract import read_resources
    from medserve.scoring.catalog import ModelCatalog
    from medserve.scoring.predictor import Predictor
    from medserve.storage import Registry
    from medserve.storage.bindings import BindingStore

    settings = Settings()
    registry = Registry(settings)
    catalog = ModelCatalog(registry)
    predictor = Predictor(settings.bands_for, settings.max_records)
    bindings = Bindings(BindingStore(registry.engine), settings.fhir_site)
    (service,) = cds_services(["pima"], catalog.get, bindings)
    served = catalog.get("pima")
    binding = bindings.of(served)
    templates = prefetch_templates(binding, "patient-view")
    bodies = [
        {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": patient_id(b)},
            "prefetch": prefetch_for(templates, b),
        }
        for b in patients()
    ]
    read_s, assess_s, card_s, whole_s = [], [], [], []
    for i in range(calls):
        body = bodies[i % len(bodies)]
        start = time.perf_counter()
        request = parse_hook_request(body, service)
        resources = prefetched_resources(request, templates)
        patient = read_resources(
            resources, binding, at=datetime.now(UTC), patient_id=request.context["patientId"]
        )
        read_done = time.perf_counter()
        assessment = assess(predictor, served, patient)
        assess_done = time.perf_counter()
        assessment_card(assessment, service, report_url="http://127.0.0.1/report")
        end = time.perf_counter()
        read_s.append(read_done - start)
        assess_s.append(assess_done - read_done)
        card_s.append(end - assess_done)
        whole_s.append(end - start)
    registry.close()
    return [
        row("in process: parse call + read prefetch through the binding", read_s),
        row("in process: score + explain (assess)", assess_s),
        row("in process: build the card", card_s),
        row("in process: all of it (the floor)", whole_s),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    medserve_cli = str(Path(sys.executable).with_name("medserve"))
    work = Path(tempfile.mkdtemp(prefix="medserve-cds-bench-"))
    home = work / "home"
    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    public.update(kid="k1", alg="ES384", use="sig")
    (work / "jwks.json").write_text(json.dumps({"keys": [public]}))
    (work / "binding.yaml").write_text(BINDING)
    env = {
        **os.environ,
        "MEDSERVE_HOME": str(home),
        "MEDSERVE_CDS_ISSUERS": json.dumps({ISSUER: {"jwks_file": str(work / "jwks.json")}}),
    }
    quiet = {"env": env, "check": True, "capture_output": True}
    subprocess.run(
        [medserve_cli, "train", str(PIMA), "--target", "Outcome", "--name", "pima",
         "--model", "lightgbm", "--cv", "3"], **quiet,
    )  # fmt: skip
    subprocess.run(
        [medserve_cli, "fhir", "bind", "pima", "--file", str(work / "binding.yaml")], **quiet
    )
    floors = in_process(home, args.calls)
    port = free_port()
    server = subprocess.Popen(
        [medserve_cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level",
         "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(200):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)

            def token(path: str) -> str:
                now = int(time.time())
                claims = {"iss": ISSUER, "aud": base + path, "exp": now + 300, "iat": now,
                          "jti": uuid.uuid4().hex}  # fmt: skip
                return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "k1"})

            discovery = client.get(
                "/cds-services", headers={"Authorization": f"Bearer {token('/cds-services')}"}
            ).json()
            (entry,) = discovery["services"]
            path = f"/cds-services/{entry['id']}"
            bodies = [
                {
                    "hook": "patient-view",
                    "hookInstance": str(uuid.uuid4()),
                    "context": {"userId": "Practitioner/1", "patientId": patient_id(b)},
                    "prefetch": prefetch_for(entry["prefetch"], b),
                }
                for b in patients()
            ]
            tokens = [token(path) for _ in range(args.calls + 20)]
            for i in range(20):  # warm-up: the model loaded, the connection open
                client.post(
                    path, json=bodies[i % 3], headers={"Authorization": f"Bearer {tokens[i]}"}
                )
            times = []
            for i in range(args.calls):
                headers = {"Authorization": f"Bearer {tokens[20 + i]}"}
                start = time.perf_counter()
                answer = client.post(path, json=bodies[i % 3], headers=headers)
                times.append(time.perf_counter() - start)
                if answer.status_code != 200:
                    raise SystemExit(f"call {i}: {answer.status_code} {answer.text[:300]}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"CDS Hooks patient-view with prefetch, Pima LightGBM, {os.cpu_count()} CPUs")
    print("| path | calls | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for line in floors:
        print(line)
    print(row("over HTTP: the whole call (JWT, jti, audit, card log)", times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
