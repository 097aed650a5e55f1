"""The integration's client credentials, as `webex-broker set-credentials` stores them and `doctor`
checks them: only once Webex accepts them, sealed under the broker key, tagged with the client ID the
public authorize function reads, and never another client than people's grants were issued to
unless the operator says so (`force`): Webex refreshes a grant only for the client it was issued to.
"""

from collections.abc import Callable

from webex_broker.adapters.client_credentials import (
    ClientCredentials,
    described_client_secret,
    load_client_credentials,
    store_client_credentials,
)
from webex_broker.adapters.secret_store import same_key
from webex_broker.core.connection import ConnectionStatus
from webex_broker.core.errors import ConfigurationError, NotConfigured, Refused, WebexError
from webex_broker.flows.admin_requests import CheckCredentials, CredentialsChecked, CredentialsStored, SetCredentials
from webex_broker.flows.broker import Broker

SET_CREDENTIALS_FIX = "webex-broker set-credentials --client-id <the integration's client ID>"


def set_credentials(broker: Broker, request: SetCredentials, remaining_ms: Callable[[], int]) -> CredentialsStored:
    """Checked with Webex before anything is stored; stored sealed under the broker key. Another client
    ID than the stored one is refused while people's grants were issued to it, unless `force`."""
    credentials = ClientCredentials(request.client_id, request.client_secret)
    others = _grants_of_other_clients(broker, credentials.client_id)
    if others and not request.force:
        raise Refused("conflict", _client_change_refusal(others, credentials.client_id))
    try:
        accepted = broker.webex_client(credentials).credentials_accepted()
    except WebexError as exc:
        raise Refused("failed", f"Could not check them with Webex ({exc.code}); nothing was stored.") from None
    if not accepted:
        raise Refused("failed", "Webex refused this client ID and secret (invalid_client); nothing was stored.")
    arn = broker.settings.client_secret_arn
    store_client_credentials(arn, credentials, key=broker.settings.sharing.broker_key_id)
    message = f"Stored the credentials of client {credentials.client_id[:8]}… in {arn}."
    if others:
        message += (
            f" The {len(others)} connection(s) authorized with another client keep their status but are not "
            "refreshed (each run alarms `client_changed`) until their people log in again, or their client is "
            "stored again."
        )
    return CredentialsStored(message)


def _grants_of_other_clients(broker: Broker, client_id: str) -> dict[str, str]:
    """Each person's connection whose grant another client issued (as its row records, else the stored
    client's): Webex refreshes a grant only for the client it was issued to."""
    try:
        stored = load_client_credentials(broker.settings.client_secret_arn, fresh=True).client_id
    except ConfigurationError:  # empty or unreadable: no grant was issued through it
        stored = ""
    issued = {
        c.name: c.client_id or stored
        for c in broker.connections.all()
        if not c.service_app and c.status != ConnectionStatus.PENDING
    }
    return {name: issuer for name, issuer in issued.items() if issuer and issuer != client_id}


def _client_change_refusal(others: dict[str, str], client_id: str) -> str:
    names = sorted(others)
    named = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    issuers = ", ".join(f"{issuer[:8]}…" for issuer in sorted(set(others.values())))
    return (
        f"{len(names)} connection(s) ({named}) were authorized with client {issuers}. Webex refreshes a grant only "
        f"for the client it was issued to, so with client {client_id[:8]}… none of them could be refreshed until "
        "each person logs in again. Nothing was stored. To rotate the secret, give the same client ID; to replace "
        "the integration anyway, add --force: those connections then keep their status, are not refreshed and "
        "raise an alarm each run until their people log in again."
    )


def check_credentials(broker: Broker, request: CheckCredentials, remaining_ms: Callable[[], int]) -> CredentialsChecked:
    """doctor's check: stored, accepted by Webex, and sealed under the broker key."""
    arn = broker.settings.client_secret_arn
    try:
        credentials = load_client_credentials(arn, fresh=True)
    except NotConfigured:
        return _check("fail", "not set yet: the stack created the client secret empty", SET_CREDENTIALS_FIX)
    except ConfigurationError as exc:
        return _check("fail", str(exc), SET_CREDENTIALS_FIX)
    try:
        accepted = broker.webex_client(credentials).credentials_accepted()
    except WebexError as exc:
        return _check("fail", f"could not ask Webex ({exc.code or exc.status})", "check WebexApiBaseUrl and Webex")
    if not accepted:
        return _check("fail", "Webex refuses the client ID or secret (invalid_client)", SET_CREDENTIALS_FIX)
    accepted_detail = f"Webex accepts client ID {credentials.client_id[:8]}…"
    facts = described_client_secret(arn)
    if facts.client_id != credentials.client_id:
        return _check(
            "fail",
            f"{accepted_detail}, but the secret's client ID tag differs: logins would ask consent for another client",
            f"{SET_CREDENTIALS_FIX} (tags it again)",
        )
    wanted = broker.settings.sharing.broker_key_id
    if wanted and not same_key(facts.kms_key_id, wanted):
        return _check(
            "warn",
            f"{accepted_detail}, but the secret is not under the broker key: an account administrator can read it",
            f"{SET_CREDENTIALS_FIX} (stores it again, under the broker key)",
        )
    return _check("ok", f"{accepted_detail}; sealed under the broker key" if wanted else accepted_detail)


def _check(result: str, detail: str, fix: str = "") -> CredentialsChecked:
    return CredentialsChecked(result, detail, fix)
