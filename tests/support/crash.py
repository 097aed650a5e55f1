"""A Lambda that dies after a chosen step, for the tests that prove the next run finishes its work."""

from contextlib import contextmanager


class SimulatedCrash(Exception):
    """The Lambda dies here: nothing after this point runs, the lease is left held."""


@contextmanager
def crashing_after(monkeypatch, module_name: str, function_name: str, step: str):
    """Within the block, the named step runs and then the process "dies" (SimulatedCrash)."""
    from webex_broker.adapters import connections, secret_store, webex

    owners = {"webex": webex.WebexClient, "secret_store": secret_store, "connections": connections.ConnectionsTable}
    owner = owners[module_name]
    real = getattr(owner, function_name)

    def crash_after(*args, **kwargs):
        real(*args, **kwargs)
        raise SimulatedCrash(step)

    with monkeypatch.context() as crash:
        crash.setattr(owner, function_name, crash_after)
        yield
