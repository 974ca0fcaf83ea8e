"""The model families, one module each, and the registry the rest of medserve asks.

    from medserve.modeling.families import get_family
    family = get_family(model.family)      # ConfigError naming the choices if unknown
    family.build(schema, seed=0)           # the unfitted pipeline
    family.compile(pipeline, encoding)     # the fast path, or None
    family.attribution(model)              # explanations, or None

A new family is one module with a class that implements ``Family`` (see base.py), added
to ``BUILTIN`` below, or registered from outside with ``register_family``.
A family of models trained elsewhere also implements ``Importable`` (``open_import``):
``medserve models import NAME --<its name> PATH --schema FILE`` then takes it.
"""

from medserve.modeling.families import (
    blend,
    ebm,
    lightgbm,
    logistic,
    mlp,
    onnx,
    text,
    transformer,
)
from medserve.modeling.families.base import (
    AUTO,
    Attribution,
    Attributor,
    Component,
    Composite,
    EncodedInput,
    Family,
    Freezable,
    Importable,
    NativeMissing,
    RawRisk,
    Tunable,
    auto_candidates,
    encoded_background,
    encoded_parts,
    estimator_of,
    family_names,
    find_family,
    first_value,
    get_family,
    make_pipeline,
    matrix_attributor,
    reads_text,
    refit_twin,
    register_family,
    registered_family,
    unregister_family,
)
from medserve.modeling.families.blend import NAME as BLEND
from medserve.modeling.families.blend import (
    Member,
    cross_fitted_risk,
    fit_weights,
    weighted_blend,
)
from medserve.modeling.families.imported import imported_pipeline

# In this order: the leaderboard of `--model auto` lists its candidates so.
BUILTIN: tuple[Family, ...] = (
    logistic.FAMILY,
    lightgbm.FAMILY,
    mlp.FAMILY,
    ebm.FAMILY,
    text.FAMILY,
    onnx.FAMILY,
    transformer.FAMILY,
    blend.FAMILY,
)
for _family in BUILTIN:
    register_family(_family)

__all__ = [
    "AUTO",
    "BLEND",
    "Member",
    "cross_fitted_risk",
    "fit_weights",
    "weighted_blend",
    "BUILTIN",
    "Attribution",
    "Attributor",
    "Component",
    "Composite",
    "EncodedInput",
    "Family",
    "Freezable",
    "Importable",
    "NativeMissing",
    "RawRisk",
    "Tunable",
    "auto_candidates",
    "encoded_background",
    "encoded_parts",
    "estimator_of",
    "family_names",
    "find_family",
    "first_value",
    "get_family",
    "imported_pipeline",
    "make_pipeline",
    "matrix_attributor",
    "refit_twin",
    "register_family",
    "reads_text",
    "registered_family",
    "unregister_family",
]
