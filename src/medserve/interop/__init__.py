"""Talking to EHRs: FHIR R4 and CDS Hooks, as translations with no web framework."""
