"""The baseline: the broker's work done by hand with boto3 and requests, and no broker code.

Each function makes the AWS calls the broker makes (same operations, same counts, the same items and
expressions, so moto does the same work for both) and the same Webex HTTP calls; bench/warm.py
counts both sides and prints the counts next to each other. What the baseline leaves out is what the
broker adds: Powertools logging and metrics, settings and dataclasses, error classification.
It reads the same environment variables as the broker, and imports only boto3, requests and stdlib.
"""

import base64
import hashlib
import json
import os
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode

import boto3
import requests
from botocore.config import Config

_clients: dict = {}
_credentials: dict = {}
_http: list[requests.Session] = []
# What anyone would configure for 16 threads: a pool that holds them, and botocore's standard retries.
_CONFIG = Config(max_pool_connections=64, retries={"mode": "standard", "max_attempts": 4})
_NAMESPACE = uuid.UUID("6f1c1f0e-3a4b-4d0a-9a57-2b7f4a3c9e10")
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def client(service: str):
    if service not in _clients:
        _clients[service] = boto3.client(service, config=_CONFIG)
    return _clients[service]


def http() -> requests.Session:
    """One pooled session per container, reusing connections to Webex across calls and threads."""
    if not _http:
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64))
        session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=64))
        _http.append(session)
    return _http[0]


def reset() -> None:
    """A cold start: no clients, no pooled connections, no cached client secret."""
    _clients.clear()
    _credentials.clear()
    _http.clear()


def credentials() -> dict:
    """The integration's client ID and secret, read once per container (the broker caches for 5 min)."""
    if not _credentials:
        value = client("secretsmanager").get_secret_value(SecretId=os.environ["CLIENT_SECRET_ARN"])["SecretString"]
        _credentials.update(json.loads(value))
    return _credentials


def _base() -> str:
    return os.environ["WEBEX_API_BASE_URL"].rstrip("/")


def _prefix() -> str:
    return os.environ["SECRET_PREFIX"]


def _s(value) -> dict:
    return {"S": str(value)}


def _n(value) -> dict:
    return {"N": str(int(value))}


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# --- GET /authorize ---------------------------------------------------------------------------------


def _cookie(event: dict) -> str:
    """The browser's login nonce (the sample events carry one); a fresh one if it has none."""
    for cookie in event.get("cookies") or []:
        return cookie.partition("=")[2]
    return secrets.token_urlsafe(32)


def authorize(event: dict) -> dict:
    creds = credentials()
    domain = event["requestContext"]["domainName"]
    redirect_uri = f"https://{domain}/callback"
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    now = int(time.time())
    client("dynamodb").put_item(
        TableName=os.environ["STATE_TABLE"],
        Item={
            "state": _s(state),
            "code_verifier": _s(verifier),
            "redirect_uri": _s(redirect_uri),
            "created_at": _n(now),
            "expires_at": _n(now + int(os.environ["STATE_TTL_SECONDS"])),
            "browser_hash": _s(hashlib.sha256(_cookie(event).encode()).hexdigest()),
        },
        ConditionExpression="attribute_not_exists(#s)",
        ExpressionAttributeNames={"#s": "state"},
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": creds["client_id"],
            "redirect_uri": redirect_uri,
            "scope": os.environ["WEBEX_SCOPES"],
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        quote_via=quote,
    )
    return {"statusCode": 302, "headers": {**_HEADERS, "Location": f"{_base()}/authorize?{query}"}, "body": ""}


def _lease(table: str, connection: str, owner: str, *, now: int, seconds: int) -> dict:
    """The broker's lease, taken by the login and by every refresh: the row as it now stands."""
    return client("dynamodb").update_item(
        TableName=table,
        Key={"connection": _s(connection)},
        UpdateExpression="SET lease_owner = :owner, lease_expires_at = :until",
        ConditionExpression=(
            "attribute_exists(#c) AND "
            "(attribute_not_exists(lease_expires_at) OR lease_expires_at < :now OR lease_owner = :owner)"
        ),
        ExpressionAttributeNames={"#c": "connection"},
        ExpressionAttributeValues={":owner": _s(owner), ":until": _n(now + seconds), ":now": _n(now)},
        ReturnValues="ALL_NEW",
    )["Attributes"]


