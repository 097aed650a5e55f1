"""The connections table: one row per connection, its schedule, its lease and its health.

Due connections are found through a sparse index keyed by next refresh time (only schedulable rows
carry the `schedule` attribute), so a run costs work proportional to what is due, not to what is
stored. A lease on the row makes sure exactly one refresher works on a connection at a time.
"""

import contextlib
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from webex_broker.adapters import aws
from webex_broker.core.clock import epoch
from webex_broker.core.connection import Connection, ConnectionKind, ConnectionStatus
from webex_broker.core.errors import AwsAccessDenied, CoolingDown, LeaseLost
from webex_broker.core.token_documents import TokenRecord, fingerprint

SCHEDULE_INDEX = "ScheduleIndex"
STATUS_INDEX = "StatusIndex"  # keys only, by status: what a run counts for the dashboard
RUN_RECORD = "#refresher"  # not a connection: '#' is outside every connection name; `doctor` reads it
ASKED_RUN = "#run#"  # + a run id: the report of a run `webex-broker refresh --due` asked for, until it reads it
SCHEDULED = "scheduled"
_LEASE = ("lease_owner", "lease_expires_at")
_ERROR = ("last_error", "last_error_class", "last_error_at", "last_tracking_id", "failing_since")
_REFUSAL = ("refused_error", "refused_since")  # a streak of unexplained refusals, cleared by any success


