"""Preprocessing, model families, cross-validated selection, calibration, threshold."""

from medserve.modeling.families import (
    Family,
    auto_candidates,
    family_names,
    get_family,
    make_pipeline,
    register_family,
    registered_family,
)
from medserve.modeling.model import TrainedModel
from medserve.modeling.threshold import ThresholdRule, choose_threshold
from medserve.modeling.train import TrainOptions, TrainResult, train_model

__all__ = [
    "Family",
    "ThresholdRule",
    "TrainOptions",
    "TrainResult",
    "TrainedModel",
    "auto_candidates",
    "choose_threshold",
    "family_names",
    "get_family",
    "make_pipeline",
    "register_family",
    "registered_family",
    "train_model",
]
