"""`medserve demo`: train on bundled real data, create a key, serve, show how to call it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from medserve.cli._common import ProgressBar, err, handle_errors, out, settings
from medserve.cli.serve import curl_example, start_server
from medserve.cli.train import show_training

app = typer.Typer()
DEMO_MODEL = "heart-disease"
DEMO_INTENDED_USE = (
    "Demonstration of medserve on the public UCI heart disease data (four sites, 1981-1988); "
    "not for clinical use."
)


def bundled_dataset(name: str) -> Path:
    return Path(str(resources.files("medserve") / "datasets" / name))


@app.command()
@handle_errors
def demo(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Start the service.")] = True,
) -> None:
    """Train on the bundled UCI heart disease data (outcome num > 0), then serve it."""
    from medserve.flows import TrainRequest, train_and_register
    from medserve.security.api_keys import ApiKeyStore
    from medserve.storage import Registry

    config = settings()
    data = bundled_dataset("heart_disease_uci.csv")
    err.print(f"Training on the bundled UCI heart disease data ({data.name}); outcome num > 0")
    request = TrainRequest(
        data=data,
        target="num",
        positive_if=">0",
        name=DEMO_MODEL,
        groups=["dataset", "sex"],  # dataset is the site: Cleveland, Hungary, Switzerland, VA
        intended_use=DEMO_INTENDED_USE,
    )
    with ProgressBar(enabled=True) as progress:
        outcome = train_and_register(config, request, progress)
    show_training(outcome)
    with Registry(config) as registry:
        if outcome.version.stage != "production":
            registry.promote(outcome.version.ref)
            out.print(f"promoted {outcome.version.ref} to production")
        _, key = ApiKeyStore(registry.engine).create("predictor", name="demo")
    url = f"http://{host}:{port}/v1/models/{DEMO_MODEL}/predict"
    record = pd.read_csv(data).drop(columns=["id", "num"]).iloc[0]
    example = {k: (None if pd.isna(v) else v) for k, v in record.to_dict().items()}
    out.print(f"\nAPI key (predictor role, shown once): [bold]{key}[/]")
    out.print(f"Predict URL: {url}")
    out.print("Try it:\n" + curl_example(url, key, example), soft_wrap=True)
    if serve:
        start_server(config, host, port)
