"""A grant Webex proved dead (or refused for an hour while others refreshed): a person is asked to
authorize again, with a fresh single-use link in the event (an open one is reused, not sent again);
a Service App first mints a new pair through its `via`, stored by the refresh's own writes, and ends
only when that is refused for a reason that proves it (an outage keeps it active and retried)."""

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from webex_broker.adapters.invitations import invitation_link
from webex_broker.core.clock import epoch
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.errors import (
    AwsAccessDenied,
    AwsUnavailable,
    FailureKind,
    GrantEnd,
    ViaUnavailable,
    WebexError,
)
from webex_broker.core.events import About, HealFailed, ReauthRequired, ServiceAppHealed, WebexSaid
from webex_broker.core.grants import TokenGrant
from webex_broker.core.observability import logger, metrics
from webex_broker.core.token_documents import RefreshMaterial
from webex_broker.flows import service_apps
from webex_broker.flows.broker import Broker
from webex_broker.flows.refresh_report import Outcome

REAUTH_LINK_SECONDS = 7 * 86400

Fail = Callable[[Connection, Outcome, str, str, datetime], Connection]
Store = Callable[[str, Connection, RefreshMaterial, TokenGrant, datetime], tuple[Outcome, Connection | None]]


class DeadGrants:
    """Called by a refresh under its lease, with its own failure bookkeeping (`fail`), writes
    (`store`) and reading of the refresh material."""

    def __init__(
        self,
        broker: Broker,
        *,
        owner: str,
        fail: Fail,
        store: Store,
        material: Callable[[str], RefreshMaterial],
    ) -> None:
        self._broker = broker
        self._table = broker.connections
        self._events = broker.events
        self._invitations = broker.invitations if broker.settings.invitations_table else None
        self._owner = owner
        self._fail = fail
        self._store = store
        self._material = material

    def handle(
        self, connection: str, row: Connection, exc: WebexError, now: datetime, *, reason: GrantEnd
    ) -> tuple[Outcome, Connection | None]:
        """A person must authorize again; a Service App first tries to mint a new pair through its
        `via`. A mint that fails for a reason that proves nothing (an outage) leaves the connection
        active and retried, with its dead refresh token still on file: nothing is lost by waiting."""
        heal = None
        if row.service_app:
            try:
                material = self._material(connection)
                grant = service_apps.mint(self._broker, material.service_app, material.person.org_id, now=now)
            except AwsUnavailable as failed:
                logger.warning(
                    "AWS failed while minting a new Service App pair; will retry", extra={"error": failed.code}
                )
                return Outcome.TRANSIENT, self._fail(row, Outcome.TRANSIENT, failed.code, "", now)
            except ViaUnavailable as unavailable:
                if unavailable.lapsed:  # its own refresh mends it: no reason to give the app up
                    logger.warning(
                        "The via's access token lapsed; the heal waits for it", extra={"why": unavailable.reason}
                    )
                    return Outcome.TRANSIENT, self._fail(row, Outcome.TRANSIENT, "via_token_lapsed", "", now)
                heal = HealFailed("not_possible", unavailable.reason)
            except WebexError as refused:
                if refused.kind == FailureKind.TRANSIENT:
                    logger.warning("Could not mint a new Service App pair; will retry", extra={"error": refused.code})
                    return Outcome.TRANSIENT, self._fail(row, Outcome.TRANSIENT, refused.code, refused.tracking_id, now)
                heal = HealFailed("failed", refused.code, refused.status)
            else:
                return self._healed(connection, row, material, material.complete(grant), exc, now)
            logger.warning("The Service App's grant is dead and could not be minted again", extra=heal.detail())
        return Outcome.PERMANENT, self.end(connection, row, exc, now, reason=reason, heal=heal)

    def _healed(
        self,
        connection: str,
        row: Connection,
        material: RefreshMaterial,
        grant: TokenGrant,
        exc: WebexError,
        now: datetime,
    ) -> tuple[Outcome, Connection | None]:
        outcome, updated = self._store(connection, row, material, grant, now)
        if outcome == Outcome.SKIPPED:  # the connection changed while the pair was minted: the newer one stays
            return outcome, updated
        via = material.service_app.via if material.service_app else ""
        logger.info("Service App's dead refresh token replaced by a new pair", extra={"via": via})
        metrics.add_metric(name="ServiceAppsHealed", unit="Count", value=1)
        about = About.of(row, status=ConnectionStatus.ACTIVE)
        self._events.publish(ServiceAppHealed(about, WebexSaid(exc.code, exc.tracking_id), via))
        return outcome, updated

    def end(
        self,
        connection: str,
        row: Connection,
        exc: WebexError,
        now: datetime,
        *,
        reason: GrantEnd,
        heal: HealFailed | None = None,
    ) -> Connection:
        """Mark `reauth_required` with a link to re-authorize. While an earlier link is still open it is
        reused, and no new event is sent: asking again must not flood the person with links."""
        invite_id: str | None = row.reauth_invite_id
        reuse = row.status == ConnectionStatus.REAUTH_REQUIRED and self._invitation_open(invite_id, now)
        link = None
        if not reuse:
            invite_id, link = self._reauthorization_link(row, now)
        self._table.mark_reauth_required(
            connection,
            owner=self._owner,
            error=exc.code,
            tracking_id=exc.tracking_id,
            now=epoch(now),
            invite_id=invite_id,
        )
        if not reuse:
            metrics.add_metric(name="ReauthRequired", unit="Count", value=1)
            about = About.of(row, status=ConnectionStatus.REAUTH_REQUIRED)
            said = WebexSaid(exc.code, exc.tracking_id)
            self._events.publish(ReauthRequired(about, said, reason, heal=heal, login_url=link))
        return replace(row, status=ConnectionStatus.REAUTH_REQUIRED)

    def _invitation_open(self, invite_id: str | None, now: datetime) -> bool:
        if not (invite_id and self._invitations):
            return False
        invitation = self._invitations.get(invite_id)
        return invitation is not None and invitation.usable_at(epoch(now))

    def _reauthorization_link(self, row: Connection, now: datetime) -> tuple[str | None, str | None]:
        """A fresh single-use invitation for the same person and connection, so the event can be acted on."""
        base = row.login_base_url
        if not (self._invitations and base):
            return None, None
        try:
            invitation, token = self._invitations.create(
                row.name,
                email=row.email or None,
                ttl_seconds=REAUTH_LINK_SECONDS,
                max_uses=1,
                now=epoch(now),
                retrievable=True,
            )
        except ValueError as exc:  # no link can be made for this person (say, a non-ASCII address)
            logger.warning("No reauthorization link can be made; the event goes without one", extra={"why": str(exc)})
            return None, None
        except (AwsUnavailable, AwsAccessDenied) as exc:  # the event matters more than its link
            error = exc.action if isinstance(exc, AwsAccessDenied) else exc.code
            logger.error("Could not create a reauthorization link", extra={"error": error})
            return None, None
        return invitation.id, invitation_link(base, token)
