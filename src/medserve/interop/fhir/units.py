"""UCUM units: converting a FHIR quantity's value into the unit a model was trained in.

Conversion works on the UCUM *code* (``valueQuantity.code``), never on the display
``unit``, with ucumvert (a UCUM grammar on top of pint). Offset units convert as
temperatures do (98.6 [degF] is 37 Cel), and a dimension mismatch (mg/dL of glucose is no
mmol/L without a molar mass) is refused, never guessed.

UCUM annotations in braces carry no meaning of their own (UCUM §6.4): ``{score}`` equals
``1`` and ``{beats}/min`` equals ``/min``; they are dropped before parsing.

The ucumvert registry takes about a second to build: it is built once, on first use, and
shared by every thread.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from tokenize import TokenError
from typing import Any

from medserve.errors import FhirError

_ANNOTATION = re.compile(r"\{[^{}]*\}")
_LOCK = threading.RLock()
_REGISTRY: Any = None

# Units as people write them (schema files, model cards) → their UCUM code. Only for
# reading a display unit; FHIR quantities are always converted on their own code.
_DISPLAY_TO_UCUM = {
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "µmol/l": "umol/L",
    "g/l": "g/L",
    "bpm": "/min",
    "beats/min": "/min",
    "breaths/min": "/min",
    "/min": "/min",
    "kg/m²": "kg/m2",
    "kg/m^2": "kg/m2",
    "kg/m2": "kg/m2",
    "°c": "Cel",
    "degc": "Cel",
    "celsius": "Cel",
    "°f": "[degF]",
    "degf": "[degF]",
    "fahrenheit": "[degF]",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "in": "[in_i]",
    "inch": "[in_i]",
    "inches": "[in_i]",
    "years": "a",
    "yr": "a",
    "mu u/ml": "u[IU]/mL",
    "µu/ml": "u[IU]/mL",
    "uu/ml": "u[IU]/mL",
    "uiu/ml": "u[IU]/mL",
    "µiu/ml": "u[IU]/mL",
    "miu/l": "m[IU]/L",
}


# Dimensionless units that are the same ratio at another scale: converted. Any other
# dimensionless pair (%, mmol/mol, {score}) is refused.
SCALED_RATIOS = frozenset({"%", "1", "[ppth]", "[ppm]"})


def convert(value: float, from_code: str, to_code: str) -> float:
    """``value`` in ``from_code`` expressed in ``to_code`` (both UCUM codes).

    The same code (or codes equal but for annotations) returns ``value`` unchanged without
    loading the registry. FhirError naming both codes when a code is not UCUM or the two
    measure different things."""
    if from_code == to_code:
        return value
    source, target = _plain(from_code), _plain(to_code)
    if source == target:
        return value
    from pint.errors import DimensionalityError, OffsetUnitCalculusError

    source_factor, source_unit = _parsed(from_code)
    target_factor, target_unit = _parsed(to_code)
    with _LOCK:
        registry = _registry()
        try:
            if source_factor == 1:
                quantity = registry.Quantity(value, source_unit)
            else:
                quantity = registry.Quantity(value * source_factor, source_unit)
            if quantity.dimensionless and not {from_code, to_code} <= SCALED_RATIOS:
                # % and mmol/mol are both ratios, but HbA1c in % (NGSP) is not 10x the
                # same in mmol/mol (IFCC): ratios of different things never convert.
                raise DimensionalityError(source_unit, target_unit)
            converted = float(quantity.to(target_unit).magnitude)
        except DimensionalityError:
            raise FhirError(
                f"cannot convert '{from_code}' to '{to_code}': they measure different things; "
                f"bind the unit the server sends, or record it in {to_code}"
            ) from None
        except OffsetUnitCalculusError:
            raise FhirError(
                f"cannot convert '{from_code}' to '{to_code}': a scaled temperature unit "
                f"has no defined conversion; bind the unit the server sends"
            ) from None
    return converted / target_factor


def compatible(from_code: str, to_code: str) -> bool:
    """Whether ``from_code`` converts to ``to_code`` (both valid UCUM, same dimension)."""
    try:
        convert(1.0, from_code, to_code)
    except FhirError:
        return False
    return True


def is_ucum(code: str) -> bool:
    """Whether ucumvert reads ``code`` as a UCUM unit."""
    try:
        _parsed(code)
    except FhirError:
        return False
    return True


def ucum_code(text: str) -> str | None:
    """The UCUM code for a unit as people write it ('mmHg' → 'mm[Hg]', 'bpm' → '/min'),
    ``text`` itself when it already is UCUM, else None."""
    spelled = text.strip()
    known = _DISPLAY_TO_UCUM.get(spelled.lower())
    if known is not None:
        return known
    return spelled if spelled and is_ucum(spelled) else None


def _plain(code: str) -> str:
    """``code`` without its annotations: ``{score}`` → ``1``, ``{beats}/min`` → ``/min``."""
    stripped = _ANNOTATION.sub("", code.strip())
    if not stripped:
        return "1"
    if stripped.endswith(("/", ".")):
        stripped += "1"
    return stripped


@lru_cache(maxsize=512)
def _parsed(code: str) -> tuple[float, Any]:
    """(factor, pint unit) of a UCUM code (``10.L`` is 10 times the litre); FhirError when
    ucumvert cannot read it."""
    from lark.exceptions import LarkError
    from pint.errors import PintError

    plain = _plain(code)
    with _LOCK:
        registry = _registry()
        try:
            parsed = registry.from_ucum(plain)
        except (LarkError, PintError, AttributeError, TokenError, ValueError, TypeError):
            raise FhirError(
                f"'{code}' is not a UCUM unit code medserve can read; send the UCUM code in "
                "valueQuantity.code (e.g. mg/dL, mm[Hg], kg/m2, [lb_av]) or bind the unit "
                "the server sends"
            ) from None
    if hasattr(parsed, "magnitude"):
        return float(parsed.magnitude), parsed.units
    return 1.0, parsed


def _registry() -> Any:
    """The shared ucumvert registry, built on first use (call with ``_LOCK`` held)."""
    global _REGISTRY
    if _REGISTRY is None:
        from ucumvert import PintUcumRegistry

        _REGISTRY = PintUcumRegistry()
    return _REGISTRY
