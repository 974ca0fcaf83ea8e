"""Warnings raised while a model is fitted or measured become notices on the result and in
the report, never silence: a model that did not converge says so.

``warnings.catch_warnings`` changes process-wide state, so the block it guards runs on one
thread at a time (training and evaluation are CLI work, not request handling).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

# Categories Python itself hides unless asked (they are for developers, not about a model).
HIDDEN_BY_DEFAULT: tuple[type[Warning], ...] = (
    DeprecationWarning,
    PendingDeprecationWarning,
    ImportWarning,
    ResourceWarning,
)
# Library messages about medserve's own code or a library's own tools, not about the user's
# model: (category, module, message) left out, each for the reason beside it.
NOT_ABOUT_THE_MODEL: tuple[tuple[type[Warning], str, str], ...] = (
    # The logistic family's LogisticRegressionCV: defaults of l1_ratios and of its fitted
    # attributes change in scikit-learn 1.10 (the family should pass them).
    (FutureWarning, r"sklearn\.linear_model\._logistic", ""),
    # The lightgbm family's fit(eval_set=...) becomes eval_X / eval_y.
    (FutureWarning, r"lightgbm\.sklearn", ""),
    # interpret's plots do not draw missing values; medserve does not use them, and the
    # report says how the EBM handles missing values.
    (UserWarning, r"interpret\.glassbox\._ebm\._ebm", "Missing values detected"),
)
MESSAGE_CHARS = 240


@contextmanager
def warnings_as_notices(activity: str, notices: list[str]) -> Iterator[None]:
    """Record every warning raised in the block and add one notice per kind to ``notices``
    (what raised it, how often, while doing ``activity``), e.g.
    "sklearn: 5× ConvergenceWarning while training: lbfgs failed to converge …"."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in HIDDEN_BY_DEFAULT:
            warnings.filterwarnings("ignore", category=category)
        for category, module, message in NOT_ABOUT_THE_MODEL:
            warnings.filterwarnings("ignore", message, category, module)
        yield
    notices.extend(summarise(caught, activity))


def summarise(caught: list[warnings.WarningMessage], activity: str) -> list[str]:
    """One line per distinct (source, category, message), in order of first appearance."""
    counts = Counter(
        (_source(Path(w.filename)), w.category.__name__, _one_line(str(w.message))) for w in caught
    )
    return [
        f"{source}: {count}× {category} while {activity}: {message}"
        for (source, category, message), count in counts.items()
    ]


def _one_line(message: str) -> str:
    text = re.sub(r"\s+", " ", message).strip()
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


@lru_cache(maxsize=256)
def _source(path: Path) -> str:
    """The top-level package a warning came from (``sklearn`` for
    ``…/sklearn/linear_model/_logistic.py``), or the file's name outside a package."""
    top = path.stem
    directory = path.parent
    while (directory / "__init__.py").is_file():
        top = directory.name
        directory = directory.parent
    return top
