"""A harder identified table than ``synthetic.py`` (Faker, fixed seed), every identifier recorded.

An encounter table: ten visits per patient, so identifier columns repeat; identifiers under
column names that say nothing (``chart``, ``soc``, ``zip5``, ``yrs_old``, ``callback``,
``visit_day``, ``emergency``); names with letters outside ASCII (``Zoë Ångström``,
``MÜLLER``); relatives' names in columns and in notes; ages of 90 to 109; a callback column
that is only mostly phone numbers; and notes that write the patient's own name in lower
case. Clinical columns (``hr``, ``dx``, ``ward``, lab values) and clinical words in the
notes are recorded too, so what is wrongly changed can be counted.

Used by ``tests/deid/test_hard_table.py`` and ``bench/deid_recall.py --hard``.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
from faker import Faker

from deid.synthetic import CLINICAL_WORDS

# Title-case diagnoses and ward names: they look like names by shape and must stay.
DIAGNOSES = (
    "Heart Failure", "Atrial Fibrillation", "Chest Pain", "Community Acquired Pneumonia",
    "Acute Kidney Injury", "Sepsis", "COPD Exacerbation", "Hip Fracture",
)  # fmt: skip
WARDS = ("ICU", "CCU", "4 West", "5 North", "Step Down", "ED Obs")
NO_CALLBACK = ("declined", "none given", "ask at desk")
CLINICAL_COLUMNS = ("hr", "dx", "ward", "glucose", "platelets", "sodium")
_LOCALES = ("de_DE", "sv_SE", "es_ES", "fr_FR", "pl_PL")


@dataclass(frozen=True)
class Planted:
    """One identifier written into one row: where (a column), what kind, the text."""

    row: int
    kind: str
    column: str
    value: str


@dataclass
class HardTable:
    frame: pd.DataFrame
    planted: list[Planted] = field(default_factory=list)
    note_clinical_words: list[list[str]] = field(default_factory=list)


def make_hard(patients: int = 40, visits: int = 10, seed: int = 11) -> HardTable:
    """``patients`` × ``visits`` rows; a patient's rows share every patient-level value."""
    english, other = Faker("en_US"), Faker(list(_LOCALES))
    english.seed_instance(seed)
    other.seed_instance(seed)
    rng = random.Random(seed)
    people = [_person(english, other, rng, number) for number in range(patients)]
    rows, planted, words_per_note = [], [], []
    for number in range(patients * visits):
        person = people[number // visits]
        visit = person["first_visit"] + dt.timedelta(days=7 * (number % visits) + rng.randint(0, 6))
        age = person["age"] + (visit - person["first_visit"]).days // 365
        day = f"{visit:%b} {visit.day}"
        callback = person["phone"] if rng.random() < 0.7 else rng.choice(NO_CALLBACK)
        words = rng.sample(CLINICAL_WORDS[:60], 4)
        age_text = f"{age} yo" if number % 2 else f"aged {age}"
        note = (
            f"{person['name']} seen {day} for {words[0]}. {person['name'].lower()} reports "
            f"{words[1]}; {person['last'].upper()} tolerating {words[2]}. Guardian "
            f"{person['guardian']} at bedside; {person['kin_first']} {person['kin_last']} "
            f"called from {person['phone']}. Chart {person['chart']}, {age_text}. "
            f"Plan: {words[3]}."
        )
        rows.append(
            {
                "chart": person["chart"],
                "acct": f"A{rng.randint(0, 99_999_999):08d}",
                "Patient": person["name"],
                "soc": person["ssn"],
                "zip5": person["zip"],
                "yrs_old": str(age),
                "born": person["dob"].isoformat(),
                "guardian_name": person["guardian"],
                "emergency": f"{person['kin_last'].upper()}, {person['kin_first'].upper()}",
                "callback": callback,
                "visit_day": day,
                "hr": str(rng.randint(55, 140)),
                "dx": rng.choice(DIAGNOSES),
                "ward": rng.choice(WARDS),
                "glucose": f"{rng.uniform(70, 250):.1f}",
                "platelets": str(rng.randint(150_000, 450_000)),
                "sodium": str(rng.randint(128, 148)),
                "note": note,
            }
        )
        words_per_note.append(words)
        non_ascii = " (non-ASCII)" if not person["name"].isascii() else ""
        cells = [
            ("record number (chart)", "chart", person["chart"]),
            ("account number (acct)", "acct", rows[-1]["acct"]),
            ("name (Patient)" + non_ascii, "Patient", person["name"]),
            ("SSN, 9 digits (soc)", "soc", person["ssn"]),
            ("ZIP (zip5)", "zip5", person["zip"]),
            ("relative's name (guardian_name)", "guardian_name", person["guardian"]),
            ("relative's name (emergency)", "emergency", rows[-1]["emergency"]),
            ("date without year (visit_day)", "visit_day", day),
        ]
        if age > 89:
            cells.append(("age over 89 (yrs_old)", "yrs_old", str(age)))
        if age > 89:  # the birth year alone says "over 89"
            cells.append(("birth year, aged 90+ (born)", "born", str(person["dob"].year)))
        if callback == person["phone"]:
            cells.append(("phone (callback, 70% phones)", "callback", callback))
        in_note = [
            ("note: patient name" + non_ascii, person["name"]),
            ("note: patient name, lower case" + non_ascii, person["name"].lower()),
            ("note: surname in capitals" + non_ascii, person["last"].upper()),
            ("note: guardian name (after 'Guardian')", person["guardian"]),
            ("note: relative's surname from a column, no cue", person["kin_last"]),
            ("note: date without year", day),
            ("note: phone", person["phone"]),
            ("note: record number", person["chart"]),
        ]
        if age > 89:
            in_note.append(("note: age over 89", age_text))
        planted += [Planted(number, kind, column, value) for kind, column, value in cells]
        planted += [Planted(number, kind, "note", value) for kind, value in in_note]
    return HardTable(pd.DataFrame(rows), planted, words_per_note)


def _person(english: Faker, other: Faker, rng: random.Random, number: int) -> dict:
    faker = other if number % 2 else english  # every other patient has a non-English name
    first, last = faker.first_name(), faker.last_name()
    if number % 5 == 1:
        first, last = "Zoë", "Ångström"  # the review's example, and MÜLLER in capitals
    elif number % 5 == 3:
        first, last = faker.first_name(), "Müller"
    guardian_last = last if rng.random() < 0.5 else faker.last_name()
    age = rng.randint(90, 106) if rng.random() < 0.3 else rng.randint(25, 85)
    first_visit = english.date_between(dt.date(2019, 1, 1), dt.date(2022, 12, 31))
    return {
        "name": f"{first} {last}",
        "last": last,
        "chart": f"{rng.randint(0, 9_999_999):07d}",
        "ssn": english.ssn().replace("-", ""),
        "zip": english.zipcode(),
        "phone": english.numerify("(###) ###-####").replace("(0", "(2").replace("(1", "(3"),
        "age": age,
        "dob": first_visit - dt.timedelta(days=365 * age + rng.randint(0, 300)),
        "first_visit": first_visit,
        "guardian": f"{faker.first_name()} {guardian_last}",
        "kin_first": faker.first_name(),
        "kin_last": faker.last_name(),
    }


def surviving(clean: pd.DataFrame, table: HardTable) -> list[Planted]:
    """The planted identifiers still in the de-identified table: a column's identifier in
    its own column of its own row, a note's identifier in its own row's note (whole words)."""
    left = []
    for item in table.planted:
        # A date column reduced to the year may be written as NAME_year (``born_year``).
        written = [c for c in (item.column, f"{item.column}_year") if c in clean.columns]
        if not written:
            continue
        cell = clean[written[0]].iloc[item.row]
        if cell is None or (isinstance(cell, float) and pd.isna(cell)):
            continue
        flags = re.IGNORECASE if item.column != "note" else 0
        if re.search(rf"(?<!\w){re.escape(item.value)}(?![\w+])", str(cell), flags):
            left.append(item)
    return left


def clinical_changes(clean: pd.DataFrame, table: HardTable) -> dict[str, int]:
    """Clinical cells changed or dropped, and clinical words gone from their note."""
    cells = changed = 0
    for column in CLINICAL_COLUMNS:
        source = table.frame[column].astype(str)
        cells += len(source)
        if column not in clean.columns:
            changed += len(source)
            continue
        changed += int((clean[column].astype(str) != source).sum())
    words = removed = 0
    lost: Counter[str] = Counter()
    notes = clean["note"] if "note" in clean.columns else pd.Series([""] * len(table.frame))
    for note, planted_words in zip(notes, table.note_clinical_words, strict=True):
        for word in planted_words:
            words += 1
            if not re.search(rf"\b{re.escape(word)}\b", str(note)):
                removed += 1
                lost[word] += 1
    return {
        "clinical_cells": cells,
        "clinical_cells_changed": changed,
        "clinical_words": words,
        "clinical_words_removed": removed,
        **{f"removed: {word}": count for word, count in sorted(lost.items())},
    }
