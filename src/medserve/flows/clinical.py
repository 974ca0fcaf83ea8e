"""The clinical channels' one use case: a patient's FHIR record, read through the model
version's binding, scored by the same Predictor REST uses, and said as a RiskAssessment
(FHIR) or a card (CDS Hooks). The same model, given the same patient, gives the same
risk on every channel: the record the binding reads is what REST would be sent.

A patient is named in the audit trail only by a keyed pseudonym (``PatientPseudonyms``:
HMAC-SHA256 under its own purpose key, so it links one patient's calls in the trail and
nothing else)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from medserve.data.schema import Schema
from medserve.deid.pseudonym import pseudonym
from medserve.errors import (
    ConfigError,
    ExplanationUnavailable,
    IntegrityError,
    ModelNotFound,
    ModelUnavailable,
)
from medserve.explain.summary import Factor, top_factors
from medserve.interop.cds_hooks.cards import override_reasons, risk_card
from medserve.interop.cds_hooks.discovery import ServiceEntry
from medserve.interop.fhir.binding import Binding
from medserve.interop.fhir.extract import PatientRecord
from medserve.interop.fhir.provenance import with_feature_sources
from medserve.interop.fhir.risk_assessment import checked, risk_assessment
from medserve.scoring.catalog import ServedModel
from medserve.scoring.predictor import Prediction, Predictor
from medserve.storage.bindings import BindingStore
from medserve.storage.registry import ModelVersion

log = logging.getLogger("medserve.http")
PSEUDONYM_PURPOSE = "audit-patient"
# The coded reasons a clinician may give for overriding a card (monitoring counts them).
OVERRIDE_REASON_SYSTEM = "https://medserve.dev/cds-hooks/override-reason"


class PatientPseudonyms:
    """The keyed pseudonym the audit trail names a patient by (never the id)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, patient_id: str) -> str:
        return pseudonym(self._key, patient_id, "record_id")


class Bindings:
    """Each served version's FHIR binding at this service's site, checked against the
    version's schema. One read is trusted for ``refresh_s`` seconds, so a binding stored
    while the service runs (`medserve fhir bind --file`) is used within that time."""

    def __init__(self, store: BindingStore, site: str, refresh_s: float = 2.0) -> None:
        self.store = store
        self.site = site
        self._refresh_s = refresh_s
        self._found: dict[tuple[str, int], tuple[float, Binding | None]] = {}
        self._lock = threading.Lock()

    def of(self, served: ServedModel) -> Binding:
        """The binding ``served`` is read through, checked against its schema; ConfigError
        naming how to make one when it has none at this site."""
        version = served.version
        key = (version.name, version.version)
        with self._lock:
            found = self._found.get(key)
        if found is not None and time.monotonic() - found[0] < self._refresh_s:
            binding = found[1]
        else:
            document = self.store.get(version.name, version.version, self.site)
            binding = None if document is None else Binding.model_validate(document)
            if binding is not None:
                binding.check_against(served.schema)
            with self._lock:
                self._found[key] = (time.monotonic(), binding)
        if binding is None:
            raise ConfigError(
                f"model '{served.version.name}' version {served.version.version} has no FHIR "
                f"binding at site '{self.site}': propose one with `medserve fhir bind "
                f"{served.version.name}`, edit it, and store it"
            )
        return binding


@dataclass(frozen=True)
class Assessment:
    """One patient scored: the answer REST would give for the record the binding read,
    with the bands it was named by and its top factors under their clinical labels."""

    version: ModelVersion
    schema: Schema
    patient: PatientRecord
    prediction: Prediction
    band_index: int
    n_bands: int
    raising: list[Factor]
    lowering: list[Factor]
    prediction_id: str

    @property
    def missing(self) -> dict[str, str]:
        """Why each missing input is missing, each under its clinical label."""
        labels = {spec.name: spec.shown_name for spec in self.schema.columns}
        return {labels.get(name, name): why for name, why in self.patient.missing.items()}


def nothing_read(patient: PatientRecord, binding: Binding) -> bool:
    """True when none of the binding's features has a value in the patient's record: a
    risk from nothing is the model's guess for an unknown patient, no advice for this one."""
    return all(patient.record.get(name) is None for name, _ in binding.bound())


