"""The user-facing workflows (train, evaluate, predict, report) as library functions: the
CLI and the HTTP app are thin shells over these."""

from medserve.flows.common import library_versions, load_model, result_json
from medserve.flows.evaluate import EvaluationOutcome, evaluate_stored
from medserve.flows.predict import predict_file
from medserve.flows.report import StoredReport, restore_page, stored_report
from medserve.flows.train import (
    TrainOutcome,
    TrainRequest,
    model_name_from,
    parse_missing,
    train_and_register,
)

__all__ = [
    "EvaluationOutcome",
    "StoredReport",
    "TrainOutcome",
    "TrainRequest",
    "evaluate_stored",
    "library_versions",
    "load_model",
    "model_name_from",
    "parse_missing",
    "predict_file",
    "restore_page",
    "result_json",
    "stored_report",
    "train_and_register",
]
