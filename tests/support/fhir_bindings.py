"""The Pima diabetes model bound to LOINC, as the README's demo binds it, and stored the
way `medserve fhir bind --file` stores it."""

from __future__ import annotations

from pathlib import Path

from medserve.config import Settings
from medserve.flows.fhir_binding import store
from medserve.storage import Registry

PIMA_BINDING = """\
model: pima
features:
  Glucose:
    kind: observation
    codes: [http://loinc.org|2345-7, http://loinc.org|2339-0]
    unit: mg/dL
    lookback_days: 3650
  BloodPressure:
    kind: observation
    codes: [http://loinc.org|85354-9]
    component: [http://loinc.org|8462-4]
    unit: mm[Hg]
    lookback_days: 3650
  BMI:
    kind: observation
    codes: [http://loinc.org|39156-5]
    unit: kg/m2
    lookback_days: 3650
  Age: {kind: age}
  Pregnancies: null
  SkinThickness: null
  Insulin: null
  DiabetesPedigreeFunction: null
cds:
  hooks: [patient-view]
  title: Diabetes risk
"""


def bind_pima(settings: Settings, directory: Path, text: str = PIMA_BINDING) -> None:
    path = directory / "pima.fhir.yaml"
    path.write_text(text)
    with Registry(settings) as registry:
        store(registry, "pima", path)