def assess(predictor: Predictor, served: ServedModel, patient: PatientRecord) -> Assessment:
    """Score ``patient``'s record (validated as any REST record is) and explain it when the
    model can be; a model that cannot be explained still answers, without factors."""
    records = [patient.record]
    try:
        (prediction,) = predictor.predict(served, records, explain=True)
    except ExplanationUnavailable:
        (prediction,) = predictor.predict(served, records)
    raising: list[Factor] = []
    lowering: list[Factor] = []
    if prediction.explanation is not None:
        contributions = prediction.explanation.contributions
        raising, lowering = top_factors(
            list(contributions), list(contributions.values()), patient.record, served.schema
        )
    bands = predictor.bands(served)
    return Assessment(
        version=served.version,
        schema=served.schema,
        patient=patient,
        prediction=prediction,
        band_index=bands.index(prediction.risk),
        n_bands=len(bands.labels),
        raising=raising,
        lowering=lowering,
        prediction_id=prediction.prediction_id,
    )


def outcome_text(schema: Schema, version: ModelVersion) -> str:
    """What the model predicts: its event as training defined it ("Outcome = 1")."""
    if schema.outcome is not None:
        return f"{schema.outcome.describe()} (the event model '{version.name}' predicts)"
    return f"the event model '{version.name}' predicts"


def assessment_resource(assessment: Assessment, *, occurrence: datetime) -> dict:
    """The FHIR R4 RiskAssessment for ``assessment``, with which resource fed which
    feature (interop/fhir/provenance.py), checked."""
    prediction, version, patient = assessment.prediction, assessment.version, assessment.patient
    resource = risk_assessment(
        patient_ref=f"Patient/{patient.patient_id}",
        risk=prediction.risk,
        band=prediction.band,
        band_index=assessment.band_index,
        n_bands=assessment.n_bands,
        model=version.name,
        version=version.version,
        threshold=version.threshold,
        basis=patient.basis(),
        raising=assessment.raising,
        lowering=assessment.lowering,
        missing=assessment.missing,
        occurrence=occurrence,
        outcome_text=outcome_text(assessment.schema, version),
        prediction_id=assessment.prediction_id,
    )
    return checked(
        with_feature_sources(resource, list(patient.record), patient.sources, patient.missing)
    )


def assessment_card(
    assessment: Assessment, service: ServiceEntry, *, report_url: str | None
) -> dict:
    """The CDS Hooks card for ``assessment``; its uuid is the prediction's id."""
    prediction, version = assessment.prediction, assessment.version
    return risk_card(
        risk=prediction.risk,
        band=prediction.band,
        band_index=assessment.band_index,
        n_bands=assessment.n_bands,
        threshold=version.threshold,
        model=version.name,
        version=version.version,
        model_title=service.title,
        raising=assessment.raising,
        lowering=assessment.lowering,
        missing=assessment.missing,
        report_url=report_url,
        card_uuid=assessment.prediction_id,
        override_reasons=override_reasons(OVERRIDE_REASON_SYSTEM),
    )


def cds_services(
    names: list[str],
    served: Callable[[str], ServedModel],
    bindings: Bindings,
) -> list[ServiceEntry]:
    """One service per hook of each model (by name: the version it serves, the one a call
    scores) whose binding opts it in (``cds``)."""
    entries = []
    for name in sorted(set(names)):
        try:
            serving = served(name)
            version = serving.version
            binding = bindings.of(serving)
        except (ConfigError, ModelNotFound, ModelUnavailable, IntegrityError):
            continue  # no binding, or a version that cannot be served: not offered
        if binding.cds is None:
            continue
        for hook in binding.cds.hooks:
            title = binding.cds.title or f"{version.name} risk"
            try:
                entry = ServiceEntry(
                    id=service_id(version.name, hook),
                    hook=hook,
                    model=version.name,
                    title=title,
                    description=binding.cds.description
                    or f"The risk medserve model '{version.name}' gives the patient, with "
                    "the inputs that moved it most.",
                    binding=binding,
                )
            except ConfigError as error:  # e.g. a name too long for a service id
                log.warning("CDS service not offered", extra={"fields": {"why": error.message}})
                continue
            entries.append(entry)
    return entries


def service_id(model: str, hook: str) -> str:
    """``diabetes`` for patient-view, ``diabetes-discharge`` for encounter-discharge."""
    return model if hook == "patient-view" else f"{model}-{hook.removeprefix('encounter-')}"
