"""The README's EHR demo, as a newcomer follows it: the binding proposed for the Pima
model with a CDS opt-in, edited as the README edits it (a title, ten years of lookback),
stored, and examples/ehr_patient_view.py calling a real server as the EHR."""

from __future__ import annotations

from pathlib import Path

import yaml

from medserve.flows.fhir_binding import propose, store
from medserve.storage import Registry
from support.cds_calls import ehr_example

ROOT = Path(__file__).resolve().parents[2]
PATIENT = ROOT / "tests" / "fixtures" / "fhir" / "patient-1.json"


def test_the_readme_demo_returns_a_card(start_service, tmp_path):
    ehr = ehr_example()
    ehr.make_keys(tmp_path / "ehr")
    trust = {ehr.ISSUER: {"jwks_file": str(tmp_path / "ehr" / "jwks.json")}}
    service = start_service(server=True, cds_issuers=trust)
    with Registry(service.settings) as registry:
        proposal = propose(registry, "pima", site="default", cds_hooks=["patient-view"])
    text = proposal.binding.to_yaml()
    text = text.replace("  title: null", "  title: Diabetes risk")
    text = text.replace("lookback_days: 365.0", "lookback_days: 3650")
    (tmp_path / "pima.fhir.yaml").write_text(text)
    with Registry(service.settings) as registry:
        store(registry, "pima", tmp_path / "pima.fhir.yaml")
    assert yaml.safe_load(text)["features"]["Pregnancies"] is None
    (card,) = ehr.call(service.url, PATIENT, tmp_path / "ehr")["cards"]
    assert card["summary"].startswith("Diabetes risk ")
    assert "Age = " in card["detail"] and "BMI = 30.2" in card["detail"]
    assert card["source"]["url"] == f"{service.url}/v1/models/pima/report"
