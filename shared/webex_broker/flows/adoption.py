"""Adopting connections whose secrets outlived their row: a stack deleted and created again (its
new connections table starts empty), or a table restored from an older backup.

A connection is adopted only on proof that it is whole: its token secret and its refresh secret
both exist. The row is rebuilt from the token secret (who or which Service App, which scopes,
until when) and made due at once, so the next refresh shows whether the grant still works (and puts
a Service App's `via` back on the row); the refresh token is never read.
"""

from webex_broker.adapters.connections import ConnectionsTable
from webex_broker.adapters.secret_store import SecretNames, get_secret_document, secret_arn, secret_names
from webex_broker.core.clock import parse_iso
from webex_broker.core.connection import Connection, ConnectionKind, ConnectionStatus
from webex_broker.core.token_documents import fingerprint, service_app_owner_id


def orphans(names: SecretNames, table: ConnectionsTable) -> list[str]:
    """Connections with a token secret under this prefix (not scheduled for deletion) and no row."""
    prefix = names.token_secret("")
    found = {name.removeprefix(prefix) for name in secret_names(prefix)}
    return sorted(name for name in found if name and "/" not in name and table.get(name) is None)


def adopt(connection: str, names: SecretNames, table: ConnectionsTable, *, login_base_url: str, now: int) -> bool:
    """Rebuild one row; False when the connection is not whole (no refresh secret) or a row appeared."""
    if secret_arn(names.refresh_secret(connection)) is None:
        return False
    document = get_secret_document(names.token_secret(connection))
    kind = ConnectionKind(document.get("kind", ConnectionKind.PERSON))
    app_id = document.get("app_id", "")
    owner = service_app_owner_id(app_id, document["org_id"]) if kind == ConnectionKind.SERVICE_APP else None
    row = Connection(
        name=connection,
        status=ConnectionStatus.ACTIVE,
        kind=kind,
        app_id=app_id,
        person_id=owner or document["person_id"],
        email=document["email"],
        display_name=document.get("display_name", ""),
        org_id=document.get("org_id", ""),
        scopes=tuple(document.get("scopes", ())),
        consumer_secret_arn=secret_arn(names.token_secret(connection)) or "",
        access_expires_at=int(parse_iso(document["expires_at"]).timestamp()),
        access_token_id=fingerprint(document["access_token"]),
        login_base_url=login_base_url,
    )
    return table.record_adoption(row, now=now)
