"""How well `medserve deid` scrubs clinical notes: recall of planted identifiers by kind,
and how many planted clinical words it wrongly removes.

Builds the synthetic identified table the tests use (Faker, fixed seed: names, MRNs,
SSNs, phones, e-mails, addresses, dates of birth, admission dates, ZIP codes, ages up to
100), whose notes mention each row's identifiers, relatives, doctors and people in no
column, between words from a known clinical vocabulary. Runs ``deidentify`` with the
default policy, then counts, note by note:

- recall: a planted identifier counts as caught when its text no longer appears in its
  own note (whole-word match);
- false removals: planted clinical words that no longer appear in their note.

    .venv/bin/python bench/deid_recall.py                    # 2,000 notes, seed 7
    .venv/bin/python bench/deid_recall.py --rows 200 --seed 1 --json

``--hard`` measures the whole table instead, on the harder table of
``tests/deid/hard_table.py``: an encounter table (ten visits per patient) with identifiers
under odd column names, non-ASCII names, relatives, ages of 90 to 109 and notes that write
the patient's name in lower case. It prints identifiers planted vs surviving by kind (in
columns and in notes), whether the report claims Safe Harbor, what a second pass over the
output changes, and the clinical cells and words wrongly changed:

    .venv/bin/python bench/deid_recall.py --hard             # 40 patients x 10 visits, seed 11
    .venv/bin/python bench/deid_recall.py --hard --patients 20 --json
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from deid.hard_table import (  # noqa: E402
    CLINICAL_COLUMNS,
    clinical_changes,
    make_hard,
    surviving,
)
from deid.synthetic import make_identified  # noqa: E402
from medserve.deid import TEXT_ENGINE, deidentify  # noqa: E402


def measure(rows: int, seed: int) -> dict:
    """Scrub the notes twice: with the table's identifier columns, and alone (rules only)."""
    identified = make_identified(rows=rows, seed=seed)
    key = secrets.token_bytes(32)
    runs = {}
    for setting, frame in (
        ("with identifier columns", identified.frame),
        ("notes alone (rules only)", identified.frame[["notes", "glucose", "diagnosis"]]),
    ):
        started = time.perf_counter()
        notes = deidentify(frame, key=key).frame["notes"]
        runs[setting] = {"seconds": round(time.perf_counter() - started, 3)} | _score(
            notes, identified
        )
    return {"rows": rows, "seed": seed, "text_engine": TEXT_ENGINE, "runs": runs}


def _score(notes, identified) -> dict:
    planted, caught = Counter(), Counter()
    for note, identifiers in zip(notes, identified.note_identifiers, strict=True):
        for kind, value in identifiers:
            planted[kind] += 1
            if not re.search(rf"(?<!\w){re.escape(value)}(?!\w)", note):
                caught[kind] += 1
    words = removed = 0
    lost: Counter[str] = Counter()
    for note, clinical in zip(notes, identified.note_clinical_words, strict=True):
        for word in clinical:
            words += 1
            if not re.search(rf"\b{re.escape(word)}\b", note):
                removed += 1
                lost[word] += 1
    return {
        "recall": {kind: {"planted": planted[kind], "caught": caught[kind]} for kind in planted},
        "clinical_words": {"planted": words, "removed": removed, "removed_words": dict(lost)},
    }


def measure_hard(patients: int, visits: int, seed: int) -> dict:
    """De-identify the hard table (default policy), then count what survived, by kind; the
    notes also alone, without the identifier columns (rules only)."""
    table = make_hard(patients=patients, visits=visits, seed=seed)
    key = secrets.token_bytes(32)
    started = time.perf_counter()
    result = deidentify(table.frame, key=key)
    seconds = time.perf_counter() - started
    alone = deidentify(table.frame[["note", *CLINICAL_COLUMNS]], key=key).frame
    planted = Counter(item.kind for item in table.planted)
    left = Counter(item.kind for item in surviving(result.frame, table))
    in_notes = [item for item in table.planted if item.column == "note"]
    left_alone = Counter(item.kind for item in surviving(alone, table) if item.column == "note")
    again = deidentify(result.frame, key=key).frame
    report = _as_json(result.report)
    return {
        "patients": patients,
        "visits": visits,
        "seed": seed,
        "rows": len(table.frame),
        "seconds": round(seconds, 3),
        "survived": {
            kind: {
                "planted": planted[kind],
                "survived": left[kind],
                "survived_notes_alone": left_alone[kind]
                if any(item.kind == kind for item in in_notes)
                else None,
            }
            for kind in planted
        },
        "safe_harbor_claimed": report["safe_harbor"],
        "not_safe_harbor_because": len(report["not_safe_harbor_because"]),
        "second_pass_cells_changed": _cells_changed(result.frame, again),
        **clinical_changes(result.frame, table),
    }


