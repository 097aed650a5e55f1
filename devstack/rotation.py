"""Secrets Manager's rotation in the local AWS. moto's RotateSecret runs no local function (it looks
for one in its own Lambda, and without one moves AWSCURRENT itself, to a copy or to nothing). Here it
does what AWS does: rotation on, an empty AWSPENDING version under the ClientRequestToken, then the
rotation function's four steps (only testSecret with RotateImmediately=false, the version removed
after); a step that fails leaves AWSPENDING where it is and AWSCURRENT untouched, and RotateSecret
still answers, as AWS's does (the rotation runs after it answered)."""

import logging
import time
import uuid
from collections.abc import Callable

from moto.secretsmanager.exceptions import InvalidRequestException, SecretNotFoundException
from moto.secretsmanager.models import SecretsManagerBackend

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
Invoke = Callable[[str, dict], object]  # (function ARN, event): the local rotation function


def install(invoke: Invoke) -> None:
    """From now on RotateSecret calls `invoke` with each step's event."""

    def rotate_secret(
        self: SecretsManagerBackend,
        secret_id: str,
        client_request_token: str | None = None,
        rotation_lambda_arn: str | None = None,
        rotation_rules: dict | None = None,
        rotate_immediately: bool = True,
    ) -> str:
        if not self._is_valid_identifier(secret_id):
            raise SecretNotFoundException()
        secret = self.secrets[secret_id]
        if secret.is_deleted():
            raise InvalidRequestException("You can't perform this operation on the secret because it was deleted.")
        if any(_unfinished(version) for version in secret.versions.values()):
            raise InvalidRequestException("A previous rotation isn't complete. That rotation will be reattempted.")
        secret.rotation_lambda_arn = rotation_lambda_arn or secret.rotation_lambda_arn
        if days := (rotation_rules or {}).get("AutomaticallyAfterDays"):
            secret.auto_rotate_after_days = days
            secret.next_rotation_date = int(time.time()) + days * 86400
        secret.rotation_enabled = secret.rotation_requested = True
        token = client_request_token or str(uuid.uuid4())
        secret.versions[token] = {"createdate": int(time.time()), "version_id": token, "version_stages": ["AWSPENDING"]}
        steps = STEPS if rotate_immediately else ("testSecret",)
        try:
            for step in steps:
                invoke(secret.rotation_lambda_arn, {"Step": step, "SecretId": secret.arn, "ClientRequestToken": token})
        except Exception as exc:  # AWS reports it in the function's log and leaves the rotation unfinished
            logging.getLogger(__name__).warning("Rotation of %s failed: %s", secret.name, type(exc).__name__)
        else:
            if rotate_immediately:  # AWS schedules the next rotation from the last one
                secret.last_rotation_date = int(time.time())
                if secret.auto_rotate_after_days:
                    secret.next_rotation_date = secret.last_rotation_date + secret.auto_rotate_after_days * 86400
        if not rotate_immediately:
            secret.versions.pop(token, None)
        return secret.to_short_dict(version_id=token)

    SecretsManagerBackend.rotate_secret = rotate_secret  # type: ignore[method-assign]


def _unfinished(version: dict) -> bool:
    stages = version["version_stages"]
    return "AWSPENDING" in stages and "AWSCURRENT" not in stages
