"""moto's server for benchmarks, in its own process so it does not share the broker's interpreter.

moto's Secrets Manager finds a secret by scanning every stored secret, which real Secrets Manager
does not; with 20,000 secrets that scan, not the broker, would dominate. This launcher gives moto's
store a direct lookup by name (falling back to moto's own search for ARNs), and changes nothing else.
"""

import sys

from moto.secretsmanager import models
from moto.server import main

_scan_get = models.SecretsStore.__getitem__
_scan_contains = models.SecretsStore.__contains__


def _get(self, key):
    found = dict.get(self, key)
    return found if found is not None else _scan_get(self, key)


def _contains(self, key):
    return dict.__contains__(self, key) or _scan_contains(self, key)


models.SecretsStore.__getitem__ = _get
models.SecretsStore.__contains__ = _contains

if __name__ == "__main__":
    sys.exit(main())
