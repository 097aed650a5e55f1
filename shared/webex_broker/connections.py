"""The connections table: one row per connection, its schedule, its lease and its health.

Due connections are found through a sparse index keyed by next refresh time (only schedulable rows
carry the `schedule` attribute), so a run costs work proportional to what is due, not to what is
stored. A lease on the row makes sure exactly one refresher works on a connection at a time.
"""

from collections.abc import Iterator
from datetime import datetime

from botocore.exceptions import ClientError

from webex_broker import aws
from webex_broker.token_documents import TokenRecord, fingerprint

ACTIVE = "active"
PENDING = "pending"  # claimed by a login that has not finished (or crashed before writing its tokens)
REAUTH_REQUIRED = "reauth_required"
SCHEDULE_INDEX = "ScheduleIndex"
SCHEDULED = "scheduled"
_LEASE = ("lease_owner", "lease_expires_at")
_ERROR = ("last_error", "last_error_class", "last_error_at", "last_tracking_id")


class LeaseLost(Exception):
    """Another worker took the connection over (our lease expired); our write was refused."""


def epoch(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def _expression(
    set_values: dict, *, keep_first: tuple[str, ...] = (), remove: tuple[str, ...] = (), add: dict | None = None
) -> dict:
    """SET non-empty values (keep_first ones only where missing), ADD counters, REMOVE names."""
    set_values = {k: v for k, v in set_values.items() if v is not None}
    add = add or {}
    names, values, clauses = {}, {}, []
    sets = []
    for key, value in set_values.items():
        names[f"#{key}"] = key
        values[f":{key}"] = value
        sets.append(f"#{key} = if_not_exists(#{key}, :{key})" if key in keep_first else f"#{key} = :{key}")
    if sets:
        clauses.append("SET " + ", ".join(sets))
    if add:
        for key, value in add.items():
            names[f"#{key}"] = key
            values[f":{key}"] = value
        clauses.append("ADD " + ", ".join(f"#{k} :{k}" for k in add))
    if remove:
        names.update({f"#{k}": k for k in remove})
        clauses.append("REMOVE " + ", ".join(f"#{k}" for k in remove))
    return {
        "UpdateExpression": " ".join(clauses),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": aws.to_item(values),
    }


class ConnectionsTable:
    def __init__(self, table_name: str):
        self._table = table_name

    def claim(self, connection: str, *, person_id: str, email: str, now: int) -> bool:
        """Bind the connection to this person before any secret is written; False if someone else has it."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self._table,
                Key={"connection": {"S": connection}},
                **_expression(
                    {"person_id": person_id, "email": email, "created_at": now, "status": PENDING},
                    keep_first=("created_at", "status"),
                ),
                ConditionExpression="attribute_not_exists(person_id) OR person_id = :person_id",
            )
        except ClientError as exc:
            if aws.condition_failed(exc):
                return False
            raise
        return True

    def drop_pending_claim(self, connection: str, *, person_id: str) -> None:
        """Undo a claim whose login failed before any token was stored (a finished login is never removed)."""
        try:
            aws.client("dynamodb").delete_item(
                TableName=self._table,
                Key={"connection": {"S": connection}},
                ConditionExpression="#status = :pending AND person_id = :person_id",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":pending": {"S": PENDING}, ":person_id": {"S": person_id}},
            )
        except ClientError as exc:
            if not aws.condition_failed(exc):
                raise

    def record_login(
        self, record: TokenRecord, *, consumer_secret_arn: str, next_refresh_at: int, login_base_url: str
    ) -> None:
        """A (re)authorization makes the connection healthy and schedulable again."""
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
                "schedule": SCHEDULED,
                "consumer_secret_arn": consumer_secret_arn,
                "login_base_url": login_base_url,
                "access_expires_at": epoch(record.grant.access_expires_at),
                "access_token_id": fingerprint(record.grant.access_token),
                "refresh_expires_at": epoch(record.grant.refresh_expires_at),
                "next_refresh_at": next_refresh_at,
                "refreshed_at": now,
                "consecutive_failures": 0,
                "authorized_at": now,
                "updated_at": now,
                "created_at": now,
            },
            keep_first=("created_at",),
            remove=_ERROR,
        )

    def get(self, connection: str) -> dict | None:
        return aws.get_item(self._table, "connection", connection)

    def all(self) -> list[dict]:
        """Every row, for operators' listings (a scan: not on any hot path)."""
        return sorted(aws.scan(self._table), key=lambda row: row["connection"])

    def delete(self, connection: str) -> None:
        aws.client("dynamodb").delete_item(TableName=self._table, Key={"connection": {"S": connection}})

    def due(self, now: int) -> Iterator[str]:
        """Names of schedulable connections whose next refresh time has come, earliest first."""
        paginator = aws.client("dynamodb").get_paginator("query")
        pages = paginator.paginate(
            TableName=self._table,
            IndexName=SCHEDULE_INDEX,
            KeyConditionExpression="#schedule = :scheduled AND next_refresh_at <= :now",
            ExpressionAttributeNames={"#schedule": "schedule"},
            ExpressionAttributeValues={":scheduled": {"S": SCHEDULED}, ":now": {"N": str(now)}},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield item["connection"]["S"]

    def next_up(self, now: int) -> dict | None:
        """The earliest connection not yet due (for the 'time to earliest expiry' figures)."""
        items = aws.client("dynamodb").query(
            TableName=self._table,
            IndexName=SCHEDULE_INDEX,
            KeyConditionExpression="#schedule = :scheduled AND next_refresh_at > :now",
            ExpressionAttributeNames={"#schedule": "schedule"},
            ExpressionAttributeValues={":scheduled": {"S": SCHEDULED}, ":now": {"N": str(now)}},
            Limit=1,
        )["Items"]
        return self.get(items[0]["connection"]["S"]) if items else None

    def acquire(self, connection: str, *, owner: str, now: int, lease_seconds: int) -> dict | None:
        """Take the lease, or None if someone else holds an unexpired one (or the row is gone).

        Returns the row as it stands after acquiring: the caller decides on fresh data, never on
        what a possibly stale index said."""
        try:
            response = aws.client("dynamodb").update_item(
                TableName=self._table,
                Key={"connection": {"S": connection}},
                UpdateExpression="SET lease_owner = :owner, lease_expires_at = :until",
                ConditionExpression=(
                    "attribute_exists(#c) AND "
                    "(attribute_not_exists(lease_expires_at) OR lease_expires_at < :now OR lease_owner = :owner)"
                ),
                ExpressionAttributeNames={"#c": "connection"},
                ExpressionAttributeValues=aws.to_item({":owner": owner, ":until": now + lease_seconds, ":now": now}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if aws.condition_failed(exc):
                return None
            raise
        return aws.from_item(response["Attributes"])

    def release(self, connection: str, *, owner: str) -> None:
        self._owned_update(connection, owner, {}, remove=_LEASE)

    def record_refresh(self, record: TokenRecord, *, owner: str, next_refresh_at: int) -> None:
        """The last step of a refresh: new expiry and schedule, health reset, lease released."""
        now = epoch(record.updated_at)
        self._owned_update(
            record.connection,
            owner,
            {
                "status": ACTIVE,
                "schedule": SCHEDULED,
                "access_expires_at": epoch(record.grant.access_expires_at),
                "access_token_id": fingerprint(record.grant.access_token),
                "refresh_expires_at": epoch(record.grant.refresh_expires_at),
                "next_refresh_at": next_refresh_at,
                "refreshed_at": now,
                "last_attempt_at": now,
                "consecutive_failures": 0,
                "updated_at": now,
            },
            remove=_LEASE + _ERROR,
        )

    def record_failure(
        self, connection: str, *, owner: str, error: str, error_class: str, tracking_id: str, now: int, retry_at: int
    ) -> None:
        """A transient failure: status unchanged, the error and the next attempt recorded."""
        self._owned_update(
            connection,
            owner,
            {
                "last_error": error,
                "last_error_class": error_class,
                "last_error_at": now,
                "last_tracking_id": tracking_id or None,
                "last_attempt_at": now,
                "next_refresh_at": retry_at,
                "updated_at": now,
            },
            add={"consecutive_failures": 1},
            remove=_LEASE,
        )

    def mark_reauth_required(self, connection: str, *, owner: str, error: str, tracking_id: str, now: int) -> None:
        """The grant is dead: stop scheduling it (out of the index) and keep everything else for inspection."""
        self._owned_update(
            connection,
            owner,
            {
                "status": REAUTH_REQUIRED,
                "last_error": error,
                "last_error_class": "permanent",
                "last_error_at": now,
                "last_tracking_id": tracking_id or None,
                "last_attempt_at": now,
                "updated_at": now,
            },
            remove=(*_LEASE, "schedule"),
        )

    def _owned_update(
        self, connection: str, owner: str, values: dict, *, remove: tuple = (), add: dict | None = None
    ) -> None:
        """Only the lease holder may write; anyone else's write is refused and reported."""
        expression = _expression(values, remove=remove, add=add)
        expression["ExpressionAttributeValues"][":owner"] = {"S": owner}
        try:
            aws.client("dynamodb").update_item(
                TableName=self._table,
                Key={"connection": {"S": connection}},
                ConditionExpression="lease_owner = :owner",
                **expression,
            )
        except ClientError as exc:
            if aws.condition_failed(exc):
                raise LeaseLost(connection) from None
            raise

    def _update(self, connection: str, values: dict, *, keep_first: tuple = (), remove: tuple = ()) -> None:
        aws.client("dynamodb").update_item(
            TableName=self._table,
            Key={"connection": {"S": connection}},
            **_expression(values, keep_first=keep_first, remove=remove),
        )
