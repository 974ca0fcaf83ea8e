"""`medserve monitor NAME`, `medserve predictions outcomes NAME --data FILE` and
`medserve predictions purge`: the monitoring view of a
deployed model for a person (drift per window, live performance, the shadow compared with
production, card feedback), outcomes from a hospital's export, and the retention purge of
the prediction log.

Thin shells over flows/monitor.py. Everything shown is an aggregate; a window or result
with fewer than MEDSERVE_MONITOR_MIN_N rows reads "suppressed", never a number."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from medserve.cli._common import (
    JsonFlag,
    fmt,
    handle_errors,
    metric_cell,
    out,
    print_json,
    settings,
)
from medserve.cli.options import DecimalOption, EncodingOption, SepOption, read_options

app = typer.Typer()
predictions = typer.Typer(
    help="The prediction log: ids, times, risks, outcomes; never a feature value.",
    no_args_is_help=True,
)

# Drift windows shown in the table, newest first (the JSON has them all).
DRIFT_ROWS = 7
SUPPRESSED = "[dim]suppressed[/]"
NO_PROFILE = "trained before monitoring existed or imported: no reference profile"


@app.command("monitor")
@handle_errors
def monitor(
    name: Annotated[str, typer.Argument(help="The model name.")],
    as_json: JsonFlag = False,
) -> None:
    """Drift per window, live performance per version, the shadow compared with production
    on the same patients, and what clinicians did with the cards."""
    from medserve.flows.monitor import Monitoring
    from medserve.storage import Registry

    home = settings()
    with Registry(home) as registry:
        view = Monitoring(home, registry).view(name)
    if as_json:
        print_json(view)
        return
    out.print(_header(view), soft_wrap=True)
    _print_drift(view["drift"], view["min_n"])
    _print_performance(view["performance"])
    _print_shadow(view["shadow"])
    _print_cards(view["cards"])


def _header(view: dict[str, Any]) -> str:
    log = view["log"]
    production = view["production_version"]
    said = [
        f"[bold]{escape(view['model'])}[/]",
        f"production v{production}" if production is not None else "no production version",
    ]
    if view["shadow_version"] is not None:
        said.append(f"shadow v{view['shadow_version']} (since {_when(view['shadow_since'])} UTC)")
    said.append(f"window {_duration(view['window_s'])}")
    said.append(
        f"logged: {log['predictions']} predictions, {log['outcomes']} outcomes, "
        f"{log['shadow_predictions']} shadow predictions"
    )
    return " · ".join(said)


def _duration(seconds: int) -> str:
    for unit, length in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds % length == 0:
            return f"{seconds // length} {unit}"
    return f"{seconds} s"


def _print_drift(drift: dict[str, Any], min_n: int) -> None:
    windows = drift["windows"]
    if windows:
        table = Table(title="Drift (newest window first)", title_justify="left")
        for column in ("window start (UTC)", "version", "n", "alerts"):
            table.add_column(column, justify="right" if column == "n" else "left")
        for window in windows[:DRIFT_ROWS]:
            if window["suppressed"]:
                n, alerts = "–", f"suppressed (fewer than {min_n})"
            else:
                n, alerts = str(window["n"]), _alert_cell(window["alerts"])
            table.add_row(_when(window["start"]), f"v{window['version']}", n, alerts)
        out.print(table)
        if len(windows) > DRIFT_ROWS:
            out.print(f"({len(windows) - DRIFT_ROWS} older windows: --json)")
    else:
        out.print("Drift: no windows of predictions yet")
    if drift["alerts"]:
        out.print("Latest window's alerts:")
        for alert in drift["alerts"]:
            out.print(f"  • {escape(alert['message'])}", soft_wrap=True)
    without = drift["versions_without_profile"]
    if without:
        named = ", ".join(f"v{v}" for v in without)
        out.print(f"[dim]{named}: {NO_PROFILE}; no drift is measured for them[/]")


def _alert_cell(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return "none"
    more = f" (+{len(alerts) - 1} more)" if len(alerts) > 1 else ""
    return f"{len(alerts)}: {escape(alerts[0]['message'])}{more}"


def _when(iso: str) -> str:
    return iso[:16].replace("T", " ")


PERFORMANCE_ROWS = (
    ("AUROC", "auroc"),
    ("O:E", "oe_ratio"),
    ("calibration slope", "calibration_slope"),
    ("sensitivity", "sensitivity"),
    ("PPV", "ppv"),
    ("net benefit", "net_benefit"),
)


def _print_performance(performance: dict[str, Any]) -> None:
    versions = performance["versions"]
    if not versions:
        out.print("Live performance: no outcomes reported yet")
        return
    table = Table(title="Live performance (on outcomes)", title_justify="left")
    table.add_column("")
    for version in versions:
        table.add_column(f"v{version}", justify="right")
    overall = [v["overall"] for v in versions.values()]
    table.add_row("n", *(str(o["n"]) if not o["suppressed"] else SUPPRESSED for o in overall))
    table.add_row("events", *(_count(o, "events") for o in overall))
    for label, key in PERFORMANCE_ROWS:
        table.add_row(label, *(_metric(o, key) for o in overall))
    table.add_row("threshold", *(_count(o, "threshold") for o in overall))
    out.print(table)
    for version, shown in versions.items():
        cells = [_window_cell(w) for w in shown["windows"]]
        out.print(
            f"v{version} AUROC per window (UTC), oldest first: {' · '.join(cells)}", soft_wrap=True
        )
    suppressed = next((o for o in overall if o["suppressed"]), None)
    if suppressed is not None:
        out.print(f"[dim]suppressed: {escape(suppressed['reason'])}[/]", soft_wrap=True)


def _count(result: dict[str, Any], key: str) -> str:
    return SUPPRESSED if result["suppressed"] else fmt(result[key])


def _metric(result: dict[str, Any], key: str) -> str:
    if result["suppressed"]:
        return SUPPRESSED
    metric = result[key]
    if metric.get("estimate") is None:
        return "–"
    return metric_cell(metric)


def _window_cell(window: dict[str, Any]) -> str:
    start = window["start"][5:16].replace("T", " ")
    if window["suppressed"]:
        return f"{start} suppressed"
    return f"{start} {fmt(window['auroc']['estimate'])} (n {window['n']})"


def _print_shadow(shadow: dict[str, Any] | None) -> None:
    if shadow is None:
        out.print("Shadow: none (`medserve models shadow NAME:VERSION` scores a candidate)")
        return
    out.print(f"[bold]Shadow v{shadow['version']}[/]: {escape(shadow['sentence'])}", soft_wrap=True)
    difference = shadow.get("auroc_difference")
    if difference and difference.get("estimate") is not None:
        low, high = difference["ci95"]
        interval = (
            "interval not estimable"
            if low is None or high is None
            else f"95% CI {low:+.3f} to {high:+.3f}"
        )
        out.print(
            f"  AUROC difference (shadow − production): {difference['estimate']:+.3f} "
            f"({interval}, paired bootstrap, n {shadow['n']})"
        )


def _print_cards(cards: dict[str, Any]) -> None:
    if cards["suppressed"]:
        out.print(f"Cards: suppressed ({escape(cards['reason'])})", soft_wrap=True)
        return
    reasons = ", ".join(f"{code} {n}" for code, n in sorted(cards["override_reasons"].items()))
    out.print(
        f"Cards: {cards['feedback']} with feedback: {cards['accepted']} accepted, "
        f"{cards['overridden']} overridden" + (f" (reasons: {escape(reasons)})" if reasons else "")
    )


@predictions.command("purge")
@handle_errors
def predictions_purge(
    older_than_days: Annotated[
        int | None,
        typer.Option(
            "--older-than-days",
            help="Remove what is older than this many days (default: "
            "MEDSERVE_PREDICTION_RETENTION_DAYS).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove logged predictions, their outcomes and drift windows older than the
    retention."""
    from medserve.flows.monitor import purge

    purged = purge(settings(), older_than_days)
    if as_json:
        print_json(
            {
                "before": purged.before.isoformat(),
                "predictions": purged.predictions,
                "outcomes": purged.outcomes,
                "windows": purged.windows,
            }
        )
        return
    out.print(
        f"removed {purged.predictions} predictions, {purged.outcomes} outcomes and "
        f"{purged.windows} drift windows from before {purged.before.isoformat(timespec='seconds')}",
        soft_wrap=True,
    )


