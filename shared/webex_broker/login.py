"""The login flow: start it (invitation check, state + PKCE, redirect) and finish it
(state → code → who is it → may they? → tokens → secrets → row)."""

from dataclasses import dataclass

from webex_broker import access, webex
from webex_broker.client_credentials import load_client_credentials
from webex_broker.connections import ConnectionsTable, epoch
from webex_broker.invitations import InvitationRejected, InvitationStore
from webex_broker.login_state import StateStore, code_challenge, new_login_state
from webex_broker.observability import logger
from webex_broker.schedule import next_refresh_at
from webex_broker.secret_store import SecretNames, write_consumer_secret, write_refresh_material
from webex_broker.settings import ConfigurationError, load_settings
from webex_broker.token_documents import TokenRecord


class ConsentDeclined(Exception):
    """Webex sent the person back with error=… instead of a code."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


class BadCallback(Exception):
    """The callback request itself is malformed (no state, no code)."""


@dataclass(frozen=True)
class LoginResult:
    connection: str
    display_name: str
    email: str
    consumer_secret_name: str


def start_login(callback_url: str, invite_token: str = "") -> str:
    """Returns the Webex consent URL for a fresh, stored, single-use state."""
    settings = load_settings()
    settings.require_people_scope()
    settings.require_safe_access_mode()
    access.require_invitation(settings, invite_token)
    now = int(webex.utc_now().timestamp())
    invitation = InvitationStore(settings.invitations_table).verify(invite_token, now=now) if invite_token else None
    credentials = load_client_credentials()
    login = new_login_state(
        redirect_uri=callback_url,
        now=now,
        ttl_seconds=settings.state_ttl_seconds,
        invite_id=invitation.id if invitation else None,
    )
    StateStore(settings.state_table).save(login, now=now)
    return webex.authorize_url(
        settings.webex_base_url,
        client_id=credentials.client_id,
        redirect_uri=login.redirect_uri,
        scopes=settings.scope_string,
        state=login.state,
        code_challenge=code_challenge(login.code_verifier),
    )


def finish_login(params: dict[str, str]) -> LoginResult:
    """Consume the state first (so a replay can never get further); decide who may connect before
    anything is written; then write refresh material, consumer secret and row, in that order."""
    settings = load_settings()
    state = params.get("state", "")
    if not state:
        raise BadCallback("The request has no state parameter.")
    now = webex.utc_now()
    login = StateStore(settings.state_table).consume(state, now=epoch(now))
    if params.get("error"):
        raise ConsentDeclined(params["error"])
    code = params.get("code", "")
    if not code:
        raise BadCallback("The request has neither a code nor an error.")

    client = webex.WebexClient(
        settings.webex_base_url, load_client_credentials(), timeout=settings.webex_timeout_seconds
    )
    grant = client.exchange_code(code=code, redirect_uri=login.redirect_uri, code_verifier=login.code_verifier, now=now)
    try:
        person = client.people_me(grant.access_token)
    except webex.WebexError as exc:
        if exc.status == 403:
            raise ConfigurationError(
                "Webex refused /people/me: the integration needs the spark:people_read (or spark:all) scope."
            ) from None
        raise

    invitations = InvitationStore(settings.invitations_table)
    invitation = None
    if login.invite_id:
        invitation = invitations.get(login.invite_id)
        if invitation is None:
            raise InvitationRejected("revoked")
        invitation.check(epoch(now))
    connection = access.connection_for(settings, person, invitation)
    table = ConnectionsTable(settings.connections_table)
    access.check_owner(table.get(connection), person)
    if invitation:
        invitations.use(invitation.id, now=epoch(now))
    if not table.claim(connection, person_id=person.id, email=person.email, now=epoch(now)):
        access.check_owner(table.get(connection), person)  # another person won a race for it

    record = TokenRecord(connection=connection, person=person, grant=grant, updated_at=now)
    names = SecretNames(settings.secret_prefix)
    try:
        write_refresh_material(record.refresh_material(), names, now=now)
        consumer_arn = write_consumer_secret(record, names)
    except Exception:
        table.drop_pending_claim(connection, person_id=person.id)
        raise
    table.record_login(
        record,
        consumer_secret_arn=consumer_arn,
        login_base_url=login.redirect_uri.removesuffix("/callback"),
        next_refresh_at=next_refresh_at(
            connection,
            access_expires_at=epoch(grant.access_expires_at),
            refreshed_at=epoch(now),
            now=epoch(now),
            policy=settings.refresh,
        ),
    )
    logger.info("Connection authorized", extra={"connection": connection, "invite_id": login.invite_id})
    return LoginResult(
        connection=connection,
        display_name=person.display_name,
        email=person.email,
        consumer_secret_name=names.consumer(connection),
    )