# --- GET /callback ----------------------------------------------------------------------------------


def _put_secret(name: str, document: dict) -> str:
    value = json.dumps(document, sort_keys=True, separators=(",", ":"))
    token = str(uuid.uuid5(_NAMESPACE, f"{name}\n{value}"))
    sm = client("secretsmanager")
    try:
        return sm.put_secret_value(SecretId=name, SecretString=value, ClientRequestToken=token)["ARN"]
    except sm.exceptions.ResourceNotFoundException:
        return sm.create_secret(
            Name=name,
            SecretString=value,
            ClientRequestToken=token,
            Description=f"Webex token for {document['connection']}",
            Tags=[{"Key": "webex-token-broker:connection", "Value": document["connection"]}],
        )["ARN"]


def callback(event: dict) -> dict:
    params = event.get("queryStringParameters") or {}
    ddb = client("dynamodb")
    now = int(time.time())
    login = ddb.delete_item(
        TableName=os.environ["STATE_TABLE"],
        Key={"state": _s(params["state"])},
        ConditionExpression="attribute_exists(code_verifier) AND expires_at > :now AND browser_hash = :browser",
        ExpressionAttributeValues={
            ":now": _n(now),
            ":browser": _s(hashlib.sha256(_cookie(event).encode()).hexdigest()),
        },
        ReturnValues="ALL_OLD",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )["Attributes"]
    creds = credentials()
    timeout = (3.05, float(os.environ.get("WEBEX_TIMEOUT_SECONDS", "8")))
    grant = http().post(
        f"{_base()}/access_token",
        data={
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": login["redirect_uri"]["S"],
            "code_verifier": login["code_verifier"]["S"],
        },
        timeout=timeout,
    )
    grant.raise_for_status()
    grant = grant.json()
    me = http().get(
        f"{_base()}/people/me", headers={"Authorization": f"Bearer {grant['access_token']}"}, timeout=timeout
    )
    me.raise_for_status()
    me = me.json()
    email = me["emails"][0]
    connection = email.lower()
    table = os.environ["CONNECTIONS_TABLE"]
    row = ddb.get_item(TableName=table, Key={"connection": _s(connection)}, ConsistentRead=True).get("Item")
    if row and row.get("person_id", {}).get("S", me["id"]) != me["id"]:
        return {"statusCode": 409, "headers": _HEADERS, "body": "taken"}
    ddb.update_item(
        TableName=table,
        Key={"connection": _s(connection)},
        UpdateExpression=(
            "SET #person_id = :person_id, #email = :email, #created_at = if_not_exists(#created_at, :created_at), "
            "#status = if_not_exists(#status, :status)"
        ),
        ConditionExpression="attribute_not_exists(person_id) OR person_id = :person_id",
        ExpressionAttributeNames={f"#{k}": k for k in ("person_id", "email", "created_at", "status")},
        ExpressionAttributeValues={
            ":person_id": _s(me["id"]),
            ":email": _s(email),
            ":created_at": _n(now),
            ":status": _s("pending"),
        },
    )
    owner = f"login-{uuid.uuid4()}"
    _lease(table, connection, owner, now=now, seconds=20)
    access_expires = now + int(grant["expires_in"])
    refresh_expires = now + int(grant["refresh_token_expires_in"])
    scopes = grant.get("scope", "").split()
    person = {
        "connection": connection,
        "person_id": me["id"],
        "email": email,
        "display_name": me.get("displayName", ""),
        "org_id": me.get("orgId", ""),
    }
    _put_secret(
        f"{_prefix()}/refresh/{connection}",
        {
            **person,
            "refresh_token": grant["refresh_token"],
            "refresh_token_expires_at": _iso(refresh_expires),
            "person_type": me.get("type", "person"),
            "scopes": scopes,
            "token_type": "Bearer",
            "updated_at": _iso(now),
        },
    )
    arn = _put_secret(
        f"{_prefix()}/tokens/{connection}",
        {
            **person,
            "access_token": grant["access_token"],
            "token_type": "Bearer",
            "expires_at": _iso(access_expires),
            "scopes": scopes,
            "updated_at": _iso(now),
        },
    )
    values = {
        "person_id": _s(me["id"]),
        "email": _s(email),
        "display_name": _s(me.get("displayName", "")),
        "org_id": _s(me.get("orgId", "")),
        "scopes": {"L": [_s(s) for s in scopes]},
        "status": _s("active"),
        "schedule": _s("scheduled"),
        "consumer_secret_arn": _s(arn),
        "login_base_url": _s(login["redirect_uri"]["S"].removesuffix("/callback")),
        "access_expires_at": _n(access_expires),
        "access_token_id": _s(_fingerprint(grant["access_token"])),
        "refresh_expires_at": _n(refresh_expires),
        "next_refresh_at": _n(access_expires - 48 * 3600),
        "refreshed_at": _n(now),
        "consecutive_failures": _n(0),
        "authorized_at": _n(now),
        "updated_at": _n(now),
        "created_at": _n(now),
    }
    removed = ("lease_owner", "lease_expires_at", "last_error", "last_error_class", "last_error_at", "last_tracking_id")
    ddb.update_item(
        TableName=table,
        Key={"connection": _s(connection)},
        UpdateExpression="SET "
        + ", ".join(f"#{k} = if_not_exists(#{k}, :{k})" if k == "created_at" else f"#{k} = :{k}" for k in values)
        + " REMOVE "
        + ", ".join(f"#{k}" for k in removed),
        ConditionExpression="lease_owner = :owner",
        ExpressionAttributeNames={f"#{k}": k for k in (*values, *removed)},
        ExpressionAttributeValues={**{f":{k}": v for k, v in values.items()}, ":owner": _s(owner)},
    )
    result = secrets.token_urlsafe(32)
    ddb.put_item(
        TableName=os.environ["STATE_TABLE"],
        Item={
            "state": _s(f"result.{result}"),
            "connection": _s(connection),
            "display_name": _s(me.get("displayName", "")),
            "email": _s(email),
            "consumer_secret_name": _s(f"{_prefix()}/tokens/{connection}"),
            "browser_hash": login["browser_hash"],
            "expires_at": _n(now + 900),
        },
    )
    location = f"{login['redirect_uri']['S'].removesuffix('/callback')}/connected?r={result}"
    return {"statusCode": 303, "headers": {**_HEADERS, "Location": location}, "body": ""}


