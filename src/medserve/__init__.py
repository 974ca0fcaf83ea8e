"""medserve: clinical risk models as a service.

The Python API (``medserve.api``): ``train``, ``load`` and the ``Model`` they return, with
the errors they raise. Loaded on first use (PEP 562), so ``import medserve`` stays light."""


from medserve.core.lazy import lazy_attributes

__version__ = "0.1.0"

# Where each public name lives. No TYPE_CHECKING imports here: the import contracts would
# read them as every package importing the API through ``medserve``; annotate with
# ``from medserve.api import Model``.
_HOMES = {
    "train": "medserve.api",
    "load": "medserve.api",
    "Model": "medserve.api",
    "Explanation": "medserve.api",
    "EvaluationOutcome": "medserve.api",
    "MedserveError": "medserve.errors",
    "DataError": "medserve.errors",
    "SchemaError": "medserve.errors",
    "ConfigError": "medserve.errors",
    "ModelNotFound": "medserve.errors",
    "IntegrityError": "medserve.errors",
    "RegistryError": "medserve.errors",
    "ExplanationUnavailable": "medserve.errors",
}


__getattr__ = lazy_attributes("medserve", _HOMES)
__all__ = sorted(_HOMES) + ["__version__"]
