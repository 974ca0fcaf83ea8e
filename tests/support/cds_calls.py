"""CDS Hooks calls as an EHR makes them: the prefetch a service's discovery entry asks
for, filled from a patient's Bundle, and the hook request around it."""

from __future__ import annotations

import uuid


def prefetch_for(templates: dict[str, str], bundle: dict) -> dict[str, dict]:
    """Each template's answer from ``bundle``: the Patient for ``Patient/{{...}}``, a
    searchset Bundle of that resource type for a search."""
    resources = [entry["resource"] for entry in bundle["entry"]]
    filled = {}
    for key, template in templates.items():
        kind = template.split("/", 1)[0].split("?", 1)[0]
        if kind == "Patient" and "?" not in template:
            filled[key] = next(r for r in resources if r["resourceType"] == "Patient")
            continue
        matches = [r for r in resources if r["resourceType"] == kind]
        filled[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "entry": [{"resource": r} for r in matches],
        }
    return filled


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
