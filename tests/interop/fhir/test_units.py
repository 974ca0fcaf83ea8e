"""UCUM conversion on the quantity's code, with ucumvert."""

from __future__ import annotations

import threading

import pytest

from medserve.errors import FhirError
from medserve.interop.fhir.units import compatible, convert, is_ucum, ucum_code


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (150.0, "[lb_av]", "kg", 68.0388555),  # 1 lb = 0.45359237 kg exactly
        (70.0, "[in_i]", "cm", 177.8),  # 1 in = 2.54 cm exactly
        (98.6, "[degF]", "Cel", 37.0),  # offset unit: (98.6 - 32) * 5/9
        (32.0, "[degF]", "Cel", 0.0),
        (37.0, "Cel", "[degF]", 98.6),
        (120.0, "mm[Hg]", "kPa", 15.9986865),  # 1 mmHg = 133.322387415 Pa
        (100.0, "mg/dL", "g/L", 1.0),
        (5.4, "mmol/L", "umol/L", 5400.0),
        (75.0, "/min", "/h", 4500.0),
        (2.0, "10.L", "L", 20.0),  # a UCUM factor
    ],
)
def test_converts_between_ucum_codes(value, source, target, expected):
    assert convert(value, source, target) == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_the_same_code_returns_the_value_unchanged():
    assert convert(12.5, "mg/dL", "mg/dL") == 12.5
    assert convert(7.0, "not-a-unit", "not-a-unit") == 7.0


def test_annotations_are_dimensionless_and_carry_no_meaning():
    assert convert(3.0, "{score}", "1") == 3.0
    assert convert(4.0, "{#}", "1") == 4.0
    assert convert(72.0, "{beats}/min", "/min") == 72.0
    assert convert(50.0, "%", "1") == pytest.approx(0.5)


def test_different_dimensions_are_refused_naming_both_codes():
    with pytest.raises(FhirError) as caught:
        convert(100.0, "mg/dL", "mmol/L")
    message = str(caught.value)
    assert "'mg/dL'" in message and "'mmol/L'" in message
    assert "measure different things" in message and "bind the unit the server sends" in message
    assert "\n" not in message


def test_a_code_ucum_does_not_know_is_refused():
    with pytest.raises(FhirError, match="'lbs' is not a UCUM unit code"):
        convert(150.0, "lbs", "kg")  # UCUM writes pounds [lb_av]
    with pytest.raises(FhirError, match="'mmHg' is not a UCUM unit code"):
        convert(120.0, "kPa", "mmHg")


def test_compatible_and_is_ucum():
    assert compatible("mg/dL", "g/L")
    assert not compatible("mg/dL", "mmol/L")
    assert not compatible("xyz", "kg")
    assert is_ucum("mm[Hg]") and is_ucum("{score}") and not is_ucum("mmHg")


@pytest.mark.parametrize(
    ("shown", "code"),
    [
        ("mmHg", "mm[Hg]"),
        ("mg/dl", "mg/dL"),
        ("bpm", "/min"),
        ("kg/m²", "kg/m2"),
        ("°F", "[degF]"),
        ("kg", "kg"),
        ("mmol/L", "mmol/L"),
        ("furlongs", None),
    ],
)
def test_ucum_code_reads_units_as_people_write_them(shown, code):
    assert ucum_code(shown) == code


def test_conversions_agree_across_threads():
    results: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        value = convert(212.0, "[degF]", "Cel")
        with lock:
            results.append(value)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == pytest.approx([100.0] * 8)


@pytest.mark.parametrize(
    ("source", "target"), [("%", "mmol/mol"), ("{score}", "%"), ("%", "{ratio}")]
)
def test_ratios_of_different_things_are_not_converted(source, target):
    # HbA1c 7 % (NGSP) is about 53 mmol/mol (IFCC), not 70: no scale factor relates them.
    with pytest.raises(FhirError, match="measure different things"):
        convert(7.0, source, target)


def test_the_same_ratio_at_another_scale_converts():
    assert convert(7.0, "%", "1") == pytest.approx(0.07)
