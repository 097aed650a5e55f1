"""Single-use login state with PKCE, kept in DynamoDB until the callback consumes it.

DynamoDB's TTL deletes expired items lazily (often days later), so every read compares the
explicit `expires_at` with the clock inside the same conditional delete that consumes the item.
"""

import base64
import hashlib
import secrets
from dataclasses import dataclass

from botocore.exceptions import ClientError

from webex_broker import aws


class StateRejected(Exception):
    """The callback's state is unknown, already used or expired: the login must start again."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class LoginState:
    state: str
    code_verifier: str
    redirect_uri: str
    expires_at: int
    invite_id: str | None = None

    def __repr__(self) -> str:
        return f"LoginState(expires_at={self.expires_at}, secrets=***)"


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_login_state(*, redirect_uri: str, now: int, ttl_seconds: int, invite_id: str | None = None) -> LoginState:
    """256-bit state and a 86-character verifier, both URL-safe ([A-Za-z0-9_-])."""
    return LoginState(
        state=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(64),
        redirect_uri=redirect_uri,
        expires_at=now + ttl_seconds,
        invite_id=invite_id,
    )


class StateStore:
    def __init__(self, table_name: str):
        self._table = table_name

    def save(self, login: LoginState, *, now: int) -> None:
        aws.client("dynamodb").put_item(
            TableName=self._table,
            Item=aws.to_item(
                {
                    "state": login.state,
                    "code_verifier": login.code_verifier,
                    "redirect_uri": login.redirect_uri,
                    "created_at": now,
                    "expires_at": login.expires_at,
                    "invite_id": login.invite_id,
                }
            ),
            ConditionExpression="attribute_not_exists(#s)",
            ExpressionAttributeNames={"#s": "state"},
        )

    def consume(self, state: str, *, now: int) -> LoginState:
        """One atomic delete: only one callback can ever win a given state, and only before expiry."""
        try:
            response = aws.client("dynamodb").delete_item(
                TableName=self._table,
                Key={"state": {"S": state}},
                ConditionExpression="attribute_exists(#s) AND expires_at > :now",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not aws.condition_failed(exc):
                raise
            raise StateRejected("expired" if exc.response.get("Item") else "unknown") from None
        item = aws.from_item(response["Attributes"])
        return LoginState(
            state=state,
            code_verifier=item["code_verifier"],
            redirect_uri=item["redirect_uri"],
            expires_at=int(item["expires_at"]),
            invite_id=item.get("invite_id"),
        )