def _service_app_fields(record: TokenRecord) -> dict:
    app = record.service_app
    return {"app_id": app.app_id, "via": app.via} if app else {}


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
                    {"person_id": person_id, "email": email, "created_at": now, "status": ConnectionStatus.PENDING},
                    keep_first=("created_at", "status"),
                ),
                ConditionExpression="attribute_not_exists(person_id) OR person_id = :person_id",
            )
        except ClientError as exc:
            if aws.condition_failed(exc):
                return False
            raise
        return True

    def drop_pending_claim(self, connection: str, *, person_id: str, owner: str) -> None:
        """Undo a claim whose login failed before its row was recorded (a finished login is never
        removed, nor a claim another login of the same person is working on)."""
        try:
            aws.client("dynamodb").delete_item(
                TableName=self._table,
                Key={"connection": {"S": connection}},
                ConditionExpression=(
                    "#status = :pending AND person_id = :person_id AND "
                    "(attribute_not_exists(lease_owner) OR lease_owner = :owner)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":pending": {"S": ConnectionStatus.PENDING},
                    ":person_id": {"S": person_id},
                    ":owner": {"S": owner},
                },
            )
        except ClientError as exc:
            if not aws.condition_failed(exc):
                raise

    def record_login(
        self,
        record: TokenRecord,
        *,
        owner: str,
        consumer_secret_arn: str | None,
        next_refresh_at: int,
        login_base_url: str,
        sharing: str | None,
    ) -> None:
        """A (re)authorization makes the connection healthy and schedulable again, and frees the lease
        the login held while it wrote the secrets."""
        now = epoch(record.updated_at)
        self._owned_update(
            record.connection,
            owner,
            {
                "kind": record.kind,
                **_service_app_fields(record),
                "person_id": record.owner_id,
                "email": record.person.email,
                "display_name": record.person.display_name,
                "org_id": record.person.org_id,
                "scopes": list(record.grant.scopes),
                "client_id": record.grant.client_id or None,
                "status": ConnectionStatus.ACTIVE,
                "schedule": SCHEDULED,
                "consumer_secret_arn": consumer_secret_arn,
                "login_base_url": login_base_url,
                "access_expires_at": epoch(record.grant.access_expires_at),
                "access_token_id": fingerprint(record.grant.access_token),
                "refresh_expires_at": epoch(record.grant.refresh_expires_at),
                "next_refresh_at": next_refresh_at,
                "refreshed_at": now,
                "written_at": now,
                "consecutive_failures": 0,
                "authorized_at": now,
                "updated_at": now,
                "created_at": now,
                "sharing": sharing,
            },
            keep_first=("created_at",),
            remove=(*_LEASE, *_ERROR, *_REFUSAL, "reauth_invite_id"),
        )

    def record_adoption(self, row: Connection, *, now: int) -> bool:
        """A row for secrets that outlived theirs (who, scopes, expiry: what its token secret says),
        active and due at once; never over an existing row (False)."""
        item = {
            "connection": row.name,
            "kind": row.kind,
            "app_id": row.app_id or None,
            "person_id": row.person_id,
            "email": row.email,
            "display_name": row.display_name,
            "org_id": row.org_id,
            "scopes": list(row.scopes),
            "status": ConnectionStatus.ACTIVE,
            "schedule": SCHEDULED,
            "consumer_secret_arn": row.consumer_secret_arn or None,
            "login_base_url": row.login_base_url,
            "access_expires_at": row.access_expires_at,
            "access_token_id": row.access_token_id,
            "next_refresh_at": now,
            "consecutive_failures": 0,
            "adopted_at": now,
            "created_at": now,
            "updated_at": now,
        }
        try:
            aws.client("dynamodb").put_item(
                TableName=self._table,
                Item=aws.to_item(item),
                ConditionExpression="attribute_not_exists(#c)",
                ExpressionAttributeNames={"#c": "connection"},
            )
        except ClientError as exc:
            if aws.condition_failed(exc):
                return False
            raise
        return True

    def get(self, connection: str) -> Connection | None:
        item = aws.get_item(self._table, "connection", connection)
        return _connection(item) if item else None

    def all(self) -> list[Connection]:
        """Every connection, for operators' listings (a scan: not on any hot path)."""
        rows = (_connection(item) for item in aws.scan(self._table) if not item["connection"].startswith("#"))
        return sorted(rows, key=lambda row: row.name)

    def record_run(self, *, finished_at: int, outcomes: dict[str, int], run_id: str = "", report: str = "") -> None:
        """When the refresher last finished a run, and how it went: what `webex-broker doctor` checks.
        A run the CLI asked for (`run_id`) also leaves its whole `report` (JSON) for the CLI to read."""
        aws.client("dynamodb").update_item(
            TableName=self._table,
            Key={"connection": {"S": RUN_RECORD}},
            **_expression({"last_run_at": finished_at, "last_run_outcomes": outcomes}),
        )
        if run_id:
            aws.client("dynamodb").update_item(
                TableName=self._table,
                Key={"connection": {"S": ASKED_RUN + run_id}},
                **_expression({"report": report, "finished_at": finished_at}),
            )

    def take_run_report(self, run_id: str) -> str | None:
        """The report of the run asked for as `run_id`, once it finished (and then forgotten); else None."""
        key = ASKED_RUN + run_id
        item = aws.get_item(self._table, "connection", key)
        if not item:
            return None
        aws.client("dynamodb").delete_item(TableName=self._table, Key={"connection": {"S": key}})
        return str(item["report"])

    def last_run(self) -> tuple[int, dict[str, int]] | None:
        """When the last run finished, and its outcomes; None before the first."""
        item = aws.get_item(self._table, "connection", RUN_RECORD)
        if not item:
            return None
        return int(item["last_run_at"]), {k: int(v) for k, v in item.get("last_run_outcomes", {}).items()}

    def record_sharing(self, connection: str, fingerprint: str) -> None:
        """What `webex-broker converge` applied; needs no lease (a refresh would record the same)."""
        aws.client("dynamodb").update_item(
            TableName=self._table,
            Key={"connection": {"S": connection}},
            UpdateExpression="SET sharing = :fingerprint",
            ConditionExpression="attribute_exists(#c)",
            ExpressionAttributeNames={"#c": "connection"},
            ExpressionAttributeValues={":fingerprint": {"S": fingerprint}},
        )

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

    def count_by_status(self) -> dict[str, int]:
        """How many connections have each status: a count over the keys-only StatusIndex, which reads
        about 100 bytes per connection (rows without a status, such as `#refresher`, are not in it)."""
        paginator = aws.client("dynamodb").get_paginator("query")
        counts = {}
        for status in ConnectionStatus:
            pages = paginator.paginate(
                TableName=self._table,
                IndexName=STATUS_INDEX,
                KeyConditionExpression="#status = :status",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":status": {"S": status.value}},
                Select="COUNT",
            )
            counts[status.value] = sum(page["Count"] for page in pages)
        return counts

    def next_up(self, now: int) -> Connection | None:
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

    def acquire(
        self,
        connection: str,
        *,
        owner: str,
        now: int,
        lease_seconds: int,
        cooldown_seconds: int = 0,
        write_floor_seconds: int = 0,
    ) -> Connection | None:
        """Take the lease, or None if someone else holds an unexpired one (or the row is gone).

        Returns the row as it stands after acquiring: the caller decides on fresh data, never on
        what a possibly stale index said. With `cooldown_seconds` (forced refreshes) the lease is also
        refused, with CoolingDown, until that long after the previous forced one, and until
        `write_floor_seconds` after the last write of its secrets."""
        values = {":owner": owner, ":until": now + lease_seconds, ":now": now}
        update = "SET lease_owner = :owner, lease_expires_at = :until"
        condition = (
            "attribute_exists(#c) AND "
            "(attribute_not_exists(lease_expires_at) OR lease_expires_at < :now OR lease_owner = :owner)"
        )
        if cooldown_seconds:
            values[":cooled"] = now - cooldown_seconds
            update += ", forced_at = :now"
            condition += " AND (attribute_not_exists(forced_at) OR forced_at <= :cooled)"
            values[":floor"] = now - write_floor_seconds
            condition += " AND (attribute_not_exists(written_at) OR written_at <= :floor)"
        try:
            response = aws.client("dynamodb").update_item(
                TableName=self._table,
                Key={"connection": {"S": connection}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#c": "connection"},
                ExpressionAttributeValues=aws.to_item(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not aws.condition_failed(exc):
                raise
            old = aws.old_item(exc)
            held = int(old.get("lease_expires_at", 0)) >= now and old.get("lease_owner") != owner
            if old and cooldown_seconds and not held:
                ready = max(
                    int(old.get("forced_at", 0)) + cooldown_seconds, int(old.get("written_at", 0)) + write_floor_seconds
                )
                raise CoolingDown(ready - now) from None
            return None
        return _connection(aws.from_item(response["Attributes"]))

    def release(self, connection: str, *, owner: str) -> None:
        self._owned_update(connection, owner, {}, remove=_LEASE)

    def release_if_held(self, connection: str, *, owner: str) -> None:
        """On a path that already failed: free the lease if it is still ours. Best effort, since the
        original failure matters more; a lease that cannot be freed expires on its own."""
        with contextlib.suppress(LeaseLost, ClientError, BotoCoreError, AwsAccessDenied):
            self.release(connection, owner=owner)

    def record_refresh(
        self,
        record: TokenRecord,
        *,
        owner: str,
        next_refresh_at: int,
        sharing: str | None = None,
        written: bool = False,
        token_id: str | None = None,
    ) -> None:
        """The last step of a refresh: new expiry and schedule, health reset, lease released; `written`:
        it wrote a secret, which the write floor counts from; `token_id`: the fingerprint of the token
        still current (a rotation's new one is pending)."""
        now = epoch(record.updated_at)
        self._owned_update(
            record.connection,
            owner,
            {
                **_service_app_fields(record),  # restores them on a row `adopt` rebuilt
                "client_id": record.grant.client_id or None,
                "status": ConnectionStatus.ACTIVE,
                "schedule": SCHEDULED,
                "access_expires_at": epoch(record.grant.access_expires_at),
                "access_token_id": token_id or fingerprint(record.grant.access_token),
                "refresh_expires_at": epoch(record.grant.refresh_expires_at),
                "next_refresh_at": next_refresh_at,
                "refreshed_at": now,
                "written_at": now if written else None,
                "last_attempt_at": now,
                "consecutive_failures": 0,
                "updated_at": now,
                "sharing": sharing,
            },
            remove=_LEASE + _ERROR + _REFUSAL + ("reauth_invite_id",),
        )

    def record_current_token(self, connection: str, *, was: str, now: str) -> bool:
        """A rotation made its pending token current: the row's fingerprint follows, unless a refresh
        changed it meanwhile (False)."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self._table,
                Key={"connection": {"S": connection}},
                UpdateExpression="SET access_token_id = :now",
                ConditionExpression="access_token_id = :was",
                ExpressionAttributeValues={":was": {"S": was}, ":now": {"S": now}},
            )
        except ClientError as exc:
            if aws.condition_failed(exc):
                return False
            raise
        return True

    def record_failure(
        self,
        connection: str,
        *,
        owner: str,
        error: str,
        error_class: str,
        tracking_id: str,
        now: int,
        retry_at: int,
        refused_since: int | None = None,
    ) -> None:
        """A failure that proves nothing about the grant: status and schedule kept, the error and the next
        attempt recorded. An unexplained refusal also records since when the same refusal has repeated."""
        self._owned_update(
            connection,
            owner,
            {
                "last_error": error,
                "last_error_class": error_class,
                "last_error_at": now,
                "failing_since": now,
                "last_tracking_id": tracking_id or None,
                "last_attempt_at": now,
                "next_refresh_at": retry_at,
                "updated_at": now,
                "refused_error": error if refused_since is not None else None,
                "refused_since": refused_since,
            },
            add={"consecutive_failures": 1},
            keep_first=("failing_since",),
            remove=_LEASE,
        )

    def mark_reauth_required(
        self, connection: str, *, owner: str, error: str, tracking_id: str, now: int, invite_id: str | None
    ) -> None:
        """The grant is dead: stop scheduling it (out of the index) and keep everything else for inspection.
        `invite_id` is the open re-authorization invitation, reused while it lasts."""
        self._owned_update(
            connection,
            owner,
            {
                "status": ConnectionStatus.REAUTH_REQUIRED,
                "last_error": error,
                "last_error_class": "permanent",
                "last_error_at": now,
                "last_tracking_id": tracking_id or None,
                "last_attempt_at": now,
                "updated_at": now,
                "reauth_invite_id": invite_id,
            },
            remove=(*_LEASE, "schedule", *_REFUSAL),
        )

    def _owned_update(
        self,
        connection: str,
        owner: str,
        values: dict,
        *,
        remove: tuple = (),
        add: dict | None = None,
        keep_first: tuple = (),
    ) -> None:
        """Only the lease holder may write; anyone else's write is refused and reported."""
        expression = _expression(values, remove=remove, add=add, keep_first=keep_first)
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


# The row's attributes of the Connection's plain fields, derived from its type hints: a field added
# there is read from the table without being spelled again here.
_NUMBERS = {f.name for f in fields(Connection) if f.type == int | None}
_TEXTS = {f.name for f in fields(Connection) if f.type is str} - {"name"}  # `name` is the key, `connection`


def _connection(item: dict) -> Connection:
    """The row as the rest of the broker sees it: typed, every attribute name spelled only here."""
    plain: dict[str, Any] = {key: int(item[key]) for key in _NUMBERS if item.get(key) is not None}
    plain |= {key: str(item[key]) for key in _TEXTS if item.get(key) is not None}
    return Connection(
        name=item["connection"],
        status=ConnectionStatus(item.get("status", ConnectionStatus.PENDING)),
        kind=ConnectionKind(item.get("kind", ConnectionKind.PERSON)),
        scopes=tuple(item.get("scopes", ())),
        scheduled=item.get("schedule") == SCHEDULED,
        consecutive_failures=int(item.get("consecutive_failures", 0)),
        **plain,
    )
