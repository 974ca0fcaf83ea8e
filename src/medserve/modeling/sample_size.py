"""The minimum sample size for developing a prediction model of a binary outcome.

Riley RD, Ensor J, Snell KIE, et al. Calculating the sample size required for developing a
clinical prediction model. BMJ 2020;368:m441 (the criteria of the ``pmsampsize`` package):

1. expected uniform shrinkage of at least S = 0.9:
   n = p / ((S − 1) · ln(1 − R²cs / S));
2. a small optimism (δ = 0.05) in the apparent Nagelkerke R²: the same formula with
   S_VH = R²cs / (R²cs + δ · max R²cs);
3. the overall risk estimated within ±0.05: n = (1.96 / 0.05)² · φ(1 − φ);

where p is the number of candidate predictor parameters, φ the outcome prevalence,
R²cs the anticipated Cox-Snell R² and max R²cs = 1 − (φ^φ (1 − φ)^(1−φ))². The minimum is
the largest of the three. Training uses it to prefer simpler models when data fall short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medserve.data.schema import Schema
from medserve.errors import ConfigError, DataError

TARGET_SHRINKAGE = 0.9
OPTIMISM_DELTA = 0.05
RISK_MARGIN = 0.05
# With no earlier model's R² to go on, Riley et al. suggest assuming R²cs is 15% of its
# maximum (a Nagelkerke R² of 0.15), a conservative choice for most clinical outcomes.
DEFAULT_R2_SHARE = 0.15
DEFAULT_R2_SOURCE = (
    "assumed: 15% of the maximum R²cs (the conservative default of BMJ 2020;368:m441)"
)


@dataclass(frozen=True)
class Criterion:
    """One of Riley et al.'s criteria and the rows it needs."""

    key: str
    description: str
    minimum_rows: int


@dataclass(frozen=True)
class SampleSizeCheck:
    """Riley et al.'s minimum sample size against the rows and events at hand."""

    n_parameters: int
    prevalence: float
    r2_cs: float
    r2_source: str
    max_r2_cs: float
    criteria: tuple[Criterion, ...]
    minimum_rows: int
    minimum_events: int
    n_rows: int
    events: int
    meets: bool

    @property
    def events_per_parameter(self) -> float:
        return self.events / self.n_parameters

    @property
    def minimum_events_per_parameter(self) -> float:
        return self.minimum_events / self.n_parameters

    def shortfall_notice(self) -> str | None:
        """One sentence saying what falls short, or None when the data suffice."""
        if self.meets:
            return None
        worst = max(self.criteria, key=lambda criterion: criterion.minimum_rows)
        return (
            f"Sample size: a model with {self.n_parameters} candidate predictor parameters "
            f"needs at least {self.minimum_rows:,} rows with {self.minimum_events:,} events "
            f"(BMJ 2020;368:m441: {worst.description}, anticipated Cox-Snell R² "
            f"{self.r2_cs:.3f}), but the data have {self.n_rows:,} rows with "
            f"{self.events:,} events; medserve prefers simpler models when data fall short."
        )


def max_r2_cs(prevalence: float) -> float:
    """The largest Cox-Snell R² a model of this prevalence can reach: 1 − L_null^(2/n)."""
    log_likelihood = prevalence * math.log(prevalence) + (1 - prevalence) * math.log(1 - prevalence)
    return 1 - math.exp(2 * log_likelihood)


def r2_cs_out_of_fold(log_loss: float, y: np.ndarray) -> float | None:
    """The Cox-Snell R² a model with this out-of-fold ``log_loss`` on outcomes ``y`` (0/1)
    achieved, or None where it does no better than the overall rate. Out of fold it cannot
    reach the maximum (a perfect model): it is kept just below it."""
    n, prevalence = len(y), float(np.mean(y))
    null = n * (prevalence * math.log(prevalence) + (1 - prevalence) * math.log(1 - prevalence))
    r2 = 1 - math.exp(-2 * (-n * log_loss - null) / n)
    return min(r2, 0.99 * max_r2_cs(prevalence)) if r2 > 0 else None


