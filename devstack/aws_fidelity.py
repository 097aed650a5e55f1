"""Where moto is laxer than AWS in a way the broker depends on, make it as strict as AWS.

- PutSecretValue on a secret scheduled for deletion: AWS refuses ("You can't perform this operation
  on the secret because it was marked for deletion"), moto writes a version nobody can read. The
  broker restores such a secret before writing (`secret_store.put_secret`); without this, the local
  stack and the tests would never take that path.
"""

from moto.secretsmanager.exceptions import InvalidRequestException
from moto.secretsmanager.models import SecretsManagerBackend

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    lax = SecretsManagerBackend.put_secret_value

    def put_secret_value(self, secret_id: str, *args, **kwargs):
        secret = self.secrets.get(secret_id) if self._is_valid_identifier(secret_id) else None
        if secret is not None and secret.is_deleted():
            raise InvalidRequestException(
                "You can't perform this operation on the secret because it was marked for deletion."
            )
        return lax(self, secret_id, *args, **kwargs)

    SecretsManagerBackend.put_secret_value = put_secret_value
