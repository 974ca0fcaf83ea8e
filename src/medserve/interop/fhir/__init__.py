"""FHIR R4: bindings from a patient's record to a model's features, Bundles read into
records with their provenance, and the RiskAssessment a prediction answers with."""
