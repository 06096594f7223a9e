"""tenant_context(): the one way to act for a tenant.

It opens a transaction, sets app.tenant_id with set_config(..., true) (transaction-local) and
switches to app_user with SET LOCAL ROLE. Both end with the transaction, so a pooled connection
never carries one request's tenant or role into the next. No session-level SET anywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections, transaction
from django.db.backends.utils import CursorWrapper

RUNTIME_ROLE = "app_user"


@contextmanager
def tenant_context(tenant_id: uuid.UUID | str, using: str = "default") -> Iterator[CursorWrapper]:
    """Run the block in a transaction as app_user for `tenant_id`; yields a cursor."""
    tenant = str(uuid.UUID(str(tenant_id)))
    connection = connections[using]
    nested = connection.in_atomic_block
    with transaction.atomic(using=using), connection.cursor() as cursor:
        # One round trip: set_config('role', ..., true) is SET LOCAL ROLE. The target list is
        # evaluated left to right, so current_user is read before the switch.
        cursor.execute(
            "SELECT current_user::text, set_config('app.tenant_id', %s, true),"
            " set_config('role', %s, true)",
            [tenant, RUNTIME_ROLE],
        )
        if cursor.fetchone()[0] == RUNTIME_ROLE:
            # The savepoint (or transaction) rollback on the way out undoes both settings.
            raise RuntimeError("tenant_context() cannot be nested")
        yield cursor
        if nested:
            # Inside an outer transaction (a test's, or a job acting for tenants in turn) SET
            # LOCAL would outlive this block once its savepoint is released: undo it. On an
            # error the savepoint rollback undoes both settings by itself.
            cursor.execute("SET LOCAL ROLE NONE")
            cursor.execute("SELECT set_config('app.tenant_id', '', true)")