def _as_json(report) -> dict:
    return report if isinstance(report, dict) else report.model_dump(mode="json")


def _cells_changed(first, second) -> int:
    """Cells that differ between two passes, and every cell of a column only one pass has."""
    changed = 0
    for column in set(first.columns) | set(second.columns):
        if column not in first.columns or column not in second.columns:
            changed += len(first)
            continue
        a, b = first[column].astype(object), second[column].astype(object)
        same = (a == b) | (a.isna() & b.isna())
        changed += int((~same).sum())
    return changed


def render_hard(summary: dict) -> None:
    console = Console()
    table = Table(
        title=(
            f"Hard table: identifiers surviving de-identification ({summary['rows']} rows: "
            f"{summary['patients']} patients x {summary['visits']} visits, seed {summary['seed']})"
        ),
        title_justify="left",
    )
    for column in ("kind", "planted", "survived", "share", "notes alone: survived"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, counts in summary["survived"].items():
        share = counts["survived"] / counts["planted"]
        alone = counts["survived_notes_alone"]
        alone_cell = "" if alone is None else f"{alone} ({alone / counts['planted']:.1%})"
        table.add_row(
            kind, str(counts["planted"]), str(counts["survived"]), f"{share:.1%}", alone_cell
        )
    planted = sum(c["planted"] for c in summary["survived"].values())
    left = sum(c["survived"] for c in summary["survived"].values())
    noted = [c for c in summary["survived"].values() if c["survived_notes_alone"] is not None]
    in_notes = sum(c["planted"] for c in noted)
    left_alone = sum(c["survived_notes_alone"] for c in noted)
    table.add_row(
        "all",
        str(planted),
        str(left),
        f"{left / planted:.1%}",
        f"{left_alone} of {in_notes} ({left_alone / in_notes:.1%})",
    )
    console.print(table)
    console.print(
        f"recall {1 - left / planted:.1%} ({planted - left} of {planted} caught); report claims "
        f"Safe Harbor: {summary['safe_harbor_claimed']} "
        f"({summary['not_safe_harbor_because']} reasons given)"
    )
    changed = summary["second_pass_cells_changed"]
    console.print(f"second pass over the output: {changed} cells changed")
    lost = {k.removeprefix("removed: "): v for k, v in summary.items() if k.startswith("removed: ")}
    console.print(
        f"clinical cells changed: {summary['clinical_cells_changed']} of "
        f"{summary['clinical_cells']}; clinical words wrongly removed from notes: "
        f"{summary['clinical_words_removed']} of {summary['clinical_words']}"
        + (f" {lost}" if lost else "")
        + f"; {summary['seconds']:.2f} s"
    )


def render(summary: dict) -> None:
    console = Console()
    runs = summary["runs"]
    table = Table(
        title=f"Identifiers in notes: recall ({summary['rows']} notes, seed {summary['seed']})",
        title_justify="left",
    )
    table.add_column("kind")
    table.add_column("planted", justify="right")
    for setting in runs:
        table.add_column(f"recall, {setting}", justify="right")
    first = next(iter(runs.values()))
    for kind, counts in first["recall"].items():
        cells = [
            f"{run['recall'][kind]['caught'] / counts['planted']:.1%}" for run in runs.values()
        ]
        table.add_row(kind, str(counts["planted"]), *cells)
    total = sum(c["planted"] for c in first["recall"].values())
    cells = [
        f"{sum(c['caught'] for c in run['recall'].values()) / total:.1%}" for run in runs.values()
    ]
    table.add_row("all", str(total), *cells)
    console.print(table)
    for setting, run in runs.items():
        words = run["clinical_words"]
        console.print(
            f"{setting}: clinical words wrongly removed {words['removed']} of "
            f"{words['planted']} ({words['removed'] / words['planted']:.2%})"
            + (f" {words['removed_words']}" if words["removed_words"] else "")
            + f"; {run['seconds']:.2f} s ({summary['rows'] / run['seconds']:.0f} notes/s)"
        )
    console.print(f"engine: {summary['text_engine']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--hard", action="store_true", help="the hard table, whole-table recall")
    parser.add_argument("--patients", type=int, default=40, help="--hard: patients")
    parser.add_argument("--visits", type=int, default=10, help="--hard: visits per patient")
    args = parser.parse_args()
    if args.hard:
        seed = 11 if args.seed == parser.get_default("seed") else args.seed
        hard = measure_hard(args.patients, args.visits, seed)
        print(json.dumps(hard, indent=2)) if args.json else render_hard(hard)
        return
    summary = measure(args.rows, args.seed)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        render(summary)


if __name__ == "__main__":
    main()
