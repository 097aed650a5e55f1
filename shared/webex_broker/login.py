"""The login flow: start it (state + PKCE + redirect) and finish it (code → tokens → secrets)."""

from dataclasses import dataclass

from webex_broker import webex
from webex_broker.client_credentials import load_client_credentials
from webex_broker.connections import ConnectionsTable, epoch
from webex_broker.login_state import StateStore, code_challenge, new_login_state
from webex_broker.observability import logger
from webex_broker.schedule import next_refresh_at
from webex_broker.secret_store import SecretNames, write_consumer_secret, write_refresh_material
from webex_broker.settings import ConfigurationError, load_settings
from webex_broker.token_documents import TokenRecord, connection_name_for


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


def start_login(callback_url: str) -> str:
    """Returns the Webex consent URL for a fresh, stored, single-use state."""
    settings = load_settings()
    settings.require_people_scope()
    credentials = load_client_credentials()
    now = int(webex.utc_now().timestamp())
    login = new_login_state(redirect_uri=callback_url, now=now, ttl_seconds=settings.state_ttl_seconds)
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
    """Consume the state first (so a replay can never get further), then exchange, identify, store."""
    settings = load_settings()
    state = params.get("state", "")
    if not state:
        raise BadCallback("The request has no state parameter.")
    now = webex.utc_now()
    login = StateStore(settings.state_table).consume(state, now=int(now.timestamp()))
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
    record = TokenRecord(connection=connection_name_for(person), person=person, grant=grant, updated_at=now)
    names = SecretNames(settings.secret_prefix)
    write_refresh_material(record.refresh_material(), names, now=now)
    consumer_arn = write_consumer_secret(record, names)
    ConnectionsTable(settings.connections_table).record_login(
        record,
        consumer_secret_arn=consumer_arn,
        next_refresh_at=next_refresh_at(
            record.connection,
            access_expires_at=epoch(grant.access_expires_at),
            refreshed_at=epoch(now),
            now=epoch(now),
            policy=settings.refresh,
        ),
    )
    logger.info("Connection authorized", extra={"connection": record.connection})
    return LoginResult(
        connection=record.connection,
        display_name=person.display_name,
        email=person.email,
        consumer_secret_name=SecretNames(settings.secret_prefix).consumer(record.connection),
    )
