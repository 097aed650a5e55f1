"""Single-use login state with PKCE, kept in DynamoDB until the callback consumes it, bound to the
browser that started the login; and the short-lived result page of a finished login.

DynamoDB's TTL deletes expired items lazily (often days later), so every read compares the
explicit `expires_at` with the clock inside the same conditional delete that consumes the item.

The browser binding (RFC 9700, login CSRF): /authorize gives the browser a random nonce in an
HttpOnly cookie and stores only its hash with the state; the callback consumes the state only when
the same browser presents the same nonce, so a forwarded callback or consent URL finishes nothing.

A finished login's result is kept under an id derived from its state: when the same browser comes back
with that state (Back, then Allow again on Webex's page), the broker can prove the login already
succeeded and say so, instead of calling the state unknown.
"""

import base64
import hashlib
import re
import secrets
from dataclasses import asdict, dataclass

from botocore.exceptions import ClientError

from webex_broker.adapters import aws
from webex_broker.core.errors import StateProblem, StateRejected

# secrets.token_urlsafe(32): states, browser nonces and result ids all have this shape, so anything
# else is refused before DynamoDB sees it (real DynamoDB rejects keys over 2,048 bytes with a 400).
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
BROWSER_COOKIE = "webex-broker-login"
RESULT_PREFIX = "result."
RESULT_TTL_SECONDS = 900


def well_formed(value: str | None) -> bool:
    return value is not None and TOKEN.fullmatch(value) is not None


def browser_cookie_name(*, secure: bool) -> str:
    """`__Host-` pins the cookie to this exact host over https; a plain http (local) stack cannot use it."""
    return f"__Host-{BROWSER_COOKIE}" if secure else BROWSER_COOKIE


def new_browser_nonce() -> str:
    return secrets.token_urlsafe(32)


def browser_hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


@dataclass(frozen=True)
class LoginState:
    state: str
    code_verifier: str
    redirect_uri: str
    expires_at: int
    browser_hash: str
    invite_id: str | None = None

    def __repr__(self) -> str:
        return f"LoginState(expires_at={self.expires_at}, secrets=***)"


@dataclass(frozen=True)
class LoginResult:
    """What the result page shows after a login: who connected, as which connection."""

    connection: str
    display_name: str
    email: str


def result_id(state: str) -> str:
    """The result page's id: a hash of the login's state, so the state finds its result again, while
    the id (in the result page's address) never reveals the state."""
    digest = hashlib.sha256(f"{RESULT_PREFIX}{state}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_login_state(
    *, redirect_uri: str, now: int, ttl_seconds: int, browser_nonce: str, invite_id: str | None = None
) -> LoginState:
    """256-bit state and a 86-character verifier, both URL-safe ([A-Za-z0-9_-])."""
    return LoginState(
        state=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(64),
        redirect_uri=redirect_uri,
        expires_at=now + ttl_seconds,
        browser_hash=browser_hash(browser_nonce),
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
                    "browser_hash": login.browser_hash,
                    "invite_id": login.invite_id,
                }
            ),
            ConditionExpression="attribute_not_exists(#s)",
            ExpressionAttributeNames={"#s": "state"},
        )

    def consume(self, state: str, *, browser_nonce: str, now: int) -> LoginState:
        """One atomic delete: only one callback can ever win a given state, only before expiry, and only
        in the browser that started it. A callback from any other browser leaves the state in place."""
        if not well_formed(state):
            raise StateRejected(StateProblem.UNKNOWN)
        if not well_formed(browser_nonce):
            raise StateRejected(StateProblem.BROWSER)
        try:
            response = aws.client("dynamodb").delete_item(
                TableName=self._table,
                Key={"state": {"S": state}},
                ConditionExpression="attribute_exists(code_verifier) AND expires_at > :now AND browser_hash = :browser",
                ExpressionAttributeValues={":now": {"N": str(now)}, ":browser": {"S": browser_hash(browser_nonce)}},
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not aws.condition_failed(exc):
                raise
            old = aws.old_item(exc)
            if not old.get("code_verifier"):
                raise StateRejected(StateProblem.UNKNOWN) from None
            raise StateRejected(
                StateProblem.EXPIRED if int(old["expires_at"]) <= now else StateProblem.BROWSER
            ) from None
        item = aws.from_item(response["Attributes"])
        return LoginState(
            state=state,
            code_verifier=item["code_verifier"],
            redirect_uri=item["redirect_uri"],
            expires_at=int(item["expires_at"]),
            browser_hash=item["browser_hash"],
            invite_id=item.get("invite_id"),
        )

    def save_result(self, result: LoginResult, *, login: LoginState, now: int) -> str:
        """Keep what the result page shows for a few minutes, for the browser that logged in; returns its id.
        The callback answers with a redirect to that page, so code and state leave the address bar."""
        page_id = result_id(login.state)
        aws.client("dynamodb").put_item(
            TableName=self._table,
            Item=aws.to_item(
                {
                    "state": RESULT_PREFIX + page_id,
                    **asdict(result),
                    "browser_hash": login.browser_hash,
                    "expires_at": now + RESULT_TTL_SECONDS,
                }
            ),
        )
        return page_id

    def finished(self, state: str, *, browser_nonce: str, now: int) -> LoginResult | None:
        """The result of the login this state already finished in this browser, while its page lasts."""
        return self.result(result_id(state), browser_nonce=browser_nonce, now=now) if well_formed(state) else None

    def result(self, page_id: str, *, browser_nonce: str, now: int) -> LoginResult | None:
        """The result for this browser, while it lasts; None for anyone else, or once it has expired."""
        if not (well_formed(page_id) and well_formed(browser_nonce)):
            return None
        item = aws.get_item(self._table, "state", RESULT_PREFIX + page_id)
        if not item or int(item["expires_at"]) <= now or item["browser_hash"] != browser_hash(browser_nonce):
            return None
        return LoginResult(
            connection=item["connection"], display_name=item.get("display_name", ""), email=item["email"]
        )
