"""Which resource fed which feature, said inside the RiskAssessment: one extension per
feature of the model, naming the resources its value came from, or why it is missing.

    {"url": FEATURE_SOURCE,
     "extension": [{"url": "feature", "valueString": "Glucose"},
                   {"url": "source", "valueReference": {"reference": "Observation/17"}}]}
    {"url": FEATURE_SOURCE,
     "extension": [{"url": "feature", "valueString": "Insulin"},
                   {"url": "missing", "valueString": "no Observation with ... in 365 days"}]}

The value itself is not repeated here: it is in the resource referenced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

FEATURE_SOURCE = "https://medserve.dev/fhir/StructureDefinition/feature-source"


def feature_sources(
    features: Sequence[str],
    sources: Mapping[str, Sequence[str]],
    missing: Mapping[str, str],
) -> list[dict]:
    """One ``feature-source`` extension per feature, in the model's order."""
    extensions = []
    for feature in features:
        parts: list[dict] = [{"url": "feature", "valueString": feature}]
        parts += [
            {"url": "source", "valueReference": {"reference": reference}}
            for reference in sources.get(feature, ())
        ]
        if feature in missing:
            parts.append({"url": "missing", "valueString": missing[feature]})
        extensions.append({"url": FEATURE_SOURCE, "extension": parts})
    return extensions


def with_feature_sources(
    resource: dict,
    features: Sequence[str],
    sources: Mapping[str, Sequence[str]],
    missing: Mapping[str, str],
) -> dict:
    """``resource`` with the extensions added (a copy; the resource's own kept first)."""
    found = dict(resource)
    found["extension"] = [
        *resource.get("extension", []),
        *feature_sources(features, sources, missing),
    ]
    return found
