"""Request bodies the clinical routes read themselves (a FHIR Bundle, a CDS Hooks call):
JSON parsed once, and any body that is not JSON refused in one line, never a 500."""

from __future__ import annotations

import json

from medserve.errors import DataError


def json_body(body: bytes, what: str, error: type[DataError] = DataError) -> object:
    """``body`` parsed; ``error`` (a 422) naming ``what`` was expected when it is not JSON
    or is nested too deeply for the parser."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise error(f"the body is not JSON: send {what} as JSON") from None
    except RecursionError:
        raise error(f"the body is nested too deeply to be {what}") from None