# --- one refresh ------------------------------------------------------------------------------------


class Pacer:
    """Hands out write slots one interval apart, as anyone keeping under a per-second quota would."""

    def __init__(self, rate_per_second: float):
        self._interval, self._next, self._lock = 1.0 / rate_per_second, time.monotonic(), threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = self._next = max(self._next, now)
            self._next += self._interval
        if slot > now:
            time.sleep(slot - now)


def refresh_many(connections: list[str], *, concurrency: int, write_rate: float) -> int:
    """The refresher's work at its speed limits and no broker code: `concurrency` refreshes at a
    time, consumer-secret writes paced to `write_rate`. Returns how many were refreshed."""
    credentials()
    owner, pace = f"baseline-{uuid.uuid4()}", Pacer(write_rate)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return sum(1 for _ in pool.map(lambda name: refresh_one(name, owner, pace=pace), connections))


def refresh_one(connection: str, owner: str | None = None, *, pace=None) -> str:
    ddb, sm = client("dynamodb"), client("secretsmanager")
    table = os.environ["CONNECTIONS_TABLE"]
    owner = owner or f"baseline-{uuid.uuid4()}"
    now = int(time.time())
    row = _lease(table, connection, owner, now=now, seconds=300)
    material = json.loads(sm.get_secret_value(SecretId=f"{_prefix()}/refresh/{connection}")["SecretString"])
    creds = credentials()
    answer = http().post(
        f"{_base()}/access_token",
        data={
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "grant_type": "refresh_token",
            "refresh_token": material["refresh_token"],
        },
        timeout=(3.05, float(os.environ.get("WEBEX_TIMEOUT_SECONDS", "8"))),
    )
    answer.raise_for_status()
    grant = answer.json()
    access_expires = now + int(grant["expires_in"])
    refresh_expires = now + int(grant["refresh_token_expires_in"])
    if grant.get("refresh_token", material["refresh_token"]) != material["refresh_token"]:
        if pace:
            pace()
        _put_secret(f"{_prefix()}/refresh/{connection}", {**material, "refresh_token": grant["refresh_token"]})
    token_id = _fingerprint(grant["access_token"])
    if token_id != row.get("access_token_id", {}).get("S"):
        if pace:
            pace()
        _put_secret(
            f"{_prefix()}/tokens/{connection}",
            {
                "connection": connection,
                "person_id": material["person_id"],
                "email": material["email"],
                "display_name": material["display_name"],
                "org_id": material["org_id"],
                "access_token": grant["access_token"],
                "token_type": "Bearer",
                "expires_at": _iso(access_expires),
                "scopes": grant.get("scope", "").split() or material["scopes"],
                "updated_at": _iso(now),
            },
        )
    values = {
        "status": _s("active"),
        "schedule": _s("scheduled"),
        "access_expires_at": _n(access_expires),
        "access_token_id": _s(token_id),
        "refresh_expires_at": _n(refresh_expires),
        "next_refresh_at": _n(max(now + 86400, access_expires - 48 * 3600)),
        "refreshed_at": _n(now),
        "last_attempt_at": _n(now),
        "consecutive_failures": _n(0),
        "updated_at": _n(now),
    }
    removed = ("lease_owner", "lease_expires_at", "last_error", "last_error_class", "last_error_at", "last_tracking_id")
    ddb.update_item(
        TableName=table,
        Key={"connection": _s(connection)},
        ConditionExpression="lease_owner = :owner",
        UpdateExpression="SET "
        + ", ".join(f"#{k} = :{k}" for k in values)
        + " REMOVE "
        + ", ".join(f"#{k}" for k in removed),
        ExpressionAttributeNames={f"#{k}": k for k in (*values, *removed)},
        ExpressionAttributeValues={**{f":{k}": v for k, v in values.items()}, ":owner": _s(owner)},
    )
    return "refreshed"


