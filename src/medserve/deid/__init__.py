"""De-identification at ingest (HIPAA Safe Harbor): detect identifiers, drop, pseudonymise
or generalise them, scrub free text, and measure what re-identification risk is left.

    policy = load_policy(path_or_None, frame)
    result = deidentify(frame, policy, key=KeyStore(settings).purpose_key("deid"))
    result.frame, result.report, result.summary_lines()
"""

from medserve.deid.apply import ColumnOutcome, DeidResult, deidentify
from medserve.deid.detect import KINDS, Detection, detect_column, detect_columns
from medserve.deid.policy import ACTIONS, ColumnRule, DeidPolicy, load_policy, parse_policy
from medserve.deid.text import ENGINE as TEXT_ENGINE

KEY_PURPOSE = "deid"

__all__ = [
    "ACTIONS",
    "KEY_PURPOSE",
    "KINDS",
    "TEXT_ENGINE",
    "ColumnOutcome",
    "ColumnRule",
    "DeidPolicy",
    "DeidResult",
    "Detection",
    "deidentify",
    "detect_column",
    "detect_columns",
    "load_policy",
    "parse_policy",
]
