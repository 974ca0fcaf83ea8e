"""The FHIR R4 OperationOutcome an error answers with on the FHIR and CDS Hooks channels,
and the IssueType code that goes with an HTTP status."""

from __future__ import annotations

# OperationOutcome.issue.severity (IssueSeverity, required binding).
ISSUE_SEVERITIES = frozenset({"fatal", "error", "warning", "information"})
# OperationOutcome.issue.code (IssueType, required binding), http://hl7.org/fhir/R4/valueset-issue-type.html.
ISSUE_TYPES = frozenset(
    {
        "invalid",
        "structure",
        "required",
        "value",
        "invariant",
        "security",
        "login",
        "unknown",
        "expired",
        "forbidden",
        "suppressed",
        "processing",
        "not-supported",
        "duplicate",
        "multiple-matches",
        "not-found",
        "deleted",
        "too-long",
        "code-invalid",
        "extension",
        "too-costly",
        "business-rule",
        "conflict",
        "transient",
        "lock-error",
        "no-store",
        "exception",
        "timeout",
        "incomplete",
        "throttled",
        "informational",
    }
)

_CODE_FOR_STATUS = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    # 412 on CDS Hooks: neither the prefetch nor a FHIR server to fetch from, i.e. the data
    # the service needs did not all reach it.
    412: "incomplete",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    500: "exception",
    501: "not-supported",
    502: "transient",
    503: "transient",
    504: "timeout",
}


def issue_code_for(status: int) -> str:
    """The IssueType code for an HTTP error status: 404 → "not-found", 504 → "timeout";
    another 4xx is "processing", another 5xx "exception"."""
    if status in _CODE_FOR_STATUS:
        return _CODE_FOR_STATUS[status]
    return "exception" if status >= 500 else "processing"


def operation_outcome(
    message: str,
    *,
    code: str = "invalid",
    severity: str = "error",
    expression: str | None = None,
) -> dict:
    """An OperationOutcome with one issue: ``message`` as its diagnostics, and, where
    given, the FHIRPath ``expression`` of the element at fault (``Bundle.entry[2]``).
    ``code`` and ``severity`` must come from their FHIR value sets (a ValueError
    otherwise: a programming error, never the caller's)."""
    if code not in ISSUE_TYPES:
        raise ValueError(f"'{code}' is not a FHIR IssueType code")
    if severity not in ISSUE_SEVERITIES:
        raise ValueError(f"'{severity}' is not a FHIR IssueSeverity code")
    issue: dict = {"severity": severity, "code": code}
    text = message.strip()
    if text:
        issue["diagnostics"] = text
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}
