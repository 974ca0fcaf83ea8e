"""De-identification at ingest (HIPAA Safe Harbor): detect identifiers, drop, pseudonymise
or generalise them, scrub free text, and measure what re-identification risk is left.

    policy = load_policy(path_or_None, frame)
    result = deidentify(frame, policy, key=KeyStore(settings).purpose_key("deid"))
    result.frame, result.report, result.summary_lines()

``result.report`` is a ``DeidReport`` (pydantic): ``.to_json()`` is what the CLI writes,
``DeidReport.model_json_schema()`` its contract.
"""

from medserve.deid.apply import deidentify
from medserve.deid.detect import KINDS, Detection, detect_column, detect_columns
from medserve.deid.policy import ACTIONS, ColumnRule, DeidPolicy, load_policy, parse_policy
from medserve.deid.report import ColumnOutcome, DeidReport, ReviewFlag
from medserve.deid.result import DeidResult
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
    "DeidReport",
    "DeidResult",
    "Detection",
    "ReviewFlag",
    "deidentify",
    "detect_column",
    "detect_columns",
    "load_policy",
    "parse_policy",
]
