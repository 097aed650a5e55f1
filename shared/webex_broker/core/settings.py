"""Configuration read once from the environment the template (or the local runner) sets; the
operator CLI reads the same variables from the deployed function's configuration."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from webex_broker.core.errors import ConfigurationError
from webex_broker.core.sharing import TokenSharing

PEOPLE_SCOPES = frozenset({"spark:people_read", "spark:all"})
# The broker sends its client secret and every refresh token to this host: only Webex's own clouds
# (commercial, and Webex for Government), unless the development setting below says otherwise.
WEBEX_CLOUDS = ("https://webexapis.com/v1", "https://api-usgov.webex.com/v1")
DEVELOPMENT_WEBEX_URL = "ALLOW_DEVELOPMENT_WEBEX_URL"  # "true": any http(s) URL (a simulator); never in a stack
# AWS's one version per secret per 10 minutes is no stack parameter: only the local stack, whose simulated
# tokens live minutes, sets another floor.
WRITE_FLOOR = "SECRET_WRITE_FLOOR_SECONDS"
# The rotation function's name is this and the token key's id (template.yaml, RotationFunction): every
# function knows its ARN from the environment it has, which has no room left for the ARN itself.
ROTATION_FUNCTION_PREFIX = "webex-broker-rotation-"


@dataclass(frozen=True)
class RefreshPolicy:
    """How the refresher paces itself; every number is a template parameter or has a safe default."""

    window_seconds: int = 48 * 3600
    max_age_seconds: int = 7 * 86400
    min_interval_seconds: int = 86400
    run_interval_seconds: int = 600
    safety_margin_seconds: int = 600
    # AWS: PutSecretValue on one secret no more than once per 10 minutes, sustained; faster, versions
    # younger than 24 h pile up to the versions quota and the secret refuses writes.
    write_floor_seconds: int = 600
    jitter_seconds: int = 6 * 3600
    concurrency: int = 16
    write_rate: float = 40.0
    time_margin_seconds: float = 60.0
    lease_seconds: int = 300
    max_attempts: int = 3
    default_retry_after: float = 15.0
    retry_cap_seconds: float = 60.0
    expiry_warning_seconds: int = 14 * 86400
    forced_cooldown_seconds: int = 60  # at most one forced (on-demand) Webex call per connection per minute
    refusal_proof_seconds: int = 3600  # the same unexplained refusal this long, in separate runs, proves a dead grant
    breaker_min_refused: int = 5  # a run stops when at least this many attempts were refused, unexplained,
    breaker_refused_share: float = 0.5  # and they are at least this share of the run's attempts


@dataclass(frozen=True)
class Settings:
    webex_base_url: str
    scopes: tuple[str, ...]
    client_secret_arn: str
    state_table: str
    connections_table: str
    secret_prefix: str
    public_base_url: str
    state_ttl_seconds: int
    webex_timeout_seconds: float
    refresh: "RefreshPolicy"
    events_source: str
    stack_name: str  # the template sets POWERTOOLS_SERVICE_NAME to it: what the broker key trusts is its role path
    event_bus: str
    access_mode: str
    allowed_email_domains: tuple[str, ...]
    allowed_org_ids: tuple[str, ...]
    open_to_anyone: bool
    invitations_table: str
    sharing: TokenSharing
    support_contact: str = ""  # whom the pages tell a person to ask (SupportContact)
    development_webex_url: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "Settings":
        """Read and validated, so a broker that cannot work says so before it does anything."""
        settings = _read(environ)
        settings.validate()
        return settings

    @property
    def scope_string(self) -> str:
        return " ".join(self.scopes)

    def validate(self) -> None:
        self.require_webex_cloud()
        self.require_safe_access_mode()
        self.require_people_scope()
        self.sharing.validate()

    @property
    def webex_is_a_cloud(self) -> bool:
        return self.webex_base_url in WEBEX_CLOUDS

    def require_webex_cloud(self) -> None:
        """Whoever names this URL receives the client secret and the refresh tokens."""
        if self.webex_is_a_cloud:
            return
        if not self.development_webex_url:
            raise ConfigurationError(
                f"WEBEX_API_BASE_URL must be one of Webex's clouds ({', '.join(WEBEX_CLOUDS)}), not "
                f"{self.webex_base_url!r}: the client secret and every refresh token are sent there"
            )
        if not self.webex_base_url.startswith(("https://", "http://")):
            raise ConfigurationError(f"WEBEX_API_BASE_URL must be an http(s) URL, not {self.webex_base_url!r}")

    def require_safe_access_mode(self) -> None:
        """Open mode with no allowlist lets any Webex user in the world create secrets here."""
        if self.access_mode not in ("invite", "open"):
            raise ConfigurationError(f"ACCESS_MODE must be invite or open, not {self.access_mode!r}")
        if self.access_mode == "open" and not (
            self.allowed_email_domains or self.allowed_org_ids or self.open_to_anyone
        ):
            raise ConfigurationError(
                "Open access mode needs AllowedEmailDomains or AllowedOrgIds, "
                "or OpenToAnyWebexAccount=true to let any Webex account connect."
            )

    def require_people_scope(self) -> None:
        """The broker learns who logged in from /people/me, which needs one of these scopes."""
        if not PEOPLE_SCOPES & set(self.scopes):
            raise ConfigurationError(
                "The configured Webex scopes must include spark:people_read (or spark:all): "
                "the broker calls /people/me to learn who authorized."
            )


@cache
def load_settings() -> Settings:
    """This process's settings, from its own environment."""
    return Settings.from_environment(os.environ)


