"""CDS Hooks calls as an EHR makes them: the prefetch a service's discovery entry asks
for, filled from a patient's Bundle, and the hook request around it."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from types import ModuleType

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ehr_patient_view.py"


def ehr_example() -> ModuleType:
    """examples/ehr_patient_view.py, the EHR the README's demo runs, as a module."""
    spec = importlib.util.spec_from_file_location("ehr_patient_view", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Each prefetch template's answer from a patient's Bundle, as the example EHR fills it.
prefetch_for = ehr_example().prefetch_for


def hook_call(patient_id: str, prefetch: dict | None = None, **extra: object) -> dict:
    call: dict = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": patient_id},
        **extra,
    }
    if prefetch is not None:
        call["prefetch"] = prefetch
    return call
