"""Where models stored before the families package name their LightGBM estimator.

A stored model is a pickle, and a pickle names each class by the module it was defined
in; this path keeps those models loading. New code imports from
``medserve.modeling.families.lightgbm``."""

from medserve.modeling.families.lightgbm import EarlyStoppedLGBMClassifier, small_data_params

__all__ = ["EarlyStoppedLGBMClassifier", "small_data_params"]
