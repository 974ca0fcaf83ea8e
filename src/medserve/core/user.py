"""Who runs this process: the login name, for lineage and the audit trail."""

from __future__ import annotations

import getpass


def login_name() -> str:
    """The login name, or "unknown" where the system cannot say (a container without one)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
