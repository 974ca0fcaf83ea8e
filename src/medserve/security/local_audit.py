"""What people do to models and patient data on this machine, through the command line,
in the same audit trail as the service's requests: one record per action (deleting or
archiving a version), written as soon as the action is done and before the command
reports success; if it cannot be written the command fails and says so (exit code and
one line), so no action passes for recorded that is not.

A record says who (the login name, as ``role`` "local:NAME" cut to its column), what
(``route`` "cli models delete", ``method`` "CLI"; "python predict", "PYTHON" for the
Python API), the model and version and how many records were scored. As for requests,
never a value or an identifier of a patient.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from medserve.config import Settings
from medserve.core.user import login_name
from medserve.errors import RegistryError
from medserve.security.audit import AuditEntry, AuditLog
from medserve.storage.keystore import KeyStore
from medserve.storage.registry import ModelVersion

AUDIT_PURPOSE = "audit"  # the purpose key the trail is MACed with (as the service's)
LOCAL_CLIENT = "local"


def record_local_action(
    settings: Settings,
    engine: Engine,
    action: str,
    version: ModelVersion,
    *,
    n_records: int | None = None,
    channel: str = "cli",
) -> int:
    """Append the record of ``action`` (e.g. "models delete") on ``version`` and return its
    seq; raises if it cannot be written, before the caller reports the action done.
    ``channel`` is how it was asked: "cli" (the command line) or "python" (the API)."""
    entry = AuditEntry(
        route=f"{channel} {action}",
        method=channel.upper(),
        status=200,
        request_id=uuid.uuid4().hex,
        role=f"local:{login_name()}",
        model=version.name,
        model_version=version.version,
        n_records=n_records,
        client=LOCAL_CLIENT,
    )
    try:
        return AuditLog(engine, KeyStore(settings).purpose_key(AUDIT_PURPOSE)).append(entry)
    except (SQLAlchemyError, OSError) as error:  # the database or the disk, not the caller
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RegistryError(
            f"the audit record of '{channel} {action}' could not be written ({reason}); "
            "nothing was answered: check the database and the disk, then try again"
        ) from error
