"""The broker assembled once per container from its settings: the stores, the secrets' names, the
event publisher and the Webex client, handed to each flow (login, refresh, on-demand) instead of each
rebuilding them."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from webex_broker.adapters import webex
from webex_broker.adapters.client_credentials import ClientCredentials, load_client_credentials
from webex_broker.adapters.connections import ConnectionsTable
from webex_broker.adapters.events import EventPublisher
from webex_broker.adapters.invitations import InvitationStore
from webex_broker.adapters.login_state import StateStore
from webex_broker.adapters.secret_store import SecretNames
from webex_broker.core.settings import Settings, load_settings


@dataclass(frozen=True)
class Broker:
    settings: Settings
    connections: ConnectionsTable
    states: StateStore
    invitations: InvitationStore
    names: SecretNames
    events: EventPublisher

    @classmethod
    def from_settings(cls, settings: Settings) -> "Broker":
        return cls(
            settings=settings,
            connections=ConnectionsTable(settings.connections_table),
            states=StateStore(settings.state_table),
            invitations=InvitationStore(settings.invitations_table),
            names=SecretNames(settings.secret_prefix),
            events=EventPublisher(source=settings.events_source, bus=settings.event_bus),
        )

    def webex_client(
        self, credentials: ClientCredentials | None = None, *, time_left_ms: Callable[[], int] | None = None
    ) -> webex.WebexClient:
        """A Webex client with the integration's stored credentials, or with ones not stored yet
        (`set-credentials` checks them with Webex first); `time_left_ms` shortens each call's deadline."""
        credentials = credentials or load_client_credentials(self.settings.client_secret_arn)
        return webex.WebexClient(
            self.settings.webex_base_url,
            credentials,
            timeout=self.settings.webex_timeout_seconds,
            time_left_ms=time_left_ms,
        )


@cache
def current() -> Broker:
    """This container's broker: built at the first request, kept while the container is warm."""
    return Broker.from_settings(load_settings())
