"""The broker's on-demand refresh route: one SigV4-signed POST, sent with botocore's own HTTP client
(so the package needs nothing beyond boto3), answered with status and expiry, never a token."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import ReadOnlyCredentials
from botocore.httpsession import URLLib3Session

# API Gateway's own host names carry the API's region; a custom domain does not.
API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")
TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict = field(default_factory=dict)
    retry_after: float | None = None


def route_url(template: str, connection: str) -> str:
    """The `RefreshUrlTemplate` output with `{name}` replaced by the URL-encoded connection name."""
    return template.replace("{name}", quote(connection, safe=""))


def signing_region(url: str, default: str | None) -> str | None:
    """The API's own region when its host name says it, so a workload reading a replica in another
    region still signs for the region the API is in."""
    found = API_HOST.search(urlsplit(url).hostname or "")
    return found.group(1) if found else default


def post(url: str, credentials: ReadOnlyCredentials, region: str) -> Answer:
    request = AWSRequest(method="POST", url=url, data=b"")
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    response = send(request)
    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        body = {}
    retry_after = response.headers.get("Retry-After")
    return Answer(
        response.status_code,
        body if isinstance(body, dict) else {},
        float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


def send(request: AWSRequest) -> AWSResponse:
    """The one network call, kept apart so the tests can answer it instead."""
    return URLLib3Session(timeout=TIMEOUT_SECONDS).send(request.prepare())
