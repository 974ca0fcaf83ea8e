"""A synthetic identified dataset (Faker, fixed seed) with every planted identifier recorded.

Used by the tests and by ``bench/deid_recall.py``. Patients have one to three
admissions; each row's note mentions that patient's identifiers (and a few people in
no column) between clinical words from a known vocabulary, so the scrubber's recall
and its false removals can both be counted.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

import pandas as pd
from faker import Faker

# Clinical words planted in the notes; none of them should disappear. Several are also
# surnames ("white", "rose", eponyms such as "Graves") to test the name list.
CLINICAL_WORDS = (
    "hypertension", "diabetes", "metformin", "insulin", "dyspnea", "tachycardia", "edema",
    "pneumonia", "sepsis", "creatinine", "troponin", "lisinopril", "atorvastatin",
    "furosemide", "cellulitis", "COPD", "asthma", "warfarin", "heparin", "nausea",
    "vomiting", "fever", "cough", "rales", "wheezing", "syncope", "anemia", "hyperkalemia",
    "hyponatremia", "HbA1c", "echocardiogram", "catheterization", "stent", "angina",
    "arrhythmia", "fibrillation", "bradycardia", "white", "brown", "green", "rose", "hope",
    "bell", "cross", "stable", "improved", "afebrile", "ambulating", "tolerating", "diet",
    "cardiology", "nephrology", "potassium", "sodium", "lactate", "culture", "ceftriaxone",
    "vancomycin", "aspirin", "clopidogrel", "Metoprolol", "Lasix", "Wheezing", "Edema",
    # eponyms: capitalised clinical terms whose first word is also a surname
    "Parkinson disease", "Crohn's disease", "Graves disease", "Addison's disease",
    "Cushing syndrome", "Hodgkin lymphoma", "Wilson disease", "Bell's palsy",
)  # fmt: skip
DIAGNOSES = ("I10", "E11.9", "I50.9", "J18.9", "N17.9", "J44.1", "I48.91", "A41.9")
RESTRICTED_ZIPS = ("03601", "05901", "89012", "69201")
DATE_FORMATS = ("%m/%d/%Y", "%B %d, %Y", "%Y-%m-%d", "%d %b %Y")


@dataclass
class Identified:
    """The table, every identifier value planted in it, and what each note mentions."""

    frame: pd.DataFrame
    planted: dict[str, set[str]] = field(default_factory=dict)
    note_identifiers: list[list[tuple[str, str]]] = field(default_factory=list)
    note_clinical_words: list[list[str]] = field(default_factory=list)


def make_identified(rows: int = 200, seed: int = 7) -> Identified:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    patients = [_patient(fake, rng) for _ in range(max(1, rows * 2 // 3))]
    records, notes_ids, notes_words = [], [], []
    planted: dict[str, set[str]] = {}
    for row in range(rows):
        patient = patients[row % len(patients)] if row < len(patients) else rng.choice(patients)
        admit = patient["first_admit"] + dt.timedelta(days=rng.randint(0, 900))
        stay = rng.randint(1, 14)
        discharge = admit + dt.timedelta(days=stay)
        age = min(100, (admit - patient["dob"]).days // 365)
        relative = f"{fake.first_name()} {patient['last']}"
        outsider = fake.name()
        doctor = fake.last_name()
        words = rng.sample(CLINICAL_WORDS, 6)
        admit_text = admit.strftime(rng.choice(DATE_FORMATS))
        dob_text = patient["dob"].strftime(rng.choice(DATE_FORMATS))
        note = (
            f"{patient['name']} (MRN {patient['mrn']}) is a {age}-year-old admitted on "
            f"{admit_text} with {words[0]} and {words[1]}. DOB {dob_text}. Lives at "
            f"{patient['street']}, {patient['city']}, {patient['state']} {patient['zip']}. "
            f"Phone {patient['phone']}, email {patient['email']}. SSN {patient['ssn']}. "
            f"{words[5].capitalize()} noted; {words[2]} started. Daughter {relative} visited. "
            f"Seen by Dr. {doctor}; discussed with {outsider} from pharmacy. "
            f"Plan: {words[3]}, {words[4]}."
        )
        identifiers = [
            ("name", patient["name"]),
            ("record_id", patient["mrn"]),
            ("date", admit_text),
            ("birth_date", dob_text),
            ("street_address", patient["street"]),
            ("zip", patient["zip"]),
            ("phone", patient["phone"]),
            ("email", patient["email"]),
            ("ssn", patient["ssn"]),
            ("name (relative, surname in a column)", relative),
            ("name (after Dr.)", f"Dr. {doctor}"),  # caught when the name after "Dr." goes
            ("name (in no column, no cue)", outsider),
        ]
        if age > 89:
            identifiers.append(("age over 89", f"{age}-year-old"))
        records.append(
            {
                "patient_name": patient["name"],
                "mrn": patient["mrn"],
                "ssn": patient["ssn"],
                "phone": patient["phone"],
                "email": patient["email"],
                "address": patient["street"],
                "city": patient["city"],
                "zip": patient["zip"],
                "date_of_birth": patient["dob"].isoformat(),
                "admission_date": admit.isoformat(),
                "discharge_date": discharge.isoformat(),
                "age": str(age),
                "sex": patient["sex"],
                "glucose": f"{rng.uniform(70, 250):.1f}",
                "systolic_bp": str(rng.randint(90, 190)),
                "diagnosis": rng.choice(DIAGNOSES),
                "notes": note,
            }
        )
        notes_ids.append(identifiers)
        notes_words.append(
            [words[0], words[1], words[2], words[3], words[4], words[5].capitalize()]
        )
        for kind, value in identifiers:
            planted.setdefault(kind, set()).add(value)
        for kind in ("ssn", "phone", "email", "city"):
            planted.setdefault(kind, set()).add(patient[kind])
        planted.setdefault("date", set()).update(
            {admit.isoformat(), discharge.isoformat(), patient["dob"].isoformat()}
        )
    return Identified(pd.DataFrame(records), planted, notes_ids, notes_words)


def _patient(fake: Faker, rng: random.Random) -> dict[str, object]:
    sex = rng.choice(("F", "M"))
    first = fake.first_name_female() if sex == "F" else fake.first_name_male()
    last = fake.last_name()
    zip_code = rng.choice(RESTRICTED_ZIPS) if rng.random() < 0.05 else fake.zipcode()
    return {
        "name": f"{first} {last}",
        "last": last,
        "mrn": f"MRN{rng.randint(0, 9_999_999):07d}",
        "ssn": fake.ssn(),
        "phone": fake.phone_number(),
        "email": fake.email(),
        "street": fake.street_address(),
        "city": fake.city(),
        "state": fake.state_abbr(),
        "zip": zip_code,
        "dob": fake.date_of_birth(minimum_age=20, maximum_age=100),
        "first_admit": fake.date_between(dt.date(2018, 1, 1), dt.date(2022, 12, 31)),
        "sex": sex,
    }
