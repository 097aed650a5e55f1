"""moto's server for benchmarks, in its own process so it does not share the broker's interpreter.

moto's Secrets Manager finds a secret by scanning every stored secret, which real Secrets Manager
does not; with 20,000 secrets that scan, not the broker, would dominate. This launcher gives moto's
store a direct lookup by name (falling back to moto's own search for ARNs), and changes nothing else
that the broker sees. A key that is not an ARN and is not stored under its name cannot be found by
the scan either (the store is keyed by name), so a miss by name answers at once.

For seeding only, POST /_bench/secrets creates many secrets in one request, straight in moto's
backend: over moto's HTTP API every secret costs ~4 ms of server time, which made seeding 10,000
connections take longer than refreshing them. Nothing the broker calls goes through it.

It serves moto's application with waitress, which keeps each connection open between requests as
AWS's endpoints do; moto's own server (werkzeug's) closes every one, so each AWS call of the
benchmark paid for a new socket, on both sides of every comparison, that Lambda never pays.
"""

import argparse
import json
import os

import waitress
from moto import server
from moto.core import DEFAULT_ACCOUNT_ID
from moto.secretsmanager import models

from devstack import rotation

_scan_get = models.SecretsStore.__getitem__
_scan_contains = models.SecretsStore.__contains__
_scan_lookup = models.SecretsStore.get


def _get(self, key):
    found = dict.get(self, key)
    if found is not None:
        return found
    if not key.startswith("arn:"):
        raise KeyError(key)
    return _scan_get(self, key)


def _contains(self, key):
    if dict.__contains__(self, key):
        return True
    return key.startswith("arn:") and _scan_contains(self, key)


def _lookup(self, key):
    found = dict.get(self, key)
    if found is not None or not key.startswith("arn:"):
        return found
    return _scan_lookup(self, key)


models.SecretsStore.__getitem__ = _get
models.SecretsStore.__contains__ = _contains
models.SecretsStore.get = _lookup


def _create_secrets(environ, start_response):
    """{"region": ..., "secrets": [{"name": ..., "secret_string": ...}]} → {"arns": [...]} (same order)."""
    body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
    backend = models.secretsmanager_backends[DEFAULT_ACCOUNT_ID][body.get("region", "us-east-1")]
    arns = []
    for secret in body["secrets"]:
        created = backend.create_secret(
            name=secret["name"],
            secret_string=secret["secret_string"],
            secret_binary=None,
            description=secret.get("description"),
            tags=secret.get("tags"),
            kms_key_id=None,
            client_request_token=None,
            replica_regions=[],
            force_overwrite=False,
        )
        arns.append((json.loads(created) if isinstance(created, str) else created)["ARN"])
    payload = json.dumps({"arns": arns}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


class _BenchApplication(server.DomainDispatcherApplication):
    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/_bench/secrets" and environ.get("REQUEST_METHOD") == "POST":
            return _create_secrets(environ, start_response)
        return super().__call__(environ, start_response)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ["MOTO_PORT"] = str(args.port)
    # RotateSecret answers as AWS's does; the rotation function's testSecret runs in its own Lambda,
    # whose cost is not the caller's.
    rotation.install(lambda arn, event: None)
    application = _BenchApplication(server.create_backend_app)
    waitress.serve(application, host=args.host, port=args.port, threads=32, connection_limit=256)


if __name__ == "__main__":
    main()
