"""The login flow: start it (invitation check, state + PKCE bound to the browser, redirect) and finish
it (state → code → who is it → may they? → lease → secrets → row → invitation use).

Finishing stores the grant in `new_grant`'s fixed order (refresh material → token secret → row,
under the connection's lease), then counts one use of the invitation. The use is counted last, so a
failed or crashed write never spends the person's invitation.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from webex_broker.adapters import webex
from webex_broker.adapters.client_credentials import load_client_id
from webex_broker.adapters.invitations import Invitation, InvitationStore
from webex_broker.adapters.login_state import LoginResult, LoginState, code_challenge, new_login_state
from webex_broker.core import clock
from webex_broker.core.clock import epoch
from webex_broker.core.connection import Connection
from webex_broker.core.errors import (
    AccessDenied,
    AwsUnavailable,
    BadCallback,
    ConfigurationError,
    ConsentDeclined,
    InvitationProblem,
    InvitationRejected,
    StateProblem,
    StateRejected,
    WebexError,
)
from webex_broker.core.grants import Person, TokenGrant
from webex_broker.core.observability import logger, metrics
from webex_broker.core.token_documents import TokenRecord
from webex_broker.flows import access
from webex_broker.flows.broker import Broker
from webex_broker.flows.new_grant import WRITE_TIME_SECONDS, announce, store_new_grant


def start_login(broker: Broker, callback_url: str, invite_token: str = "", *, browser_nonce: str) -> str:
    """Returns the Webex consent URL for a fresh, stored, single-use state bound to this browser."""
    settings = broker.settings
    access.require_invitation(settings, invite_token)
    now = int(clock.utc_now().timestamp())
    invitation = broker.invitations.verify(invite_token, now=now) if invite_token else None
    client_id = load_client_id(settings.client_secret_arn)  # the client secret itself is not this function's
    login = new_login_state(
        redirect_uri=callback_url,
        now=now,
        ttl_seconds=settings.state_ttl_seconds,
        browser_nonce=browser_nonce,
        invite_id=invitation.id if invitation else None,
    )
    broker.states.save(login, now=now)
    return webex.authorize_url(
        settings.webex_base_url,
        client_id=client_id,
        redirect_uri=login.redirect_uri,
        scopes=settings.scope_string,
        state=login.state,
        code_challenge=code_challenge(login.code_verifier),
    )


@dataclass(frozen=True)
class Finished:
    """A finished login: who connected, the id of its result page (None when it could not be kept), and
    whether this callback only repeated one this browser had already finished (nothing was done again)."""

    result: LoginResult
    page_id: str | None
    again: bool = False


def finish_login(
    broker: Broker, params: dict[str, str], *, browser_nonce: str, remaining_ms: Callable[[], int]
) -> Finished:
    """Identify (consume the state first, so a replay can never get further), admit (decide who may
    connect before anything is written), persist (under the lease)."""
    now = clock.utc_now()
    state = params.get("state", "")
    if not state:
        raise BadCallback("The request has no state parameter.")
    try:
        login = broker.states.consume(state, browser_nonce=browser_nonce, now=epoch(now))
    except StateRejected as exc:
        return _finished_before(broker, state, browser_nonce, epoch(now), exc)
    person, grant = _identify(broker, params, login, now, remaining_ms)
    connection, invitation = _admit(broker, person, login.invite_id, epoch(now))
    record = TokenRecord(connection=connection, person=person, grant=grant, updated_at=now)
    result, before = _persist(broker, record, login.redirect_uri, remaining_ms)
    if invitation:
        _count_use(broker.invitations, invitation, epoch(now))
    announce(broker, before, record, invite_id=invitation.id if invitation else "")
    logger.info("Connection authorized", extra={"connection": connection, "invite_id": login.invite_id})
    metrics.add_metric(name="Logins", unit="Count", value=1)
    try:
        return Finished(result, broker.states.save_result(result, login=login, now=epoch(now)))
    except AwsUnavailable as exc:  # the connection is stored: say so, even without that page
        logger.warning("Could not keep the result page", extra={"error": exc.code})
        return Finished(result, None)


def _finished_before(broker: Broker, state: str, browser_nonce: str, now: int, rejected: StateRejected) -> Finished:
    """A state no longer pending may be one this browser already finished (Back, then Allow again on
    Webex's page): its kept result proves it. Anything else stays rejected; Webex is not called."""
    earlier = None
    if rejected.reason == StateProblem.UNKNOWN:
        earlier = broker.states.finished(state, browser_nonce=browser_nonce, now=now)
    if earlier is None:
        raise rejected
    logger.info("A finished login came back", extra={"connection": earlier.connection})
    return Finished(earlier, None, again=True)


def _identify(
    broker: Broker, params: dict[str, str], login: LoginState, now: datetime, remaining_ms: Callable[[], int]
) -> tuple[Person, TokenGrant]:
    """The code, and who Webex says authorized: each Webex call within the time the request has left,
    less what the writes after them need."""
    if params.get("error"):
        raise ConsentDeclined(params["error"])
    code = params.get("code", "")
    if not code:
        raise BadCallback("The request has neither a code nor an error.")
    client = broker.webex_client(time_left_ms=lambda: remaining_ms() - WRITE_TIME_SECONDS * 1000)
    grant = client.exchange_code(code=code, redirect_uri=login.redirect_uri, code_verifier=login.code_verifier, now=now)
    try:
        person = client.people_me(grant.access_token)
    except WebexError as exc:
        if exc.forbidden:
            raise ConfigurationError(
                "Webex refused /people/me: the integration needs the spark:people_read (or spark:all) scope."
            ) from None
        raise
    return person, grant


def _admit(broker: Broker, person: Person, invite_id: str | None, now: int) -> tuple[str, Invitation | None]:
    """Which connection this person may write (AccessDenied otherwise), and the invitation that let them."""
    try:
        invitation = _usable_invitation(broker.invitations, invite_id, now)
        connection = access.connection_for(broker.settings, person, invitation)
        access.check_owner(broker.connections.get(connection), person.id)
    except (AccessDenied, InvitationRejected):
        metrics.add_metric(name="LoginsRefused", unit="Count", value=1)  # someone Webex identified, turned away
        raise
    return connection, invitation


def login_result(broker: Broker, result_id: str, *, browser_nonce: str) -> LoginResult | None:
    return broker.states.result(result_id, browser_nonce=browser_nonce, now=epoch(clock.utc_now()))


def _usable_invitation(invitations: InvitationStore, invite_id: str | None, now: int) -> Invitation | None:
    """Checked, not used: the use is counted once the tokens are stored."""
    if not invite_id:
        return None
    invitation = invitations.get(invite_id)
    if invitation is None:  # it was there at /authorize; only the table's TTL removes one, once it has expired
        raise InvitationRejected(InvitationProblem.EXPIRED)
    invitation.check(now)
    return invitation


def _persist(
    broker: Broker, record: TokenRecord, redirect_uri: str, remaining_ms: Callable[[], int]
) -> tuple[LoginResult, Connection]:
    login_base_url = redirect_uri.removesuffix("/callback")
    before = store_new_grant(broker, record, login_base_url=login_base_url, remaining_ms=remaining_ms)
    result = LoginResult(
        connection=record.connection, display_name=record.person.display_name, email=record.person.email
    )
    return result, before


def _count_use(invitations: InvitationStore, invitation: Invitation, now: int) -> None:
    """The tokens are stored and the connection is bound to this person: a use that can no longer be
    counted (a concurrent login of the same person, a revoke in between) does not undo that."""
    try:
        invitations.use(invitation.id, now=now)
    except (InvitationRejected, AwsUnavailable) as exc:
        logger.warning("The invitation's use could not be counted", extra={"error": type(exc).__name__})
