"""The broker's own failures, all of them (one family under BrokerError): what a person, a workload
or an operator can meet, each with its reason, and what the adapters raise for Webex and AWS.

Modules raise these; `web.error_page` is the one place that turns them into pages, and
`refresh_route.answer` the one place that turns an on-demand refresh into the route's JSON.
"""

from enum import StrEnum


class StateProblem(StrEnum):
    UNKNOWN = "unknown"  # never issued here, or already used
    EXPIRED = "expired"
    BROWSER = "browser"  # started in another browser (or without the login cookie)


class InvitationProblem(StrEnum):
    UNKNOWN = "unknown"  # not known here: mistyped, forged, or gone
    FOREIGN = "foreign"  # intact, but made by a broker with another invitations table
    EXPIRED = "expired"
    USED = "used"
    REVOKED = "revoked"  # withdrawn (`uninvite`, or its connection was revoked)


class GrantEnd(StrEnum):
    """Why a connection became reauth_required (the event's `reason`)."""

    INVALID_GRANT = "invalid_grant"  # Webex said so
    REFUSED_FOR_AN_HOUR = "refused_for_an_hour"  # the same refusal in separate runs while others refreshed


class BrokerError(Exception):
    """Base of the broker's own failures (never carries a token)."""


class StateRejected(BrokerError):
    """The callback's state cannot finish a login: the login must start again."""

    def __init__(self, reason: StateProblem):
        super().__init__(reason)
        self.reason = reason


class InvitationRejected(BrokerError):
    """The invitation cannot be used."""

    def __init__(self, reason: InvitationProblem):
        super().__init__(reason)
        self.reason = reason


class Denial(StrEnum):
    """Why a person may not connect (the edge chooses the page's status from it)."""

    NOT_ALLOWED = "not_allowed"  # the broker's rules do not let this person connect
    UNUSABLE = "unusable"  # this account cannot be kept as asked (an address no secret name can hold)
    TAKEN = "taken"  # the connection is someone else's, or its owner is unknown until `adopt`


class AccessDenied(BrokerError):
    """This person may not create or update this connection; `reason` is safe to show them."""

    def __init__(self, reason: str, *, denial: Denial = Denial.NOT_ALLOWED):
        super().__init__(reason)
        self.reason = reason
        self.denial = denial


class ConsentDeclined(BrokerError):
    """Webex sent the person back with error=… instead of a code."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


class BadCallback(BrokerError):
    """The callback request itself is malformed (no state, no code)."""


class LoginBusy(BrokerError):
    """A refresh of this connection held its lease for longer than the login could wait; nothing was stored."""


class ConfigurationError(BrokerError, RuntimeError):
    """The deployment is misconfigured; an operator, not the person logging in, must act."""


class AwsAccessDenied(ConfigurationError):
    """AWS refused one of the broker's calls (an IAM policy, a key policy): proof of a configuration
    fault, never an outage, so nothing retries it as one. `action` and `resource` say what to grant."""

    def __init__(self, action: str, resource: str):
        super().__init__(f"AWS refused {action} on {resource or 'its resource'}")
        self.action = action
        self.resource = resource


class NotConfigured(ConfigurationError):
    """The client secret is still empty: the operator has not run `webex-broker set-credentials` yet."""


class ViaUnavailable(BrokerError):
    """A Service App's `--via` connection cannot mint its tokens now; `reason` says why (no secret in it).
    `lapsed`: only its access token has expired, which its own refresh mends, so a heal waits for it."""

    def __init__(self, reason: str, *, lapsed: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.lapsed = lapsed


class ServiceAppRefused(BrokerError):
    """Adding a Service App as asked would store what is not proven to be that app's, or would change
    what the operator did not say to change; `reason` says which, and nothing was stored. `conflict`:
    the command can say so explicitly (a new client)."""

    def __init__(self, reason: str, *, conflict: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.conflict = conflict


class ClientChanged(ConfigurationError):
    """A person's refresh token was issued to another client than the integration's stored one: Webex
    would refuse it (invalid_grant), which proves nothing about the grant, so it is not even sent."""

    def __init__(self, issued_to: str, stored: str):
        super().__init__(f"granted to client {issued_to[:8]}…, but client {stored[:8]}… is stored")
        self.issued_to = issued_to
        self.stored = stored


class LeaseLost(BrokerError):
    """Another worker took the connection over (our lease expired); our write was refused."""


class CoolingDown(BrokerError):
    """A forced refresh came too soon after the last one; `retry_after` says when the next may start."""

    def __init__(self, retry_after: int):
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class FailureKind(StrEnum):
    TRANSIENT = "transient"  # try again later: outage, throttling, timeout
    PERMANENT = "permanent"  # Webex said the grant or code is dead: the person must authorize again
    REFUSED = "refused"  # a 4xx that proves nothing about the grant: retried, alarmed, never ends a connection
    CONFIGURATION = "configuration"  # the integration itself is wrong: an operator must act


class WebexError(BrokerError):
    """A failed Webex call. Carries what support needs (status, code, Trackingid), never a token."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        tracking_id: str = "",
        retry_after: float | None = None,
        kind: FailureKind = FailureKind.TRANSIENT,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.tracking_id = tracking_id
        self.retry_after = retry_after
        self.kind = kind

    @property
    def throttled(self) -> bool:
        """Webex asked to slow down (429): wait its Retry-After."""
        return self.status == 429

    @property
    def forbidden(self) -> bool:
        """Webex refused the caller's right (403): a scope missing, or an org that has not authorized an app."""
        return self.status == 403

    @property
    def unauthorized(self) -> bool:
        """Webex refused the bearer token itself (401)."""
        return self.status == 401


class ReplicationFailed(BrokerError):
    """Secrets Manager could not create a replica (its status says why); the secret keeps the others."""

    def __init__(self, name: str, reasons: dict[str, str]):
        super().__init__(f"{name}: replication failed in {', '.join(reasons)}")
        self.reasons = reasons


class StatementRefused(BrokerError):
    """AWS refused one statement of a token secret's resource policy (BlockPublicPolicy judged it
    public); the secret has the others."""

    def __init__(self, name: str, sid: str, code: str):
        super().__init__(f"{name}: AWS refused the statement {sid} ({code})")
        self.sid = sid
        self.code = code


class MissingRefreshSecret(BrokerError):
    """An active connection's refresh secret does not exist (a changed SecretPrefix, or deleted by hand)."""


class Refused(BrokerError):
    """An action that cannot be done as asked; its message is for the operator."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class AwsUnavailable(BrokerError):
    """An AWS call failed for a reason that is not a refusal (throttled, unreachable, a lost
    conditional write, a missing resource): `code` is AWS's error code, or the client-side failure's
    name. The adapters raise it for every such failure, so flows never catch botocore's errors."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


class RotationFailed(BrokerError):
    """A rotation step that must not finish: AWSCURRENT stays as it is, and Secrets Manager says so."""
