"""First-run conveniences of `traksense serve`."""

from __future__ import annotations

from traksense.tenancy.keys import create_key
from traksense.tenancy.models import Tenant

DEMO_TENANT = "demo"


def ensure_demo_tenant() -> str | None:
    """On a database with no tenant at all, create a demo tenant and return its new API key
    (None when tenants already exist: keys are shown once and never again)."""
    if Tenant.objects.exists():
        return None
    tenant = Tenant.objects.create(name=DEMO_TENANT)
    return create_key(tenant)
