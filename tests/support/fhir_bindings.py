"""The Pima diabetes model bound to LOINC (examples/pima.fhir.yaml), stored the way
`medserve fhir bind --file` stores it, and the Synthea patients it is tried on."""

from __future__ import annotations

import json
from pathlib import Path

from medserve.config import Settings
from medserve.flows.fhir_binding import store
from medserve.storage import Registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
PIMA_BINDING = (EXAMPLES / "pima.fhir.yaml").read_text()


def patient_bundle(number: int) -> dict:
    """Synthea patient ``number`` (1-3) as a transaction Bundle (tests/fixtures/fhir)."""
    return json.loads((FIXTURES / f"patient-{number}.json").read_text())


def patient_id(bundle: dict) -> str:
    return next(
        e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )



def bind_pima(settings: Settings, directory: Path, text: str = PIMA_BINDING) -> None:
    path = directory / "pima.fhir.yaml"
    path.write_text(text)
    with Registry(settings) as registry:
        store(registry, "pima", path)
