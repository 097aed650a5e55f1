"""Checking a SigV4 signature the way API Gateway's AWS_IAM authorizer and Lambda's Invoke API do, for
the local stack.

Only the local stack's own credentials are known here, so only requests signed with them pass.
"""

import hmac
import re
from urllib.parse import quote, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?"
    r"SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)"
)


class SignatureRejected(Exception):
    """Why the request is not signed by a known caller (AWS answers 403)."""


def verify(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    service: str = "execute-api",
) -> dict:
    """The caller's identity if `headers` carry a valid SigV4 signature by access_key for `service`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    match = _AUTH.fullmatch(lowered.get("authorization", "").strip())
    if not match:
        raise SignatureRejected("missing or malformed SigV4 Authorization header")
    key_id, _day, region, signed_for, signed, signature = match.groups()
    if key_id != access_key:
        raise SignatureRejected("unknown access key")
    if signed_for != service:
        raise SignatureRejected("signed for another service")
    names = signed.split(";")
    request = AWSRequest(
        method=method, url=_canonical_url(url), data=body, headers={n: lowered.get(n, "") for n in names}
    )
    request.context["timestamp"] = lowered.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(access_key, secret_key, lowered.get("x-amz-security-token")), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        raise SignatureRejected("signature does not match")
    return {
        "accessKey": key_id,
        "accountId": "123456789012",
        "callerId": key_id,
        "userArn": f"arn:aws:iam::123456789012:user/{key_id}",
    }


def _canonical_url(url: str) -> str:
    """Re-encode the path as the client did (botocore quotes '@' and other reserved characters)."""
    scheme, _, rest = url.partition("://")
    host, _, path_query = rest.partition("/")
    path, _, query = path_query.partition("?")
    path = quote(unquote(path), safe="/~")
    return f"{scheme}://{host}/{path}" + (f"?{query}" if query else "")
