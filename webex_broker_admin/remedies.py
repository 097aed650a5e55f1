"""What an operator types to mend one connection, by what its health proves. `doctor`, `list` and
`token` print these, so every message about a connection ends with the command that fixes it."""

from datetime import UTC, datetime

from webex_broker.core.connection import Connection
from webex_broker.core.health import ConnectionHealth, Health


def when(epoch: int | float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe(state: ConnectionHealth) -> str:
    """'ok', or the trouble with its start and cause: 'failing since 2026-12-06 07:00 UTC (transient: 503)'."""
    cause = ": ".join(part for part in (state.error_class, state.error) if part)
    if state.state == Health.OK:
        return "ok"
    if state.state == Health.PENDING:
        return "pending (a login has not finished)"
    since = f" since {when(state.since)}" if state.since else ""
    return f"{state.state}{since}" + (f" ({cause})" if cause else "")


def remedy(row: Connection, state: ConnectionHealth) -> str:
    """The command that mends it, or what to wait for; '' when it needs nothing. A dead grant with a
    re-authorization link on its row is pointed at that link."""
    name = row.name
    match state.state:
        case Health.OK:
            return ""
        case Health.PENDING:
            return f"wait for the login to finish, or send a new link: webex-broker invite {name}"
        case Health.REAUTH_REQUIRED if row.service_app:
            return (
                f"mint a new pair: webex-broker service-app add {name} --app-id {row.app_id} --client-id "
                f"{row.client_id or 'CLIENT_ID'} --org {row.org_id} --via CONNECTION"
            )
        case Health.REAUTH_REQUIRED:
            person = row.email or "its person"
            invite = f"webex-broker invite {name} --email {row.email}"
            link = f"webex-broker link {name}" if row.reauth_invite_id else invite
            return (
                f"send {person} the link from `{link}`; if Webex was at fault, not the grant: "
                "webex-broker refresh --reauth-required"
            )
        case _ if state.error_class == "denied":
            return (
                f"allow {state.error} to the function's role (template.yaml; or restore the broker key's policy), "
                f"deploy, then webex-broker refresh {name}"
            )
        case _ if state.error == "client_changed":
            return (
                "store the client the grant was issued to again: webex-broker set-credentials --client-id "
                f"{row.client_id}, then webex-broker refresh {name}"
            )
        case Health.REFUSED:
            return (
                f"the broker retries and ends the grant only on proof; webex-broker show {name} gives the Trackingid "
                "to quote to Webex support"
            )
        case _:
            return f"webex-broker refresh {name} once the cause is gone (webex-broker show {name} has the details)"
