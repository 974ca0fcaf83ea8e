"""The user-facing workflows (train, evaluate, predict, report) as library functions: the
CLI and the HTTP app are thin shells over these."""

from typing import TYPE_CHECKING

from medserve.core.lazy import lazy_attributes

if TYPE_CHECKING:
    from medserve.flows.common import library_versions, load_model, result_json
    from medserve.flows.evaluate import EvaluationOutcome, evaluate_stored
    from medserve.flows.predict import (
        predict_file,
        refuse_unseen_levels,
        risk_scores,
        score_frame,
    )
    from medserve.flows.report import StoredReport, restore_page, stored_report
    from medserve.flows.tables import Source, Table, read_source
    from medserve.flows.train import (
        TrainOutcome,
        TrainRequest,
        model_name_from,
        parse_missing,
        train_and_register,
    )

# Where each name lives. Loaded on first use (PEP 562), so that a caller of one flow (the
# server reads stored reports) does not import every other (training, evaluation).
_HOMES = {
    "library_versions": ".common",
    "load_model": ".common",
    "result_json": ".common",
    "EvaluationOutcome": ".evaluate",
    "evaluate_stored": ".evaluate",
    "predict_file": ".predict",
    "refuse_unseen_levels": ".predict",
    "risk_scores": ".predict",
    "score_frame": ".predict",
    "StoredReport": ".report",
    "restore_page": ".report",
    "stored_report": ".report",
    "Source": ".tables",
    "Table": ".tables",
    "read_source": ".tables",
    "TrainOutcome": ".train",
    "TrainRequest": ".train",
    "model_name_from": ".train",
    "parse_missing": ".train",
    "train_and_register": ".train",
}


__getattr__ = lazy_attributes("medserve.flows", _HOMES)

__all__ = [
    "EvaluationOutcome",
    "Source",
    "StoredReport",
    "Table",
    "TrainOutcome",
    "TrainRequest",
    "evaluate_stored",
    "library_versions",
    "load_model",
    "model_name_from",
    "parse_missing",
    "predict_file",
    "read_source",
    "refuse_unseen_levels",
    "restore_page",
    "result_json",
    "risk_scores",
    "score_frame",
    "stored_report",
    "train_and_register",
]
