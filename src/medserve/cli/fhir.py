"""`medserve fhir bind NAME[:VERSION]`: propose a FHIR binding, then store the edited one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medserve.cli._common import JsonFlag, err, handle_errors, out, print_json, settings

app = typer.Typer(help="FHIR: where a model's features are read in a patient's record.")


@app.command()
@handle_errors
def bind(
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION (default: production).")],
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Store this edited binding (YAML) for the version."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the proposal here.")
    ] = None,
    site: Annotated[
        str | None, typer.Option(help="The site the binding is for (default: 'default').")
    ] = None,
    cds: Annotated[
        list[str] | None,
        typer.Option(
            "--cds", help="Offer the model on this CDS Hook (patient-view, encounter-discharge)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Without --file: print (or write with -o) the version's binding, proposed from its
    column names and a curated LOINC table when it has none, with what could not be mapped.
    Edit it, then store it with --file."""
    from medserve.flows.fhir_binding import propose, store
    from medserve.storage import Registry

    config = settings()
    with Registry(config) as registry:
        if file is not None:
            version, binding = store(registry, model, file, site=site)
            bound = sum(1 for _ in binding.bound())
            if as_json:
                print_json(
                    {"model": version.name, "version": version.version, "site": binding.site,
                     "bound": bound, "unbound": binding.unbound}
                )  # fmt: skip
                return
            out.print(
                f"stored the FHIR binding of {version.ref} at site '{binding.site}': "
                f"{bound} features bound, {len(binding.unbound)} always missing"
            )
            return
        proposal = propose(registry, model, site=site or "default", cds_hooks=cds)
    text = proposal.binding.to_yaml()
    if as_json:
        print_json(
            {"model": proposal.version.name, "version": proposal.version.version,
             "stored": proposal.stored, "binding": proposal.binding.model_dump(mode="json"),
             "notes": proposal.notes}
        )  # fmt: skip
        return
    if output is not None:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote the proposed binding of {proposal.version.ref} to {output}")
    else:
        out.print(text, end="", soft_wrap=True, markup=False, highlight=False)
    what = "stored binding" if proposal.stored else "proposal"
    if proposal.stored and cds:
        err.print("--cds is for a proposal: add a cds section to the stored binding instead")
    for line in proposal.notes:
        err.print(line, markup=False)
    err.print(
        f"this is the {what}: edit it, then store it with "
        f"`medserve fhir bind {proposal.version.ref} --file FILE`",
        markup=False,
    )
