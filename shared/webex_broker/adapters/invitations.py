"""Invitation links: who may connect, to which connection, how often and until when.

The link carries `<id>.<secret>.<stamp>`; only the secret's SHA-256 is stored, so the table can be
listed and revoked by id without holding anything that opens a login. The stamp names the broker that
made the link (a hash of its invitations table's name, which CloudFormation makes unique to each stack
it creates) and checks the whole link, so an intact link this broker does not know can be told from a
mistyped one. Links made before the stamp (`<id>.<secret>`) still work.

A withdrawn invitation is kept, marked, until its own expiry (the table's TTL), so its link can say so.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from botocore.exceptions import ClientError

from webex_broker.adapters import aws
from webex_broker.core import emails
from webex_broker.core.errors import InvitationProblem, InvitationRejected

# What Secrets Manager allows in a name, minus '/', which would nest under other connections, and
# minus `.` and `..`, which no client can put in the refresh route's path.
CONNECTION_NAME = re.compile(r"(?!\.\.?$)[A-Za-z0-9_+=.@-]{1,128}")
NAME_RULE = "A connection name is 1-128 of A-Z a-z 0-9 and _+=.@- (the secret's name is built from it)."
# `<id>.<secret>[.<stamp>]` as create() makes them; anything else is refused before DynamoDB sees it.
TOKEN = re.compile(
    r"(?P<id>[0-9a-f]{12})\.(?P<secret>[A-Za-z0-9_-]{43})(?:\.(?P<broker>[0-9a-f]{8})(?P<check>[0-9a-f]{8}))?"
)
MIN_LIFETIME_SECONDS = 60
MAX_LIFETIME_SECONDS = 365 * 86400  # a link should not outlive a year; and the time must fit a date


@dataclass(frozen=True)
class Invitation:
    id: str
    connection: str
    email: str | None
    expires_at: int
    max_uses: int
    uses: int
    created_at: int
    withdrawn: bool = False

    @property
    def uses_left(self) -> int:
        return max(self.max_uses - self.uses, 0)

    def usable_at(self, now: int) -> bool:
        return not self.withdrawn and self.uses_left > 0 and self.expires_at > now

    def check(self, now: int) -> None:
        if self.withdrawn:
            raise InvitationRejected(InvitationProblem.REVOKED)
        if self.expires_at <= now:
            raise InvitationRejected(InvitationProblem.EXPIRED)
        if self.uses_left <= 0:
            raise InvitationRejected(InvitationProblem.USED)

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "connection": self.connection,
            "email": self.email,
            "expires_at": self.expires_at,
            "uses_left": self.uses_left,
            "max_uses": self.max_uses,
            "created_at": self.created_at,
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _broker_tag(table: str) -> str:
    return hashlib.sha256(table.encode()).hexdigest()[:8]


def _check(invite_id: str, secret: str, broker: str) -> str:
    """Catches a link changed in copying; proves nothing against a deliberate forgery (nor needs to)."""
    return hashlib.sha256(f"{invite_id}.{secret}.{broker}".encode()).hexdigest()[:8]


def invitation_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/authorize?invite={token}"


class InvitationStore:
    def __init__(self, table_name: str):
        self._table = table_name

    def create(
        self,
        connection: str,
        *,
        email: str | None,
        ttl_seconds: int,
        max_uses: int,
        now: int,
        retrievable: bool = False,
    ) -> tuple[Invitation, str]:
        """A new invitation and its token. The token is returned once and never stored, except for a
        `retrievable` link bound to one person's e-mail (a re-authorization request, which an operator may
        need to print again): that link opens a login for no one else.

        Refuses (ValueError) anything that could only make a dead link or a connection that cannot be stored."""
        if not CONNECTION_NAME.fullmatch(connection):
            raise ValueError(NAME_RULE)
        if max_uses < 1:
            raise ValueError("An invitation must allow at least one use.")
        if not MIN_LIFETIME_SECONDS <= ttl_seconds <= MAX_LIFETIME_SECONDS:
            raise ValueError(f"An invitation must last at least {MIN_LIFETIME_SECONDS} seconds and at most 365 days.")
        if email and not emails.comparable(email):
            raise ValueError("An invitation's e-mail must be a plain ASCII address.")
        if email and not emails.plausible(email):
            raise ValueError(
                f"{email!r} is not an e-mail address (name@example.com): no Webex account could use the link."
            )
        invitation = Invitation(
            id=secrets.token_hex(6),
            connection=connection,
            email=emails.comparable(email),
            expires_at=now + ttl_seconds,
            max_uses=max_uses,
            uses=0,
            created_at=now,
        )
        secret = secrets.token_urlsafe(32)
        broker = _broker_tag(self._table)
        token = f"{invitation.id}.{secret}.{broker}{_check(invitation.id, secret, broker)}"
        aws.client("dynamodb").put_item(
            TableName=self._table,
            Item=aws.to_item(
                {
                    "invite_id": invitation.id,
                    "secret_sha256": _digest(secret),
                    "connection": connection,
                    "email": invitation.email,
                    "expires_at": invitation.expires_at,
                    "max_uses": max_uses,
                    "uses": 0,
                    "created_at": now,
                    "link_token": token if retrievable and invitation.email else None,
                }
            ),
            ConditionExpression="attribute_not_exists(invite_id)",
        )
        return invitation, token

    def open_link_token(self, invite_id: str, *, now: int) -> str | None:
        """The token of a retrievable invitation that can still be used; None for any other."""
        item = aws.get_item(self._table, "invite_id", invite_id)
        if not item or "link_token" not in item:
            return None
        return str(item["link_token"]) if _invitation(item).usable_at(now) else None

    def get(self, invite_id: str) -> Invitation | None:
        item = aws.get_item(self._table, "invite_id", invite_id)
        return _invitation(item) if item else None

    def verify(self, token: str, *, now: int) -> Invitation:
        """The invitation behind a link, if the link is genuine and still usable (does not use it up).
        Says why not only with proof: withdrawn, expired or used only once the secret matched; made by
        another broker only for an intact link that names another one."""
        shape = TOKEN.fullmatch(token or "")
        if shape is None:
            raise InvitationRejected(InvitationProblem.UNKNOWN)
        invite_id, secret, broker = shape["id"], shape["secret"], shape["broker"]
        if broker and not hmac.compare_digest(shape["check"], _check(invite_id, secret, broker)):
            raise InvitationRejected(InvitationProblem.UNKNOWN)
        item = aws.get_item(self._table, "invite_id", invite_id)
        if item and hmac.compare_digest(item["secret_sha256"], _digest(secret)):
            invitation = _invitation(item)
            invitation.check(now)
            return invitation
        if broker and broker != _broker_tag(self._table):
            raise InvitationRejected(InvitationProblem.FOREIGN)
        raise InvitationRejected(InvitationProblem.UNKNOWN)

    def use(self, invite_id: str, *, now: int) -> None:
        """Count one use, atomically: two people racing for a single-use link cannot both win."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self._table,
                Key={"invite_id": {"S": invite_id}},
                UpdateExpression="SET uses = uses + :one",
                ConditionExpression=(
                    "attribute_exists(invite_id) AND attribute_not_exists(withdrawn) AND uses < max_uses "
                    "AND expires_at > :now"
                ),
                ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if aws.condition_failed(exc):
                raise InvitationRejected(InvitationProblem.USED) from None
            raise

    def open_invitations(self, *, now: int) -> list[Invitation]:
        """Invitations still usable. A scan: invitations are few and short-lived."""
        usable = (i for i in map(_invitation, aws.scan(self._table)) if i.usable_at(now))
        return sorted(usable, key=lambda i: i.created_at)

    def revoke_for_connection(self, connection: str) -> int:
        """Withdraw every invitation for a connection (when the connection itself is revoked)."""
        return sum(
            1 for item in aws.scan(self._table) if item["connection"] == connection and self.revoke(item["invite_id"])
        )

    def revoke(self, invite_id: str) -> bool:
        """Withdraw an invitation: marked, not deleted, so its link says it was withdrawn until the
        table's TTL removes it at its own expiry. False when there is none, or it already was."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self._table,
                Key={"invite_id": {"S": invite_id}},
                UpdateExpression="SET withdrawn = :yes",
                ConditionExpression="attribute_exists(invite_id) AND attribute_not_exists(withdrawn)",
                ExpressionAttributeValues={":yes": {"BOOL": True}},
            )
        except ClientError as exc:
            if aws.condition_failed(exc):
                return False
            raise
        return True


def _invitation(item: dict) -> Invitation:
    return Invitation(
        id=item["invite_id"],
        connection=item["connection"],
        email=item.get("email"),
        expires_at=int(item["expires_at"]),
        max_uses=int(item["max_uses"]),
        uses=int(item["uses"]),
        created_at=int(item["created_at"]),
        withdrawn=bool(item.get("withdrawn", False)),
    )
