"""A copy of everything moto holds, taken once and put back at will: a fresh stack's tables, client
secret, broker key and event queue cost eleven AWS calls to make (a quarter of a test's setup), and a
millisecond to copy back."""

import copy
import threading

from moto.core.base_backend import BackendDict


def _copy(backend: object) -> object:
    """A deep copy; an SQS queue's lock cannot be copied, so each copied queue gets a new one."""
    locks = {id(queue._messages_lock): threading.Condition() for queue in getattr(backend, "queues", {}).values()}
    return copy.deepcopy(backend, locks)


class Snapshot:
    """moto's backends as they are now, in every service, account and region that holds anything."""

    def __init__(self) -> None:
        self._backends = [
            (service, account, region, _copy(backend))
            for service in BackendDict._instances
            for account, regions in service.items()
            for region, backend in regions.items()
        ]

    def restore(self) -> None:
        """Put the snapshot back into a moto that holds nothing yet (each call gets its own copy)."""
        assert not BackendDict._instances, "a snapshot restores into an empty moto only"
        for service, account, region, backend in self._backends:
            service[account][region] = _copy(backend)
