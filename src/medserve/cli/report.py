"""`medserve report NAME[:VERSION]`: where a model's report is, its JSON, or a browser on it."""

from __future__ import annotations

import json
import shutil
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from medserve.cli._common import JsonFlag, err, handle_errors, out, print_json, settings

app = typer.Typer()


@app.command()
@handle_errors
def report(
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION")],
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the HTML report in the default browser.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write a copy here (HTML; JSON with --json)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The model report (TRIPOD+AI style): prints the path of its self-contained HTML page."""
    from medserve.data.io import check_output
    from medserve.flows import restore_page, stored_report
    from medserve.storage import Registry

    if output is not None:
        check_output(output, suffixes=None)
    config = settings()
    with Registry(config) as registry:
        found = stored_report(registry, config, model)
    if as_json and output is None:
        print_json(json.loads(found.json_path.read_text(encoding="utf-8")))
        return
    # A report stored without its page (an older release) gets it written now.
    shown = found.json_path if as_json else restore_page(found)
    if output is not None:
        shutil.copyfile(shown, output)
        shown = output
    out.print(str(shown.resolve()), soft_wrap=True)
    if open_browser and not webbrowser.open(shown.resolve().as_uri()):
        err.print("could not start a browser here; open the file above yourself")
