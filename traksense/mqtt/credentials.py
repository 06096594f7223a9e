"""Device and gateway credentials on the broker: one dynamic-security client and one role each.

A credential for a tenant (a gateway's: any device of the tenant) or for one device may publish
to `ts/{tenant}/{device or +}/up` and subscribe to the matching `.../errors` topic; nothing
else (the plugin denies publishing and subscribing by default). The broker is the only store:
the client's textname holds the tenant id and its textdescription the device id (empty for a
tenant-wide credential), which is how `list` finds a tenant's credentials. The password is made
here, sent to the broker once (which keeps only a salted PBKDF2 hash) and printed once.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any, NamedTuple

from traksense.mqtt.control import Control, ControlError
from traksense.mqtt.url import BrokerUrl

_PREFIX = "ts-"  # every credential this module makes; `revoke` refuses other clients


class Credential(NamedTuple):
    username: str
    tenant_id: str
    device_id: str | None


def create(admin: BrokerUrl, tenant_id: uuid.UUID, device_id: uuid.UUID | None) -> tuple[str, str]:
    """Create a credential; return (username, password)."""
    tenant = str(tenant_id)
    device = str(device_id) if device_id is not None else None
    username = _PREFIX + secrets.token_hex(8)
    password = secrets.token_urlsafe(24)
    scope = device or "+"
    acls = [
        {"acltype": "publishClientSend", "topic": f"ts/{tenant}/{scope}/up", "allow": True},
        {"acltype": "subscribePattern", "topic": f"ts/{tenant}/{scope}/errors", "allow": True},
        {"acltype": "unsubscribePattern", "topic": f"ts/{tenant}/{scope}/errors", "allow": True},
    ]
    with Control(admin) as control:
        control.run(
            {"command": "createRole", "rolename": username, "acls": acls},
            {
                "command": "createClient",
                "username": username,
                "password": password,
                "textname": tenant,
                "textdescription": device or "",
                "roles": [{"rolename": username}],
            },
        )
    return username, password


def list_for(admin: BrokerUrl, tenant_id: uuid.UUID) -> list[Credential]:
    """The tenant's credentials, by username."""
    with Control(admin) as control:
        [answer] = control.run({"command": "listClients", "verbose": True})
    clients: list[dict[str, Any]] = answer.get("data", {}).get("clients", [])
    return sorted(
        (
            Credential(c["username"], c["textname"], c.get("textdescription") or None)
            for c in clients
            if c.get("username", "").startswith(_PREFIX) and c.get("textname") == str(tenant_id)
        ),
        key=lambda c: c.username,
    )


def revoke(admin: BrokerUrl, username: str) -> Credential:
    """Delete a credential and its role. The broker disconnects a client using it at once, and
    refuses it from then on. Raises ControlError for an unknown username."""
    if not username.startswith(_PREFIX):
        raise ControlError(f"{username!r} is not a device credential (they start with {_PREFIX!r})")
    with Control(admin) as control:
        [answer] = control.run({"command": "getClient", "username": username})
        client = answer.get("data", {}).get("client", {})
        control.run(
            {"command": "deleteClient", "username": username},
            {"command": "deleteRole", "rolename": username},
        )
    return Credential(username, client.get("textname", ""), client.get("textdescription") or None)
