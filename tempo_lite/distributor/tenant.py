"""Tenant IDs: Tempo's rules (dskit `tenant.ValidTenantID`), plus what makes an ID a safe directory name.

A tenant ID names a directory in object storage (`<tenant>/<block id>/...`) and a label value, so:
- 1 to 150 characters (Tempo's MaxTenantIDLength);
- only ASCII letters, digits and `! - _ . * ' ( )` (Tempo's set);
- not `.` or `..` (Tempo), and not starting with `.`: hidden names are what the local store uses for
  its temporary files (`.<name>.<uuid>.tmp`), so such a tenant's blocks would be skipped when listed.
Refused at the door with HTTP 400 / INVALID_ARGUMENT naming the rule (docs/reliability.md).
"""

from __future__ import annotations

import re

from tempo_lite.errors import InvalidRequest

MAX_TENANT_ID_LENGTH = 150
_ALLOWED = re.compile(r"[A-Za-z0-9!\-_.*'()]+")


def tenant_id_problem(tenant: str) -> str | None:
    """Why `tenant` is not a valid tenant ID, else None."""
    if not tenant:
        return "tenant ID is empty"
    if len(tenant) > MAX_TENANT_ID_LENGTH:
        return f"tenant ID is {len(tenant)} characters long, more than the {MAX_TENANT_ID_LENGTH} allowed"
    if not _ALLOWED.fullmatch(tenant):
        bad = sorted({c for c in tenant if not _ALLOWED.fullmatch(c)})
        return (f"tenant ID contains unsupported character(s) {''.join(bad)!r} (allowed: letters, digits and "
                "! - _ . * ' ( ))")
    if tenant in (".", ".."):
        return f"tenant ID {tenant!r} is not allowed"
    if tenant.startswith("."):
        return "tenant ID must not start with '.' (hidden and temporary names in storage)"
    return None


def check_tenant_id(tenant: str) -> None:
    problem = tenant_id_problem(tenant)
    if problem is not None:
        shown = tenant if len(tenant) <= 40 else tenant[:40] + "..."
        raise InvalidRequest(f"invalid tenant ID {shown!r}: {problem}")
