"""Messy exports of the bundled heart table, as hospital systems and spreadsheets write
them (issue 17): text in lab columns, censored results, thousands separators, semicolons
with decimal commas in Windows-1252, tabs in a .csv. Plain pandas, so that the same files
can be read by any version of medserve (the before/after comparison of the issue)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

# Every 23rd row one of these, in turn, in trestbps and chol (haemolysed only in chol).
MISSING_WORDS = ["unknown", "-", "n/a", "Unknown", "--", "not done"]
HAEMOLYSED_EVERY = 37  # chol: "haemolysed" in every 37th row (a lab's own word)
CENSORED_EVERY = 29  # "<90" in trestbps and ">400" in chol every 29th row
# A column name and a level with letters beyond ASCII, for the Windows-1252 file.
ACCENTED_COLUMN = "fréq_max"
ACCENTED_LEVEL = "Zürich"


def heart_text(heart_csv: Path) -> pd.DataFrame:
    """The heart table as its cells are written (strings, empty cells as "")."""
    return pd.read_csv(heart_csv, dtype=str, keep_default_na=False)


def with_missing_words(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for i in range(0, len(out), 23):
        word = MISSING_WORDS[(i // 23) % len(MISSING_WORDS)]
        out.loc[i, "trestbps"] = word
        out.loc[(i + 11) % len(out), "chol"] = word
    for i in range(5, len(out), HAEMOLYSED_EVERY):
        out.loc[i, "chol"] = "haemolysed"
    return out


def with_censored(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for i in range(3, len(out), CENSORED_EVERY):
        out.loc[i, "trestbps"] = "<90"
        out.loc[i, "chol"] = ">400"
    return out


def _grouped(cell: str) -> str:
    return cell if cell == "" else f"{float(cell) * 10:,.1f}"  # 233 → "2,330.0"


def with_thousands(frame: pd.DataFrame) -> pd.DataFrame:
    """trestbps and chol in tenths of their unit, written as Excel writes them: 2,330.0."""
    return frame.assign(trestbps=frame["trestbps"].map(_grouped), chol=frame["chol"].map(_grouped))


# A European spreadsheet swaps the marks: 2,330.0 is written 2.330,0 and 2.3 is 2,3.
_SWAPPED_MARKS = str.maketrans({".": ",", ",": "."})


def european(frame: pd.DataFrame) -> pd.DataFrame:
    """A French export: an accented column name and level, decimal commas."""
    out = frame.rename(columns={"thalch": ACCENTED_COLUMN})
    out["dataset"] = out["dataset"].replace({"Switzerland": ACCENTED_LEVEL})
    for name in ("trestbps", "chol", "oldpeak"):
        out[name] = out[name].str.translate(_SWAPPED_MARKS)
    return out


def write(frame: pd.DataFrame, path: Path, *, sep: str = ",", encoding: str = "utf-8") -> Path:
    frame.to_csv(path, index=False, sep=sep, encoding=encoding)
    return path


# name → how to write the variant of the heart table into a folder.
VARIANTS: dict[str, Callable[[pd.DataFrame, Path], Path]] = {
    "missing words and a lab's own word": lambda f, d: write(
        with_missing_words(f), d / "words.csv"
    ),
    "censored results (<90, >400)": lambda f, d: write(with_censored(f), d / "censored.csv"),
    "thousands separators (2,330.0)": lambda f, d: write(with_thousands(f), d / "thousands.csv"),
    "semicolons, decimal commas, cp1252": lambda f, d: write(
        european(f), d / "european.csv", sep=";", encoding="cp1252"
    ),
    "tabs in a .csv": lambda f, d: write(f, d / "tabs.csv", sep="\t"),
    "pipes, UTF-8 with a byte-order mark": lambda f, d: write(
        f, d / "pipes.csv", sep="|", encoding="utf-8-sig"
    ),
    "all of the above in one export": lambda f, d: write(
        european(with_censored(with_missing_words(with_thousands(f)))),
        d / "combined.csv",
        sep=";",
        encoding="cp1252",
    ),
}
