"""Where models stored before the families package name their PyTorch estimator.

A stored model is a pickle, and a pickle names each class by the module it was defined
in; this path keeps those models loading. New code imports from
``medserve.modeling.families.mlp``."""

from medserve.modeling.families.mlp import TorchMLPClassifier

__all__ = ["TorchMLPClassifier"]
