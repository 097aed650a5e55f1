"""The connections table: one row per connection, so the refresher never has to list secrets."""

from collections.abc import Iterator
from datetime import datetime

from webex_broker import aws
from webex_broker.token_documents import TokenRecord

ACTIVE = "active"


def epoch(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def _update_expression(values: dict, *, keep_first: tuple[str, ...] = ()) -> dict:
    """SET every non-empty value; names in keep_first are written only if the row lacks them."""
    values = {k: v for k, v in values.items() if v is not None}
    parts = [f"#{k} = if_not_exists(#{k}, :{k})" if k in keep_first else f"#{k} = :{k}" for k in values]
    return {
        "UpdateExpression": "SET " + ", ".join(parts),
        "ExpressionAttributeNames": {f"#{k}": k for k in values},
        "ExpressionAttributeValues": {f":{k}": v for k, v in aws.to_item(values).items()},
    }


class ConnectionsTable:
    def __init__(self, table_name: str):
        self._table = table_name

    def record_login(self, record: TokenRecord, *, consumer_secret_arn: str, next_refresh_at: int) -> None:
        now = epoch(record.updated_at)
        self._update(
            record.connection,
            {
                "person_id": record.person.id,
                "email": record.person.email,
                "display_name": record.person.display_name,
                "org_id": record.person.org_id,
                "scopes": list(record.grant.scopes),
                "status": ACTIVE,
                "consumer_secret_arn": consumer_secret_arn,
                "access_expires_at": epoch(record.grant.access_expires_at),
                "refresh_expires_at": epoch(record.grant.refresh_expires_at),
                "next_refresh_at": next_refresh_at,
                "authorized_at": now,
                "updated_at": now,
                "created_at": now,
            },
            keep_first=("created_at",),
        )

    def record_refresh(self, record: TokenRecord, *, next_refresh_at: int) -> None:
        now = epoch(record.updated_at)
        self._update(
            record.connection,
            {
                "access_expires_at": epoch(record.grant.access_expires_at),
                "refresh_expires_at": epoch(record.grant.refresh_expires_at),
                "next_refresh_at": next_refresh_at,
                "last_refreshed_at": now,
                "updated_at": now,
            },
        )

    def get(self, connection: str) -> dict | None:
        item = (
            aws.client("dynamodb")
            .get_item(TableName=self._table, Key={"connection": {"S": connection}}, ConsistentRead=True)
            .get("Item")
        )
        return aws.from_item(item) if item else None

    def due(self, now: int) -> Iterator[dict]:
        """Active connections whose next refresh time has come."""
        paginator = aws.client("dynamodb").get_paginator("scan")
        pages = paginator.paginate(
            TableName=self._table,
            FilterExpression="#status = :active AND next_refresh_at <= :now",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":active": {"S": ACTIVE}, ":now": {"N": str(now)}},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield aws.from_item(item)

    def _update(self, connection: str, values: dict, *, keep_first: tuple[str, ...] = ()) -> None:
        aws.client("dynamodb").update_item(
            TableName=self._table,
            Key={"connection": {"S": connection}},
            **_update_expression(values, keep_first=keep_first),
        )