def _rows_for_shrinkage(n_parameters: int, r2_cs: float, shrinkage: float) -> int:
    """Rows so that the expected uniform shrinkage is ``shrinkage`` (Riley et al. eq. 11)."""
    return math.ceil(n_parameters / ((shrinkage - 1) * math.log(1 - r2_cs / shrinkage)))


def sample_size_check(
    n_parameters: int,
    n_rows: int,
    events: int,
    *,
    r2_cs: float | None = None,
    r2_source: str = "supplied",
) -> SampleSizeCheck:
    """Riley et al.'s three criteria for ``n_parameters`` candidate predictor parameters at
    the prevalence ``events / n_rows``; ``r2_cs`` is the anticipated Cox-Snell R² (default:
    15% of its maximum). ConfigError or DataError on input that admits no answer."""
    if n_parameters < 1:
        raise ConfigError(
            f"sample size: {n_parameters} candidate predictor parameters; a model needs at "
            "least one"
        )
    if n_rows < 1 or not 0 < events < n_rows:
        raise DataError(
            f"sample size: {events} events in {n_rows} rows; the prevalence must lie strictly "
            "between 0 and 1 (both outcome classes are needed)"
        )
    prevalence = events / n_rows
    largest = max_r2_cs(prevalence)
    if r2_cs is None:
        r2_cs, source = DEFAULT_R2_SHARE * largest, DEFAULT_R2_SOURCE
    else:
        source = r2_source
        if not 0 < r2_cs < largest:
            raise ConfigError(
                f"sample size: anticipated Cox-Snell R² {r2_cs} must lie between 0 and "
                f"{largest:.3f}, its maximum at a prevalence of {prevalence:.3f}"
            )
    small_optimism = r2_cs / (r2_cs + OPTIMISM_DELTA * largest)
    criteria = (
        Criterion(
            key="shrinkage",
            description=f"expected uniform shrinkage of at least {TARGET_SHRINKAGE}",
            minimum_rows=_rows_for_shrinkage(n_parameters, r2_cs, TARGET_SHRINKAGE),
        ),
        Criterion(
            key="optimism",
            description=(
                f"optimism in the apparent Nagelkerke R² of at most {OPTIMISM_DELTA} "
                f"(shrinkage {small_optimism:.3f})"
            ),
            minimum_rows=_rows_for_shrinkage(n_parameters, r2_cs, small_optimism),
        ),
        Criterion(
            key="overall_risk",
            description=f"overall risk estimated within ±{RISK_MARGIN}",
            minimum_rows=math.ceil((1.96 / RISK_MARGIN) ** 2 * prevalence * (1 - prevalence)),
        ),
    )
    minimum_rows = max(criterion.minimum_rows for criterion in criteria)
    # ceil(minimum_rows · prevalence) in integers: no rounding error at a whole number.
    minimum_events = -(-minimum_rows * events // n_rows)
    return SampleSizeCheck(
        n_parameters=n_parameters,
        prevalence=prevalence,
        r2_cs=r2_cs,
        r2_source=source,
        max_r2_cs=largest,
        criteria=criteria,
        minimum_rows=minimum_rows,
        minimum_events=minimum_events,
        n_rows=n_rows,
        events=events,
        meets=n_rows >= minimum_rows and events >= minimum_events,
    )


def candidate_parameters(schema: Schema) -> int:
    """The candidate model's predictor parameters, counted as the logistic pipeline encodes
    the features (``modeling.preprocess``): a number or 0/1 column is one, plus one for its
    missing indicator when it had missing values in training; a level column is its levels
    less one (the reference), plus one when '(missing)' is a level it saw. Columns that are
    not features (the outcome, ids, dates, free text with role 'text') add none: free text
    never enters the pipeline."""
    parameters = 0
    for spec in schema.features:
        had_missing = spec.missing_fraction > 0
        if spec.numeric_encoded:
            parameters += 1 + had_missing
        else:
            levels = len(spec.categories or ()) + had_missing
            parameters += max(levels - 1, 0)
    return parameters
