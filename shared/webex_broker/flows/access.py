"""Who may connect, decided after Webex says who the person is and before anything is written."""

from webex_broker.adapters.invitations import CONNECTION_NAME, Invitation
from webex_broker.core import emails
from webex_broker.core.connection import Connection
from webex_broker.core.errors import AccessDenied, Denial
from webex_broker.core.grants import Person
from webex_broker.core.settings import Settings
from webex_broker.core.token_documents import connection_name_for

INVITE = "invite"
OPEN = "open"


def require_invitation(settings: Settings, invite_token: str) -> None:
    if settings.access_mode == INVITE and not invite_token:
        raise AccessDenied("This broker connects people through invitation links only. Ask its administrator for one.")


def connection_for(settings: Settings, person: Person, invitation: Invitation | None) -> str:
    """The connection this person's consent may write, or AccessDenied. Addresses compare only in
    their plain-ASCII form (see emails.comparable)."""
    email = emails.comparable(person.email)
    if invitation is not None:
        if invitation.email and invitation.email != email:
            if email is None:
                raise AccessDenied(
                    "This invitation is for a different Webex account: the address you signed in with "
                    "is not a plain ASCII address and cannot match it."
                )
            raise AccessDenied(
                f"This invitation is for a different Webex account. You signed in as {email}; "
                "sign out of Webex and use the account the invitation was sent to."
            )
        return invitation.connection
    if settings.access_mode != OPEN:
        raise AccessDenied("An invitation is required.")
    if email is None:
        raise AccessDenied("This broker only connects Webex accounts with a plain ASCII e-mail address.")
    domain = email.rpartition("@")[2]
    domains, orgs = settings.allowed_email_domains, settings.allowed_org_ids
    if (domains or orgs) and domain not in domains and person.org_id not in orgs:
        raise AccessDenied(f"Accounts of {domain} are not allowed to connect to this broker.")
    name = connection_name_for(person)
    if not CONNECTION_NAME.fullmatch(name):  # the secrets are named after it, and Secrets Manager is strict
        raise AccessDenied(
            "Your Webex address has characters a connection name cannot hold (only letters, digits and "
            "_+=.@- are allowed). Ask the broker's administrator for an invitation link instead.",
            denial=Denial.UNUSABLE,
        )
    return name


def check_owner(row: Connection | None, owner_id: str) -> None:
    """A connection stays bound to the person (or the Service App) that first authorized it."""
    if row and row.person_id and row.person_id != owner_id:
        raise AccessDenied(
            "This connection already belongs to another Webex account and cannot be taken over.", denial=Denial.TAKEN
        )
