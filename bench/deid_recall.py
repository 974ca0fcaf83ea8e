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
    args = parser.parse_args()
    summary = measure(args.rows, args.seed)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        render(summary)


if __name__ == "__main__":
    main()
