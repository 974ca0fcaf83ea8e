"""CDS Hooks discovery: one service per opted-in model, with prefetch templates derived
from the model's FHIR binding.

An EHR reads ``GET {base}/cds-services`` (``discovery_document``) to learn which services
exist, on which hook each is called, and which FHIR queries it should run beforehand
(``prefetch_templates``) so that the call carries the patient's data with it. The same
templates tell ``request.prefetched_resources`` whether a call's prefetch is complete.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from medserve.core.documents import without_empty
from medserve.errors import ConfigError
from medserve.interop.fhir.binding import CDS_HOOKS, Binding, ConditionSource, ObservationSource

# The hooks a model can be offered on (the binding's opt-in names them). Both carry
# ``context.patientId``.
HOOKS = CDS_HOOKS
PATIENT_TOKEN = "{{context.patientId}}"
# A service id is one URL path segment, spelled as model names are, and fits the 64
# characters the card and feedback tables keep.
_SERVICE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ServiceEntry:
    """One model opted in to CDS Hooks on one hook: the EHR calls it at
    ``{base}/cds-services/{id}``. The same ``id`` may serve several hooks."""

    id: str
    hook: str
    model: str
    title: str
    description: str
    binding: Binding
    usage_requirements: str | None = None

    def __post_init__(self) -> None:
        if not _SERVICE_ID.fullmatch(self.id):
            raise ConfigError(
                f"CDS service id '{self.id}' must be 1-64 lowercase letters, digits, '.', "
                "'_' or '-', starting with a letter or digit (it is a URL path segment), "
                "e.g. 'diabetes-risk'"
            )
        if self.hook not in HOOKS:
            raise ConfigError(
                f"CDS service '{self.id}': hook '{self.hook}' is not supported; "
                f"use one of {', '.join(HOOKS)}"
            )
        if not self.description.strip():
            raise ConfigError(
                f"CDS service '{self.id}' needs a description (the spec requires one)"
            )

    @property
    def prefetch(self) -> dict[str, str]:
        """The prefetch templates this service asks the EHR to satisfy."""
        return prefetch_templates(self.binding, self.hook)


def prefetch_templates(binding: Binding, hook: str) -> dict[str, str]:
    """The FHIR queries, keyed by prefetch key, that fetch what ``binding`` reads for the
    patient in context: ``patient`` (always: age and gender come from it, and it proves
    the patient exists), ``observations`` and ``conditions`` (when the binding reads
    them), each searching by the binding's codes (``system|code``, any one matching)."""
    if hook not in HOOKS:
        raise ConfigError(f"hook '{hook}' is not supported; use one of {', '.join(HOOKS)}")
    templates = {"patient": f"Patient/{PATIENT_TOKEN}"}
    observation_codes = _codes(binding, ObservationSource)
    if observation_codes:
        templates["observations"] = (
            f"Observation?patient={PATIENT_TOKEN}&code={','.join(observation_codes)}"
        )
    condition_codes = _codes(binding, ConditionSource)
    if condition_codes:
        templates["conditions"] = (
            f"Condition?patient={PATIENT_TOKEN}&code={','.join(condition_codes)}"
        )
    return templates


def _codes(binding: Binding, kind: type) -> list[str]:
    """Every code the binding's sources of ``kind`` match, first seen first, once each."""
    codes: dict[str, None] = {}
    for _, source in binding.bound():
        if isinstance(source, kind):
            codes.update(dict.fromkeys(source.codes))
    return list(codes)


def discovery_document(entries: Sequence[ServiceEntry]) -> dict:
    """The body of ``GET {base}/cds-services``: ``{"services": [...]}``, each service with
    its hook, title, description, id and prefetch templates; no null or empty members (a
    service without a title or templates omits them). No services: an empty list, as the
    spec asks."""
    seen: set[tuple[str, str]] = set()
    services = []
    for entry in entries:
        if (entry.id, entry.hook) in seen:
            raise ConfigError(
                f"CDS service '{entry.id}' is listed twice for hook '{entry.hook}'; "
                "give each model its own service id"
            )
        seen.add((entry.id, entry.hook))
        services.append(
            without_empty(
                {
                    "hook": entry.hook,
                    "title": entry.title,
                    "description": entry.description,
                    "id": entry.id,
                    "prefetch": entry.prefetch,
                    "usageRequirements": entry.usage_requirements,
                }
            )
        )
    return {"services": services}
