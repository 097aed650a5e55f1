"""The integration's client ID and secret, read from Secrets Manager at run time, never from env.

The stack creates the secret empty (`{}`) and `webex-broker set-credentials` fills it through the
broker's admin function, sealing it under the broker key, so a deploy never carries the client
secret, never overwrites one rotated in Secrets Manager, and no administrator can read it.
"""

import json
import time
from dataclasses import dataclass
from functools import cache

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

from webex_broker.adapters import aws
from webex_broker.core.errors import AwsAccessDenied, ConfigurationError, NotConfigured

CACHE_SECONDS = 300
# The client ID, which is no secret (every consent URL carries it), also as a tag on the client secret:
# the public authorize function reads it with DescribeSecret and may not read (decrypt) the secret.
CLIENT_ID_TAG = "webex-token-broker:client-id"


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret=***)"


@cache
def _provider() -> SecretsProvider:
    """Powertools' cache over the broker's own Secrets Manager client: one client, one session per cold start."""
    return SecretsProvider(boto3_client=aws.client("secretsmanager"))


def load_client_credentials(secret_arn: str, *, fresh: bool = False) -> ClientCredentials:
    """Cached for five minutes, so a rotated client secret is picked up without a redeploy; `fresh`
    reads what is stored now (doctor's check runs in a warm function)."""
    try:
        document = _provider().get(secret_arn, transform="json", max_age=CACHE_SECONDS, force_fetch=fresh)
    except GetParameterError as exc:
        if isinstance(exc.__context__, AwsAccessDenied):  # Powertools wraps every error in its own
            raise exc.__context__ from None
        raise ConfigurationError(f"The client secret cannot be read ({type(exc.__context__).__name__})") from None
    except TransformParameterError:
        raise ConfigurationError("The client secret is not JSON") from None
    if not isinstance(document, dict):
        raise ConfigurationError("The client secret must be JSON with the keys client_id and client_secret")
    if document == {}:
        raise NotConfigured("The client secret is empty: run `webex-broker set-credentials`.")
    try:
        return ClientCredentials(client_id=document["client_id"], client_secret=document["client_secret"])
    except (KeyError, TypeError):
        raise ConfigurationError("The client secret must be JSON with the keys client_id and client_secret") from None


def store_client_credentials(secret_arn: str, credentials: ClientCredentials, *, key: str = "") -> None:
    """What `set-credentials` writes (the functions see it within CACHE_SECONDS): a new version, and
    the secret under the broker `key` from then on, in one call; then the client ID tag."""
    document = json.dumps({"client_id": credentials.client_id, "client_secret": credentials.client_secret})
    sm = aws.client("secretsmanager")
    if key:
        sm.update_secret(SecretId=secret_arn, SecretString=document, KmsKeyId=key)
    else:
        sm.put_secret_value(SecretId=secret_arn, SecretString=document)
    sm.tag_resource(SecretId=secret_arn, Tags=[{"Key": CLIENT_ID_TAG, "Value": credentials.client_id}])


def load_client_id(secret_arn: str) -> str:
    """The integration's client ID, from the client secret's tag, cached like the credentials."""
    fetched_at, client_id = _client_ids().get(secret_arn, (0.0, ""))
    if client_id and time.monotonic() - fetched_at < CACHE_SECONDS:
        return client_id
    client_id = described_client_secret(secret_arn).client_id
    if not client_id:
        raise NotConfigured("The client secret carries no client ID tag: run `webex-broker set-credentials`.")
    _client_ids()[secret_arn] = (time.monotonic(), client_id)
    return client_id


@dataclass(frozen=True)
class ClientSecretFacts:
    """What DescribeSecret says of the client secret, without reading (decrypting) it."""

    kms_key_id: str  # the key it is under: the broker key once `set-credentials` ran on this stack
    client_id: str  # its client ID tag; '' when it has none


def described_client_secret(secret_arn: str) -> ClientSecretFacts:
    described = aws.client("secretsmanager").describe_secret(SecretId=secret_arn)
    tag = next((t["Value"] for t in described.get("Tags", []) if t["Key"] == CLIENT_ID_TAG), "")
    return ClientSecretFacts(described.get("KmsKeyId", ""), tag)


@cache
def _client_ids() -> dict[str, tuple[float, str]]:
    """This container's client IDs and when each was read (forgotten on a cold start)."""
    return {}
