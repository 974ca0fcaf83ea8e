"""Free-text notes: identifiers become typed placeholders, clinical words stay."""

from __future__ import annotations

import pandas as pd
import pytest

from medserve.deid import deidentify
from medserve.deid.names import KnownNames
from medserve.deid.text import NoteScrubber, row_values

KEY = bytes(range(32))


def scrub(note: str, row: dict | None = None, names=(), words=()) -> str:
    kinds = {"name": "name", "mrn": "record_id", "addr": "street_address", "city": "geography"}
    values = row_values(row or {}, kinds)
    return NoteScrubber(names, words).scrub(note, values)[0]


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        ("Email jo.ann@mail.org today.", "Email [EMAIL] today."),
        ("See https://x.org/p?id=3.", "See [URL]."),
        ("From 192.168.0.12 at night", "From [IP] at night"),
        ("SSN 123-45-6789, ssn: 987654321", "SSN [SSN], ssn: [SSN]"),
        ("Call (555)123-4567 or 555.987.6543x12", "Call [PHONE] or [PHONE]"),
        ("phone 5551234567", "phone [PHONE]"),
        ("fax: 555-111-2222", "fax: [FAX]"),
        ("Seen 03/14/2021, 2021-03-15 and March 16, 2021", "Seen [DATE], [DATE] and [DATE]"),
        ("Admitted 4 Jan 2020; follow-up Feb 3", "Admitted [DATE]; follow-up [DATE]"),
        ("Lives at 12 Oak Street Apt. 4, Springfield, IL 62704.", "Lives at [ADDRESS], [ADDRESS]."),
        ("MRN: 00123456 and acct #AB-99812", "MRN: [ID] and acct #[ID]"),
        ("A 93-year-old, aged 95", "A 90+-year-old, aged 90+"),
        ("Dr. Okafor and Mrs. Jane Doe", "Dr. [NAME] and Mrs. [NAME]"),
        ("wife Maria came", "wife [NAME] came"),
    ],
)
def test_rules_replace_identifiers_with_typed_placeholders(note: str, expected: str) -> None:
    assert scrub(note) == expected


def test_clinical_words_and_numbers_survive() -> None:
    note = (
        "BP 120/80, HbA1c 7.2%, glucose 250 mg/dL, COVID-19 negative, E11.9, platelets "
        "250000, started metformin 500 mg in 2021. Patient reports dyspnea."
    )
    assert scrub(note, words=["reports"]) == note


def test_the_rows_own_identifiers_are_removed_in_any_case_a_name_is_written() -> None:
    row = {"name": "Rose Tyler", "mrn": "X77", "addr": "9 Elm Row", "city": "Leeds"}
    note = "ROSE TYLER (X77) of 9 Elm Row, Leeds: BP rose. Tyler's sister."
    assert scrub(note, row) == "[NAME] ([ID]) of [ADDRESS], [LOCATION]: BP rose. [NAME]'s sister."


def test_names_from_other_rows_are_removed_but_not_common_words_they_share() -> None:
    names = ["mary", "white", "okoye"]
    words = ["white", "blood"]
    note = "Okoye visited. Mary White called. White blood cells up."
    assert scrub(note, names=names, words=words) == (
        "[NAME] visited. [NAME] [NAME] called. White blood cells up."
    )


def test_relation_cue_does_not_take_an_ordinary_capitalised_word() -> None:
    assert scrub("Patient Reports pain", words=["reports"]) == "Patient Reports pain"
    assert scrub("Patient Education given") == "Patient Education given"
    assert scrub("Nurse Practitioner note") == "Nurse Practitioner note"


def test_notes_column_is_scrubbed_with_its_rows_values_and_counts_placeholders() -> None:
    frame = pd.DataFrame(
        {
            "patient_name": ["Ada Quist", "Bo Lindqvist"],
            "mrn": ["Q-1", "L-2"],
            "notes": ["Ada Quist (Q-1) saw Lindqvist.", "No identifiers here at all today."],
        }
    )
    result = deidentify(frame, key=KEY)
    assert result.frame["notes"].tolist() == [
        "[NAME] ([ID]) saw [NAME].",
        "No identifiers here at all today.",
    ]
    notes = next(o for o in result.columns if o.column == "notes")
    assert (notes.kind, notes.action, notes.changed) == ("text", "generalise", 1)
    assert notes.details == {"[ID]": 1, "[NAME]": 2}
    assert result.report.text_engine.startswith("rules")


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        ("discharged 2021/03/20.", "discharged [DATE]."),
        ("seen again 3/25 in clinic", "seen again [DATE] in clinic"),
        ("Admitted 14-Mar-2021 via ED", "Admitted [DATE] via ED"),
        ("due Mar-14-21 and Mar-2022", "due [DATE] and [DATE]"),
        ("SSN: 123 45 6789", "SSN: [SSN]"),
        ("ip6 2001:db8::1, fe80::1ff:fe23:4567:890a.", "ip6 [IP], [IP]."),
        (
            "Born 1931. DOB: 1928; year of birth 1930",
            "Born [DATE]. DOB: [DATE]; year of birth [DATE]",
        ),
        ("car 1HGCM82633A004352 towed", "car [ID] towed"),
    ],
)
def test_shaped_identifiers_in_unusual_forms_are_replaced(note: str, expected: str) -> None:
    assert scrub(note) == expected


@pytest.mark.parametrize(
    "note",
    [
        "Strength 5/5 bilaterally, 4/5 strength in LLE, pain 7/10, 2/6 murmur.",
        "Took 1/2 tab; 2/2 blood cultures positive; BP 120/80 at 10:30:00.",
        "Born at term, G2P1; 1931 kcal diet.",
    ],
)
def test_scores_fractions_and_times_are_not_taken_for_dates(note: str) -> None:
    assert scrub(note) == note


def test_the_rows_own_name_is_found_in_lower_case_and_in_any_script() -> None:
    row = {"name": "Zoë Ångström"}
    note = "zoë ångström reports pain; ÅNGSTRÖM tolerating diet. Zoë agrees; ångström too."
    assert scrub(note, row) == (
        "[NAME] reports pain; [NAME] tolerating diet. [NAME] agrees; [NAME] too."
    )


def test_an_everyday_word_in_the_rows_name_stays_a_word_on_its_own() -> None:
    row = {"name": "Rose Tyler"}
    assert scrub("rose tyler seen; BP rose.", row) == "[NAME] seen; BP rose."


def test_other_rows_names_are_found_with_unicode_letters_and_whole_in_lower_case() -> None:
    names = ["zoë", "ångström", "müller", "mary", "okafor"]
    scrubber = NoteScrubber(KnownNames(names, [], full_names=[("mary", "okafor")]))
    note = "Zoë Ångström and MÜLLER visited; mary okafor called."
    assert scrubber.scrub(note, [])[0] == "[NAME] [NAME] and [NAME] visited; [NAME] [NAME] called."


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        ("wife Zoë Ångström came", "wife [NAME] came"),
        ("Guardian Maria Lopez at bedside", "Guardian [NAME] at bedside"),
        ("next of kin Jürgen Weiß called", "next of kin [NAME] called"),
        ("stepdaughter Ana visited", "stepdaughter [NAME] visited"),
    ],
)
def test_relatives_and_guardians_named_after_a_cue_are_replaced_whole(note, expected) -> None:
    assert scrub(note) == expected


def test_grouped_ages_stay_grouped_on_a_second_pass() -> None:
    once = scrub("aged 93, a 95 yo, age: 101")
    assert once == "aged 90+, a 90+ yo, age: 90+"
    assert scrub(once) == once
