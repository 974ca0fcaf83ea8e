"""Preprocessing, model families, cross-validated selection, calibration, threshold."""

from medserve.modeling.families import AUTO_CANDIDATES, FAMILIES, make_pipeline
from medserve.modeling.model import TrainedModel
from medserve.modeling.threshold import ThresholdRule, choose_threshold
from medserve.modeling.train import TrainOptions, TrainResult, train_model

__all__ = [
    "AUTO_CANDIDATES",
    "FAMILIES",
    "ThresholdRule",
    "TrainOptions",
    "TrainResult",
    "TrainedModel",
    "choose_threshold",
    "make_pipeline",
    "train_model",
]
