"""`medserve fhir bind`: propose a model version's FHIR binding from its schema, then store
the binding the user edited, once it is checked against the version's schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medserve.core.user import login_name
from medserve.data.schema import Schema
from medserve.errors import ConfigError, option
from medserve.interop.fhir.binding import Binding, CdsOptIn
from medserve.interop.fhir.suggest import suggest_binding
from medserve.storage import ModelVersion, Registry
from medserve.storage.bindings import BindingStore

# Past this a file is not a binding someone edited.
MAX_BINDING_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Proposal:
    version: ModelVersion
    binding: Binding
    notes: list[str]  # per feature the table could not map, or mapped with a caveat: one line
    stored: bool  # True when the version already had a binding at the site (shown instead)


def propose(
    registry: Registry, ref: str, *, site: str, cds_hooks: list[str] | None = None
) -> Proposal:
    """The version's stored binding at ``site`` when it has one, else a proposal from its
    column names, labels and units (a curated LOINC table)."""
    version = registry.get(ref)
    schema = Schema.model_validate(version.schema)
    document = BindingStore(registry.engine).get(version.name, version.version, site)
    if document is not None:
        binding = Binding.model_validate(document)
        return Proposal(version, binding, [], True)
    binding, unmapped = suggest_binding(schema, version.name)
    updates: dict[str, object] = {"site": site}
    if cds_hooks:
        updates["cds"] = CdsOptIn.model_validate({"hooks": cds_hooks})
    return Proposal(version, binding.model_copy(update=updates), unmapped, False)


def store(
    registry: Registry, ref: str, file: Path, *, site: str | None = None
) -> tuple[ModelVersion, Binding]:
    """Check the binding in ``file`` against the version's schema and store it for its site
    (it holds codes and units, no patient data: stored as the registry's rows are);
    ``site``, when given, must be the file's."""
    version = registry.get(ref)
    try:
        size = file.stat().st_size
        if size > MAX_BINDING_BYTES:
            raise ConfigError(f"{file} is {size} bytes: a binding is a small YAML file")
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the binding {file}: {error}") from None
    binding = Binding.from_yaml(text, where=str(file))
    if binding.model != version.name:
        raise ConfigError(
            f"{file} binds model '{binding.model}', not '{version.name}': fix its 'model' line"
        )
    if site is not None and site != binding.site:
        raise ConfigError(
            f"{file} is the binding for site '{binding.site}', not '{site}': change its "
            f"'site' line, or leave out {option('site')}"
        )
    binding.check_against(Schema.model_validate(version.schema))
    BindingStore(registry.engine).put(
        version.name, version.version, binding.site, binding.model_dump(mode="json"), login_name()
    )
    return version, binding