def refresh_connection(event: dict) -> dict:
    """POST /connections/{name}/refresh: the row must exist, then one refresh."""
    from urllib.parse import unquote

    name = unquote(event["pathParameters"]["name"])
    row = client("dynamodb").get_item(
        TableName=os.environ["CONNECTIONS_TABLE"], Key={"connection": _s(name)}, ConsistentRead=True
    )
    if "Item" not in row:
        return {"statusCode": 404, "headers": _HEADERS, "body": "{}"}
    outcome = refresh_one(name)
    return {"statusCode": 200, "headers": _HEADERS, "body": json.dumps({"connection": name, "outcome": outcome})}


def refresher(event: dict) -> dict:
    """The scheduled run: query what is due, refresh it 16 at a time, look up the next one due."""
    ddb = client("dynamodb")
    table = os.environ["CONNECTIONS_TABLE"]
    now = int(time.time())
    credentials()
    due = []
    for page in ddb.get_paginator("query").paginate(
        TableName=table,
        IndexName="ScheduleIndex",
        KeyConditionExpression="#schedule = :scheduled AND next_refresh_at <= :now",
        ExpressionAttributeNames={"#schedule": "schedule"},
        ExpressionAttributeValues={":scheduled": _s("scheduled"), ":now": _n(now)},
    ):
        due += [item["connection"]["S"] for item in page.get("Items", [])]
    owner = f"baseline-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(lambda name: refresh_one(name, owner), due))
    upcoming = ddb.query(
        TableName=table,
        IndexName="ScheduleIndex",
        KeyConditionExpression="#schedule = :scheduled AND next_refresh_at > :now",
        ExpressionAttributeNames={"#schedule": "schedule"},
        ExpressionAttributeValues={":scheduled": _s("scheduled"), ":now": _n(now)},
        Limit=1,
    )["Items"]
    if upcoming:
        ddb.get_item(TableName=table, Key={"connection": upcoming[0]["connection"]}, ConsistentRead=True)
    ddb.update_item(  # the run's own record, which `webex-broker doctor` reads
        TableName=table,
        Key={"connection": _s("#refresher")},
        UpdateExpression="SET #last_run_at = :last_run_at, #last_run_outcomes = :last_run_outcomes",
        ExpressionAttributeNames={"#last_run_at": "last_run_at", "#last_run_outcomes": "last_run_outcomes"},
        ExpressionAttributeValues={
            ":last_run_at": _n(int(time.time())),
            ":last_run_outcomes": {"M": {"refreshed": _n(len(outcomes))}},
        },
    )
    return {"refreshed": len(outcomes)}