@predictions.command("outcomes")
@handle_errors
def predictions_outcomes(
    name: Annotated[str, typer.Argument(help="The model name.")],
    data: Annotated[
        Path, typer.Option("--data", help="A table of outcomes: one row per prediction.")
    ],
    id_column: Annotated[
        str, typer.Option("--id-column", help="The column holding the prediction ids.")
    ] = "prediction_id",
    outcome_column: Annotated[
        str, typer.Option("--outcome-column", help="The column holding the outcome (0 or 1).")
    ] = "outcome",
    subject_column: Annotated[
        str | None,
        typer.Option(
            "--subject-column",
            help="Instead of ids: the column of subject ids the predict calls carried; the "
            "outcome goes to the subject's latest prediction at or before --at-column.",
        ),
    ] = None,
    at_column: Annotated[
        str | None, typer.Option("--at-column", help="With --subject-column: the time.")
    ] = None,
    sep: SepOption = None,
    decimal: DecimalOption = None,
    encoding: EncodingOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Send observed outcomes for earlier predictions from a file (as POST
    /v1/models/NAME/feedback does): all stored or none."""
    from medserve.flows.monitor import record_outcome_file

    ids = record_outcome_file(
        settings(), name, data, id_column=id_column, outcome_column=outcome_column,
        subject_column=subject_column, at_column=at_column,
        read=read_options(sep, decimal, encoding),
    )  # fmt: skip
    if as_json:
        print_json({"model": name, "stored": len(ids), "prediction_ids": ids})
        return
    out.print(f"stored {len(ids)} outcomes for {name}; see `medserve monitor {name}`")