def _read(environ: Mapping[str, str]) -> Settings:
    def env(name: str, default: str | None = None) -> str:
        value = environ.get(name, default)
        if value is None:
            raise ConfigurationError(f"Environment variable {name} is not set")
        return value

    return Settings(
        webex_base_url=env("WEBEX_API_BASE_URL", "https://webexapis.com/v1").rstrip("/"),
        scopes=tuple(env("WEBEX_SCOPES", "spark:kms spark:people_read").split()),
        client_secret_arn=env("CLIENT_SECRET_ARN"),
        state_table=env("STATE_TABLE"),
        connections_table=env("CONNECTIONS_TABLE"),
        secret_prefix=env("SECRET_PREFIX").strip("/"),
        public_base_url=env("PUBLIC_BASE_URL", "").rstrip("/"),
        state_ttl_seconds=int(env("STATE_TTL_SECONDS", "600")),
        webex_timeout_seconds=float(env("WEBEX_TIMEOUT_SECONDS", "8")),
        refresh=RefreshPolicy(
            window_seconds=int(float(env("REFRESH_WINDOW_HOURS", "48")) * 3600),
            max_age_seconds=int(float(env("REFRESH_MAX_AGE_DAYS", "7")) * 86400),
            min_interval_seconds=int(float(env("REFRESH_MIN_INTERVAL_HOURS", "24")) * 3600),
            run_interval_seconds=int(float(env("REFRESH_INTERVAL_MINUTES", "10")) * 60),
            write_floor_seconds=int(env(WRITE_FLOOR, "600")),
            jitter_seconds=int(float(env("REFRESH_JITTER_HOURS", "6")) * 3600),
            concurrency=int(env("REFRESH_CONCURRENCY", "16")),
            write_rate=float(env("SECRETS_WRITE_RATE", "40")),
            expiry_warning_seconds=int(float(env("REFRESH_EXPIRY_WARNING_DAYS", "14")) * 86400),
        ),
        events_source=_events_source(environ),
        stack_name=environ.get("POWERTOOLS_SERVICE_NAME", ""),
        event_bus=env("EVENT_BUS_NAME", "default"),
        access_mode=env("ACCESS_MODE", "invite"),
        allowed_email_domains=tuple(domain.lower() for domain in _split(env("ALLOWED_EMAIL_DOMAINS", ""))),
        allowed_org_ids=_split(env("ALLOWED_ORG_IDS", "")),
        open_to_anyone=env("OPEN_TO_ANY_WEBEX_ACCOUNT", "false").lower() == "true",
        invitations_table=env("INVITATIONS_TABLE", ""),
        support_contact=env("SUPPORT_CONTACT", "").strip(),
        development_webex_url=env(DEVELOPMENT_WEBEX_URL, "false").lower() == "true",
        sharing=TokenSharing(
            kms_key_id=env("TOKEN_KMS_KEY_ID", ""),
            reader_account_ids=_split(env("READER_ACCOUNT_IDS", "")),
            reader_organization_id=env("READER_ORGANIZATION_ID", "").strip(),
            replica_regions=_split(env("REPLICA_REGIONS", "")),
            broker_key_id=env("BROKER_KMS_KEY_ID", ""),
            own_account=_account_of(env("CLIENT_SECRET_ARN")),
            rotation_function_arn=_rotation_function_arn(environ),
        ),
    )


def _account_of(arn: str) -> str:
    """The account in an ARN (`arn:partition:service:region:account:...`), '' when it is no ARN."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[0] == "arn" else ""


def _rotation_function_arn(environ: Mapping[str, str]) -> str:
    """In the functions' own region (Lambda's AWS_REGION), account and partition; '' without a token key."""
    key, parts = environ.get("TOKEN_KMS_KEY_ID", ""), environ.get("CLIENT_SECRET_ARN", "").split(":")
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION", "")
    if not key or not region or len(parts) < 6 or parts[0] != "arn":
        return ""
    return f"arn:{parts[1]}:lambda:{region}:{parts[4]}:function:{ROTATION_FUNCTION_PREFIX}{key}"


def _events_source(environ: Mapping[str, str]) -> str:
    """`webex-token-broker.<stack name>`, so two stacks' events stay apart; derived from the stack name
    Powertools already has, because the refresher's 4 KB environment has no room for it twice."""
    stack = environ.get("POWERTOOLS_SERVICE_NAME", "")
    return f"webex-token-broker.{stack}" if stack else "webex-token-broker"


def _split(value: str) -> tuple[str, ...]:
    """Comma- or space-separated lists, as CloudFormation parameters pass them."""
    return tuple(value.replace(",", " ").split())
